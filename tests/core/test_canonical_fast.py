"""The C-encoder path of :func:`core.canonical.canonical_bytes` is RFC 8785 exactly.

Plain values (the ledger's payloads, receipts, decisions) are encoded by the
standard library's C JSON encoder with sorted keys; every value here is
compared with the reference RFC 8785 encoder (``rfc8785``, after the ambiguous
float check), including floats of every magnitude, keys and strings outside
the Basic Multilingual Plane, control characters, lone surrogates, enum
members and the integer limits, where the reference decides.
"""

from __future__ import annotations

import enum

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from core.canonical import _NOT_PLAIN, _plain_form, _refuse_ambiguous_floats, canonical_bytes
from core.errors import CanonicalJsonError

_SAFE = 2**53 - 1
_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\x1f", "\x7f", '"', "\\", "\u2028", "\ue000", "\uffff", "😀"]),
    ),
    max_size=12,
)
_FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e17, max_value=1e17, allow_nan=False),
    st.integers(-(2**60), 2**60).map(float),
    st.sampled_from([0.0, -0.0, 1e-4, 9.99e-5, 1e16, 1e16 - 2, 1e21, 0.1, 1 / 3, 5e-324]),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-_SAFE, _SAFE),
    _TEXT,
    st.sampled_from([0, -1, _SAFE]),
    _FLOATS,
)


class _Kind(enum.StrEnum):
    A = "a"


class _Size(enum.IntEnum):
    TEN = 10


def _reference(value: object) -> bytes | None:
    """RFC 8785 by the reference encoder, or None when it (or ibx's float rule) refuses."""
    try:
        _refuse_ambiguous_floats(value)
        return rfc8785.dumps(value)  # type: ignore[arg-type]
    except Exception:
        return None


_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(_TEXT, children, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_the_fast_path_equals_the_reference(value: object) -> None:
    expected = _reference(value)
    if expected is None:
        with pytest.raises(CanonicalJsonError):
            canonical_bytes(value)
    else:
        assert canonical_bytes(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"kind": _Kind.A, "size": _Size.TEN, _Kind.A: [True, None, 1.0, -0.0, 2.5]},
        {"bound": 1000000.0, "nested": [{"x": 0.25}, (1, 2.0)]},
        [1e-4, 123456789.125, 1e15 + 0.5, 9999999999999998.5e-1, -7.0],
    ],
    ids=["enums", "integral-floats", "float-edges"],
)
def test_plain_values_take_the_fast_path_and_equal_the_reference(value: object) -> None:
    assert _plain_form(value, [1000]) is not _NOT_PLAIN
    assert canonical_bytes(value) == _reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"😀": 1, "\uffff": 2, "a": 3},  # UTF-16 order differs from code point order
        {"k": 1e16 + 2},
        {"k": [1, 1e-5]},
        {"k": float("nan")},
        {"k": 2.0**53},
        {1: "not a string key"},
        {"k": 2**53},
        {"k": -(2**53)},
        {"k": object()},
    ],
    ids=[
        "astral-key",
        "float-1e16",
        "small-float",
        "nan",
        "ambiguous-float",
        "int-key",
        "big-int",
        "small-int",
        "object",
    ],
)
def test_values_the_fast_path_leaves_to_the_reference(value: object) -> None:
    assert _plain_form(value, [1000]) is _NOT_PLAIN
    expected = _reference(value)
    if expected is None:
        with pytest.raises(CanonicalJsonError):
            canonical_bytes(value)
    else:
        assert canonical_bytes(value) == expected


def test_a_lone_surrogate_is_refused_as_before() -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_bytes({"k": "\ud800"})
