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


def _plain(value: object, depth: int = 0) -> bool:
    """True when the standard library's sorted, compact JSON is already the RFC 8785 form.

    That holds without floats (whose formatting differs), with integers a JSON number holds
    exactly, and with ASCII keys (for which code-point order is UTF-16 order). Strings need no
    check: both escape exactly the same characters, and a lone surrogate fails the UTF-8 encode.
    """
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return -_MAX_EXACT <= value <= _MAX_EXACT
    if depth > 64:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(item, depth + 1) for item in value)
    return False


def canonical_json(value: object) -> bytes:
    """Return the RFC 8785 canonical JSON encoding of `value`, as UTF-8 bytes.

    `value` is built from dict (str keys), list, tuple, str, int, float, bool and None. Ledger
    payloads hold no floats, so they take the standard library's C encoder (about 3 times faster
    than the pure-Python `rfc8785`; a hypothesis test keeps the two byte-identical).
    """
    if _plain(value):
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let rfc8785 name the problem
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
