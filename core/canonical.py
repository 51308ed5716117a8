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

    A value made only of plain ``dict``/``list``/``tuple``, strings, integers
    within ±(2**53 − 1), booleans, ``None`` and floats that are integral or in
    [1e-4, 1e16), with no key outside the Basic Multilingual Plane, is encoded
    by the C JSON encoder with sorted keys (integral floats as integers): for
    exactly such values its output is RFC 8785's (keys in code point order
    equal UTF-16 order in the BMP; the same escapes; the same shortest
    round-trip digits). Anything else goes through the reference encoder.

    Raises:
        CanonicalJsonError: the value has no canonical form (NaN or infinity,
            integers beyond IEEE 754 double precision, non-string keys, other types).
    """
    ready = _plain_form(value, [_MAX_PLAIN_NODES])
    if ready is not _NOT_PLAIN:
        try:
            return _PLAIN.encode(ready).encode("utf-8")
        except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
            pass  # a lone surrogate or the like: the reference encoder decides
    _refuse_ambiguous_floats(value)
    try:
        return bytes(rfc8785.dumps(cast(Any, value)))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalJsonError(f"cannot encode as RFC 8785 canonical JSON: {exc}") from exc


_SAFE_INT = 2**53
_EXPONENT_FORM = 1e21
_PLAIN = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)
_MAX_PLAIN_NODES = 100_000


def _plain_key(key: str) -> bool:
    return all(ord(c) < 0xD800 or 0xE000 <= ord(c) <= 0xFFFF for c in key)


_NOT_PLAIN = object()
"""What :func:`_plain_form` returns for a value the reference encoder must take."""


def _plain_form(value: object, budget: list[int]) -> object:
    """``value`` ready for the C encoder, or :data:`_NOT_PLAIN` (see :func:`canonical_bytes`).

    Containers are returned as they are unless a float inside must change:
    an integral float within ±(2**53 − 1) becomes the int RFC 8785 writes for
    it, a float in [1e-4, 1e16) keeps the shortest round-trip digits that
    ``repr`` and RFC 8785 (ECMAScript) both write; any other float, an integer
    beyond ±(2**53 − 1), a key outside the BMP or a value of another type is
    :data:`_NOT_PLAIN`.
    """
    budget[0] -= 1
    if budget[0] < 0:
        return _NOT_PLAIN
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_SAFE_INT < value < _SAFE_INT else _NOT_PLAIN
    if isinstance(value, float):
        if value.is_integer():
            return int(value) if -_SAFE_INT < value < _SAFE_INT else _NOT_PLAIN
        return value if 1e-4 <= abs(value) < 1e16 else _NOT_PLAIN
    if type(value) is dict:
        changed: dict[str, object] | None = None
        for key, item in value.items():
            if not isinstance(key, str) or not (key.isascii() or _plain_key(key)):
                return _NOT_PLAIN
            ready = _plain_form(item, budget)
            if ready is _NOT_PLAIN:
                return _NOT_PLAIN
            if ready is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = ready
        return value if changed is None else changed
    if type(value) is list or type(value) is tuple:
        items: list[object] | None = None
        for index, item in enumerate(value):
            ready = _plain_form(item, budget)
            if ready is _NOT_PLAIN:
                return _NOT_PLAIN
            if ready is not item:
                if items is None:
                    items = list(value)
                items[index] = ready
        return value if items is None else items
    return _NOT_PLAIN


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
