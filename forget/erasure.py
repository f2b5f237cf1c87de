"""The unlearning engine: erase records, rewind their shards, retrain, purge what saw them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from forget.errors import ErasureError
from forget.lineage import sign_head, slice_manifests
from forget.training import plan_training, train
from forget.workspace import Workspace, purge_unreferenced
from sisa.placement import Placement
from sisa.unlearning import ShardRewind, plan_rewinds

if TYPE_CHECKING:
    from sisa.trainer import TrainedSlice


ERASURE_PLANNED = "erasure.planned"
ERASURE_PURGED = "erasure.checkpoints_purged"
ERASURE_RETRAINED = "erasure.retrained"


@dataclass(frozen=True)
class ErasurePlan:
    record_keys: tuple[str, ...]
    rewinds: tuple[ShardRewind, ...]
    slices: tuple[tuple[int, int], ...]
    """Every (shard, slice) that holds an erased record: their manifests change."""


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
    workspace: Workspace, connection: Connection, plan: ErasurePlan, extra: Mapping[str, Any] | None = None
) -> list[str]:
    """In the caller's transaction: delete the records, drop the checkpoints that saw them, and log
    the plan (erasure.planned, with `extra` fields) and the changed slice manifests with the deletion.

    Returns the dropped checkpoint digests, for purging once the transaction has committed.
    """
    store = workspace.datastore
    before = store.checkpoint_map(connection)
    last = workspace.config.slices - 1
    store.delete_records(connection, plan.record_keys)
    stale: list[str] = []
    rewinds = []
    for rewind in plan.rewinds:
        stale.extend(store.drop_checkpoints(connection, rewind.shard, rewind.from_slice))
        rewinds.append(
            {
                "shard": rewind.shard,
                "from_slice": rewind.from_slice,
                "restored_checkpoint": before.get((rewind.shard, rewind.from_slice - 1)),
                "checkpoint_before": before.get((rewind.shard, last)),
            }
        )
    planned = {
        **(extra or {}),
        "records": len(plan.record_keys),
        "rewinds": rewinds,
        "stale_checkpoints": sorted(set(stale)),
    }
    manifests = slice_manifests(workspace, connection, plan.slices)
    workspace.ledger.append(connection, [(ERASURE_PLANNED, planned), *manifests])
    return stale


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
    with store.engine.begin() as connection:
        stale = delete_and_rewind(workspace, connection, plan)
    purged = purge_unreferenced(workspace, stale)
    with store.engine.begin() as connection:
        workspace.ledger.append(connection, [(ERASURE_PURGED, {"checkpoints": sorted(purged)})])
    plans = plan_training(workspace, [rewind.shard for rewind in plan.rewinds])
    retrained = train(workspace, plans, device=device, on_slice=on_slice)
    with store.engine.begin() as connection:
        summary = {"shards": {str(shard): digests for shard, digests in sorted(retrained.items())}}
        workspace.ledger.append(connection, [(ERASURE_RETRAINED, summary)])
    sign_head(workspace)
    return ErasureResult(plan, tuple(purged), retrained)
