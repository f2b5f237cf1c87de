"""Training a workspace's shards: load each shard's slices, train what is missing, record digests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from forget.errors import InputError, NotTrainedError
from forget.store.checkpoints import checkpoint_location, purge_unreferenced
from forget.training.lineage import checkpoint_entry, manifest_root, sign_head
from forget.training.trust import current_checkpoints
from forget.workspace.core import Workspace
from sisa.schedule import Schedule

if TYPE_CHECKING:
    from sisa.executor import ShardExecutor, ShardJob
    from sisa.trainer import ShardTask, TrainedSlice, TrainingConfig


@dataclass(frozen=True)
class ShardPlan:
    """Where one shard's training starts: its first slice without a current checkpoint, and the one to resume from."""

    shard: int
    start_slice: int
    resume_digest: str | None = None
    """The checkpoint of slice `start_slice - 1`, as the ledger records it (None: from scratch, or look it up)."""


def training_config(workspace: Workspace) -> TrainingConfig:
    """The `sisa.trainer.TrainingConfig` of the workspace's `[training]` settings, seed and slices.

    Imports torch (through sisa.trainer); raises `ValueError` for an optimizer that is not adam or sgd
    (forget.toml's own check refuses one first).
    """
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

    Raises `NotTrainedError` (exit 3) before data is in, `InputError` (exit 2) for a shard that does
    not exist, and `CheckpointLineageError` (exit 1) for a checkpoints row the ledger does not back.
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
    """Drop the selected shards' checkpoints so they train from scratch; returns the purged digests.

    Raises `InputError` (exit 2) for a shard that does not exist.
    """
    store = workspace.datastore
    stale: list[str] = []
    with store.transaction() as tx:
        for shard in _select(workspace, shards):
            stale.extend(store.drop_checkpoints(tx, shard, 0))
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

    from forget.store.datastore import open_datastore
    from sisa.trainer import ShardTask, SliceData

    store = open_datastore(database_url, must_exist=True)
    try:
        rows = store.shard_rows(shard, slices)
    finally:
        store.close()
    data = tuple(
        SliceData(
            features=np.frombuffer(blob, dtype=np.float32).reshape(len(labels), *input_shape),
            labels=np.asarray(labels, dtype=np.int64),
        )
        for blob, labels in zip(rows.slice_features, rows.slice_labels, strict=True)
    )
    return ShardTask(shard, data, input_shape, classes, start_slice, resume_digest)


def shard_job(workspace: Workspace, plan: ShardPlan, device: str) -> ShardJob:
    """The executor's job for one planned shard: a loader of its records (run where the task runs) and
    its training config. A resume digest not in the plan is looked up in the ledger-checked table
    (`CheckpointLineageError`, exit 1, when it is not backed).
    """
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
    """The planned shard's records loaded here, on the CPU (tests and benchmarks train from it directly)."""
    return shard_job(workspace, plan, "cpu").load()


def slice_manifest_roots(workspace: Workspace, shard: int) -> list[str]:
    """The Merkle root of each slice's record keys in the shard, as the checkpoint entries record them."""
    datastore = workspace.datastore
    with datastore.snapshot() as tx:
        return [manifest_root(datastore.slice_record_keys(tx, shard, s)) for s in range(workspace.config.slices)]


def executor_for(workspace: Workspace, kind: str | None = None, scheduler: str | None = None) -> ShardExecutor:
    """The configured executor, or the one named on the command line (any name in `sisa.executor.EXECUTORS`).

    Raises `InputError` (exit 2) for an executor no plugin registers, or one missing a setting it needs.
    """
    from sisa.executor import ExecutorOptionError, ExecutorOptions, UnknownExecutorError, create_executor

    settings = workspace.config.executor
    options = ExecutorOptions(scheduler=scheduler or settings.scheduler, gpu=settings.gpu, retries=settings.retries)
    try:
        return create_executor(kind or settings.kind, options)
    except UnknownExecutorError as error:
        raise InputError(str(error)) from error
    except ExecutorOptionError as error:
        raise InputError(
            f"the {error.executor} executor needs --{error.option} {error.example} (or [executor] {error.option})"
        ) from error


