"""SQLite locking: writers queue at BEGIN (IMMEDIATE), readers do not wait for them.

A prediction or `forget status` reads while `forget run` holds a write transaction open for its
erasure step: the read must answer at once from the last committed state, not queue behind the
writer (it did, when every transaction took the write lock as it began).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from forget.store.datastore import open_datastore
from forget.store.interface import RequestRow

ROW = RequestRow(
    request_id="req_0000000000000001",
    subject_key="ab" * 32,
    state="pending",
    received_at="2026-11-29T00:00:00Z",
    deadline="2026-12-29T00:00:00Z",
    extended_months=0,
    run_id=None,
    records_erased=None,
    shards=None,
    completed_at=None,
    outcome=None,
    note=None,
)


def test_a_read_does_not_wait_for_an_open_write_and_sees_the_committed_state(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'forget.db'}"
    writer = open_datastore(url, must_exist=False)
    writer.create_schema()
    reader = open_datastore(url, must_exist=True)
    written = threading.Event()
    release = threading.Event()

    def write() -> None:
        with writer.transaction() as tx:
            writer.add_request(tx, ROW)
            written.set()
            release.wait(30)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert written.wait(10)
        started = time.monotonic()
        assert reader.get_request(ROW.request_id) is None  # not committed yet
        with reader.snapshot() as tx:
            assert reader.all_requests(tx) == []
        assert time.monotonic() - started < 2.0, "the read queued behind the open write transaction"
    finally:
        release.set()
        thread.join(30)
    assert reader.get_request(ROW.request_id) == ROW
    writer.close()
    reader.close()


def test_writers_still_queue_at_begin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'forget.db'}"
    first = open_datastore(url, must_exist=False)
    first.create_schema()
    second = open_datastore(url, must_exist=True)
    order: list[str] = []
    holding = threading.Event()

    def hold() -> None:
        with first.transaction() as tx:
            first.add_request(tx, ROW)
            holding.set()
            time.sleep(0.5)
            order.append("first committed")

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    with second.transaction() as tx:  # BEGIN IMMEDIATE waits for the first writer
        order.append("second began")
        assert second.get_request(ROW.request_id, tx) == ROW
    thread.join(30)
    assert order == ["first committed", "second began"]
    first.close()
    second.close()
