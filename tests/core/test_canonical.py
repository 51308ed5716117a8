"""RFC 8785 canonical JSON: known answers and algebraic properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.canonical import canonical_bytes, parse_json_object
from core.errors import CanonicalJsonError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda x: not (x.is_integer() and 2**53 <= abs(x) < 1e21)  # refused: see test below
    )
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": 2}, b'{"a":2,"b":1}'),
        ({"€": 1, "\r": 2, "ö": 3, "1": 4}, '{"\\r":2,"1":4,"ö":3,"€":1}'.encode()),
        ([1.0, 1e21, 1e-7, -0.0, 333333333.3333333], b"[1,1e+21,1e-7,0,333333333.3333333]"),
        ("\u2028<>&'\x7f", '"\u2028<>&\'\x7f"'.encode()),
        ({"a": [None, True, False]}, b'{"a":[null,true,false]}'),
    ],
    ids=["key-order", "utf16-key-order", "numbers", "no-extra-escaping", "literals"],
)
def test_known_answers(value: object, expected: bytes) -> None:
    assert canonical_bytes(value) == expected


@given(json_values)
def test_canonical_form_round_trips_and_is_idempotent(value: object) -> None:
    encoded = canonical_bytes(value)
    decoded = json.loads(encoded)
    assert canonical_bytes(decoded) == encoded


@given(st.dictionaries(st.text(max_size=6), st.integers(-100, 100), max_size=8))
def test_key_order_does_not_matter(value: dict[str, int]) -> None:
    reversed_ = dict(reversed(list(value.items())))
    assert canonical_bytes(value) == canonical_bytes(reversed_)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), 2**64, {1: "int key"}, {"s": {1, 2}}, b"bytes", [2.0**53]],
    ids=["nan", "inf", "huge-int", "int-key", "set", "bytes", "float-as-huge-int"],
)
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_bytes(value)


@pytest.mark.parametrize(
    "text",
    ['{"a":1,"a":2}', "[1]", '{"a":NaN}', "{", '"s"'],
    ids=["duplicate-key", "not-object", "nan", "truncated", "string"],
)
def test_parse_json_object_refuses(text: str) -> None:
    with pytest.raises(CanonicalJsonError):
        parse_json_object(text)
