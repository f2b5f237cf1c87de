"""What an erasure does to the data and the lineage: plan the rewinds, delete and drop, log the purge.

`forget.erasure.job` is the one path that calls it (`forget run`, and every test and benchmark of
an erasure): a request's records go with its plan's ledger entry in one transaction, and the
purge entry states which stale checkpoints are really gone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from forget.data.statistics import record_removal
from forget.errors import ErasureError
from forget.store.checkpoints import checkpoint_store
from forget.training.lineage import slice_manifests
from forget.workspace.core import Workspace
from ledger.evidence import CheckpointsPurged, EntryKind, ErasurePlanned, PlannedRewind
from sisa.placement import Placement
from sisa.unlearning import ShardRewind, plan_rewinds

ERASURE_PLANNED = EntryKind.ERASURE_PLANNED.value
ERASURE_PURGED = EntryKind.ERASURE_PURGED.value


@dataclass(frozen=True)
class ErasurePlan:
    record_keys: tuple[str, ...]
    rewinds: tuple[ShardRewind, ...]
    slices: tuple[tuple[int, int], ...]
    """Every (shard, slice) that holds an erased record: their manifests change."""


@dataclass(frozen=True)
class RequestPart:
    """One request's share of a batch erasure: how many of its records, in which shards."""

    request_id: str
    records: int
    shards: tuple[int, ...]


def plan_erasure(workspace: Workspace, record_keys: Sequence[str]) -> ErasurePlan:
    """Where the records sit and how far each of their shards rewinds, without writing anything.

    Raises `ErasureError` (exit 3) for a record the workspace does not hold (named by a prefix of
    its keyed id, never a raw one).
    """
    keys = tuple(sorted(set(record_keys)))
    placements = workspace.datastore.placements_of(keys)
    unknown = [key for key in keys if key not in placements]
    if unknown:
        raise ErasureError(
            f"{len(unknown)} of the records to erase are not in the workspace (first: {unknown[0][:12]})"
        )
    rewinds = plan_rewinds(Placement(shard, slice_) for shard, slice_ in placements.values())
    return ErasurePlan(keys, tuple(rewinds), tuple(sorted(set(placements.values()))))


def subject_records(workspace: Workspace, subject_ids: Sequence[str]) -> list[str]:
    """The record keys of raw subject ids (hashed on arrival; an unknown subject holds none).

    Raises `InputError` for an id that is not in the workspace's identity form (control characters).
    """
    keys = [workspace.pseudonymiser.subject(s) for s in subject_ids]
    return [record for records in workspace.datastore.records_of_subjects(keys).values() for record in records]


def delete_and_rewind(workspace: Workspace, plan: ErasurePlan, run_id: str, parts: Sequence[RequestPart]) -> list[str]:
    """In one transaction: delete the records, drop the checkpoints that saw them, record each
    request's share in its row, and log one erasure.planned per request and the changed slice
    manifests, with the deletion.

    Each request's entry names only its own records and the rewinds of its own shards, so that
    its certificate discloses nothing of the other requests in the batch. A shard whose training
    had stopped below its rewind slice (a killed `forget train`) is rewound to where it stopped:
    the entry states where retraining really resumes. Returns the dropped checkpoint digests, for
    purging once the transaction has committed. A database error rolls everything back and propagates.
    """
    store = workspace.datastore
    slices = workspace.config.slices
    with store.transaction() as connection:
        for part in parts:
            store.update_request(
                connection, part.request_id, records_erased=part.records, shards=json.dumps(list(part.shards))
            )
        before = store.checkpoint_map(connection)
        if workspace.config.schema is not None:
            record_removal(store, connection, workspace.config.schema, plan.record_keys)
        store.delete_records(connection, plan.record_keys)
        stale: list[str] = []
        rewinds: dict[int, PlannedRewind] = {}
        for rewind in plan.rewinds:
            trained = next((s for s in range(slices) if (rewind.shard, s) not in before), slices)
            start = min(rewind.from_slice, trained)
            dropped = store.drop_checkpoints(connection, rewind.shard, start)
            stale.extend(dropped)
            rewinds[rewind.shard] = PlannedRewind(
                shard=rewind.shard,
                from_slice=start,
                restored_checkpoint=before.get((rewind.shard, start - 1)),
                checkpoint_before=before.get((rewind.shard, slices - 1)),
                stale_checkpoints=tuple(sorted(set(dropped))),
            )
        planned = [
            ErasurePlanned(
                part.request_id, run_id, part.records, tuple(rewinds[s] for s in sorted(part.shards))
            ).entry()
            for part in parts
        ]
        manifests = slice_manifests(workspace, connection, plan.slices)
        workspace.ledger.append(connection, [*planned, *manifests])
    return stale


def purged_entry(workspace: Workspace, run_id: str, stale: Sequence[str]) -> CheckpointsPurged:
    """The entry saying which of the stale checkpoints are gone from the store (checked, not assumed).

    Written after the files are deleted, so it is true when it is logged; a resumed job computes
    it again from the logged plans, whatever a crash left behind. A stale checkpoint that is
    still there is left out, and the certificate of every request it concerns will not verify.
    Raises `EvidenceError` for a malformed run id or digest (a bug: they come from logged entries).
    """
    store = checkpoint_store(workspace)
    return CheckpointsPurged(run_id, tuple(sorted(digest for digest in set(stale) if digest not in store)))
