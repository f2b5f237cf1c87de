"""Tests for `ledger.canonical`: RFC 8785 published vectors, errors, and the re-canonicalization law."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import CanonicalizationError, canonical_json, canonical_sha256
from ledger.errors import LedgerError

ASSETS = Path(__file__).parent.parent / "assets" / "canonical"
CYBERPHONE: dict[str, Any] = json.loads((ASSETS / "cyberphone_testdata.json").read_text(encoding="utf-8"))
APPENDIX_B: dict[str, Any] = json.loads((ASSETS / "rfc8785_appendix_b.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CYBERPHONE["cases"], ids=lambda case: case["name"])
def test_reference_implementation_vectors(case: dict[str, str]) -> None:
    assert canonical_json(json.loads(case["input"])) == case["output"].encode("utf-8")


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B["samples"], ids=[s[0] for s in APPENDIX_B["samples"]])
def test_appendix_b_numbers(bits: str, expected: str | None) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    if expected is None:
        with pytest.raises(CanonicalizationError, match="is not representable in JCS"):
            canonical_json(number)
    else:
        assert canonical_json(number) == expected.encode()
        assert canonical_json([number]) == b"[" + expected.encode() + b"]"


def test_number_forms() -> None:
    assert canonical_json(-0.0) == b"0"
    assert canonical_json(1e21) == b"1e+21"
    assert canonical_json(1e20) == b"100000000000000000000"
    assert canonical_json(1e-7) == b"1e-7"
    assert canonical_json(56.0) == b"56"
    assert canonical_json(2**53 - 1) == b"9007199254740991"
    assert canonical_json(-(2**53) + 1) == b"-9007199254740991"
    assert canonical_json([True, False, None]) == b"[true,false,null]"


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    # U+1F600 is one code point above U+FB33, but its UTF-16 form starts with the surrogate D83D,
    # which sorts below FB33 (RFC 8785 section 3.2.3).
    value = {"\ufb33": 1, "\U0001f600": 2, "\u20ac": 3, "\r": 4, "1": 5, "\u0080": 6, "\u00f6": 7}
    assert canonical_json(value) == (
        '{"\\r":4,"1":5,"\u0080":6,"\u00f6":7,"\u20ac":3,"\U0001f600":2,"\ufb33":1}'.encode()
    )


def test_string_escapes() -> None:
    assert canonical_json('\u0000\u001f\b\t\n\f\r"\\/\u007f\u2028') == (
        b'"\\u0000\\u001f\\b\\t\\n\\f\\r\\"\\\\/\x7f\xe2\x80\xa8"'
    )


def test_no_whitespace_and_nested_structures() -> None:
    value = {"b": [1, {"d": 2, "c": [3, 4.5]}], "a": {}}
    assert canonical_json(value) == b'{"a":{},"b":[1,{"c":[3,4.5],"d":2}]}'
    assert canonical_json((1, "two")) == b'[1,"two"]'


def test_canonical_sha256() -> None:
    assert canonical_sha256({}) == hashlib.sha256(b"{}").hexdigest()
    value = {"z": 1, "a": [None]}
    assert canonical_sha256(value) == hashlib.sha256(b'{"a":[null],"z":1}').hexdigest()
    assert len(canonical_sha256(value)) == 64


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), r"nan is not representable in JCS"),
        (float("inf"), r"inf is not representable in JCS"),
        (float("-inf"), r"-inf is not representable in JCS"),
        ({1: "one"}, r"object keys must be strings"),
        ({"a": {None: 1}}, r"object keys must be strings"),
        (b"bytes", r"unsupported type: <class 'bytes'>"),
        ({1, 2}, r"unsupported type: <class 'set'>"),
        (2**53, r"9007199254740992 exceeds safe integer domain"),
        (-(2**53), r"-9007199254740992 exceeds safe integer domain"),
        ("\udead", r"non-UTF-8 codepoints"),
        ({"\udead": 1}, r"non-UTF-8 codepoints"),
        (_nested(100_000), r"nested too deeply"),
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "int key",
        "none key",
        "bytes",
        "set",
        "2**53",
        "-2**53",
        "surrogate",
        "surrogate key",
        "deep",
    ],
)
def test_values_without_a_canonical_form(value: object, message: str) -> None:
    with pytest.raises(CanonicalizationError, match=message) as caught:
        canonical_json(value)
    assert str(caught.value).startswith("value has no canonical JSON form: ")
    assert "\n" not in str(caught.value)
    with pytest.raises(CanonicalizationError):
        canonical_sha256(value)


def test_error_belongs_to_the_ledger_family() -> None:
    assert issubclass(CanonicalizationError, LedgerError)


json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_canonical_form_is_a_fixed_point(value: object) -> None:
    encoded = canonical_json(value)
    assert canonical_json(json.loads(encoded)) == encoded
    assert json.loads(encoded) == value


@settings(max_examples=100, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x) or abs(x) < 2**53))
def test_finite_floats_round_trip(number: float) -> None:
    # Integral floats of 2**53 and beyond come back from json.loads as Python ints that JCS refuses;
    # every other finite float reads back to the same double and the same text.
    encoded = canonical_json(number)
    assert float(json.loads(encoded)) == number
    assert canonical_json(json.loads(encoded)) == encoded


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=6), st.integers(min_value=0, max_value=9), max_size=8))
def test_key_order_does_not_matter(value: dict[str, int]) -> None:
    reversed_value = dict(reversed(list(value.items())))
    assert canonical_json(reversed_value) == canonical_json(value)


_keys = st.text(max_size=8)
_plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_plain_values)
def test_the_fast_path_is_byte_identical_to_rfc8785(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)  # type: ignore[arg-type]
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(CanonicalizationError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected
