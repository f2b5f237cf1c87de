"""Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) for everything hashed or signed.

One value has one byte encoding: object keys sorted by their UTF-16 code units, no whitespace,
numbers in the ECMAScript shortest form (`1e+21`, `-0` as `0`), strings as UTF-8 with only the
escapes JSON requires. Values JCS cannot encode raise `CanonicalizationError`: NaN and the
infinities, integers beyond the 53 bits a JSON number holds exactly, keys that are not strings,
strings that are not valid Unicode (lone surrogates), and anything that is not JSON (bytes, sets).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import rfc8785

from ledger.errors import LedgerError

__all__ = ["CanonicalizationError", "canonical_json", "canonical_sha256"]


class CanonicalizationError(LedgerError):
    """A value has no RFC 8785 canonical JSON form."""


_MAX_EXACT = 2**53 - 1


def _plain(value: object) -> bool:
    """True when the standard library's sorted, compact JSON is already the RFC 8785 form.

    That holds without floats (whose formatting differs), with integers a JSON number holds
    exactly, and with ASCII keys (for which code-point order is UTF-16 order). Strings need no
    check: both escape exactly the same characters, and a lone surrogate fails the UTF-8 encode.
    Exact types only (a loop, not recursion: this runs for every ledger entry); anything else,
    subclasses included, takes the general path.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -_MAX_EXACT <= item <= _MAX_EXACT:  # type: ignore[operator]
                continue
            return False
        if kind is dict:
            for key, child in item.items():  # type: ignore[attr-defined]
                if type(key) is not str or not key.isascii():
                    return False
                stack.append(child)
            continue
        if kind is list or kind is tuple:
            stack.extend(item)  # type: ignore[arg-type]
            continue
        return False
    return True


def canonical_json(value: object) -> bytes:
    """Return the RFC 8785 canonical JSON encoding of `value`, as UTF-8 bytes.

    `value` is built from dict (str keys), list, tuple, str, int, float, bool and None. Ledger
    payloads hold no floats, so they take the standard library's C encoder (about 3 times faster
    than the pure-Python `rfc8785`; a hypothesis test keeps the two byte-identical).
    """
    if _plain(value):
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, RecursionError):
            pass  # a lone surrogate or a very deep value: let rfc8785 name the problem
    try:
        return rfc8785.dumps(cast(Any, value))
    except rfc8785.CanonicalizationError as error:
        raise CanonicalizationError(f"value has no canonical JSON form: {error}") from error
    except UnicodeEncodeError as error:
        # rfc8785 0.1.4 sorts keys by their UTF-16 form before it checks them, so a key with a lone
        # surrogate escapes its own error type.
        raise CanonicalizationError(
            "value has no canonical JSON form: a key holds non-UTF-8 codepoints (a lone surrogate)"
        ) from error
    except RecursionError as error:
        raise CanonicalizationError("value has no canonical JSON form: it is nested too deeply") from error


def canonical_sha256(value: object) -> str:
    """Return the SHA-256 of `canonical_json(value)`, as 64 lowercase hex digits."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
