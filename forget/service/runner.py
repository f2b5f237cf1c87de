"""In-process erasure runs: the service carries out due requests itself, one job at a time with cron.

A background thread of the server starts a round after each accepted request (`run_after_request`),
every `run_every` seconds, and once at start. The round runs `forget.erasure.job.run_job` (the job
`forget run` runs, under the same workspace lock) where `RunsIn` says: `forget serve` runs it in
its erasure worker, a child process (forget.service.worker, whose docstring says why a process and
not a thread, with the numbers), and the thread only waits for the worker's report; an application
embedded in a test may run it in the thread itself, where a test's hook reaches the job.

When a cron `forget run` (or a `train`, an `ingest`) holds the lock, the round is skipped without
error: that job does the work, and the ensemble sees its result in the log. A round with nothing
pending, running or uncertified takes no lock and reads two small queries (in the server: the
worker is not even asked). A worker that dies (killed, out of memory) is started again at once;
its job is resumed by the next round, as a killed `forget run`'s is by the next run.

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
from forget.service.worker import ErasureWorker, RoundReport, WorkerLostError

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
    """run_job raised, or the worker died; the requests stay open (and quarantined), and the next round
    tries again."""


class RunsIn(StrEnum):
    """Where a round's job runs."""

    PROCESS = "process"
    """In the erasure worker, a child process (forget.service.worker): what `forget serve` does."""
    THREAD = "thread"
    """In the runner's thread, in the server's process: for an application embedded in a test (a hook
    reaches the job, and an in-memory workspace works); it slows every request while it runs."""


class ErasureRunner:
    """The background thread that starts due erasures' rounds (see the module's docstring)."""

    def __init__(
        self,
        workspace: Workspace,
        ensemble: ServedEnsemble,
        metrics: ServiceMetrics,
        settings: ServiceSettings,
        runs_in: RunsIn = RunsIn.THREAD,
    ) -> None:
        """Starts nothing (`start` does); raises `ValueError` for a schedule that is not above 0 seconds."""
        if settings.run_every is not None and not settings.run_every > 0:
            raise ValueError("run_every must be above 0 seconds")
        self.workspace = workspace
        self.ensemble = ensemble
        self.metrics = metrics
        self.settings = settings
        self.runs_in = runs_in
        self.worker: ErasureWorker | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._round_lock = threading.Lock()
        self.last: RoundResult | None = None

    def start(self) -> None:
        """Start the thread (and the worker) when runs are enabled (a first round runs at once).

        Raises nothing: a worker that cannot start is logged, and the next round tries again.
        """
        if not self.settings.runs_in_process or self._thread is not None:
            return
        if self.runs_in is RunsIn.PROCESS:
            self.worker = ErasureWorker(self.workspace.root, self.workspace.passphrase, self.settings.device)
            self._start_worker()
        self._wake.set()  # requests filed while the service was down are due now
        self._thread = threading.Thread(target=self._loop, name="forget-erasure-runner", daemon=True)
        self._thread.start()

    def request_filed(self) -> None:
        """A request was accepted: wake the thread when `run_after_request` is set; raises nothing."""
        if self.settings.run_after_request:
            self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current round (waiting up to `timeout` seconds), then the worker; raises nothing.

        A round still running after that is cut short: the worker is killed (a round in the
        thread dies with the process). The job is crash-safe, and the next `forget run` or
        service resumes it.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.worker is not None:
            self.worker.stop()
        if self._thread is not None:
            self._thread.join(5)

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
        if self.worker is None:
            report = carry_out_round(self.workspace, self.settings.device)
        else:
            if not is_due(self.workspace):
                return RoundResult.IDLE
            try:
                report = self._in_worker(self.worker)
            except WorkerLostError as error:
                log.error("in-process erasure run failed: %s; the next round resumes its job", error)
                if not self._stopping.is_set():
                    self._start_worker(restart=True)
                return RoundResult.FAILED
        result = RoundResult(report.result)
        if result is RoundResult.COMPLETED:
            self._reload()
            self.metrics.erasures.observe(report.seconds)
            self.metrics.last_success.set(time.time())
            log.info("in-process erasure run: %s", report.summary)
        return result

    def _in_worker(self, worker: ErasureWorker) -> RoundReport:
        if not worker.alive():  # it died between rounds (or could not start)
            log.warning("the erasure worker is gone (exit code %s): starting a new one", worker.exitcode)
            if not self._start_worker(restart=True):
                raise WorkerLostError("the erasure worker cannot start")
        return worker.run()

    def _start_worker(self, restart: bool = False) -> bool:
        """Start (or restart) the worker; False when the system cannot start a process. Raises nothing."""
        assert self.worker is not None
        try:
            self.worker.start()
        except OSError as error:
            log.error("cannot start the erasure worker: %s", error)
            return False
        if restart:
            self.metrics.worker_restarts.inc()
        return True

    def _reload(self) -> None:
        """Load the retrained shards now rather than on the next prediction."""
        try:
            with translated():
                self.ensemble.refresh()
        except ForgetError as error:  # the next prediction retries and answers with the error
            log.warning("reloading the models after the run failed: %s", error.diagnostics().replace("\n", "; "))


def is_due(workspace: Workspace) -> bool:
    """Whether a request is pending, running or completed without a certificate (two small queries).

    Raises what the data store raises.
    """
    from forget.erasure.certify import uncertified
    from forget.erasure.quarantine import OPEN_STATES

    return bool(workspace.datastore.find_requests(states=list(OPEN_STATES))) or bool(uncertified(workspace))


def carry_out_round(workspace: Workspace, device: str) -> RoundReport:
    """A round's work, where it runs (the worker, or the runner's thread): run_job unless nothing is
    due, its errors logged here (a bug's with its traceback) and reported as the round's result.

    Never raises.
    """
    from forget.erasure import job

    try:
        if not is_due(workspace):
            return RoundReport(RoundResult.IDLE.value)
        started = time.perf_counter()
        with translated():
            summary = job.run_job(workspace, device=device)
    except JobLockedError:
        log.info("in-process erasure run skipped: another job holds the workspace")
        return RoundReport(RoundResult.LOCKED.value)
    except ForgetError as error:
        log.error("in-process erasure run failed: %s", error.diagnostics().replace("\n", "; "))
        return RoundReport(RoundResult.FAILED.value)
    except Exception:  # a bug: logged where it happened; the next round retries
        log.exception("in-process erasure run failed with an unexpected error")
        return RoundReport(RoundResult.FAILED.value)
    return RoundReport(RoundResult.COMPLETED.value, time.perf_counter() - started, _described(summary))


def _described(summary: RunSummary) -> str:
    """One log line: request ids and counts, never a subject."""
    done = [*summary.completed, *summary.no_data]
    return (
        f"{len(done)} request(s) completed ({', '.join(done) or 'none'}), {summary.records_erased} record(s)"
        f" erased, shards retrained {list(summary.shards_retrained)}, {len(summary.certificates)} certificate(s),"
        f" {summary.seconds:.2f} s"
    )
