"""Where shards train: in this process, or as one task per shard on a Dask cluster.

Both executors call `on_slice` for every checkpoint once it is durably stored, in slice order
within a shard; the local one as each slice finishes, the Dask one when a shard's task returns.
Training is deterministic, so the executor never changes a digest.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sisa.errors import SisaError
from sisa.store import open_store
from sisa.trainer import ShardTask, TrainedSlice, TrainingConfig, train_shard


class ShardTaskError(SisaError):
    """A shard's task failed for good (after the executor's retries)."""


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs: `load` builds the task where it runs (reading the records there)."""

    shard: int
    load: Callable[[], ShardTask]
    config: TrainingConfig
    store_location: str
    device: str


OnSlice = Callable[[TrainedSlice], None]


class ShardExecutor(ABC):
    @abstractmethod
    def run(self, jobs: Sequence[ShardJob], on_slice: OnSlice) -> dict[int, list[str]]:
        """Train every job; returns each shard's new digests. Raises `ShardTaskError` naming a failed shard."""


WORKER_CRASH_ENV = "FORGET_WORKER_CRASH_ONCE"
"""Fault injection for tests: the first worker to train a shard with this set to a path exits hard."""


def execute(job: ShardJob, on_slice: OnSlice | None = None) -> list[TrainedSlice]:
    """Run one shard job here; the body of both executors."""
    from sisa.device import resolve_device

    done: list[TrainedSlice] = []

    def record(result: TrainedSlice) -> None:
        done.append(result)
        if on_slice is not None:
            on_slice(result)

    train_shard(job.load(), job.config, open_store(job.store_location), resolve_device(job.device), record)
    return done


def execute_on_worker(job: ShardJob) -> list[TrainedSlice]:
    """The Dask task; a test can make the first worker that runs one die mid-shard."""
    marker = os.environ.get(WORKER_CRASH_ENV)

    def crash_once(_: TrainedSlice) -> None:
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(17)

    return execute(job, crash_once)


class LocalExecutor(ShardExecutor):
    """Shards one after another in this process; each slice is recorded as soon as it is stored."""

    def run(self, jobs: Sequence[ShardJob], on_slice: OnSlice) -> dict[int, list[str]]:
        return {job.shard: [r.digest for r in execute(job, on_slice)] for job in jobs}


class DaskExecutor(ShardExecutor):
    """One task per shard on a Dask distributed cluster; lost workers are retried by the scheduler.

    With `gpu=True` each task asks for the worker resource `GPU=1` (start GPU workers with
    `dask worker ... --resources GPU=1`), so one shard trains per GPU at a time.
    """

    def __init__(self, scheduler: str | Any, gpu: bool = False, retries: int = 2) -> None:
        self.scheduler = scheduler
        self.gpu = gpu
        self.retries = retries

    def _client(self) -> Any:
        try:
            from distributed import Client
        except ImportError as error:
            raise ShardTaskError("the dask executor needs dask: pip install 'forget[dask]'") from error
        if not isinstance(self.scheduler, str):
            return self.scheduler, False
        try:
            return Client(self.scheduler, timeout="10s"), True  # type: ignore[no-untyped-call]
        except OSError as error:
            raise ShardTaskError(f"cannot reach the Dask scheduler at {self.scheduler}: {error}") from error

    def run(self, jobs: Sequence[ShardJob], on_slice: OnSlice) -> dict[int, list[str]]:
        from distributed import as_completed

        client, owned = self._client()
        try:
            resources = {"GPU": 1} if self.gpu else None
            futures = {
                client.submit(execute_on_worker, job, key=f"forget-shard-{job.shard}-{os.urandom(4).hex()}",
                              retries=self.retries, resources=resources, pure=False): job.shard
                for job in jobs
            }  # fmt: skip
            trained: dict[int, list[str]] = {}
            # `loop=` ties completion to this executor's client, not whichever client is the default.
            for future in as_completed(list(futures), loop=client.loop):  # type: ignore[no-untyped-call]
                shard = futures[future]
                try:
                    results: list[TrainedSlice] = future.result()
                except Exception as error:  # a worker's exception arrives re-raised, of any type
                    for other in futures:
                        other.cancel()
                    raise ShardTaskError(f"shard {shard} failed on the Dask cluster: {error}") from error
                for result in results:
                    on_slice(result)
                trained[shard] = [r.digest for r in results]
            return trained
        finally:
            if owned:
                client.close()
