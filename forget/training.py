"""Training a workspace's shards: load each shard's slices, train what is missing, record digests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forget.errors import InputError, NotTrainedError
from forget.lineage import checkpoint_entry, manifest_root, sign_head
from forget.workspace import Workspace, checkpoint_store, purge_unreferenced
from sisa.schedule import Schedule

if TYPE_CHECKING:
    from sisa.trainer import ShardTask, TrainedSlice, TrainingConfig


@dataclass(frozen=True)
class ShardPlan:
    shard: int
    start_slice: int


def training_config(workspace: Workspace) -> TrainingConfig:
    from sisa.trainer import OptimizerKind, TrainingConfig

    settings = workspace.config.training
    return TrainingConfig(
        model=settings.model,
        slices=workspace.config.slices,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=workspace.config.seed,
        optimizer=OptimizerKind(settings.optimizer),
        schedule=Schedule(settings.schedule),
        threads=settings.threads,
    )


def plan_training(workspace: Workspace, shards: Iterable[int] | None = None) -> list[ShardPlan]:
    """Each selected shard resumes at its first slice without a current checkpoint."""
    if workspace.config.schema is None:
        raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
    existing = workspace.datastore.checkpoint_map()
    selected = _select(workspace, shards)
    plans = []
    for shard in selected:
        first_missing = next((s for s in range(workspace.config.slices) if (shard, s) not in existing), None)
        if first_missing is not None:
            plans.append(ShardPlan(shard, first_missing))
    return plans


def restart_shards(workspace: Workspace, shards: Iterable[int] | None = None) -> list[str]:
    """Drop the selected shards' checkpoints so they train from scratch; returns the purged digests."""
    store = workspace.datastore
    stale: list[str] = []
    with store.engine.begin() as connection:
        for shard in _select(workspace, shards):
            stale.extend(store.drop_checkpoints(connection, shard, 0))
    return purge_unreferenced(workspace, stale)


def _select(workspace: Workspace, shards: Iterable[int] | None) -> list[int]:
    count = workspace.config.shards
    selected = sorted(set(shards)) if shards is not None else list(range(count))
    bad = [s for s in selected if not 0 <= s < count]
    if bad:
        raise InputError(f"shard {bad[0]} does not exist: this workspace has shards 0 to {count - 1}")
    return selected


def shard_task(workspace: Workspace, plan: ShardPlan) -> tuple[ShardTask, list[str]]:
    """The shard's training task, and the manifest root of each of its slices."""
    import numpy as np

    from sisa.trainer import ShardTask, SliceData

    schema = workspace.config.schema
    assert schema is not None
    rows = workspace.datastore.shard_rows(plan.shard, workspace.config.slices)
    slices = tuple(
        SliceData(
            features=np.frombuffer(blob, dtype=np.float32).reshape(len(labels), *schema.shape),
            labels=np.asarray(labels, dtype=np.int64),
        )
        for blob, labels in zip(rows.slice_features, rows.slice_labels, strict=True)
    )
    resume = None
    if plan.start_slice > 0:
        resume = workspace.datastore.checkpoint_map()[(plan.shard, plan.start_slice - 1)]
    task = ShardTask(
        shard=plan.shard,
        slices=slices,
        input_shape=schema.shape,
        classes=len(schema.labels),
        start_slice=plan.start_slice,
        resume_digest=resume,
    )
    return task, [manifest_root(keys) for keys in rows.slice_keys]


def train(
    workspace: Workspace,
    plans: list[ShardPlan],
    device: str = "auto",
    on_slice: Callable[[TrainedSlice], None] | None = None,
) -> dict[int, list[str]]:
    """Train the planned shards in order, then sign the ledger.

    Each checkpoint becomes current, with its ledger entry, in one transaction as soon as it is
    stored; a job killed mid-shard resumes after the last recorded slice.
    """
    from sisa.device import resolve_device
    from sisa.trainer import train_shard

    torch_device = resolve_device(device)
    config = training_config(workspace)
    store = checkpoint_store(workspace)
    datastore = workspace.datastore
    trained: dict[int, list[str]] = {}
    for plan in plans:
        task, manifests = shard_task(workspace, plan)

        def record(result: TrainedSlice, manifests: list[str] = manifests) -> None:
            entry = checkpoint_entry(
                result.shard, result.slice, result.digest, result.meta, manifests[: result.slice + 1]
            )
            with datastore.engine.begin() as connection:
                datastore.set_checkpoint(connection, result.shard, result.slice, result.digest)
                workspace.ledger.append(connection, [entry])
            if on_slice is not None:
                on_slice(result)

        trained[plan.shard] = train_shard(task, config, store, torch_device, record)
    if plans:
        sign_head(workspace)
    return trained


@dataclass(frozen=True)
class ShardSummary:
    shard: int
    records: int
    slices_trained: int
    slices: int
    latest_checkpoint: str | None
    """sha256 of the checkpoint after the shard's last slice, or None while it is not fully trained."""

    def to_dict(self) -> dict[str, object]:
        return {
            "shard": self.shard,
            "records": self.records,
            "slices": self.slices,
            "slices_trained": self.slices_trained,
            "latest_checkpoint": self.latest_checkpoint,
        }


def shard_summaries(workspace: Workspace) -> list[ShardSummary]:
    counts = workspace.datastore.shard_counts()
    existing = workspace.datastore.checkpoint_map()
    slices = workspace.config.slices
    out = []
    for shard in range(workspace.config.shards):
        trained = sum(1 for s in range(slices) if (shard, s) in existing)
        out.append(ShardSummary(shard, counts.get(shard, 0), trained, slices, existing.get((shard, slices - 1))))
    return out
