"""Contributors' plaintext inputs for an HE job, checked for shape before anything is encrypted.

Input arrives as ``(name, value)`` pairs in the order given (a JSON object
read with ``object_pairs_hook=list``: objects become lists of tuples, arrays
stay lists), so a name given twice is seen and refused instead of one value
silently replacing the other. Shapes by operation:

* ``count``, ``sum``, ``mean``, ``variance``, ``weighted_sum``: a number or a
  list of numbers; every contributor the same length (it sets the job's
  ``length``);
* ``histogram``: a list of records (numbers), any number per contributor;
* ``linear_regression``: an object ``{"x": [[features…], …], "y": [...]}``,
  one row of x per y, every row of every contributor with the same number of
  features (the job's ``length``).

Refusals here name the contributor and stop the whole job (which value is
"right" cannot be guessed); a single value that is not a number or is out
of range is refused later, by the encoder, and that contributor is left out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from mpc._he_spec import HeOperation, RegressionInput
from mpc.errors import (
    DuplicateContributorError,
    InvalidContributionError,
    NonNumericValueError,
    VectorLengthError,
)

__all__ = ["HeInputs", "weights_from_pairs"]

logger = logging.getLogger(__name__)

HeValue = tuple[object, ...] | RegressionInput


def _is_object(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) for item in value
    )


def _unique(pairs: Sequence[tuple[str, object]], what: str) -> dict[str, object]:
    """The pairs as a dict, refusing a contributor named twice (``what``: the input or weights)."""
    seen: dict[str, object] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not name:
            raise InvalidContributionError(f"{what} names must be non-empty", contributor=str(name))
        if name in seen:
            raise DuplicateContributorError(f"is given twice in the {what}", contributor=name)
        seen[name] = value
    return seen


def _fields(who: str, pairs: Sequence[tuple[str, object]]) -> dict[str, object]:
    """A contributor's object as a dict, refusing a field given twice."""
    fields: dict[str, object] = {}
    for key, value in pairs:
        if key in fields:
            raise InvalidContributionError(f"gives {key!r} twice", contributor=who)
        fields[key] = value
    return fields


@dataclass(frozen=True)
class HeInputs:
    """Every contributor's input, in order, with the vector length the job must use."""

    operation: HeOperation
    contributions: tuple[tuple[str, HeValue], ...]
    length: int

    @classmethod
    def from_pairs(cls, operation: HeOperation, pairs: Sequence[tuple[str, object]]) -> HeInputs:
        """Check names and shapes of ``(contributor, value)`` pairs for ``operation``.

        Raises:
            DuplicateContributorError: a contributor named twice.
            VectorLengthError: vectors (or regression rows) of inconsistent length,
                naming the first contributor that disagrees with the first one.
            InvalidContributionError: no contributors, or a value of the wrong shape.
        """
        if not pairs:
            raise InvalidContributionError("no contributors in the input", contributor="")
        named = _unique(pairs, "input")
        if operation is HeOperation.LINEAR_REGRESSION:
            rows = {who: _regression(who, value) for who, value in named.items()}
            return cls(operation, tuple(rows.items()), _features(rows))
        vectors = {who: _vector(who, value) for who, value in named.items()}
        if operation is HeOperation.HISTOGRAM:
            return cls(operation, tuple(vectors.items()), 1)
        (first, reference), *rest = vectors.items()
        for who, vector in rest:
            if len(vector) != len(reference):
                raise VectorLengthError(
                    f"has {len(vector)} values but {first!r} has {len(reference)}: "
                    "every contributor needs the same length",
                    contributor=who,
                )
        if not reference:
            raise VectorLengthError("has no values", contributor=first)
        return cls(operation, tuple(vectors.items()), len(reference))


def _vector(who: str, value: object) -> tuple[object, ...]:
    if _is_object(value):
        raise InvalidContributionError("needs a number or a list of numbers", contributor=who)
    return tuple(value) if isinstance(value, list) else (value,)


def _regression(who: str, value: object) -> RegressionInput:
    if not _is_object(value):
        raise InvalidContributionError(
            'needs an object {"x": [[...], ...], "y": [...]}', contributor=who
        )
    if not isinstance(value, list):  # _is_object said so; for the type checker
        raise InvalidContributionError("needs an object", contributor=who)
    fields = _fields(who, value)
    x, y = fields.get("x"), fields.get("y")
    if set(fields) != {"x", "y"} or not isinstance(x, list) or not isinstance(y, list):
        raise InvalidContributionError('needs exactly "x" (rows) and "y" (a list)', contributor=who)
    if not all(isinstance(row, list) for row in x):
        raise InvalidContributionError('"x" must be a list of rows (lists)', contributor=who)
    if len(x) != len(y) or not y:
        raise VectorLengthError(
            f"has {len(x)} rows of x and {len(y)} values of y; they must match", contributor=who
        )
    return RegressionInput(tuple(tuple(row) for row in x), tuple(y))


def _features(rows: dict[str, RegressionInput]) -> int:
    (first, reference), *_ = rows.items()
    width = len(reference.x[0])
    for who, data in rows.items():
        for row in data.x:
            if len(row) != width:
                raise VectorLengthError(
                    f"has a row of {len(row)} features but {first!r} has {width}: "
                    "every row needs the same features",
                    contributor=who,
                )
    if width < 1:
        raise VectorLengthError("has rows without features", contributor=first)
    return width


def weights_from_pairs(pairs: Sequence[tuple[str, object]]) -> tuple[tuple[str, float], ...]:
    """Public weights ``(contributor, weight)`` from pairs, refusing duplicates and non-numbers.

    Raises:
        DuplicateContributorError: a contributor weighted twice.
        NonNumericValueError: a weight that is not a finite number.
        InvalidContributionError: no weights.
    """
    if not pairs:
        raise InvalidContributionError("no weights given", contributor="")
    weights = _unique(pairs, "weights")
    out: list[tuple[str, float]] = []
    for who, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise NonNumericValueError(f"weight {weight!r} is not a number", contributor=who)
        number = float(weight)
        if not math.isfinite(number):
            raise NonNumericValueError(f"weight {number!r} is not finite", contributor=who)
        out.append((who, number))
    return tuple(out)
