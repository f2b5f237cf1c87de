"""The `dask` executor: one task per shard on a Dask distributed cluster (`pip install 'forget[dask]'`).

Registered as `dask` in `sisa.executor`; imported only when a Dask executor is built, and by each
worker when it unpickles its first task.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sisa.executor import OnSlice, ShardJob, ShardTaskError, execute

if TYPE_CHECKING:
    from sisa.trainer import TrainedSlice

WORKER_CRASH_ENV = "FORGET_WORKER_CRASH_ONCE"
"""Fault injection for tests: the first worker to train a shard with this set to a path exits hard."""


def execute_on_worker(job: ShardJob) -> list[TrainedSlice]:
    """The Dask task; a test can make the first worker that runs one die mid-shard."""
    marker = os.environ.get(WORKER_CRASH_ENV)

    def crash_once(_: TrainedSlice) -> None:
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(17)

    return execute(job, crash_once)


class DaskExecutor:
    """One task per shard on a Dask distributed cluster; lost workers are retried by the scheduler.

    With `gpu=True` each task asks for the worker resource `GPU=1` (start GPU workers with
    `dask worker ... --resources GPU=1`), so one shard trains per GPU at a time.
    """

    trains_here = False
    """Workers resolve the device where they run."""

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
        """`ShardExecutor.run` on a Dask cluster: one task per shard, each running `execute` on a worker.

        A shard's slices are reported when its task returns (the worker stored them already), so the
        caller records them as shards finish, in any order across shards. Raises `ShardTaskError` when
        dask is not installed, the scheduler cannot be reached, or a task fails after its retries (the
        other tasks are then cancelled, and the error names the shard).
        """
        client, owned = self._client()  # first: without dask it raises ShardTaskError, not ImportError
        from distributed import as_completed

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
