"""The erasure worker: the child process in which `forget serve` carries out due erasures.

forget.service.runner decides when a round runs; with `forget serve` the round itself (the job
`forget run` runs, `forget.erasure.job.run_job`, under the same workspace lock) runs here, in one
long-lived child process per server, never in a thread of the server. Measured on the
Purchase-like data (20 x 10, 2 shared cores, benchmarks/bench_service.py, docs/benchmarks.md):

- In a thread, the retraining ran in the server's interpreter, between the request handlers: the
  server's process carried the whole job (12.6 s of CPU in a 16 s load at 50 predictions/s with
  erasures running back to back); in the worker, 5.7 s (the worker 5.6 s), and with 50 clients
  back to back predictions' p99 fell from 1.24-1.36 s to 1.06-1.08 s (load 3 to 4.5). The p99 at
  50 predictions/s while erasing stayed at 0.5-0.7 s on SQLite while every transaction, a
  prediction's reads included, took the database's write lock; since reads begin deferred
  (forget/store/datastore.py) it is 44 ms (17.6 ms without an erasure), measured beside another
  benchmark that kept both cores busy.
- Long-lived, not one process per run: a fresh spawned process needs 3.8 s of CPU (11 s of wall
  time at a load of 4) before it erases anything: the interpreter, `import torch`, the job's
  modules, and the `torch._dynamo` import of the first optimizer step; a one-subject erasure
  takes about 1 s. The worker pays that once, at the server's start (`_warm_up`), and keeps
  torch imported between rounds.
- Spawned, not forked: the server has threads and open database connections, which a fork
  would copy in whatever state they were.

The protocol, over a `multiprocessing` pipe: the server sends `run`, the worker answers with one
JSON object (a `RoundReport`: the result, run_job's seconds, the summary line); `stop` ends it
between rounds. Every exception stays in the worker: a failed round is a report, never a
traceback in the pipe (and no pickle of anything but the start's arguments).

Signals: the worker ignores SIGINT (a terminal's Ctrl-C reaches the server, which stops it); a
SIGTERM while idle ends it at once, and during a round ends it when the round is done, so a
systemd stop that signals the whole unit does not cut a round short. The server kills it (SIGKILL)
when a round outlasts the shutdown's grace. When the server dies, the pipe closes and the worker
exits after its round. A killed worker leaves its job as a killed `forget run` does: every step is
crash-safe, and the next round, in a restarted worker, resumes it (forget.erasure.job).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

log = logging.getLogger("forget.service")

RUN = b"run"
STOP = b"stop"


class WorkerLostError(Exception):
    """The worker process died (killed, out of memory) before it answered; internal to the service."""


@dataclass(frozen=True)
class RoundReport:
    """What one round did, as the worker reports it to the server."""

    result: str
    """A forget.service.runner.RoundResult value."""
    seconds: float = 0.0
    """run_job's wall time (0 when it did not run)."""
    summary: str = ""
    """One log line: request ids and counts, never a subject."""

    def to_bytes(self) -> bytes:
        """The report as the pipe carries it (JSON); raises nothing."""
        return json.dumps({"result": self.result, "seconds": self.seconds, "summary": self.summary}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundReport:
        """The report the worker sent; raises `ValueError` for anything else (a bug)."""
        value: Any = json.loads(data)
        if not isinstance(value, dict) or not isinstance(value.get("result"), str):
            raise ValueError("the erasure worker sent something that is not a report")
        return cls(str(value["result"]), float(value.get("seconds", 0.0)), str(value.get("summary", "")))


class ErasureWorker:
    """The server's handle on the worker process: start it, ask it for a round, stop it.

    One caller asks for rounds at a time (the runner's thread); `stop` may come from another.
    """

    def __init__(self, root: Path, passphrase: bytes | None, device: str) -> None:
        """Starts nothing (`start` does); raises nothing."""
        self.root = root
        self.passphrase = passphrase
        self.device = device
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: Connection | None = None
        self._exchange = threading.Lock()
        """Held while a round is asked for and answered: `stop` kills a worker that holds it."""

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (None before `start`); raises nothing."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    @property
    def exitcode(self) -> int | None:
        """How the last worker ended (a negative signal number when killed); None while it runs."""
        return self._process.exitcode if self._process is not None else None

    def alive(self) -> bool:
        """Whether a worker process is running; raises nothing."""
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        """Spawn a fresh worker (returns at once: it warms up on its own); raises `OSError` when the
        system cannot start a process."""
        self._close()
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=serve_rounds,
            args=(theirs, str(self.root), self.passphrase, self.device),
            name="forget-erasure-worker",
            daemon=True,  # at the server's exit, multiprocessing's SIGTERM: the round ends, then the worker
        )
        process.start()
        theirs.close()  # only the worker holds its end: when it dies, our reads see the end of the pipe
        self._process, self._connection = process, ours

    def run(self) -> RoundReport:
        """Ask the worker for one round and wait for its report (a round may take minutes).

        Raises `WorkerLostError` when the worker is not running or dies before it answers.
        """
        with self._exchange:
            connection = self._connection
            if connection is None or not self.alive():
                raise WorkerLostError("the erasure worker is not running")
            try:
                connection.send_bytes(RUN)
                answer = connection.recv_bytes()
            except (EOFError, OSError):
                if self._process is not None:
                    self._process.join(5)
                raise WorkerLostError(f"the erasure worker died during a round (exit code {self.exitcode})") from None
            return RoundReport.from_bytes(answer)

    def stop(self, grace: float = 5.0) -> None:
        """End the worker: asked to between rounds, killed (SIGKILL) if a round is still in flight.

        A killed round is resumed by the next server or `forget run`. Raises nothing.
        """
        process = self._process
        if process is None:
            return
        if self._exchange.acquire(blocking=False):
            try:
                if self._connection is not None and process.is_alive():
                    with contextlib.suppress(OSError):  # it died just now: the join below sees it
                        self._connection.send_bytes(STOP)
                    process.join(grace)
            finally:
                self._exchange.release()
        if process.is_alive():
            log.warning("stopping the erasure worker (pid %s) during a round: the next run resumes it", process.pid)
            process.kill()
            process.join(grace)
        self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None


