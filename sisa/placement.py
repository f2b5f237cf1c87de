"""Deletion-invariant placement of records into (shard, slice).

A record's place is a pure function of its keyed identifiers, the workspace seed and the
shape (shards, slices). It never depends on other records, so adding or erasing records
never moves anyone else: the precondition for rewinding one shard instead of all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


class PlacementMode(StrEnum):
    SUBJECT = "subject"
    """All records of one subject share a shard, so one subject's erasure retrains one shard."""
    RECORD = "record"
    """Each record is spread on its own; one subject's records may land in several shards."""


@dataclass(frozen=True, order=True)
class Placement:
    shard: int
    slice: int


def _bucket(purpose: str, seed: int, key: str, buckets: int) -> int:
    digest = hashlib.sha256(f"forget/placement/v1\x00{purpose}\x00{seed}\x00{key}".encode()).digest()
    # 64 bits modulo a small count: the bias is below 2**-50, far under any sampling noise.
    return int.from_bytes(digest[:8], "big") % buckets


def place(record_key: str, subject_key: str, *, seed: int, shards: int, slices: int, mode: PlacementMode) -> Placement:
    """Where a record lives. Keys are the keyed (HMAC) identifiers, never raw ones."""
    if shards < 1 or slices < 1:
        raise ValueError(f"shards and slices must be at least 1, got {shards} and {slices}")
    shard_key = subject_key if mode is PlacementMode.SUBJECT else record_key
    return Placement(
        shard=_bucket("shard", seed, shard_key, shards),
        slice=_bucket("slice", seed, record_key, slices),
    )
