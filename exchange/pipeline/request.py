"""A compute request as a sub-brain submits it, and the engine it runs on.

The request's vocabulary is the consent vocabulary (:class:`consent.Operation`,
:class:`consent.Purpose`): one request is one operation, which is exactly what
an enterprise's consent names. :data:`ENGINE_OF` says which engine computes
each operation when the requester asks for ``auto``; ``he``, ``mpc`` and
``psi`` are honoured only where the operation can run on them.

The request's hash (:meth:`ComputeRequest.digest`) is SHA-256 over its RFC
8785 form; the decision entry on the ledger carries it, so a data agent can
check that the task it is handed is the request that was authorized.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from consent import Operation, Purpose
from core.canonical import JsonValue, canonical_sha256

__all__ = [
    "ENGINE_OF",
    "MAX_DEADLINE_SECONDS",
    "ComputeRequest",
    "EngineName",
    "InvalidRequestError",
    "Parameters",
    "Reduce",
]

MAX_DEADLINE_SECONDS = 3600
"""No job waits longer than an hour for its contributions and result."""

_ID = re.compile(r"[A-Za-z0-9._@-]{1,128}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class InvalidRequestError(ValueError):
    """A compute request that is malformed (the API answers 422, the CLI exits 2)."""


class EngineName(enum.StrEnum):
    """What the requester asks for; ``auto`` is resolved by :meth:`ComputeRequest.engine_for`."""

    HE = "he"
    MPC = "mpc"
    PSI = "psi"
    AUTO = "auto"


ENGINE_OF: Mapping[Operation, EngineName] = {
    Operation.COUNT: EngineName.HE,
    Operation.SUM: EngineName.HE,
    Operation.MEAN: EngineName.HE,
    Operation.VARIANCE: EngineName.HE,
    Operation.HISTOGRAM: EngineName.HE,
    Operation.REGRESSION: EngineName.HE,
    Operation.PERCENTILE_RANK: EngineName.MPC,
    Operation.QUANTILES: EngineName.MPC,
    Operation.MIN_MAX: EngineName.MPC,
    Operation.DOMINANCE_CHECK: EngineName.MPC,
    Operation.SET_INTERSECTION_SIZE: EngineName.PSI,
}
"""The engine ``auto`` picks: sums, means, variance, histograms and regression by HE;
ranks, quantiles, min/max and dominance checks by MPC; overlaps by PSI."""

_ALSO_ON_MPC = frozenset({Operation.SUM, Operation.MEAN})
"""HE operations MPC computes too (a policy with a dominance rule needs MPC for them)."""


class Reduce(enum.StrEnum):
    """How a data agent turns its column into what it contributes.

    ``none``: the column itself, one value per row, in the source's order (HE
    vectors; the source must have exactly ``length`` rows). ``sum``, ``mean``,
    ``last``: one value (the MPC default is ``mean``).
    """

    NONE = "none"
    SUM = "sum"
    MEAN = "mean"
    LAST = "last"


@dataclass(frozen=True)
class Parameters:
    """The request's parameters; each has a safe default."""

    length: int = 1
    """HE: values per enterprise and field (the vector length)."""
    reduce: Reduce | None = None
    """None: ``none`` for HE, ``mean`` for MPC (see :class:`Reduce`)."""
    bound: float = 1e6
    """Largest magnitude of a value (HE scaling, MPC resolution, DP sensitivity)."""
    bins: tuple[float, ...] = ()
    """Histogram bin edges, strictly increasing."""
    epsilon: float | None = None
    """Differential privacy for this release (sum/mean under HE; order statistics under MPC)."""
    deadline_seconds: int = 120
    """Seconds the job may take from authorization to release, at most an hour."""

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not 1 <= self.length <= 1_000_000:
            raise InvalidRequestError("parameters.length must be an integer from 1 to 1000000")
        if not math.isfinite(self.bound) or not 0 < self.bound <= 1e12:
            raise InvalidRequestError("parameters.bound must be in (0, 1e12]")
        if self.bins and (
            len(self.bins) < 2
            or list(self.bins) != sorted(set(self.bins))
            or not all(math.isfinite(b) for b in self.bins)
        ):
            raise InvalidRequestError(
                "parameters.bins must be at least two strictly increasing finite edges"
            )
        if self.epsilon is not None and not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise InvalidRequestError("parameters.epsilon must be a positive number")
        if isinstance(self.deadline_seconds, bool) or not (
            1 <= self.deadline_seconds <= MAX_DEADLINE_SECONDS
        ):
            raise InvalidRequestError(
                f"parameters.deadline_seconds must be from 1 to {MAX_DEADLINE_SECONDS}"
            )

    def to_dict(self) -> dict[str, JsonValue]:
        """The parameters as JSON (every member, defaults included)."""
        return {
            "length": self.length,
            "reduce": None if self.reduce is None else self.reduce.value,
            "bound": self.bound,
            "bins": list(self.bins),
            "epsilon": self.epsilon,
            "deadline_seconds": self.deadline_seconds,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, JsonValue]) -> Parameters:
        """Decode parameters; unknown members are refused.

        Raises:
            InvalidRequestError: unknown or malformed members.
        """
        known = {"length", "reduce", "bound", "bins", "epsilon", "deadline_seconds"}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise InvalidRequestError(f"parameters: unknown member(s) {unknown}")
        try:
            reduce = obj.get("reduce")
            bins = obj.get("bins") or []
            epsilon = obj.get("epsilon")
            if not isinstance(bins, list):
                raise InvalidRequestError("parameters.bins must be a list of numbers")
            return cls(
                length=_int(obj.get("length", 1), "length"),
                reduce=None if reduce is None else Reduce(str(reduce)),
                bound=_number(obj.get("bound", 1e6), "bound"),
                bins=tuple(_number(b, "bins") for b in bins),
                epsilon=None if epsilon is None else _number(epsilon, "epsilon"),
                deadline_seconds=_int(obj.get("deadline_seconds", 120), "deadline_seconds"),
            )
        except ValueError as exc:
            if isinstance(exc, InvalidRequestError):
                raise
            raise InvalidRequestError(f"parameters: {exc}") from exc