# -- in the worker process ---------------------------------------------------------------------------


def serve_rounds(connection: Connection, root: str, passphrase: bytes | None, device: str) -> None:
    """The worker's main function: warm up, then run a round for each `run` until `stop` or the
    server's end. Raises nothing (a failed round is a report)."""
    state = _Signals()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, state.on_term)
    _log_to_stderr()
    _warm_up()
    opened = _Opened(root, passphrase)
    while not state.ending:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError):
            return  # the server is gone
        if message != RUN:
            return
        state.busy = True
        report = _round(opened, device)
        state.busy = False
        try:
            connection.send_bytes(report.to_bytes())
        except OSError:
            return


class _Signals:
    def __init__(self) -> None:
        self.busy = False
        self.ending = False

    def on_term(self, signum: int, frame: object) -> None:
        if not self.busy:
            raise SystemExit(0)
        self.ending = True  # after this round


class _Opened:
    """The worker's workspace, its configuration re-read when forget.toml changed (a re-derived
    schema, a cron job's), as forget.service.ensemble does."""

    def __init__(self, root: str, passphrase: bytes | None) -> None:
        self.root, self.passphrase = Path(root), passphrase
        self.workspace: Any = None
        self.stamp: tuple[int, int] | None = None

    def get(self) -> Any:
        from forget.workspace.config import read_config
        from forget.workspace.core import open_workspace

        if self.workspace is None:
            self.workspace = open_workspace(self.root, self.passphrase)
        stat = self.workspace.config_path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self.stamp is not None and stamp != self.stamp:
            fresh = read_config(self.workspace.config_path)
            if fresh != self.workspace.config:
                self.workspace.config = fresh
        self.stamp = stamp
        return self.workspace


def _round(opened: _Opened, device: str) -> RoundReport:
    """One round in the worker: the runner's round on the worker's own workspace."""
    from forget.errors import ForgetError, translated
    from forget.service.runner import RoundResult, carry_out_round

    try:
        with translated():
            workspace = opened.get()
    except ForgetError as error:
        log.error("the erasure worker cannot open the workspace: %s", error.diagnostics().replace("\n", "; "))
        return RoundReport(RoundResult.FAILED.value)
    except Exception:
        log.exception("the erasure worker cannot open the workspace")
        return RoundReport(RoundResult.FAILED.value)
    return carry_out_round(workspace, device)


def _warm_up() -> None:
    """Import what a round needs now, not in the first request's erasure: torch, the job, the models,
    and the `torch._dynamo` import the first optimizer step makes."""
    started = time.perf_counter()
    import torch

    import forget.erasure.job  # noqa: F401
    import sisa.trainer  # noqa: F401

    parameter = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    parameter.grad = torch.ones(1)
    optimizer.step()
    log.info("erasure worker (pid %d) ready in %.2f s", os.getpid(), time.perf_counter() - started)


def _log_to_stderr() -> None:
    logger = logging.getLogger("forget.service")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
