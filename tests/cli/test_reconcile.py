"""A request deleted from its table, or edited there, does not disappear: the ledger remembers it.

The attacker can write the `requests` table (not the append-only ledger). `status`, `run` and
`ledger verify` compare every row with the request entries of the log and stop with exit 1,
one line naming the request id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

import forget.erasure.job
from forget.erasure import reconcile
from forget.erasure.reconcile import RequestMismatchError, reconcile_requests
from forget.workspace.core import open_workspace
from tests.conftest import write_tabular_csv
from tests.helpers import WorkspaceCache, cli, cli_json, init_args

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]
PRESENT = "person-0046"


def execute(ws: Path, sql: str, **params: object) -> None:
    """As the attacker: a statement on the workspace's database, outside forget."""
    engine = open_workspace(ws).datastore.engine
    with engine.begin() as connection:
        connection.execute(sa.text(sql), params)
    engine.dispose()


def ledger_size(ws: Path) -> int:
    return len(cli("-w", ws, "ledger", "show", "--json").stdout.splitlines())


def train_workspace(root: Path, database_url: str) -> None:
    write_tabular_csv(root / "data.csv", rows=150)
    ws = root / "ws"
    cli(*init_args(ws, database_url))
    cli("-w", ws, "ingest", root / "data.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")


@pytest.fixture
def workspace(tmp_path: Path, database_url: str, built: WorkspaceCache) -> Path:
    """A trained workspace of its own: on SQLite built once per session and copied here."""
    if database_url.startswith("sqlite"):
        built.copy("reconcile-trained", lambda root: train_workspace(root, database_url), tmp_path)
    else:
        train_workspace(tmp_path, database_url)
    return tmp_path / "ws"


def test_requests_that_agree_with_the_ledger_pass_in_every_state(workspace: Path) -> None:
    ws = workspace
    erased = cli_json("-w", ws, "request", "--subject-id", PRESENT)["request_id"]
    cli_json("-w", ws, "request", "--subject-id", "nobody-held")
    cli("-w", ws, "request", "extend", erased, "--months", "1", "--reason", "complex request")
    assert cli_json("-w", ws, "status")["overdue"] == 0
    cli("-w", ws, "ledger", "verify")
    cli("-w", ws, "run", "--device", "cpu")
    assert {r["state"] for r in cli_json("-w", ws, "status")["requests"]} == {"completed"}
    cli("-w", ws, "ledger", "verify")
    assert reconcile_requests(open_workspace(ws)) == 2


TAMPERING = {
    "deleted": (
        "DELETE FROM requests WHERE request_id = :r",
        " is in the ledger (request.received, entry {index}) but missing from the requests table",
    ),
    "deadline": (
        "UPDATE requests SET deadline = '2099-01-01T00:00:00Z' WHERE request_id = :r",
        ": its deadline in the requests table differs from the ledger's ('{deadline}')",
    ),
    "completed": (
        "UPDATE requests SET state = 'completed', outcome = 'no_data', records_erased = 0,"
        " completed_at = received_at WHERE request_id = :r",
        ": its state in the requests table differs from the ledger's ('pending')",
    ),
}


@pytest.mark.parametrize("change", sorted(TAMPERING))
def test_a_request_deleted_or_edited_in_its_table_is_caught_by_status_run_and_ledger_verify(
    workspace: Path, change: str
) -> None:
    ws = workspace
    filed = cli_json("-w", ws, "request", "--subject-id", PRESENT, "--received-at", "2026-01-05T10:00:00Z")
    request_id = filed["request_id"]
    index = next(
        json.loads(line)["index"]
        for line in cli("-w", ws, "ledger", "show", "--json", "--kind", "request.received").stdout.splitlines()
    )
    assert cli("-w", ws, "status", expect=4)  # overdue since February: the honest table says so
    sql, message = TAMPERING[change]
    execute(ws, sql, r=request_id)
    expected = f"error: request {request_id}" + message.format(index=index, deadline=filed["deadline"])
    size = ledger_size(ws)
    for command in (["status"], ["status", "--json"], ["run", "--device", "cpu"], ["ledger", "verify"]):
        result = cli("-w", ws, *command, expect=1)
        assert result.stderr == expected + "\n", (command, result.stderr)
    assert ledger_size(ws) == size, "run must stop before it writes anything"
    with pytest.raises(RequestMismatchError, match=f"^request {request_id}[ :]"):
        reconcile_requests(open_workspace(ws))


def test_a_row_the_ledger_never_received_is_reported_without_echoing_its_id(workspace: Path) -> None:
    ws = workspace
    real = cli_json("-w", ws, "request", "--subject-id", PRESENT)["request_id"]
    columns = "request_id, subject_key, state, received_at, deadline, extended_months"
    # Forged rows for other subjects (one open request per subject is a database rule).
    for request_id, key in (("req_00000000000000aa", "a" * 64), ("person-0046@example.org", "b" * 64)):
        execute(ws, f"INSERT INTO requests ({columns}) SELECT :new, :key, state, received_at, deadline, 0"
                " FROM requests WHERE request_id = :r", new=request_id, key=key, r=real)  # fmt: skip
    result = cli("-w", ws, "status", expect=1)
    assert result.stderr == (
        "error: request with a malformed id is in the requests table, but the ledger never received it"
        " (1 more requests disagree)\n"
    )
    execute(ws, "DELETE FROM requests WHERE request_id = 'person-0046@example.org'")
    result = cli("-w", ws, "ledger", "verify", expect=1)
    assert result.stderr == (
        "error: request req_00000000000000aa is in the requests table, but the ledger never received it\n"
    )


def test_an_extension_or_a_completion_undone_in_the_table_is_caught(workspace: Path) -> None:
    ws = workspace
    request_id = cli_json("-w", ws, "request", "--subject-id", PRESENT)["request_id"]
    cli("-w", ws, "request", "extend", request_id, "--months", "2", "--reason", "complex request")
    execute(ws, "UPDATE requests SET extended_months = 0 WHERE request_id = :r", r=request_id)
    assert f"request {request_id}: its extended_months in the requests table differs from the ledger's (2)" in (
        cli("-w", ws, "status", expect=1).stderr
    )
    execute(ws, "UPDATE requests SET extended_months = 2 WHERE request_id = :r", r=request_id)
    cli("-w", ws, "run", "--device", "cpu")
    execute(ws, "UPDATE requests SET outcome = 'no_data' WHERE request_id = :r", r=request_id)
    assert f"request {request_id}: its outcome in the requests table differs from the ledger's ('erased')" in (
        cli("-w", ws, "ledger", "verify", expect=1).stderr
    )


def test_the_entry_kinds_are_the_job_s() -> None:
    assert (reconcile.STARTED, reconcile.COMPLETED) == (forget.erasure.job.STARTED, forget.erasure.job.COMPLETED)
