"""A synthetic run of erasure requests, entry by entry as `forget run` logs it: the certificate benchmarks' log.

`bench_certificate.py` certifies one request of one such batch at the end of a long log;
`bench_certificate_issue.py` writes many into a workspace, phase by phase. Both need the same
entries, written with the same evidence types as the application: per run, the receipts, the
starts, each request's plan (with the `PlannedRewind` of its shard), the new slice manifests,
the run's purge, the retrained checkpoints of every rewound shard, the completions. Subject
affinity: each request's records sit in one shard. No torch, no workspace: digests are hashes of
labels, and the placements come from the `random.Random` passed in, so a seed gives one log.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.evidence import (
    CheckpointRecorded,
    CheckpointsPurged,
    ErasurePlanned,
    Outcome,
    PlannedRewind,
    RequestCompleted,
    RequestReceived,
    RequestStarted,
    SliceManifest,
)

FORM = {"normalization": "NFC", "whitespace": "trimmed", "case": "insensitive", "email": "none"}
"""The identity canonical form every receipt records (the application's default)."""

Item = tuple[str, dict[str, Any]]
"""(kind, payload): what `Ledger.append` takes, and what a log of entries is made of."""


def log(message: str) -> None:
    """Progress for a person, on stderr: a benchmark's stdout ends with its one JSON line."""
    print(message, file=sys.stderr, flush=True)


def sha(*parts: object) -> str:
    """A stand-in sha256 (64 hex digits) named by its labels, so two runs write the same log."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def subject_key(request_id: str) -> str:
    """The keyed subject identifier of a request (one subject per request)."""
    return sha("subject", request_id)


class Lineage:
    """Each (shard, slice)'s current checkpoint and manifest root: what the next run rewinds from.

    Generation 0 is the initial training; each run's retrained slices get the next generation.
    """

    def __init__(self, shards: int, slices: int) -> None:
        self.shards = shards
        self.slices = slices
        self.generation = 0
        cells = [(s, k) for s in range(shards) for k in range(slices)]
        self.checkpoints = {(s, k): sha("ckpt", s, k, 0) for s, k in cells}
        self.manifests = {(s, k): sha("manifest", s, k, 0) for s, k in cells}


@dataclass(frozen=True)
class Times:
    """A run's requests' receipt time and deadline, and the run's completion time."""

    received: str
    deadline: str
    completed: str


@dataclass(frozen=True)
class Batch:
    """One run's entries by phase; each phase is one transaction in `forget run`."""

    run_id: str
    placed: dict[str, tuple[int, list[int]]]
    """Request id -> its shard and the slices its records sit in."""
    rewinds: dict[int, PlannedRewind]
    """Shard -> its rewind, from the first slice any request's records sit in."""
    received: list[Item]
    started: list[Item]
    planned: list[Item]
    """The requests' plans, then the changed slices' new manifests."""
    purged: list[Item]
    retrained: list[Item]
    completed: list[Item]

    def entries(self) -> list[Item]:
        """Every entry, in the order `forget run` logs them."""
        return [*self.received, *self.started, *self.planned, *self.purged, *self.retrained, *self.completed]

    def deepest(self) -> str:
        """The request whose shard was rewound furthest back: the one whose certificate is biggest."""
        return min(self.placed, key=lambda rid: self.rewinds[self.placed[rid][0]].from_slice)


def synthetic_batch(
    ids: Sequence[str], run_id: str, rng: random.Random, lineage: Lineage, times: Times, most_slices: int
) -> Batch:
    """One run of the requests `ids`, each with records in 1..`most_slices` slices of one shard.

    Moves `lineage` on to the run's new manifests and checkpoints. Raises `ValueError` (from
    `random`) if `most_slices` exceeds the lineage's slices.
    """
    shards, slices = lineage.shards, lineage.slices
    placed = {rid: (rng.randrange(shards), sorted(rng.sample(range(slices), rng.randint(1, most_slices))))
              for rid in ids}  # fmt: skip
    first = {s: min((sl[0] for sh, sl in placed.values() if sh == s), default=None) for s in range(shards)}
    current = lineage.checkpoints
    rewinds = {}
    for shard, start in first.items():
        if start is None:
            continue
        stale = tuple(sorted(current[(shard, k)] for k in range(start, slices)))
        restored = current[(shard, start - 1)] if start else None
        rewinds[shard] = PlannedRewind(shard, start, restored, current[(shard, slices - 1)], stale)
    lineage.generation += 1
    generation = lineage.generation
    changed = sorted({(placed[rid][0], k) for rid in ids for k in placed[rid][1]})
    for cell in changed:
        lineage.manifests[cell] = sha("manifest", *cell, generation)
    planned = [ErasurePlanned(rid, run_id, len(placed[rid][1]), (rewinds[placed[rid][0]],)).entry() for rid in ids]
    planned += [SliceManifest(shard, k, 100, lineage.manifests[(shard, k)]).entry() for shard, k in changed]
    stale_all = tuple(sorted({d for r in rewinds.values() for d in r.stale_checkpoints}))
    retrained = []
    for shard, rewind in sorted(rewinds.items()):
        for k in range(rewind.from_slice, slices):
            current[(shard, k)] = sha("ckpt", shard, k, generation)
            roots = tuple(lineage.manifests[(shard, j)] for j in range(k + 1))
            retrained.append(CheckpointRecorded(shard, k, current[(shard, k)], 100, roots, sha("config"), "0.1.0",
                                                "2.13.0", "3.11.9", "cpu", 1, True).entry())  # fmt: skip
    completed = [
        RequestCompleted(rid, run_id, subject_key(rid), Outcome.ERASED, len(placed[rid][1]), times.received,
                         times.deadline, times.completed, True, {placed[rid][0]: current[(placed[rid][0], slices - 1)]})
        for rid in ids
    ]  # fmt: skip
    return Batch(
        run_id=run_id,
        placed=placed,
        rewinds=rewinds,
        received=[
            RequestReceived(rid, subject_key(rid), times.received, times.deadline, FORM, None).entry() for rid in ids
        ],
        started=[RequestStarted(rid, run_id).entry() for rid in ids],
        planned=planned,
        purged=[CheckpointsPurged(run_id, stale_all).entry()],
        retrained=retrained,
        completed=[item.entry() for item in completed],
    )
