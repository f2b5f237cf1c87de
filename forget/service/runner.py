"""In-process erasure runs: the service carries out due requests itself, one job at a time with cron.

A background thread runs `forget.erasure.job.run_job` (the job `forget run` runs, under the same
workspace lock) after each accepted request (`run_after_request`), every `run_every` seconds, and
once at start. When a cron `forget run` (or a `train`, an `ingest`) holds the lock, the round is
skipped without error: that job does the work, and the ensemble sees its result in the log. A
round with nothing pending, running or uncertified takes no lock and reads two small queries.

After a round the ensemble reloads the retrained shards at once (only those: it compares
digests), so the next prediction does not wait for the load, and no prediction is dropped: until
their requests complete, the retrained shards are quarantined and the others answer.
"""

from __future__ import annotations

import logging
import threading
import time
from enum import StrEnum
from typing import TYPE_CHECKING

from forget.errors import ForgetError, JobLockedError, translated

if TYPE_CHECKING:
    from forget.erasure.job import RunSummary
    from forget.service.ensemble import ServedEnsemble
    from forget.service.metrics import ServiceMetrics
    from forget.service.settings import ServiceSettings
    from forget.workspace.core import Workspace

log = logging.getLogger("forget.service")


class RoundResult(StrEnum):
    """How an in-process round ended (the `result` label of `forget_inprocess_runs_total`)."""

    COMPLETED = "completed"
    """run_job ran and carried out or certified at least one request."""
    IDLE = "idle"
    """Nothing was pending, running or uncertified."""
    LOCKED = "locked"
    """Another job held the workspace: skipped, that job does the work."""
    FAILED = "failed"
    """run_job raised; the requests stay open (and quarantined), and the next round tries again."""


class ErasureRunner:
    """The background thread that runs due erasures in the service's process (see the module's docstring)."""

    def __init__(
        self, workspace: Workspace, ensemble: ServedEnsemble, metrics: ServiceMetrics, settings: ServiceSettings
    ) -> None:
        """Starts nothing (`start` does); raises `ValueError` for a schedule that is not above 0 seconds."""
        if settings.run_every is not None and not settings.run_every > 0:
            raise ValueError("run_every must be above 0 seconds")
        self.workspace = workspace
        self.ensemble = ensemble
        self.metrics = metrics
        self.settings = settings
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._round_lock = threading.Lock()
        self.last: RoundResult | None = None

    def start(self) -> None:
        """Start the thread when runs are enabled (a first round runs at once); raises nothing."""
        if not self.settings.runs_in_process or self._thread is not None:
            return
        self._wake.set()  # requests filed while the service was down are due now
        self._thread = threading.Thread(target=self._loop, name="forget-erasure-runner", daemon=True)
        self._thread.start()

    def request_filed(self) -> None:
        """A request was accepted: wake the thread when `run_after_request` is set; raises nothing."""
        if self.settings.run_after_request:
            self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current round (waiting up to `timeout` seconds); raises nothing.

        A round still running after that dies with the process: the job is crash-safe, and the
        next `forget run` or service resumes it.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.settings.run_every)
            self._wake.clear()
            if self._stopping.is_set():
                break
            self.run_round()

    def run_round(self) -> RoundResult:
        """One round: run the due requests unless nothing is due or another job holds the lock.

        Never raises: a failure is logged (with its traceback when it is a bug) and counted, and
        the next round tries again.
        """
        with self._round_lock:
            try:
                result = self._round()
            except Exception:  # a bug: the thread must live on, and the next round retries
                log.exception("in-process erasure run failed with an unexpected error")
                result = RoundResult.FAILED
            self.last = result
            self.metrics.runs.labels(result.value).inc()
            return result

    def _round(self) -> RoundResult:
        from forget.erasure.certify import uncertified
        from forget.erasure.job import run_job
        from forget.erasure.quarantine import OPEN_STATES

        if not self.workspace.datastore.find_requests(states=list(OPEN_STATES)) and not uncertified(self.workspace):
            return RoundResult.IDLE
        started = time.perf_counter()
        try:
            with translated():
                summary = run_job(self.workspace, device=self.settings.device)
        except JobLockedError:
            log.info("in-process erasure run skipped: another job holds the workspace")
            return RoundResult.LOCKED
        except ForgetError as error:
            log.error("in-process erasure run failed: %s", error.diagnostics().replace("\n", "; "))
            return RoundResult.FAILED
        self._reload()
        self.metrics.erasures.observe(time.perf_counter() - started)
        log.info("in-process erasure run: %s", _described(summary))
        return RoundResult.COMPLETED

    def _reload(self) -> None:
        """Load the retrained shards now rather than on the next prediction."""
        try:
            with translated():
                self.ensemble.refresh()
        except ForgetError as error:  # the next prediction retries and answers with the error
            log.warning("reloading the models after the run failed: %s", error.diagnostics().replace("\n", "; "))


def _described(summary: RunSummary) -> str:
    """One log line: request ids and counts, never a subject."""
    done = [*summary.completed, *summary.no_data]
    return (
        f"{len(done)} request(s) completed ({', '.join(done) or 'none'}), {summary.records_erased} record(s)"
        f" erased, shards retrained {list(summary.shards_retrained)}, {len(summary.certificates)} certificate(s),"
        f" {summary.seconds:.2f} s"
    )
