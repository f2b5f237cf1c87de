"""In-process erasures run in the erasure worker, a child process of the server (forget.service.worker).

Through real HTTP: a `forget serve` process carries a request out in its worker, and the certificate
verifies offline; a worker SIGKILLed in the middle of a run is started again and the next trigger
completes the request; predictions are answered meanwhile (200, or the documented 503 when every
shard is quarantined); SIGTERM stops the server and its worker.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import pytest

from forget.service.runner import RunsIn
from forget.service.settings import ServiceSettings
from forget.service.worker import RoundReport
from tests.helpers import cli, cli_json
from tests.service.test_quarantine import (
    InProcessServer,
    _features,
    _shards_of,
    _subjects,
    _wait_for,
    trained_sqlite,
)
from tests.service.test_server import start_server

__all__ = ["trained_sqlite"]  # the fixture, imported for these tests

PAUSE_FILE = "FORGET_TEST_WORKER_PAUSE_FILE"


def test_a_report_crosses_the_pipe_as_json() -> None:
    report = RoundReport("completed", 0.25, "1 request(s) completed (req_x)")
    assert RoundReport.from_bytes(report.to_bytes()) == report
    with pytest.raises(ValueError, match="the erasure worker sent something that is not a report"):
        RoundReport.from_bytes(b"[1, 2]")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _worker_of(pid: int) -> int:
    for child in _children(pid):
        command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"multiprocessing.spawn" in command and b"resource_tracker" not in command:
            return child
    raise AssertionError("the server has no erasure worker")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status == "Z"  # exited, not yet reaped


def _verify(ws: Path, tmp_path: Path, request_ids: list[str]) -> None:
    (tmp_path / "operator.pub").write_text(cli("-w", ws, "keys", "public").stdout)
    for request_id in request_ids:
        certificate = ws / "certificates" / f"{request_id}.json"
        assert cli_json("certificate", "verify", certificate, "--public-key", tmp_path / "operator.pub")["valid"]
    cli("-w", ws, "ledger", "verify")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_forget_serve_carries_a_request_out_in_its_worker(trained_sqlite: Path, tmp_path: Path) -> None:
    """`forget serve` (run after request, the default): the erasure runs in a child process, the
    certificate verifies offline, predictions are answered throughout, SIGTERM ends both processes."""
    ws = trained_sqlite
    token = cli_json("-w", ws, "token", "create", "--name", "ops", "--scope", "admin")["token"]
    headers = {"Authorization": f"Bearer {token}"}
    process, url = start_server(ws, log=tmp_path / "server.log")
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            _wait_for(lambda: http.get("/readyz").status_code == 200, "the server to be ready")
            worker = _worker_of(process.pid)
            rows = {"rows": _features(ws, 2)}
            filed = http.post("/v1/requests", json={"subject_id": _subjects(ws)[0]})
            assert filed.status_code == 201, filed.text
            request_id = filed.json()["request_id"]
            statuses: set[int] = set()
            while http.get(f"/v1/certificates/{request_id}").status_code != 200:
                answer = http.post("/v1/predict", json=rows)
                statuses.add(answer.status_code)
                assert answer.status_code in (200, 503), answer.text
                if answer.status_code == 503:
                    assert "every shard is quarantined" in answer.json()["error"]
            assert 200 in statuses
            assert http.get(f"/v1/requests/{request_id}").json()["state"] == "completed"
            assert _worker_of(process.pid) == worker  # the same worker, kept between rounds
            # The worker writes the certificate before its report reaches the server's metrics.
            completed = 'forget_inprocess_runs_total{result="completed"}'
            _wait_for(lambda: _metric(http.get("/metrics").text, completed) >= 1, "the run's report", 30)
            metrics = http.get("/metrics").text
            assert _metric(metrics, "forget_erasure_duration_seconds_count") >= 1
            assert _metric(metrics, "forget_inprocess_last_success_timestamp_seconds") > time.time() - 120
            assert _metric(metrics, "forget_erasure_worker_restarts_total") == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
        _wait_for(lambda: _gone(worker), "the worker to exit with the server", 10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "in-process erasure run: 1 request(s) completed" in (tmp_path / "server.log").read_text()
    _verify(ws, tmp_path, [request_id])


def pausing_rounds(connection: Connection, root: str, passphrase: bytes | None, device: str) -> None:
    """The worker's main function with a pause after the erasure step of its first job (in the child)."""
    from forget.erasure import job
    from forget.service import worker

    pause = Path(os.environ[PAUSE_FILE])
    real = job.run_job

    def run_job(workspace: Any, **kwargs: Any) -> job.RunSummary:
        def at(step: job.Step) -> None:
            if step is job.Step.ERASED and not pause.exists():
                pause.write_text(str(os.getpid()))
                time.sleep(120)  # the test kills the worker here

        return real(workspace, hooks=job.JobHooks(at=at), **kwargs)

    job.run_job = run_job  # type: ignore[assignment]
    worker.serve_rounds(connection, root, passphrase, device)


