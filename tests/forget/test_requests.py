"""Request lifecycle: deadlines (Art. 12(3)), idempotency, extension, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forget.erasure.job import parse_duration
from forget.erasure.requests import add_months, extend_request, file_request, list_requests, parse_time
from forget.errors import InputError
from forget.workspace.core import open_workspace
from tests.helpers import cli, init_args


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)), st.integers(0, 24))
def test_add_months_lands_in_the_right_month_and_never_overshoots(moment: datetime, months: int) -> None:
    later = add_months(moment, months)
    assert (later.year * 12 + later.month) - (moment.year * 12 + moment.month) == months
    assert later.day <= moment.day and later.time() == moment.time()


def test_month_ends_clamp() -> None:
    assert add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2027, 12, 15, tzinfo=UTC), 1) == datetime(2028, 1, 15, tzinfo=UTC)


def test_durations_and_times() -> None:
    assert parse_duration("7d") == timedelta(days=7) and parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration("30m") == timedelta(minutes=30)
    with pytest.raises(InputError, match="not a duration"):
        parse_duration("soon")
    assert parse_time("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    with pytest.raises(InputError, match="not an ISO 8601"):
        parse_time("yesterday")


def test_filing_is_idempotent_and_extension_is_bounded(tmp_path: Path) -> None:
    cli(*init_args(tmp_path / "ws", "sqlite:///forget.db"))
    ws = open_workspace(tmp_path / "ws")
    received = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    first, created = file_request(ws, "  alice  ", received)
    again, created_again = file_request(ws, "alice")
    assert created and not created_again and again.request_id == first.request_id
    assert first.deadline == add_months(received, 1)
    assert "alice" not in first.subject_key
    extended = extend_request(ws, first.request_id, 1, "many requests this month")
    assert extended.deadline == add_months(received, 2)
    assert extend_request(ws, first.request_id, 1, "still complex").deadline == add_months(received, 3)
    with pytest.raises(InputError, match="allows 2 in all"):
        extend_request(ws, first.request_id, 1, "more")
    with pytest.raises(InputError, match="needs a --reason"):
        extend_request(ws, first.request_id, 1, " ")
    assert [r.request_id for r in list_requests(ws, subject_id="alice")] == [first.request_id]
    assert list_requests(ws, subject_id="bob") == []
    late, _ = file_request(ws, "bob", received - timedelta(days=40))
    with pytest.raises(InputError, match="within one month of receipt"):
        extend_request(ws, late.request_id, 1, "too late to tell them")
    with ws.datastore.engine.connect() as connection:
        kinds = [e.kind for e in ws.ledger.entries(connection)]
    assert kinds == [
        "workspace.initialized",
        "request.received",
        "request.quarantined",  # with the receipt, in its transaction (forget.erasure.quarantine)
        "request.extended",
        "request.extended",
        "request.received",
        "request.quarantined",
    ]


def test_callers_filing_for_one_subject_at_the_same_moment_make_one_request(tmp_path: Path, database_url: str) -> None:
    """Two portals (or service threads) racing past the pending check: the database's one-open-request
    index turns the loser's insert into the winner's request, and the ledger logs one receipt."""
    import threading

    from forget.audit.ledger_view import entries

    cli(*init_args(tmp_path / "ws", database_url))
    ws = open_workspace(tmp_path / "ws")
    barrier = threading.Barrier(6)
    results: list[tuple[str, bool]] = []

    def file() -> None:
        mine = open_workspace(tmp_path / "ws")
        barrier.wait()
        request, created = file_request(mine, "carol")
        results.append((request.request_id, created))

    threads = [threading.Thread(target=file) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({request_id for request_id, _ in results}) == 1, results
    assert sum(created for _, created in results) == 1
    assert [e.kind for e in entries(ws, "request.received")] == ["request.received"]


def test_filings_for_different_subjects_at_the_same_moment_keep_the_ledger_whole(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent appenders number their entries in turn: each payload's index is its stored index.

    The log's size is read, then both filers meet (a barrier with a timeout): had the size been
    read before the table lock (as it once was on PostgreSQL), both would number from the same
    size and the second's entries would disagree with their stored indices for good.
    """
    import contextlib
    import threading

    from ledger import store as ledger_store

    cli(*init_args(tmp_path / "ws", database_url))
    workspaces = [open_workspace(tmp_path / "ws") for _ in range(2)]
    meet = threading.Barrier(2, timeout=2)
    read_size = ledger_store.size

    def size_then_meet(connection: object) -> int:
        found = read_size(connection)  # type: ignore[arg-type]
        if threading.current_thread().name.startswith("filer"):
            # Broken when the other filer waits for the lock this one holds: as it should.
            with contextlib.suppress(threading.BrokenBarrierError):
                meet.wait()
        return found

    monkeypatch.setattr(ledger_store, "size", size_then_meet)
    failures: list[BaseException] = []

    def file(n: int) -> None:
        try:
            file_request(workspaces[n], f"dave-{n}")
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=file, args=(n,), name=f"filer-{n}") for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    assert failures == []
    assert len(list_requests(open_workspace(tmp_path / "ws"))) == 2
    cli("-w", tmp_path / "ws", "ledger", "verify")