def train(
    workspace: Workspace,
    plans: list[ShardPlan] | None = None,
    device: str = "auto",
    on_slice: Callable[[TrainedSlice], None] | None = None,
    executor: ShardExecutor | None = None,
) -> dict[int, list[str]]:
    """Train the planned shards (default: `plan_training(workspace)`, every slice not yet trained),
    then sign the ledger; returns each trained shard's new checkpoint digests.

    Each checkpoint becomes current, with its ledger entry, once it is stored (locally as slices
    finish, gathered per shard or every RECORD_EVERY_S; on a cluster as each shard's task returns).
    A job killed mid-shard resumes after the last recorded slice. `device` is "auto" (CUDA when
    present), "cpu", "cuda" or "cuda:N"; `on_slice` hears of each slice once it is recorded.

    Raises `NotTrainedError` (exit 3) before data is in, `InputError` (exit 2) for an unknown
    executor, `CheckpointLineageError` (exit 1) for a resume point the ledger does not back, and a
    `sisa.errors.SisaError` for a model that cannot be built, a missing device or a diverged slice
    (`forget.errors.translated()` makes it a `WorkspaceError`).
    """
    from sisa.device import resolve_device

    chosen = executor or executor_for(workspace)
    if chosen.trains_here:
        resolve_device(device)  # fail before any work when --device cuda has no GPU here
    if plans is None:
        plans = plan_training(workspace)
    if not plans:
        return {}
    manifests = {plan.shard: slice_manifest_roots(workspace, plan.shard) for plan in plans}
    recorder = _Recorder(workspace, manifests, on_slice)
    try:
        trained = chosen.run([shard_job(workspace, plan, device) for plan in plans], recorder.add)
    except BaseException:
        # The checkpoints stored before the failure are sound: keep them. If that fails too, only
        # work is lost (their files are garbage the next job collects), and the first error is the one to see.
        with suppress(Exception):
            recorder.flush()
        raise
    recorder.flush()
    sign_head(workspace)
    return trained


RECORD_EVERY_S = 0.5
"""How long stored checkpoints may wait to be recorded together; a slower slice is recorded alone."""


class _Recorder:
    """Records stored checkpoints, several slices in one transaction when slices are quick.

    A transaction with its ledger entry and its commit's fsync costs a few milliseconds, as much as
    training a slice of a few dozen records; so the slices of a shard are gathered and recorded
    together, at the shard's last slice or once RECORD_EVERY_S has passed since the last record,
    whichever comes first. Crash safety is unchanged: the executor hands over a slice only once
    its file is written and fsync'd, so a recorded checkpoint always has its file; a crash before
    the commit loses at most those slices' work (the next job collects their files as garbage and
    resumes after the last recorded slice); and `on_slice` hears of a slice only once it is recorded.
    """

    def __init__(
        self,
        workspace: Workspace,
        manifests: dict[int, list[str]],
        on_slice: Callable[[TrainedSlice], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workspace = workspace
        # Opened now: its first use reads the workspace's pins, which inside a SQLite write
        # transaction (another connection's BEGIN IMMEDIATE) would wait for the lock it holds.
        self.ledger = workspace.ledger
        self.manifests = manifests
        self.on_slice = on_slice
        self.clock = clock
        self.last = workspace.config.slices - 1
        self.pending: list[TrainedSlice] = []
        self.since = clock()

    def add(self, result: TrainedSlice) -> None:
        self.pending.append(result)
        if result.slice == self.last or self.clock() - self.since >= RECORD_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """One transaction: each pending checkpoint becomes current, with its ledger entry."""
        self.since = self.clock()
        if not self.pending:
            return
        datastore = self.workspace.datastore
        entries = [
            checkpoint_entry(r.shard, r.slice, r.digest, r.meta, self.manifests[r.shard][: r.slice + 1])
            for r in self.pending
        ]
        with datastore.transaction() as tx:
            for result in self.pending:
                datastore.set_checkpoint(tx, result.shard, result.slice, result.digest)
            self.ledger.append(tx, entries)
        recorded, self.pending = self.pending, []
        if self.on_slice is not None:
            for result in recorded:
                self.on_slice(result)


@dataclass(frozen=True)
class ShardSummary:
    """One shard as `forget shards` shows it: records, slices trained, and its latest checkpoint."""

    shard: int
    records: int
    slices_trained: int
    slices: int
    latest_checkpoint: str | None
    """sha256 of the checkpoint after the shard's last slice, or None while it is not fully trained."""

    def to_dict(self) -> dict[str, object]:
        """The summary as JSON-ready values (`forget shards --json`)."""
        return {
            "shard": self.shard,
            "records": self.records,
            "slices": self.slices,
            "slices_trained": self.slices_trained,
            "latest_checkpoint": self.latest_checkpoint,
        }


def shard_summaries(workspace: Workspace) -> list[ShardSummary]:
    """Every shard's `ShardSummary`, from the data store's tables (no ledger check: a status view)."""
    counts = workspace.datastore.shard_counts()
    existing = workspace.datastore.checkpoint_map()
    slices = workspace.config.slices
    out = []
    for shard in range(workspace.config.shards):
        trained = sum(1 for s in range(slices) if (shard, s) in existing)
        out.append(ShardSummary(shard, counts.get(shard, 0), trained, slices, existing.get((shard, slices - 1))))
    return out
