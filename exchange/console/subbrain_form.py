"""The request form's fields and the ComputeRequest they make (docs/pipeline.md).

The console may not import the pipeline (import-linter), so this module only
turns the form into the JSON body of ``POST /v1/requests``; the API judges it
(a malformed body is the API's 422, shown on the form). :meth:`RequestForm.cli`
gives the equivalent ``ibx request submit`` command line.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

__all__ = [
    "ENGINES",
    "OPERATIONS",
    "PURPOSES",
    "REDUCES",
    "FormError",
    "RequestForm",
]

PURPOSES: Final = (
    "benchmarking",
    "industry_monitoring",
    "risk_warning",
    "chain_analysis",
    "policy_evaluation",
    "trade_matching",
)
"""The consent purposes (``consent.Purpose``; a test keeps them equal)."""

OPERATIONS: Final = (
    "mean",
    "sum",
    "count",
    "variance",
    "histogram",
    "regression",
    "percentile_rank",
    "quantiles",
    "min_max",
    "dominance_check",
    "set_intersection_size",
)
"""The operations (``consent.Operation``; a test keeps them equal)."""

ENGINES: Final = ("auto", "he", "mpc", "psi")
REDUCES: Final = ("", "none", "sum", "mean", "last")
_SPLIT = re.compile(r"[\s,，;；]+")
_MAX_TEXT = 4000


class FormError(ValueError):
    """A field the form cannot turn into a request: ``key`` names its label."""

    def __init__(self, key: str, field: str) -> None:
        super().__init__(f"{field}: {key}")
        self.key = key
        self.field = field


@dataclass(frozen=True)
class RequestForm:
    """What the sub-brain typed (strings, as the browser sent them)."""

    by: str = "industry"
    datasets: str = ""
    industry: str = ""
    purpose: str = "benchmarking"
    operation: str = "mean"
    fields: str = ""
    engine: str = "auto"
    reduce: str = ""
    length: str = "1"
    bound: str = "1000000"
    bins: str = ""
    epsilon: str = ""
    deadline_seconds: str = "120"

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> RequestForm:
        """The form's fields (others ignored; each cut to a sane length)."""
        values: dict[str, str] = {}
        for item in fields(cls):
            raw = form.get(item.name)
            if isinstance(raw, str):
                values[item.name] = raw.strip()[:_MAX_TEXT]
        return cls(**values)

    def dataset_ids(self) -> list[str]:
        """The dataset ids typed (separated by commas, spaces or new lines)."""
        return [d for d in _SPLIT.split(self.datasets) if d]

    def field_names(self) -> list[str]:
        """The field names typed (in order: a regression's target first)."""
        return [f for f in _SPLIT.split(self.fields) if f]

    def body(self) -> dict[str, Any]:
        """The ComputeRequest to send.

        Raises:
            FormError: a number that is not one, or a selection left empty.
        """
        body: dict[str, Any] = {
            "purpose": self.purpose,
            "operation": self.operation,
            "fields": self.field_names(),
            "engine": self.engine or "auto",
        }
        if self.by == "datasets":
            ids = self.dataset_ids()
            if not ids:
                raise FormError("subbrain.form_no_datasets", "datasets")
            body["datasets"] = ids
        else:
            if not self.industry:
                raise FormError("subbrain.form_no_industry", "industry")
            body["industry"] = self.industry
        parameters: dict[str, Any] = {
            "length": _integer(self.length, "length"),
            "bound": _number(self.bound, "bound"),
            "deadline_seconds": _integer(self.deadline_seconds, "deadline_seconds"),
        }
        if self.reduce:
            parameters["reduce"] = self.reduce
        if self.bins:
            parameters["bins"] = [_number(b, "bins") for b in _SPLIT.split(self.bins) if b]
        if self.epsilon:
            parameters["epsilon"] = _number(self.epsilon, "epsilon")
        body["parameters"] = parameters
        return body

    def cli(self) -> str:
        """The same request as an ``ibx request submit`` command line (quoted for a shell)."""
        args = ["ibx", "request", "submit", "--purpose", self.purpose]
        args += ["--operation", self.operation]
        for name in self.field_names():
            args += ["--field", name]
        if self.by == "datasets":
            for dataset in self.dataset_ids():
                args += ["--dataset", dataset]
        else:
            args += ["--industry", self.industry or "INDUSTRY"]
        if self.engine and self.engine != "auto":
            args += ["--engine", self.engine]
        if self.reduce:
            args += ["--reduce", self.reduce]
        if self.length and self.length != "1":
            args += ["--length", self.length]
        if self.bound and self.bound != "1000000":
            args += ["--bound", self.bound]
        if self.bins:
            args += ["--bins", ",".join(b for b in _SPLIT.split(self.bins) if b)]
        if self.epsilon:
            args += ["--epsilon", self.epsilon]
        if self.deadline_seconds and self.deadline_seconds != "120":
            args += ["--deadline", self.deadline_seconds]
        return shlex.join(args)


def _number(text: str, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FormError("subbrain.form_not_a_number", field) from None
    if not math.isfinite(value):
        raise FormError("subbrain.form_not_a_number", field)
    return value


def _integer(text: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FormError("subbrain.form_not_an_integer", field) from None
