"""Where shards train: `ShardExecutor` is the interface, `EXECUTORS` the registry of named ones.

Built in: `local` (this process, one shard after another) and `dask` (one task per shard on a
Dask cluster, `sisa.dask_executor`). A new executor is a module with a class that has `ShardExecutor`'s
two members and one `register_executor(name, factory)`, where `factory(options)` builds it from
the workspace's `[executor]` settings; or, for the command line, an entry point in the group
`sisa.executors` naming that factory.

Every executor calls `on_slice` for every checkpoint once it is durably stored, in slice order
within a shard (the local one as each slice finishes, the Dask one when a shard's task returns),
and runs `execute` for each job wherever it trains. Training is deterministic, so the executor
never changes a digest. This module imports no torch: the trainer is imported when a job runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias

from sisa.errors import SisaError
from sisa.registry import Registry
from sisa.store import open_store

if TYPE_CHECKING:
    from sisa.trainer import ShardTask, TrainedSlice, TrainingConfig


class ShardTaskError(SisaError):
    """A shard's task failed for good (after the executor's retries)."""


class ExecutorOptionError(SisaError):
    """An executor's settings lack what it needs; `option` names the setting (`scheduler`)."""

    def __init__(self, executor: str, option: str, example: str) -> None:
        super().__init__(f"the {executor} executor needs a {option}: {example}")
        self.executor = executor
        self.option = option
        self.example = example


class UnknownExecutorError(SisaError):
    """No executor is registered under the name a configuration or a command line gives."""


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs: `load` builds the task where it runs (reading the records there)."""

    shard: int
    load: Callable[[], ShardTask]
    config: TrainingConfig
    store_location: str
    device: str


OnSlice: TypeAlias = "Callable[[TrainedSlice], None]"


class ShardExecutor(Protocol):
    """Trains shard jobs somewhere and reports each stored checkpoint."""

    @property
    def trains_here(self) -> bool:
        """Whether jobs train in this process, on this machine's device.

        The caller then checks the device before any work (a missing GPU stops a job before it
        erases anything); an executor that trains elsewhere resolves the device where it runs.
        """
        ...

    def run(self, jobs: Sequence[ShardJob], on_slice: OnSlice) -> dict[int, list[str]]:
        """Train every job; returns each shard's new digests. Raises `ShardTaskError` naming a failed shard."""
        ...


@dataclass(frozen=True)
class ExecutorOptions:
    """The settings an executor is built from (forget.toml's `[executor]`, or the command line)."""

    scheduler: str = ""
    """The cluster's address, for executors that have one (a Dask scheduler's tcp://HOST:PORT)."""
    gpu: bool = False
    """Each shard's task asks its cluster for one GPU."""
    retries: int = 2
    """How often a lost task is tried again."""


ExecutorFactory = Callable[[ExecutorOptions], ShardExecutor]

EXECUTORS: Registry[ExecutorFactory] = Registry(
    "executor", "sisa.executors", r"[a-z][a-z0-9_-]*", "must be lower-case letters, digits, - or _"
)


def register_executor(name: str, factory: ExecutorFactory) -> None:
    """Make `[executor] kind = name` (and `--executor name`) build executors with `factory`."""
    EXECUTORS.register(name, factory)


def executor_names() -> tuple[str, ...]:
    """The executor names registered in this process, for help texts and messages; raises nothing.

    Entry points not looked up yet are not listed (see `Registry.names`).
    """
    return EXECUTORS.names()


def create_executor(name: str, options: ExecutorOptions | None = None) -> ShardExecutor:
    """The executor registered as `name`, built from `options`.

    Raises UnknownExecutorError for a name nothing registers, ExecutorOptionError for missing settings.
    """
    factory = EXECUTORS.lookup(name)
    if factory is None:
        raise UnknownExecutorError(f"unknown executor {name!r}: use {' or '.join(EXECUTORS.names())}")
    return factory(options or ExecutorOptions())


def execute(job: ShardJob, on_slice: OnSlice | None = None) -> list[TrainedSlice]:
    """Run one shard job here: the body of every executor, wherever it runs the job."""
    from sisa.device import resolve_device
    from sisa.trainer import train_shard

    done: list[TrainedSlice] = []

    def record(result: TrainedSlice) -> None:
        done.append(result)
        if on_slice is not None:
            on_slice(result)

    train_shard(job.load(), job.config, open_store(job.store_location), resolve_device(job.device), record)
    return done


class LocalExecutor:
    """Shards one after another in this process; each slice is recorded as soon as it is stored."""

    trains_here = True

    def run(self, jobs: Sequence[ShardJob], on_slice: OnSlice) -> dict[int, list[str]]:
        """Train the jobs one after another in this process; each slice is reported as soon as it is stored.

        Raises whatever `job.load` and the trainer raise, unwrapped: `DeviceError` (the job's device
        is missing), `ModelSpecError`, `CheckpointError` (a resume without its checkpoint, or a corrupt
        one), `DivergedError`; `ValueError` for a task whose slice count is not its config's.
        """
        return {job.shard: [r.digest for r in execute(job, on_slice)] for job in jobs}


def _dask(options: ExecutorOptions) -> ShardExecutor:
    from sisa.dask_executor import DaskExecutor

    if not options.scheduler:
        raise ExecutorOptionError("dask", "scheduler", "tcp://HOST:PORT")
    return DaskExecutor(options.scheduler, gpu=options.gpu, retries=options.retries)


register_executor("local", lambda _options: LocalExecutor())
register_executor("dask", _dask)
