"""`forget serve` through real HTTP: a server process on a loopback port, a real client (httpx)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from forget.service.openapi import openapi_document
from tests.conftest import write_tabular_csv
from tests.helpers import cli, cli_json, init_args

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]
pytestmark = pytest.mark.slow


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    workspace: Path
    tokens: dict[str, str]
    seen: dict[tuple[str, str], set[int]] = field(default_factory=dict)

    def call(
        self, method: str, path: str, token: str | None = None, route: str | None = None, **kwargs: object
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        response = httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]
        self.seen.setdefault((route or path.split("?")[0], method.lower()), set()).add(response.status_code)
        return response


def start_server(ws: Path, *args: str, log: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """A real `forget serve` on a free loopback port; its stderr to `log` when given (a server that
    logs for long would fill a pipe nobody reads, and stall)."""
    with open(log, "w") if log is not None else contextlib.nullcontext() as file:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "-w", str(ws), "serve", "--port", "0", "--device", "cpu", *args],
            stdout=subprocess.PIPE,
            stderr=file if log is not None else subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
    if found is None:
        process.kill()
        logged = log.read_text() if log is not None else process.stderr.read() if process.stderr else ""
        raise AssertionError(f"no address from forget serve: {line!r} {logged}")
    return process, found.group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    ws = tmp / "ws"
    write_tabular_csv(tmp / "data.csv", rows=160)
    cli(*init_args(ws, "sqlite:///forget.db"))
    cli("-w", ws, "ingest", tmp / "data.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")
    tokens = {}
    for name, scope in [
        ("portal", "requests:write"),
        ("reader", "requests:read"),
        ("model", "predict"),
        ("auditor", "certificates:read"),
        ("ops", "admin"),
    ]:
        tokens[name] = cli_json("-w", ws, "token", "create", "--name", name, "--scope", scope)["token"]
    # The tests below run `forget run` themselves (tests/service/test_quarantine.py has in-process runs).
    process, url = start_server(ws, "--no-run-after-request")
    server = Server(url, process, ws, tokens)
    yield server
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    # The access log names routes and tokens, never a subject id.
    assert "person-" not in stderr, stderr
    assert "/v1/requests" in stderr
    documented = {(path, method) for path, ops in openapi_document()["paths"].items() for method in ops}
    for (route, method), statuses in server.seen.items():
        assert (route, method) in documented, route
        allowed = set(openapi_document()["paths"][route][method]["responses"])
        assert {str(s) for s in statuses} <= allowed, (route, method, statuses, allowed)


def test_probes_and_the_openapi_document_need_no_token(server: Server) -> None:
    assert server.call("GET", "/healthz").json() == {"status": "ok"}
    assert server.call("GET", "/readyz").json() == {"status": "ready"}
    assert server.call("GET", "/openapi.json").json() == json.loads(json.dumps(openapi_document()))


def test_no_token_is_401_and_the_wrong_scope_403(server: Server) -> None:
    assert server.call("GET", "/v1/requests").status_code == 401
    bogus = httpx.get(server.url + "/v1/requests", headers={"Authorization": "Bearer fgt_" + "A" * 43})
    assert bogus.status_code == 401
    assert server.call("GET", "/v1/requests", "model").status_code == 403
    assert server.call("POST", "/v1/requests", "reader", json={"subject_id": "person-0003"}).status_code == 403
    assert server.call("POST", "/v1/predict", "portal", json={"rows": [{}]}).status_code == 403


def test_a_request_is_filed_once_listed_and_shown(server: Server) -> None:
    first = server.call("POST", "/v1/requests", "portal", json={"subject_id": "person-0003", "note": "DSAR-17"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["state"] == "pending" and re.fullmatch(r"req_[0-9a-f]{16}", body["request_id"])
    assert "person-0003" not in first.text
    again = server.call("POST", "/v1/requests", "portal", json={"subject_id": " PERSON-0003 "})
    assert again.status_code == 200 and again.json()["request_id"] == body["request_id"]
    listed = server.call("GET", "/v1/requests?state=pending", "reader", route="/v1/requests").json()["requests"]
    assert body["request_id"] in {r["request_id"] for r in listed}
    shown = server.call("GET", f"/v1/requests/{body['request_id']}", "reader", route="/v1/requests/{request_id}")
    assert shown.json()["deadline"] == body["deadline"]
    # The CLI sees the same durable request.
    assert any(r["request_id"] == body["request_id"] for r in cli_json("-w", server.workspace, "status")["requests"])


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "subject_id must be a string"),
        ({"subject_id": 7}, "subject_id must be a string"),
        ({"subject_id": "a\tb"}, "control"),
        ({"subject_id": "x", "extra": 1}, "unknown field 'extra'"),
        ({"subject_id": "x", "received_at": "2999-01-01T00:00:00Z"}, "in the future"),
    ],
)
def test_bad_requests_are_422_and_record_nothing(server: Server, body: dict[str, object], message: str) -> None:
    before = len(cli_json("-w", server.workspace, "status")["requests"])
    response = server.call("POST", "/v1/requests", "portal", json=body)
    assert response.status_code == 422 and message in response.json()["error"], response.text
    assert len(cli_json("-w", server.workspace, "status")["requests"]) == before


def test_a_body_that_is_not_json_is_400(server: Server) -> None:
    response = server.call("POST", "/v1/requests", "portal", content=b"subject_id=x")
    assert response.status_code == 400


def test_unknown_requests_and_missing_certificates_are_404(server: Server) -> None:
    assert (
        server.call("GET", "/v1/requests/req_0000000000000000", "reader", route="/v1/requests/{request_id}").status_code
        == 404
    )
    filed = server.call("POST", "/v1/requests", "portal", json={"subject_id": "person-0010"}).json()
    response = server.call(
        "GET", f"/v1/certificates/{filed['request_id']}", "auditor", route="/v1/certificates/{request_id}"
    )
    assert response.status_code == 404 and "no certificate yet" in response.json()["error"]


def test_predict_answers_with_every_shard_but_the_quarantined(server: Server) -> None:
    from forget.erasure.quarantine import quarantined_shards
    from forget.workspace.core import open_workspace

    rows = [{k: v for k, v in row.items() if k not in ("subject", "label", "record")} for row in _rows(server)[:5]]
    response = server.call("POST", "/v1/predict", "model", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    # Requests filed by the tests above are open: their subjects' shards are out until `forget run`.
    quarantined = quarantined_shards(open_workspace(server.workspace))
    assert len(body["predictions"]) == 5 and body["shards"] == [s for s in range(4) if s not in quarantined]
    missing = server.call("POST", "/v1/predict", "model", json={"rows": [{"nothing": 1}]})
    assert missing.status_code == 422


def test_a_completed_request_has_its_certificate_in_every_format(server: Server) -> None:
    filed = server.call("POST", "/v1/requests", "portal", json={"subject_id": "person-0042"}).json()
    cli("-w", server.workspace, "run", "--device", "cpu")
    path = f"/v1/certificates/{filed['request_id']}"
    route = "/v1/certificates/{request_id}"
    certificate = server.call("GET", path, "auditor", route=route)
    assert certificate.status_code == 200 and certificate.json()["payloadType"] == "application/vnd.in-toto+json"
    html = server.call("GET", path + "?format=html", "auditor", route=route)
    assert html.status_code == 200 and "<html" in html.text.lower()
    assert "forget.toml names none" in html.text  # rendered in the workspace, which names no organisation
    assert server.call("GET", path + "?format=xml", "auditor", route=route).status_code == 422
    head = server.call("GET", "/v1/ledger/head", "auditor")
    assert head.status_code == 200 and head.text.count("\n") >= 4
    # The predictions after the run come from the retrained models (the log grew: they were reloaded).
    rows = [{k: v for k, v in row.items() if k not in ("subject", "label", "record")} for row in _rows(server)[:2]]
    assert server.call("POST", "/v1/predict", "model", json={"rows": rows}).status_code == 200


def test_metrics_are_prometheus_text(server: Server) -> None:
    text = server.call("GET", "/metrics", "ops").text
    for name in [
        "forget_requests_pending",
        "forget_requests_overdue",
        "forget_oldest_pending_request_age_seconds",
        "forget_ledger_entries",
        "forget_shards_retraining",
        "forget_http_request_duration_seconds_bucket",
        "forget_last_completed_request_timestamp_seconds",
    ]:
        assert re.search(rf"^{name}", text, re.M), name
    assert server.call("GET", "/metrics", "model").status_code == 403


def _rows(server: Server) -> list[dict[str, object]]:
    import csv

    def value(text: str) -> object:
        try:
            return float(text)
        except ValueError:
            return text

    with (server.workspace.parent / "data.csv").open() as handle:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_a_revoked_token_is_401_at_once(server: Server) -> None:
    created = cli_json("-w", server.workspace, "token", "create", "--name", "temp", "--scope", "requests:read")
    server.tokens["temp"] = created["token"]
    assert server.call("GET", "/v1/requests", "temp").status_code == 200
    listed = cli_json("-w", server.workspace, "token", "list")
    assert {"token_id": created["token_id"], "name": "temp"}.items() <= next(
        t for t in listed if t["token_id"] == created["token_id"]
    ).items()
    assert created["token"] not in json.dumps(listed)
    cli("-w", server.workspace, "token", "revoke", created["token_id"])
    assert server.call("GET", "/v1/requests", "temp").status_code == 401
    assert cli("-w", server.workspace, "token", "revoke", created["token_id"], expect=2).stderr.startswith("error:")


def test_no_token_no_public_address(tmp_path: Path) -> None:
    cli(*init_args(tmp_path / "ws", "sqlite:///forget.db"))
    refused = cli("-w", tmp_path / "ws", "serve", "--host", "0.0.0.0", "--port", "0", expect=3)
    assert "refusing to listen on 0.0.0.0 with no API token" in refused.stderr
    bad = cli("-w", tmp_path / "ws", "token", "create", "--name", "x", "--scope", "everything", expect=2)
    assert "unknown scope 'everything'" in bad.stderr


def test_every_acknowledged_request_survives_a_kill_and_a_flood_is_429(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    token = cli_json("-w", ws, "token", "create", "--name", "portal", "--scope", "requests:write")["token"]
    process, url = start_server(ws, "--request-burst", "4", "--request-rate", "0.01", "--no-run-after-request")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        acknowledged = []
        for n in range(4):
            response = httpx.post(f"{url}/v1/requests", json={"subject_id": f"user-{n}"}, headers=headers, timeout=30)
            assert response.status_code == 201, response.text
            acknowledged.append(response.json()["request_id"])
        flooded = httpx.post(f"{url}/v1/requests", json={"subject_id": "user-9"}, headers=headers, timeout=30)
        assert flooded.status_code == 429 and int(flooded.headers["Retry-After"]) >= 1
    finally:
        process.kill()  # SIGKILL right after the last 201
        process.communicate(timeout=30)
    stored = [r["request_id"] for r in cli_json("-w", ws, "status")["requests"]]
    assert sorted(stored) == sorted(acknowledged)
    cli("-w", ws, "ledger", "verify")