def _int(value: JsonValue, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"parameters.{name} must be an integer")
    return value


def _number(value: JsonValue, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"parameters.{name} must be a number")
    return float(value)


@dataclass(frozen=True)
class ComputeRequest:
    """What a sub-brain asks the exchange to compute (pipeline step 1).

    Exactly one of ``datasets`` (dataset ids) and ``industry`` (every dataset
    of that industry's enterprises holding all ``fields``) selects the data.
    ``fields`` are the dataset fields the operation reads, in order (a
    regression's first field is the target, the others its features; PSI
    reads one field's values as the set).
    """

    purpose: Purpose
    operation: Operation
    fields: tuple[str, ...]
    datasets: tuple[str, ...] = ()
    industry: str | None = None
    engine: EngineName = EngineName.AUTO
    parameters: Parameters = field(default_factory=Parameters)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "purpose", Purpose(self.purpose))
            object.__setattr__(self, "operation", Operation(self.operation))
            object.__setattr__(self, "engine", EngineName(self.engine))
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from exc
        if bool(self.datasets) == (self.industry is not None):
            raise InvalidRequestError("name either datasets or an industry, not both or neither")
        if len(set(self.datasets)) != len(self.datasets) or not all(
            _ID.fullmatch(d) for d in self.datasets
        ):
            raise InvalidRequestError("datasets must be distinct dataset ids")
        if self.industry is not None and not _ID.fullmatch(self.industry):
            raise InvalidRequestError("industry must be an industry name")
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise InvalidRequestError("fields must name at least one field, each once")
        if not all(_FIELD.fullmatch(f) for f in self.fields):
            raise InvalidRequestError("each field must be an identifier")
        op = self.operation
        if op is Operation.REGRESSION and len(self.fields) < 2:
            raise InvalidRequestError("a regression needs a target field and a feature")
        if op is not Operation.REGRESSION and len(self.fields) != 1:
            raise InvalidRequestError(f"{op.value} reads exactly one field")
        if (op is Operation.HISTOGRAM) != bool(self.parameters.bins):
            raise InvalidRequestError("parameters.bins is needed by, and only by, histogram")
        self.engine_for(dominance=False)  # refuses an engine that cannot run the operation

    def engine_for(self, *, dominance: bool) -> EngineName:
        """The engine that computes this request (``auto`` resolved).

        ``dominance``: the policy applies an (n, k) dominance rule to this
        release, which needs comparisons on hidden values (MPC).

        Raises:
            InvalidRequestError: the requested engine cannot compute the operation.
        """
        natural = ENGINE_OF[self.operation]
        if dominance and self.operation in _ALSO_ON_MPC:
            natural = EngineName.MPC
        if self.engine is EngineName.AUTO or self.engine is natural:
            return natural
        if self.engine is EngineName.MPC and self.operation in _ALSO_ON_MPC:
            return EngineName.MPC
        raise InvalidRequestError(
            f"engine {self.engine.value} cannot compute {self.operation.value}"
            + (" under a dominance rule" if dominance else "")
            + f" (use {natural.value} or auto)"
        )

    def reduce(self, engine: EngineName) -> Reduce:
        """How each agent reduces its column on ``engine`` (see :class:`Reduce`)."""
        if self.parameters.reduce is not None:
            return self.parameters.reduce
        return Reduce.MEAN if engine is EngineName.MPC else Reduce.NONE

    def to_dict(self) -> dict[str, JsonValue]:
        """The request as JSON (what ``POST /v1/requests`` takes, and the ledger records)."""
        return {
            "purpose": self.purpose.value,
            "operation": self.operation.value,
            "fields": list(self.fields),
            "datasets": list(self.datasets),
            "industry": self.industry,
            "engine": self.engine.value,
            "parameters": self.parameters.to_dict(),
        }

    def digest(self) -> str:
        """Hex SHA-256 of the request's RFC 8785 form."""
        return canonical_sha256(self.to_dict()).hex()

    @classmethod
    def from_dict(cls, obj: Mapping[str, JsonValue]) -> ComputeRequest:
        """Decode a request; unknown members are refused.

        Raises:
            InvalidRequestError: missing, unknown or malformed members.
        """
        known = {"purpose", "operation", "fields", "datasets", "industry", "engine", "parameters"}
        unknown = sorted(set(obj) - known)
        missing = sorted({"purpose", "operation", "fields"} - set(obj))
        if unknown or missing:
            raise InvalidRequestError(f"request: missing {missing}, unexpected {unknown}")
        fields = obj["fields"]
        datasets = obj.get("datasets") or []
        industry = obj.get("industry")
        params = obj.get("parameters") or {}
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise InvalidRequestError("fields must be a list of field names")
        if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
            raise InvalidRequestError("datasets must be a list of dataset ids")
        if industry is not None and not isinstance(industry, str):
            raise InvalidRequestError("industry must be a string")
        if not isinstance(params, dict):
            raise InvalidRequestError("parameters must be an object")
        try:
            return cls(
                purpose=Purpose(_text(obj["purpose"], "purpose")),
                operation=Operation(_text(obj["operation"], "operation")),
                fields=tuple(str(f) for f in fields),
                datasets=tuple(str(d) for d in datasets),
                industry=industry,
                engine=EngineName(_text(obj.get("engine", "auto"), "engine")),
                parameters=Parameters.from_dict(params),
            )
        except InvalidRequestError:
            raise
        except ValueError as exc:  # a value outside its vocabulary
            raise InvalidRequestError(str(exc)) from exc


def _text(value: JsonValue, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be a string")
    return value
