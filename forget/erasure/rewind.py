"""The unlearning engine: erase records, rewind their shards, retrain, purge what saw them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from forget.errors import ErasureError
from forget.store.checkpoints import checkpoint_store, purge_unreferenced
from forget.training.lineage import sign_head, slice_manifests
from forget.training.train import plan_training, train
from forget.workspace.core import Workspace
from ledger.evidence import CheckpointsPurged, EntryKind, ErasurePlanned, ErasureRetrained, PlannedRewind
from sisa.placement import Placement
from sisa.unlearning import ShardRewind, plan_rewinds

if TYPE_CHECKING:
    from sisa.trainer import TrainedSlice


ERASURE_PLANNED = EntryKind.ERASURE_PLANNED.value
ERASURE_PURGED = EntryKind.ERASURE_PURGED.value
ERASURE_RETRAINED = EntryKind.ERASURE_RETRAINED.value


@dataclass(frozen=True)
class ErasurePlan:
    record_keys: tuple[str, ...]
    rewinds: tuple[ShardRewind, ...]
    slices: tuple[tuple[int, int], ...]
    """Every (shard, slice) that holds an erased record: their manifests change."""


@dataclass(frozen=True)
class RequestPart:
    """One request's share of a batch erasure: how many of its records, in which shards."""

    request_id: str | None
    """None for `erase`, which erases records that no request named (tests, benchmarks)."""
    records: int
    shards: tuple[int, ...]


@dataclass(frozen=True)
class ErasureResult:
    plan: ErasurePlan
    purged: tuple[str, ...]
    """Checkpoint digests deleted because they had seen an erased record."""
    retrained: dict[int, list[str]]
    """Per rewound shard, the new checkpoint digests from its rewind slice to its last."""


def plan_erasure(workspace: Workspace, record_keys: Sequence[str]) -> ErasurePlan:
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
    """The record keys of raw subject ids (hashed on arrival; an unknown subject holds none)."""
    keys = [workspace.pseudonymiser.subject(s) for s in subject_ids]
    return [record for records in workspace.datastore.records_of_subjects(keys).values() for record in records]


def delete_and_rewind(
    workspace: Workspace, connection: Connection, plan: ErasurePlan, run_id: str, parts: Sequence[RequestPart]
) -> list[str]:
    """In the caller's transaction: delete the records, drop the checkpoints that saw them, and log
    one erasure.planned per request and the changed slice manifests, with the deletion.

    Each request's entry names only its own records and the rewinds of its own shards, so that
    its certificate discloses nothing of the other requests in the batch. A shard whose training
    had stopped below its rewind slice (a killed `forget train`) is rewound to where it stopped:
    the entry states where retraining really resumes. Returns the dropped checkpoint digests, for
    purging once the transaction has committed.
    """
    store = workspace.datastore
    before = store.checkpoint_map(connection)
    slices = workspace.config.slices
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
        ErasurePlanned(part.request_id, run_id, part.records, tuple(rewinds[s] for s in sorted(part.shards))).entry()
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
    """
    store = checkpoint_store(workspace)
    return CheckpointsPurged(run_id, tuple(sorted(digest for digest in set(stale) if digest not in store)))


def erase(
    workspace: Workspace,
    plan: ErasurePlan,
    device: str = "auto",
    on_slice: Callable[[TrainedSlice], None] | None = None,
) -> ErasureResult:
    """Delete the records and the checkpoints that saw them in one transaction, then retrain.

    The ledger entry of the plan commits with the deletion, so no record is erased without its
    record. Checkpoint files go before retraining starts: if the job dies mid-retrain, nothing
    that saw an erased record survives, and `forget train` resumes from the last clean checkpoint.
    """
    store = workspace.datastore
    run_id = f"erase_{secrets.token_hex(8)}"
    part = RequestPart(None, len(plan.record_keys), tuple(r.shard for r in plan.rewinds))
    with store.engine.begin() as connection:
        stale = delete_and_rewind(workspace, connection, plan, run_id, [part])
    purged = purge_unreferenced(workspace, stale)
    gone = purged_entry(workspace, run_id, stale)
    with store.engine.begin() as connection:
        workspace.ledger.append(connection, [gone.entry()])
    plans = plan_training(workspace, [rewind.shard for rewind in plan.rewinds])
    retrained = train(workspace, plans, device=device, on_slice=on_slice)
    with store.engine.begin() as connection:
        summary = ErasureRetrained(run_id, {shard: tuple(digests) for shard, digests in retrained.items()})
        workspace.ledger.append(connection, [summary.entry()])
    sign_head(workspace)
    return ErasureResult(plan, tuple(purged), retrained)
