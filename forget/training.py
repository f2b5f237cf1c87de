"""Training a workspace's shards: load each shard's slices, train what is missing, record digests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from forget.checkpoint_trust import current_checkpoints
from forget.config import ExecutorKind
from forget.errors import InputError, NotTrainedError
from forget.lineage import checkpoint_entry, manifest_root, sign_head
from forget.workspace import Workspace, checkpoint_location, purge_unreferenced
from sisa.schedule import Schedule

if TYPE_CHECKING:
    from sisa.executor import ShardExecutor, ShardJob
    from sisa.trainer import ShardTask, TrainedSlice, TrainingConfig


@dataclass(frozen=True)
class ShardPlan:
    shard: int
    start_slice: int
    resume_digest: str | None = None
    """The checkpoint of slice `start_slice - 1`, as the ledger records it (None: from scratch, or look it up)."""


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
    """Each selected shard resumes at its first slice without a current checkpoint.

    The checkpoints come from `current_checkpoints`: a table row the ledger does not back (a
    checkpoint an erasure dropped, put back) stops training before anything resumes from it.
    """
    if workspace.config.schema is None:
        raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
    selected = _select(workspace, shards)
    existing = current_checkpoints(workspace, [(s, k) for s in selected for k in range(workspace.config.slices)])
    plans = []
    for shard in selected:
        first_missing = next((s for s in range(workspace.config.slices) if (shard, s) not in existing), None)
        if first_missing is not None:
            resume = existing[(shard, first_missing - 1)] if first_missing > 0 else None
            plans.append(ShardPlan(shard, first_missing, resume))
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


def load_shard_task(
    database_url: str,
    shard: int,
    start_slice: int,
    resume_digest: str | None,
    slices: int,
    input_shape: tuple[int, ...],
    classes: int,
) -> ShardTask:
    """Read a shard's records where the task runs: in this process, or on a cluster worker."""
    import numpy as np

    from forget.datastore import DataStore, create_engine
    from sisa.trainer import ShardTask, SliceData

    engine = create_engine(database_url, must_exist=True)
    try:
        rows = DataStore(engine).shard_rows(shard, slices)
    finally:
        engine.dispose()
    data = tuple(
        SliceData(
            features=np.frombuffer(blob, dtype=np.float32).reshape(len(labels), *input_shape),
            labels=np.asarray(labels, dtype=np.int64),
        )
        for blob, labels in zip(rows.slice_features, rows.slice_labels, strict=True)
    )
    return ShardTask(shard, data, input_shape, classes, start_slice, resume_digest)


def shard_job(workspace: Workspace, plan: ShardPlan, device: str) -> ShardJob:
    from sisa.executor import ShardJob

    schema = workspace.config.schema
    assert schema is not None
    resume = plan.resume_digest
    if plan.start_slice > 0 and resume is None:
        key = (plan.shard, plan.start_slice - 1)
        resume = current_checkpoints(workspace, [key])[key]
    load = partial(
        load_shard_task,
        workspace.database_url,
        plan.shard,
        plan.start_slice,
        resume,
        workspace.config.slices,
        schema.shape,
        len(schema.labels),
    )
    return ShardJob(plan.shard, load, training_config(workspace), checkpoint_location(workspace), device)


def shard_task(workspace: Workspace, plan: ShardPlan) -> ShardTask:
    return shard_job(workspace, plan, "cpu").load()


def slice_manifest_roots(workspace: Workspace, shard: int) -> list[str]:
    datastore = workspace.datastore
    with datastore.engine.connect() as connection:
        return [
            manifest_root(datastore.slice_record_keys(connection, shard, s)) for s in range(workspace.config.slices)
        ]


def executor_for(workspace: Workspace, kind: str | None = None, scheduler: str | None = None) -> ShardExecutor:
    """The configured executor, or the one named on the command line."""
    from sisa.executor import DaskExecutor, LocalExecutor

    settings = workspace.config.executor
    chosen = ExecutorKind(kind) if kind is not None else settings.kind
    if chosen is ExecutorKind.LOCAL:
        return LocalExecutor()
    address = scheduler or settings.scheduler
    if not address:
        raise InputError("the dask executor needs --scheduler tcp://HOST:PORT (or [executor] scheduler)")
    return DaskExecutor(address, gpu=settings.gpu, retries=settings.retries)


def train(
    workspace: Workspace,
    plans: list[ShardPlan],
    device: str = "auto",
    on_slice: Callable[[TrainedSlice], None] | None = None,
    executor: ShardExecutor | None = None,
) -> dict[int, list[str]]:
    """Train the planned shards, then sign the ledger.

    Each checkpoint becomes current, with its ledger entry, in one transaction once it is stored
    (locally as each slice finishes; on a cluster as each shard's task returns). A job killed
    mid-shard resumes after the last recorded slice.
    """
    from sisa.device import resolve_device
    from sisa.executor import LocalExecutor

    chosen = executor or executor_for(workspace)
    if isinstance(chosen, LocalExecutor):
        resolve_device(device)  # fail before any work when --device cuda has no GPU here
    datastore = workspace.datastore
    manifests = {plan.shard: slice_manifest_roots(workspace, plan.shard) for plan in plans}

    def record(result: TrainedSlice) -> None:
        roots = manifests[result.shard][: result.slice + 1]
        entry = checkpoint_entry(result.shard, result.slice, result.digest, result.meta, roots)
        with datastore.engine.begin() as connection:
            datastore.set_checkpoint(connection, result.shard, result.slice, result.digest)
            workspace.ledger.append(connection, [entry])
        if on_slice is not None:
            on_slice(result)

    trained = chosen.run([shard_job(workspace, plan, device) for plan in plans], record) if plans else {}
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
