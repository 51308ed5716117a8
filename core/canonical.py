"""RFC 8785 (JCS) canonical JSON: the only encoding ibx hashes or signs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias, cast

import rfc8785

from core.errors import CanonicalJsonError

__all__ = ["JsonValue", "canonical_bytes", "canonical_sha256", "parse_json_object"]

JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)


def canonical_bytes(value: object) -> bytes:
    """Encode ``value`` as RFC 8785 canonical JSON (UTF-8).

    Raises:
        CanonicalJsonError: the value has no canonical form (NaN or infinity,
            integers beyond IEEE 754 double precision, non-string keys, other types).
    """
    _refuse_ambiguous_floats(value)
    try:
        return bytes(rfc8785.dumps(cast(Any, value)))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalJsonError(f"cannot encode as RFC 8785 canonical JSON: {exc}") from exc


_SAFE_INT = 2**53
_EXPONENT_FORM = 1e21


def _refuse_ambiguous_floats(value: object) -> None:
    """Refuse integral floats in [2**53, 1e21): RFC 8785 writes them as bare digits,
    which parse back as integers beyond the I-JSON safe range, so a verifier that
    re-canonicalises the parsed value would fail or disagree."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if item.is_integer() and _SAFE_INT <= abs(item) < _EXPONENT_FORM:
                raise CanonicalJsonError(
                    f"{item!r} would be written as an integer beyond 2**53; send it as a string"
                )
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def canonical_sha256(value: object) -> bytes:
    """SHA-256 of the canonical encoding of ``value``.

    Raises:
        CanonicalJsonError: as :func:`canonical_bytes`.
    """
    return hashlib.sha256(canonical_bytes(value)).digest()


def parse_json_object(text: str | bytes, *, what: str = "input") -> dict[str, JsonValue]:
    """Parse JSON text that must be an object; duplicate keys and NaN are refused.

    Raises:
        CanonicalJsonError: not JSON, not an object, duplicate keys or non-finite numbers.
    """

    def _no_duplicates(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise CanonicalJsonError(f"{what}: duplicate key {dup!r}")
        return dict(pairs)

    def _no_constants(name: str) -> JsonValue:
        raise CanonicalJsonError(f"{what}: {name} is not allowed in JSON")

    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise CanonicalJsonError(
            f"{what}: not valid JSON ({exc.msg} at column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise CanonicalJsonError(f"{what}: nested too deeply") from exc
    if not isinstance(value, dict):
        raise CanonicalJsonError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value