class WorkerServer(InProcessServer):
    """`InProcessServer` with its rounds in a worker process."""

    def __init__(self, ws: Path, run_every: float | None) -> None:
        settings = ServiceSettings(device="cpu", run_every=run_every, run_after_request=True)
        super().__init__(ws, settings, RunsIn.PROCESS)

    def worker_pid(self) -> int | None:
        pid: int | None = self.app.state.service.runner.worker.pid
        return pid


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_restarted_and_the_next_trigger_completes_the_request(
    trained_sqlite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forget.service import worker

    ws = trained_sqlite
    pause = tmp_path / "paused"
    monkeypatch.setenv(PAUSE_FILE, str(pause))  # the spawned worker inherits the environment
    monkeypatch.setattr(worker, "serve_rounds", pausing_rounds)
    server = WorkerServer(ws, run_every=None)  # rounds only after a request: the retry waits for a trigger
    subjects, rows = _subjects(ws), {"rows": _features(ws, 2)}
    try:
        first = server.call("POST", "/v1/requests", json={"subject_id": subjects[0]}).json()["request_id"]
        _wait_for(pause.exists, "the worker to pause in the middle of the run", 120)
        killed = int(pause.read_text())
        assert killed == server.worker_pid()
        # The run holds the workspace in another process: this one answers from the other shards.
        quarantined = set(_shards_of(ws, subjects[0]))
        for _ in range(5):
            answer = server.call("POST", "/v1/predict", json=rows)
            assert answer.status_code == 200, answer.text
            assert quarantined.isdisjoint(answer.json()["shards"])
        assert server.call("GET", f"/v1/requests/{first}").json()["state"] == "running"
        os.kill(killed, signal.SIGKILL)
        _wait_for(lambda: server.worker_pid() not in (None, killed), "a new worker", 30)
        # The new worker starts before the failed round is counted: wait for the count.
        failed = 'forget_inprocess_runs_total{result="failed"}'
        _wait_for(lambda: _metric(server.call("GET", "/metrics").text, failed) >= 1, "the failed round's count", 30)
        metrics = server.call("GET", "/metrics").text
        assert _metric(metrics, 'forget_inprocess_runs_total{result="failed"}') == 1
        assert _metric(metrics, "forget_erasure_worker_restarts_total") == 1
        assert server.call("GET", f"/v1/requests/{first}").json()["state"] == "running"  # until the next trigger
        second = server.call("POST", "/v1/requests", json={"subject_id": subjects[1]}).json()["request_id"]
        certified: Callable[[], bool] = lambda: all(  # noqa: E731
            server.call("GET", f"/v1/certificates/{r}").status_code == 200 for r in (first, second)
        )
        _wait_for(certified, "both certificates", 120)
        assert server.call("POST", "/v1/predict", json=rows).json()["shards"] == list(range(4))
        last = server.worker_pid()
    finally:
        server.stop()
    assert last is not None
    _wait_for(lambda: _gone(last), "the worker to stop with the application", 10)
    _verify(ws, tmp_path, [first, second])
