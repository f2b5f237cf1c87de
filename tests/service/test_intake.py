"""Intake under load: a SIGKILL in the middle of concurrent filings loses no acknowledged request and
files none twice (issue 13, item 5; benchmarks/bench_service.py does the same with 1,000 requests)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_tabular_csv
from tests.helpers import cli, cli_json, init_args
from tests.service.test_server import start_server

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]
REQUESTS, CLIENTS = 200, 10
NO_LIMIT = ("--no-run-after-request", "--request-rate", "100000", "--request-burst", "100000")


@pytest.mark.slow
def test_a_kill_mid_stream_loses_no_acknowledged_request_and_files_none_twice(
    tmp_path: Path, database_url: str
) -> None:
    ws = tmp_path / "ws"
    data = write_tabular_csv(tmp_path / "data.csv", rows=160)
    cli(*init_args(ws, database_url))
    cli("-w", ws, "ingest", tmp_path / "data.csv", *COLUMNS)
    token = cli_json("-w", ws, "token", "create", "--name", "portal", "--scope", "requests:write")["token"]
    headers = {"Authorization": f"Bearer {token}"}
    # The data's subjects (each filing quarantines a shard in its transaction), then people with no records.
    known = sorted({row["subject"] for row in data})
    subjects = [*known, *(f"nobody-{n:04d}" for n in range(REQUESTS - len(known)))]
    queue = list(reversed(subjects))
    acknowledged: dict[str, str] = {}  # subject -> the request id of its 201
    sent: set[str] = set()
    unexpected: list[str] = []
    lock, killed = threading.Lock(), threading.Event()
    process, url = start_server(ws, *NO_LIMIT)

    def client() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            while not killed.is_set():
                with lock:
                    if not queue:
                        return
                    subject = queue.pop()
                    sent.add(subject)
                try:
                    response = http.post("/v1/requests", json={"subject_id": subject})
                except httpx.TransportError:
                    return  # the server is gone: this filing was never acknowledged
                with lock:
                    if response.status_code != 201:
                        unexpected.append(f"{response.status_code} {response.text}")
                        return
                    acknowledged[subject] = response.json()["request_id"]
                    if len(acknowledged) == REQUESTS // 2:
                        process.send_signal(signal.SIGKILL)  # while the other clients' calls are in flight
                        killed.set()

    try:
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert not unexpected, unexpected[0]
    # Answers already on the wire when the kill landed count as acknowledged too: at least half.
    assert killed.is_set() and len(acknowledged) >= REQUESTS // 2

    stored = cli_json("-w", ws, "status")["requests"]
    ids = [r["request_id"] for r in stored]
    keys = [r["subject_key"] for r in stored]
    assert set(acknowledged.values()) <= set(ids)  # every 201 survived the kill
    assert len(set(ids)) == len(ids) and len(set(keys)) == len(keys)  # none twice
    assert len(stored) <= len(sent)  # and the extra ones were at least sent (in flight at the kill)

    # A restarted server takes every filing again: the acknowledged ones answer 200 with their request.
    process, url = start_server(ws, *NO_LIMIT)
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            for subject in subjects:
                response = http.post("/v1/requests", json={"subject_id": subject})
                assert response.status_code in (200, 201), response.text
                if subject in acknowledged:
                    assert response.status_code == 200 and response.json()["request_id"] == acknowledged[subject]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    final = cli_json("-w", ws, "status")["requests"]
    assert len(final) == REQUESTS and len({r["subject_key"] for r in final}) == REQUESTS
    cli("-w", ws, "ledger", "verify")
