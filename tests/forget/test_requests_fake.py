"""The request lifecycle on the in-memory store and ledger (tests/fakes.py): no database, no torch.

Filing (idempotent while a request is open), the Art. 12(3) deadline and its extension, overdue
requests, the status listing, and the check of the requests table against the ledger, each
through the application's own functions on `fake_workspace`. The same lifecycle runs once more
in a fresh interpreter to show it imports neither torch nor a database driver.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forget.erasure.reconcile import RequestMismatchError, reconcile_requests
from forget.erasure.requests import (
    RequestState,
    UnknownRequestError,
    add_months,
    extend_request,
    file_request,
    get_request,
    list_requests,
)
from forget.errors import InputError
from forget.workspace.core import Workspace
from ledger.evidence import decode_entry
from tests.fakes import FakeLedger, FakeStore

ROOT = Path(__file__).resolve().parents[2]


def _store(workspace: Workspace) -> FakeStore:
    store = workspace.datastore
    assert isinstance(store, FakeStore)
    return store


def _kinds(workspace: Workspace) -> list[str]:
    return [stored.kind for stored in _store(workspace).entries]


def test_filing_stores_a_keyed_row_and_its_receipt_in_one_unit_of_work(fake_workspace: Workspace) -> None:
    received = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    request, created = file_request(fake_workspace, "  Alice@Example.org ", received, note="ticket 7")
    store = _store(fake_workspace)
    assert created and request.state is RequestState.PENDING
    assert request.deadline == add_months(received, 1) and not request.overdue(datetime.now(UTC))
    assert list(store.requests) == [request.request_id] and store.transactions == 2  # the row, then the head
    row = store.requests[request.request_id]
    assert "alice" not in row.subject_key.lower() and row.note == "ticket 7"
    assert _kinds(fake_workspace) == ["request.received", "request.quarantined"]  # one unit of work, one time
    [entry, quarantine] = [decode_entry(stored.entry) for stored in store.entries]
    assert entry.kind == "request.received" and entry.payload.to_payload()["request_id"] == request.request_id
    assert quarantine.time == entry.time and quarantine.payload.to_payload()["shards"] == []  # no records held
    assert b"ticket 7" not in store.entries[0].entry and b"lice" not in store.entries[0].entry
    assert store.entries[0].request_id == request.request_id  # the index copy the certificates read
    assert store.heads[-1].size == 2  # filing signs a head


def test_an_open_request_is_reused_until_it_completes(fake_workspace: Workspace) -> None:
    first, created = file_request(fake_workspace, "alice")
    again, created_again = file_request(fake_workspace, " alice ")
    assert created and not created_again and again.request_id == first.request_id
    assert _kinds(fake_workspace) == ["request.received", "request.quarantined"]
    store = _store(fake_workspace)
    with store.transaction() as tx:  # as `forget run` leaves it
        store.update_request(tx, first.request_id, state="completed", outcome="no_data", records_erased=0,
                             completed_at="2030-01-01T00:00:00Z")  # fmt: skip
    later, created_later = file_request(fake_workspace, "alice")
    assert created_later and later.request_id != first.request_id


def test_a_failed_ledger_append_leaves_no_request_row(
    fake_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("the anchor cannot be written")

    monkeypatch.setattr(FakeLedger, "append", refuse)
    with pytest.raises(OSError, match="anchor cannot be written"):
        file_request(fake_workspace, "alice")
    assert _store(fake_workspace).requests == {} and list_requests(fake_workspace) == []


def test_extension_moves_the_deadline_at_most_two_months_within_the_first_month(fake_workspace: Workspace) -> None:
    received = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    request, _ = file_request(fake_workspace, "alice", received)
    extended = extend_request(fake_workspace, request.request_id, 1, "a complex request: many systems")
    assert extended.deadline == add_months(received, 2) and extended.extended_months == 1
    assert extended.extension_reason == "a complex request: many systems"
    assert extend_request(fake_workspace, request.request_id, 1, "still complex").deadline == add_months(received, 3)
    with pytest.raises(InputError, match=r"already extended by 2 month\(s\); Art. 12\(3\) allows 2 in all"):
        extend_request(fake_workspace, request.request_id, 1, "more")
    with pytest.raises(InputError, match="needs a --reason"):
        extend_request(fake_workspace, request.request_id, 1, "  ")
    with pytest.raises(InputError, match="--months must be 1 or 2"):
        extend_request(fake_workspace, request.request_id, 3, "long")
    store = _store(fake_workspace)
    assert _kinds(fake_workspace) == ["request.received", "request.quarantined", "request.extended", "request.extended"]
    assert all(b"complex" not in stored.entry for stored in store.entries)  # the ledger holds the reason's digest
    late, _ = file_request(fake_workspace, "bob", received - timedelta(days=40))
    with pytest.raises(InputError, match="within one month of receipt"):
        extend_request(fake_workspace, late.request_id, 1, "too late to tell them")
    with pytest.raises(UnknownRequestError, match="no erasure request req_0123456789abcdef in this workspace"):
        extend_request(fake_workspace, "req_0123456789abcdef", 1, "which one?")


def test_overdue_and_the_status_listing(fake_workspace: Workspace) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    late, _ = file_request(fake_workspace, "bob", now - timedelta(days=40))
    fresh, _ = file_request(fake_workspace, "alice", now - timedelta(days=1))
    listed = list_requests(fake_workspace)
    assert [r.request_id for r in listed] == [late.request_id, fresh.request_id]  # by deadline
    overdue = [r.request_id for r in listed if r.state is not RequestState.COMPLETED and r.overdue(now)]
    assert overdue == [late.request_id]
    shown = late.to_dict(now)
    assert shown["overdue"] is True and shown["days_left"] < 0 and shown["state"] == "pending"
    assert fresh.to_dict(now)["overdue"] is False and 28 <= fresh.to_dict(now)["days_left"] <= 30
    assert [r.request_id for r in list_requests(fake_workspace, subject_id="ALICE ")] == [fresh.request_id]
    assert list_requests(fake_workspace, subject_id="carol") == []
    assert list_requests(fake_workspace, request_id=late.request_id) == [get_request(fake_workspace, late.request_id)]
    with pytest.raises(UnknownRequestError, match="no erasure request with that id"):
        list_requests(fake_workspace, request_id="alice@example.org")


def test_the_table_is_checked_against_the_ledger(fake_workspace: Workspace) -> None:
    request, _ = file_request(fake_workspace, "alice")
    extend_request(fake_workspace, request.request_id, 2, "complex")
    assert reconcile_requests(fake_workspace) == 1
    store = _store(fake_workspace)
    with store.transaction() as tx:  # someone with write access postpones the erasure
        store.update_request(tx, request.request_id, deadline="2099-01-01T00:00:00Z")
    with pytest.raises(RequestMismatchError, match=f"request {request.request_id}: its deadline in the requests table"):
        reconcile_requests(fake_workspace)


LIFECYCLE = """
import json, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tests.fakes import make_fake_workspace
from forget.erasure.requests import extend_request, file_request, list_requests
from forget.erasure.reconcile import reconcile_requests
ws = make_fake_workspace(Path(sys.argv[1]))
now = datetime.now(UTC)
request, created = file_request(ws, "alice", now - timedelta(days=2))
again, created_again = file_request(ws, "alice")
extend_request(ws, request.request_id, 1, "complex")
file_request(ws, "bob", now - timedelta(days=40))
overdue = [r.request_id for r in list_requests(ws) if r.overdue(now)]
agree = reconcile_requests(ws)
loaded = sorted(m for m in ("torch", "sqlite3", "psycopg", "psycopg2", "numpy") if m in sys.modules)
print(json.dumps({"created": [created, created_again], "overdue": len(overdue), "agree": agree, "loaded": loaded}))
"""


def test_the_lifecycle_needs_neither_torch_nor_a_database(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LIFECYCLE), str(tmp_path / "ws")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"created": [True, False], "overdue": 1, "agree": 2, "loaded": []}
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["keys"]  # no database file either
