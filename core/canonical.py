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
    try:
        return bytes(rfc8785.dumps(cast(Any, value)))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalJsonError(f"cannot encode as RFC 8785 canonical JSON: {exc}") from exc


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
