"""A checkpoint is used only if its digest is the one the ledger records (DESIGN invariant 10).

The `checkpoints` table names the current checkpoint of each (shard, slice), but anyone who can
write the database can edit it, and the store is content-addressed: a checkpoint an erasure threw
away is valid again under its old name once its file is put back. The ledger, append-only and
signed, records the lineage in the same transactions as the table:

- a `lineage.checkpoint` entry for every checkpoint that becomes current;
- a `lineage.slice` manifest whenever a slice's records change (ingest, erasure), in the
  transaction that drops the checkpoints that saw the old records;
- every rewind of an erasure in its `erasure.planned` entry.

So the log alone says what is current: the checkpoint of (shard, slice) is the one its LATEST
`lineage.checkpoint` entry records, unless a manifest of one of the slices it saw (that slice or
an earlier one of its shard) or a rewind of its shard to or before its slice was logged after it:
then the slice has no current checkpoint until it is retrained.

Finding the latest entries is cheap: `read_lineage` scans the log backwards, newest window first
(one query per window, the database extracting the few fields), and stops as soon as every slice
it was asked about is decided. A served model's last slices were logged at its shard's latest
retraining, so `forget predict` reads one window however long the log. Every use of a checkpoint
(predict, evaluate, train's resume, audit replay, and Dask tasks, which receive the digest) reads
the table through `current_checkpoints` and the file through `read_checkpoint`, where the
content-addressed store checks the bytes against that digest: the chain file -> digest -> signed
log has no mutable link. A break stops the command with `CheckpointLineageError` (exit 1) naming
the shard and slice. `forget ledger verify` runs the same check over the whole table.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forget.errors import VerificationFailedError
from forget.store.interface import UnreadableEntryError
from forget.training.lineage import CHECKPOINT, SLICE_MANIFEST
from ledger import store as ledger_store

if TYPE_CHECKING:
    from forget.store.interface import Transaction
    from forget.workspace.core import Workspace
    from ledger.log import Entry
    from sisa.store import BlobStore

Key = tuple[int, int]
"""(shard, slice)."""

FIRST_WINDOW = 1024
"""Entries in the first window of the backward scan; each further window is four times larger."""


class CheckpointLineageError(VerificationFailedError):
    """A checkpoint the workspace would use is not the one the ledger records."""


@dataclass(frozen=True)
class Dirtying:
    """An entry that invalidates the checkpoints of its shard from `slice` on, when logged after them."""

    index: int
    kind: str
    """`erasure.planned` (a rewind to `slice`) or `lineage.slice` (the records of `slice` changed)."""
    slice: int

    def reason(self, checkpoint_index: int) -> str:
        """Why the checkpoint logged at `checkpoint_index` is no longer current, for a `CheckpointLineageError`."""
        if self.kind == SLICE_MANIFEST:
            return (
                f"the records of slice {self.slice} changed after it was logged (index {checkpoint_index}):"
                f" lineage.slice entry {self.index}, and no checkpoint was logged since"
            )
        return (
            f"erasure.planned entry {self.index} rewound the shard from slice {self.slice} after it was"
            f" logged (index {checkpoint_index}), and no checkpoint was logged since"
        )


@dataclass(frozen=True)
class LoggedCheckpoint:
    """The latest `lineage.checkpoint` entry of a (shard, slice), and the entry that dropped it since, if any."""

    index: int
    """The ledger index of the latest `lineage.checkpoint` entry of its (shard, slice)."""
    digest: str
    dropped_by: Dirtying | None = None
    """The first entry logged after it that drops it; None while it is current."""


@dataclass(frozen=True)
class LoggedLineage:
    """What the ledger says of each (shard, slice) it was asked about: its latest checkpoint entry."""

    checkpoints: Mapping[Key, LoggedCheckpoint]

    def objection(self, shard: int, slice_: int, digest: str) -> str | None:
        """Why the log does not back `digest` as the current checkpoint of (shard, slice); None if it does."""
        logged = self.checkpoints.get((shard, slice_))
        if logged is None:
            return "no lineage.checkpoint entry of the ledger records a checkpoint for this slice"
        if logged.digest != digest:
            return f"the latest lineage.checkpoint entry for it (index {logged.index}) records {logged.digest[:12]}"
        if logged.dropped_by is not None:
            return logged.dropped_by.reason(logged.index)
        return None

    def check(self, table: Mapping[Key, str]) -> None:
        """Raise `CheckpointLineageError` for the first row of the table the log does not back."""
        problems = [
            (key, digest, reason)
            for key, digest in sorted(table.items())
            if (reason := self.objection(key[0], key[1], digest)) is not None
        ]
        if problems:
            (shard, slice_), digest, reason = problems[0]
            more = f" ({len(problems) - 1} more rows of the checkpoints table disagree)" if len(problems) > 1 else ""
            raise CheckpointLineageError(
                f"shard {shard} slice {slice_}: checkpoint {digest[:12]} is not the one the ledger records:"
                f" {reason}{more}"
            )


class _BackwardFold:
    """Lineage rows newest first; decides each wanted key at its latest checkpoint entry."""

    def __init__(self, wanted: Collection[Key]) -> None:
        self.pending = set(wanted)
        self.decided: dict[Key, LoggedCheckpoint] = {}
        self.first_dirtying: dict[int, dict[int, Dirtying]] = {}
        """Per shard and from-slice, the earliest dirtying entry met so far (the last one met going
        backwards): every one met so far was logged after the entries still to come."""

    def add(self, index: int, kind: str, shard: int, slice_: int, digest: Any) -> None:
        if kind == CHECKPOINT:
            key = (shard, slice_)
            if key in self.pending:
                self.pending.discard(key)
                self.decided[key] = LoggedCheckpoint(index, _digest(digest, index), self._dropping(shard, slice_))
        else:
            self.first_dirtying.setdefault(shard, {})[slice_] = Dirtying(index, kind, slice_)

    def _dropping(self, shard: int, slice_: int) -> Dirtying | None:
        found = [d for from_slice, d in self.first_dirtying.get(shard, {}).items() if from_slice <= slice_]
        return min(found, key=lambda d: d.index) if found else None


def read_lineage(workspace: Workspace, tx: Transaction, wanted: Collection[Key]) -> LoggedLineage:
    """The latest checkpoint entry of each wanted (shard, slice), scanning the log from its end.

    Windows of 1024, 4096, 16384... entries, newest first, until every wanted slice is decided
    (a slice never logged sends the scan to the log's start). Each window is one query.

    Raises `CheckpointLineageError` (exit 1) for a lineage entry the database cannot read, or one
    that names no shard and slice.
    """
    from forget.erasure.rewind import (
        ERASURE_PLANNED,  # forget.erasure.rewind imports the training code, which imports this
    )

    fold = _BackwardFold(wanted)
    stop = ledger_store.size(tx)
    width = FIRST_WINDOW
    while fold.pending and stop > 0:
        start = max(0, stop - width)
        try:
            rows = workspace.datastore.lineage_window(tx, start, stop, CHECKPOINT, SLICE_MANIFEST, ERASURE_PLANNED)
        except UnreadableEntryError as error:
            raise CheckpointLineageError(
                f"the ledger holds a lineage entry between {start} and {stop - 1} that the database cannot read"
                " as JSON: run `forget ledger verify`"
            ) from error
        for index, kind, shard, slice_, digest in rows:
            fold.add(index, kind, _number(shard, index, kind), _number(slice_, index, kind), digest)
        stop, width = start, width * 4
    return LoggedLineage(fold.decided)


def lineage_of_entries(entries: Iterable[Entry]) -> LoggedLineage:
    """The same view folded forwards from every decoded entry: the definition `read_lineage` computes fast."""
    from forget.erasure.rewind import ERASURE_PLANNED

    checkpoints: dict[Key, LoggedCheckpoint] = {}

    def dirty(index: int, kind: str, shard: int, from_slice: int) -> None:
        for (s, k), logged in checkpoints.items():
            if s == shard and k >= from_slice and logged.dropped_by is None:
                checkpoints[(s, k)] = LoggedCheckpoint(logged.index, logged.digest, Dirtying(index, kind, from_slice))

    for entry in entries:
        payload = entry.payload
        if entry.kind == CHECKPOINT:
            key = (int(payload["shard"]), int(payload["slice"]))
            checkpoints[key] = LoggedCheckpoint(entry.index, str(payload["checkpoint_sha256"]))
        elif entry.kind == SLICE_MANIFEST:
            dirty(entry.index, entry.kind, int(payload["shard"]), int(payload["slice"]))
        elif entry.kind == ERASURE_PLANNED:
            for rewind in payload["rewinds"]:
                dirty(entry.index, entry.kind, int(rewind["shard"]), int(rewind["from_slice"]))
    return LoggedLineage(checkpoints)


_INTEGER = re.compile(r"-?[0-9]+")


def _number(value: Any, index: int, kind: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise CheckpointLineageError(f"ledger entry {index} ({kind}) names no integer shard and slice")


def _digest(value: Any, index: int) -> str:
    if not isinstance(value, str):
        raise CheckpointLineageError(f"ledger entry {index} ({CHECKPOINT}) records no checkpoint digest")
    return value


def verify_checkpoint_table(workspace: Workspace, tx: Transaction) -> int:
    """Every row of the checkpoints table is what the ledger records as current; returns the row count.

    Raises `CheckpointLineageError` (exit 1) for the first row the log does not back.
    """
    table = workspace.datastore.checkpoint_map(tx)
    read_lineage(workspace, tx, table).check(table)
    return len(table)


def current_checkpoints(workspace: Workspace, keys: Iterable[Key] | None = None) -> dict[Key, str]:
    """The checkpoints table (only the rows of `keys`, if given), each row checked against the ledger.

    What every user of a checkpoint reads. Table and ledger are read in one snapshot, so a commit
    of a concurrent `train` or `run` between the two reads cannot make them disagree.

    Raises `CheckpointLineageError` (exit 1) for the first row the log does not back.
    """
    datastore = workspace.datastore
    with datastore.snapshot() as tx:
        table = datastore.checkpoint_map(tx)
        if keys is not None:
            table = {key: table[key] for key in keys if key in table}
        lineage = read_lineage(workspace, tx, table)
    lineage.check(table)
    return table


def read_checkpoint(store: BlobStore, shard: int, slice_: int, digest: str) -> bytes:
    """The checkpoint's bytes, which the store checks against `digest` (one from `current_checkpoints`).

    A file whose bytes are not the logged digest is a verification failure (exit 1); a missing
    file stays a workspace problem (exit 3). Both name the shard and slice.
    """
    from sisa.errors import CheckpointError
    from sisa.store import CheckpointDigestError

    try:
        return store.get(digest)
    except CheckpointDigestError as error:
        raise CheckpointLineageError(f"shard {shard} slice {slice_}: {error}") from error
    except CheckpointError as error:
        raise CheckpointError(f"shard {shard} slice {slice_}: {error}") from error
