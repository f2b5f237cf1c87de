"""Exact from the first moment: a filed request quarantines its subject's shards at once, everywhere.

Through real HTTP (a `forget serve` process on a loopback port, httpx), through the CLI, and in
the store on SQLite and PostgreSQL: the shards that hold the subject's records answer no
prediction from the commit that files the request until `forget run` (cron, or the service's own
in-process run) has retrained them without the subject; the certificate says how long the data
were still in use after the request was received.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from forget.erasure.quarantine import (
    OPEN_STATES,
    QUARANTINED,
    AllShardsQuarantinedError,
    quarantined_shards,
    serving_shards,
    shards_of_subject,
)
from forget.erasure.requests import RequestState
from forget.service.runner import RunsIn
from forget.service.settings import ServiceSettings
from forget.workspace.core import Workspace, open_workspace
from forget.workspace.lock import job_lock
from tests.conftest import write_tabular_csv
from tests.helpers import cli, cli_json, init_args
from tests.service.test_server import COLUMNS, start_server

SHARDS = 4


@pytest.fixture
def trained(tmp_path: Path, database_url: str) -> Path:
    write_tabular_csv(tmp_path / "data.csv", rows=160)
    ws = tmp_path / "ws"
    cli(*init_args(ws, database_url))
    cli("-w", ws, "ingest", tmp_path / "data.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")
    return ws


@pytest.fixture
def trained_sqlite(tmp_path: Path) -> Path:
    write_tabular_csv(tmp_path / "data.csv", rows=160)
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    cli("-w", ws, "ingest", tmp_path / "data.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")
    return ws


def _subjects(ws: Path) -> list[str]:
    import csv

    with (ws.parent / "data.csv").open() as handle:
        return list(dict.fromkeys(row["subject"] for row in csv.DictReader(handle)))


def _features(ws: Path, count: int = 20) -> list[dict[str, object]]:
    import csv

    def value(text: str) -> object:
        try:
            return float(text)
        except ValueError:
            return text

    with (ws.parent / "data.csv").open() as handle:
        rows = list(csv.DictReader(handle))[:count]
    return [{k: value(v) for k, v in row.items() if k not in ("subject", "label", "record")} for row in rows]


def _shards_of(ws: Path, subject_id: str) -> tuple[int, ...]:
    workspace = open_workspace(ws)
    return shards_of_subject(workspace, workspace.pseudonymiser.subject(subject_id))


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _statement(certificate: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.b64decode(json.loads(certificate)["payload"]))
    return value


# -- the rule, without a database ---------------------------------------------------------------


def test_open_states_are_the_request_states_that_are_not_completed() -> None:
    assert set(OPEN_STATES) == {s.value for s in RequestState if s is not RequestState.COMPLETED}


def test_with_every_shard_quarantined_nothing_answers(fake_workspace: Workspace) -> None:
    shards = fake_workspace.config.shards
    assert serving_shards(fake_workspace, quarantined={0}) == tuple(range(1, shards))
    with pytest.raises(AllShardsQuarantinedError, match=f"all {shards} shards are quarantined by open erasure"):
        serving_shards(fake_workspace, quarantined=range(shards))
    assert AllShardsQuarantinedError("x").exit_code == 3


def test_a_round_is_idle_locked_or_failed_and_never_raises(
    fake_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forget.erasure import job
    from forget.erasure.requests import file_request
    from forget.errors import ErasureError, JobLockedError
    from forget.service.ensemble import ServedEnsemble
    from forget.service.metrics import ServiceMetrics
    from forget.service.runner import ErasureRunner, RoundResult

    metrics = ServiceMetrics(fake_workspace)
    runner = ErasureRunner(fake_workspace, ServedEnsemble(fake_workspace), metrics, ServiceSettings(run_every=60))
    assert runner.run_round() is RoundResult.IDLE  # nothing open: no lock taken, no job run
    file_request(fake_workspace, "alice")

    def raising(error: Exception) -> Callable[..., job.RunSummary]:
        def run_job(*args: object, **kwargs: object) -> job.RunSummary:
            raise error

        return run_job

    for error, result in [
        (JobLockedError("another `forget run` is working on this workspace"), RoundResult.LOCKED),
        (ErasureError("the records vanished"), RoundResult.FAILED),
        (RuntimeError("a bug"), RoundResult.FAILED),
    ]:
        monkeypatch.setattr(job, "run_job", raising(error))
        assert runner.run_round() is result
    counted = {
        s.labels["result"]: s.value for m in metrics.runs.collect() for s in m.samples if s.name.endswith("_total")
    }
    assert counted == {"idle": 1.0, "locked": 1.0, "failed": 2.0}
    with pytest.raises(ValueError, match="run_every must be above 0 seconds"):
        ErasureRunner(fake_workspace, runner.ensemble, metrics, ServiceSettings(run_every=0))


# -- the store and the CLI, on SQLite and PostgreSQL --------------------------------------------


@pytest.mark.slow
def test_filing_quarantines_in_the_same_transaction_and_a_run_lifts_it(trained: Path, tmp_path: Path) -> None:
    ws = trained
    workspace = open_workspace(ws)
    holder, nobody = _subjects(ws)[0], "nobody-at-all"
    shards = _shards_of(ws, holder)
    assert shards and quarantined_shards(workspace) == frozenset()
    filed = cli_json("-w", ws, "request", "--subject-id", holder)
    empty = cli_json("-w", ws, "request", "--subject-id", nobody)
    assert quarantined_shards(workspace) == frozenset(shards)
    with workspace.datastore.snapshot() as tx:
        entries = list(workspace.ledger.entries(tx))
    mine = [e for e in entries if e.payload.get("request_id") == filed["request_id"]]
    received = next(e for e in mine if e.kind == "request.received")
    quarantine = entries[received.index + 1]
    assert quarantine.kind == QUARANTINED and quarantine.time == received.time
    assert quarantine.payload == {
        "request_id": filed["request_id"],
        "shards": list(shards),
        "quarantined_at": filed["received_at"],
    }
    nothing = next(e for e in entries if e.kind == QUARANTINED and e.payload["request_id"] == empty["request_id"])
    assert nothing.payload["shards"] == []  # no record of the subject: nothing to quarantine, and it says so

    # `forget predict` answers from the other shards (the mean of their probabilities).
    from forget.training.predict import predict_file

    predicted = predict_file(workspace, ws.parent / "data.csv")
    assert predicted.shards == tuple(s for s in range(SHARDS) if s not in shards)
    assert predicted.probabilities.shape[0] == SHARDS - len(shards)
    printed = cli("-w", ws, "predict", ws.parent / "data.csv").stdout.splitlines()
    first = [float(p) for p in printed[1].split(",")[2:]]
    assert first == pytest.approx(predicted.probabilities.mean(axis=0)[0].tolist(), abs=1e-6)

    cli("-w", ws, "run", "--device", "cpu")
    assert quarantined_shards(workspace) == frozenset()
    assert predict_file(workspace, ws.parent / "data.csv").shards == tuple(range(SHARDS))
    (tmp_path / "operator.pub").write_text(cli("-w", ws, "keys", "public").stdout)
    for request, seconds in ((filed, 0), (empty, 0)):
        certificate = ws / "certificates" / f"{request['request_id']}.json"
        verified = cli_json("certificate", "verify", certificate, "--public-key", tmp_path / "operator.pub")
        assert verified["valid"] and verified["seconds_in_use_after_request"] == seconds
    claims = _statement((ws / "certificates" / f"{filed['request_id']}.json").read_bytes())["predicate"]["request"]
    assert claims["quarantined_shards"] == list(shards) and claims["quarantined_at"] == filed["received_at"]


@pytest.mark.slow
def test_with_every_shard_quarantined_predict_exits_3(trained_sqlite: Path) -> None:
    ws = trained_sqlite
    covered: set[int] = set()
    for subject in _subjects(ws):
        shards = set(_shards_of(ws, subject))
        if shards - covered:
            cli("-w", ws, "request", "--subject-id", subject)
            covered |= shards
        if len(covered) == SHARDS:
            break
    refused = cli("-w", ws, "predict", ws.parent / "data.csv", expect=3)
    assert "all 4 shards are quarantined by open erasure requests" in refused.stderr
    from forget.service.ensemble import ServedEnsemble

    with pytest.raises(AllShardsQuarantinedError, match="every shard is quarantined"):
        ServedEnsemble(open_workspace(ws)).predict(_features(ws, 1))


# -- the service, through real HTTP ---------------------------------------------------------------


class Service:
    """A `forget serve` process and an admin token."""

    def __init__(self, ws: Path, *args: str) -> None:
        self.ws = ws
        self.token = cli_json("-w", ws, "token", "create", "--name", "ops", "--scope", "admin")["token"]
        self.process, self.url = start_server(ws, *args)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def predict(self, rows: list[dict[str, object]]) -> httpx.Response:
        return self.call("POST", "/v1/predict", json={"rows": rows})

    def metric(self, name: str) -> float:
        text = self.call("GET", "/metrics").text
        found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def state(self, request_id: str) -> str:
        state: str = self.call("GET", f"/v1/requests/{request_id}").json()["state"]
        return state

    def certified(self, request_id: str) -> bool:
        return self.call("GET", f"/v1/certificates/{request_id}").status_code == 200

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=60)
        return stderr


@pytest.fixture
def service(trained_sqlite: Path) -> Iterator[Service]:
    running = Service(trained_sqlite, "--run-every", "0.5")
    try:
        yield running
    finally:
        stderr = running.stop()
        assert "person-" not in stderr, stderr  # no subject id in any log line


@pytest.mark.slow
def test_a_request_quarantines_at_once_and_the_service_completes_it(service: Service, tmp_path: Path) -> None:
    ws, rows = service.ws, _features(service.ws)
    assert service.predict(rows).json()["shards"] == list(range(SHARDS))
    subject = _subjects(ws)[0]
    shards = _shards_of(ws, subject)
    others = [s for s in range(SHARDS) if s not in shards]
    received = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    holder = open_workspace(ws)
    with job_lock(holder):  # a cron `forget run` holds the workspace: the service's rounds skip, no error
        filed = service.call("POST", "/v1/requests", json={"subject_id": subject, "received_at": received})
        assert filed.status_code == 201, filed.text
        request_id = filed.json()["request_id"]
        answer = service.predict(rows)
        assert answer.status_code == 200 and answer.json()["shards"] == others
        _wait_for(lambda: service.metric('forget_inprocess_runs_total{result="locked"}') >= 1, "a skipped round")
        assert service.state(request_id) == "pending"
        assert service.metric("forget_shards_quarantined") == len(shards)

    # Released: the next scheduled round carries it out while predictions keep coming, none dropped.
    answers: list[tuple[int, list[int]]] = []
    stop = threading.Event()

    def keep_predicting() -> None:
        while not stop.is_set():
            response = service.predict(rows[:1])
            answers.append((response.status_code, response.json().get("shards", [])))

    thread = threading.Thread(target=keep_predicting)
    thread.start()
    try:
        _wait_for(lambda: service.certified(request_id), "the in-process run's certificate")
    finally:
        stop.set()
        thread.join(60)
    assert answers and {status for status, _ in answers} == {200}
    assert {tuple(shards_) for _, shards_ in answers} <= {tuple(others), tuple(range(SHARDS))}
    assert service.predict(rows).json()["shards"] == list(range(SHARDS))
    assert service.metric("forget_shards_quarantined") == 0
    assert service.metric("forget_erasure_duration_seconds_count") >= 1
    assert service.metric('forget_inprocess_runs_total{result="completed"}') >= 1

    # The certificate verifies offline and says how long the data were in use after the request.
    certificate = service.call("GET", f"/v1/certificates/{request_id}").content
    (tmp_path / "certificate.json").write_bytes(certificate)
    (tmp_path / "operator.pub").write_text(cli("-w", ws, "keys", "public").stdout)
    key = tmp_path / "operator.pub"
    verified = cli_json("certificate", "verify", tmp_path / "certificate.json", "--public-key", key)
    assert verified["valid"] and verified["request_id"] == request_id
    assert 3600 <= verified["seconds_in_use_after_request"] <= 3660  # received an hour before it was filed
    claims = _statement(certificate)["predicate"]["request"]
    assert claims["quarantined_shards"] == list(shards)
    html = service.call("GET", f"/v1/certificates/{request_id}?format=html").text
    assert "after the request was received: shard" in html

    # Every shard quarantined: 503, never an answer from data that must be forgotten.
    with job_lock(holder):
        covered: set[int] = set()
        filed_ids = []
        for other in _subjects(ws)[1:]:
            held = set(_shards_of(ws, other))
            if held - covered:
                response = service.call("POST", "/v1/requests", json={"subject_id": other})
                filed_ids.append(response.json()["request_id"])
                covered |= held
            if len(covered) == SHARDS:
                break
        refused = service.predict(rows)
        assert refused.status_code == 503 and "every shard is quarantined" in refused.json()["error"]
    _wait_for(lambda: all(service.state(r) == "completed" for r in filed_ids), "the requests to complete")
    assert service.predict(rows).json()["shards"] == list(range(SHARDS))


class InProcessServer:
    """`create_app` on uvicorn in a thread of the test, on a loopback port: a real server and real
    HTTP, with the in-process job within reach of a hook (tests/crashing_job.py's seam) when its
    rounds run in a thread, or in the erasure worker with `RunsIn.PROCESS`."""

    def __init__(self, ws: Path, settings: ServiceSettings, runs_in: RunsIn = RunsIn.THREAD) -> None:
        import uvicorn

        from forget.service.app import create_app
        from forget.store.tokens import token_store

        workspace = open_workspace(ws)
        self.token = cli_json("-w", ws, "token", "create", "--name", "ops", "--scope", "admin")["token"]
        self.app = create_app(workspace, token_store(workspace.datastore), settings, runs_in)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        _wait_for(lambda: self.server.started, "the server to start", 30)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def _cron(ws: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli", "-w", str(ws), "run", "--device", "cpu"]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.slow
def test_the_service_and_a_cron_run_take_turns(
    trained_sqlite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One job at a time across both: a cron run while the service's run holds the workspace exits 5
    and changes nothing; predictions go on meanwhile; both then finish, and every certificate verifies."""
    from forget.erasure import job

    ws = trained_sqlite
    inside, proceed = threading.Event(), threading.Event()
    real_run_job = job.run_job

    def pausing_run_job(workspace: Workspace, **kwargs: Any) -> job.RunSummary:
        def at(step: job.Step) -> None:
            if step is job.Step.STARTED and not proceed.is_set():
                inside.set()
                proceed.wait(60)

        return real_run_job(workspace, hooks=job.JobHooks(at=at), **kwargs)

    monkeypatch.setattr(job, "run_job", pausing_run_job)
    server = InProcessServer(ws, ServiceSettings(run_every=0.3, run_after_request=True))
    subjects, rows = _subjects(ws), _features(ws, 2)
    try:
        first = server.call("POST", "/v1/requests", json={"subject_id": subjects[0]}).json()["request_id"]
        _wait_for(inside.is_set, "the service's run to start")
        locked_out = _cron(ws)
        assert locked_out.returncode == 5, locked_out.stderr
        assert "another `forget run`, `train` or `ingest` is working on this workspace" in locked_out.stderr
        answer = server.call("POST", "/v1/predict", json={"rows": rows})
        assert answer.status_code == 200, answer.text  # the other shards answer while it runs
        assert server.call("GET", f"/v1/requests/{first}").json()["state"] == "running"
        proceed.set()
        _wait_for(lambda: server.call("GET", f"/v1/certificates/{first}").status_code == 200, "its certificate")
        # Now the cron run's turn: it carries out what is due, and the service's rounds go on.
        later = [
            server.call("POST", "/v1/requests", json={"subject_id": s}).json()["request_id"] for s in subjects[1:4]
        ]
        ran = _cron(ws)
        assert ran.returncode in (0, 5), ran.stderr
        _wait_for(
            lambda: all(server.call("GET", f"/v1/certificates/{r}").status_code == 200 for r in later),
            "every certificate",
        )
        assert server.call("POST", "/v1/predict", json={"rows": rows}).json()["shards"] == list(range(SHARDS))
    finally:
        proceed.set()
        server.stop()
    (tmp_path / "operator.pub").write_text(cli("-w", ws, "keys", "public").stdout)
    for request_id in [first, *later]:
        certificate = ws / "certificates" / f"{request_id}.json"
        assert cli_json("certificate", "verify", certificate, "--public-key", tmp_path / "operator.pub")["valid"]
    cli("-w", ws, "ledger", "verify")
    # The runs never interleaved: each run's entries, from its first start to its last completion,
    # lie apart from every other run's.
    workspace = open_workspace(ws)
    with workspace.datastore.snapshot() as tx:
        entries = list(workspace.ledger.entries(tx))
    spans: dict[str, list[int]] = {}
    for entry in entries:
        if entry.kind in ("request.started", "request.completed"):
            spans.setdefault(entry.payload["run_id"], []).append(entry.index)
    ordered = sorted((min(v), max(v)) for v in spans.values())
    assert len(ordered) >= 2 and all(a[1] < b[0] for a, b in itertools.pairwise(ordered)), ordered
