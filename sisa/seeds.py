"""Seed derivation: every random choice on the training path comes from (root seed, labels...)."""

from __future__ import annotations

import hashlib

_DOMAIN = b"forget/seed/v1"


def derive_seed(root_seed: int, *labels: str | int) -> int:
    """A 63-bit seed that is a pure function of the root seed and the labels.

    Hashing (rather than adding offsets) keeps seeds of neighbouring shards, slices and epochs
    unrelated, and a label's type cannot be confused with another's (`1` versus `"1"`).
    """
    h = hashlib.sha256(_DOMAIN)
    h.update(b"\x00" + str(int(root_seed)).encode())
    for label in labels:
        tag = b"i" if isinstance(label, int) else b"s"
        h.update(b"\x00" + tag + str(label).encode())
    return int.from_bytes(h.digest()[:8], "big") >> 1
