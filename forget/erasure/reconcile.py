"""The mutable tables agree with the ledger before anything relies on them.

`forget status` reads deadlines from the `requests` table and `forget run` selects what is due
from it, yet every change of a row is logged in the same transaction: request.received (subject
key, receipt, deadline), request.extended (new deadline), request.started (running) and
request.completed (outcome, records, completion). A row deleted or edited by someone with write
access to the database would silently drop or postpone an erasure. So `status`, `run` and
`ledger verify` replay those entries (one query) and compare every row: a request the log knows
and the table lacks, a row the log never received, or a subject key, receipt, deadline, extension,
state, outcome, record count or completion time that differs stops the command with
`RequestMismatchError` (exit 1), one line naming the request id and the field, never the subject
key. `run` and `ledger verify` also check the checkpoints table (forget.training.trust).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forget.erasure.requests import EXTENDED, RECEIVED, RequestState
from forget.errors import VerificationFailedError
from forget.store.interface import UnreadableEntryError
from forget.training.trust import verify_checkpoint_table
from ledger.evidence import EntryKind

if TYPE_CHECKING:
    from forget.store.interface import RequestRow, Transaction
    from forget.workspace.core import Workspace

STARTED = EntryKind.REQUEST_STARTED.value
COMPLETED = EntryKind.REQUEST_COMPLETED.value
REQUEST_KINDS = (RECEIVED, EXTENDED, STARTED, COMPLETED)


class RequestMismatchError(VerificationFailedError):
    """The requests table disagrees with the ledger's request entries."""


@dataclass
class LoggedRequest:
    """One request as its ledger entries describe it, folded in log order."""

    request_id: str
    received_index: int | None = None
    values: dict[str, Any] = field(default_factory=dict)
    """Column name -> the value the table must hold."""

    def expected_state(self) -> str:
        """The state the row must hold: pending until an entry says otherwise; raises nothing."""
        return str(self.values.get("state", RequestState.PENDING.value))


def fold_request_entries(rows: Iterable[Sequence[Any]]) -> dict[str, LoggedRequest]:
    """Each request id's expected row, from `DataStore.request_entries` rows in log order.

    Raises `RequestMismatchError` for an entry that names no request or holds no count where one belongs.
    """
    logged: dict[str, LoggedRequest] = {}
    for index, kind, request_id, subject_key, received_at, deadline, months, outcome, records, completed_at in rows:
        if not isinstance(request_id, str):
            raise RequestMismatchError(f"ledger entry {index} ({kind}) names no request")
        request = logged.setdefault(request_id, LoggedRequest(request_id))
        values = request.values
        if kind == RECEIVED:
            request.received_index = index
            values.update(subject_key=subject_key, received_at=received_at, deadline=deadline, extended_months=0)
        elif kind == EXTENDED:
            values["deadline"] = deadline
            values["extended_months"] = int(values.get("extended_months", 0)) + _count(months, index, kind)
        elif kind == STARTED and values.get("state") != RequestState.COMPLETED.value:
            values["state"] = RequestState.RUNNING.value
        elif kind == COMPLETED:
            values.update(state=RequestState.COMPLETED.value, outcome=outcome, completed_at=completed_at)
            values["records_erased"] = _count(records, index, kind)
    return logged


def _count(value: Any, index: int, kind: str) -> int:
    """An integer field as the database returns it (text on PostgreSQL)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise RequestMismatchError(f"ledger entry {index} ({kind}) holds no count where one belongs")


_SHOWN = {"received_at", "deadline", "extended_months", "state", "outcome", "records_erased", "completed_at"}
"""Fields whose logged values a message may show: times, counts and states, never the subject key.
A message never shows what the table holds instead: whoever edited it chose that text."""
_REQUEST_ID = re.compile(r"req_[0-9a-f]{16}")
_DIGITS = re.compile(r"[0-9]+")


def _disagreement(logged: LoggedRequest, row: RequestRow | None) -> str | None:
    if logged.received_index is None:
        return " has ledger entries but no request.received entry"
    if row is None:
        return (
            f" is in the ledger (request.received, entry {logged.received_index}) but missing from the requests table"
        )
    expected = {**logged.values, "state": logged.expected_state()}
    if expected["state"] != RequestState.COMPLETED.value:
        expected.update(outcome=None, completed_at=None)
    for column in ("subject_key", "received_at", "deadline", "extended_months", "state", "outcome",
                   "records_erased", "completed_at"):  # fmt: skip
        if column not in expected:
            continue
        if getattr(row, column) != expected[column]:
            logged_value = f" ({expected[column]!r})" if column in _SHOWN else ""
            return f": its {column} in the requests table differs from the ledger's{logged_value}"
    return None


def reconcile_requests(workspace: Workspace, tx: Transaction | None = None) -> int:
    """Check every request row against the ledger's request entries; returns how many agree.

    Raises `RequestMismatchError` naming the first request (by id) that disagrees, and how many
    more do. Reads the log and the table in one snapshot (or in the caller's transaction).
    """
    if tx is None:
        with workspace.datastore.snapshot() as own:
            return reconcile_requests(workspace, own)
    try:
        entries = workspace.datastore.request_entries(tx, REQUEST_KINDS)
    except UnreadableEntryError as error:
        raise RequestMismatchError(
            "the ledger holds a request entry the database cannot read as JSON: run `forget ledger verify`"
        ) from error
    rows = {row.request_id: row for row in workspace.datastore.all_requests(tx)}
    logged = fold_request_entries(entries)
    problems: list[str] = []
    for request_id in sorted(set(logged) | set(rows)):
        request = logged.get(request_id)
        if request is None:
            reason: str | None = " is in the requests table, but the ledger never received it"
        else:
            reason = _disagreement(request, rows.get(request_id))
        if reason is not None:
            shown = request_id if _REQUEST_ID.fullmatch(request_id) else "with a malformed id"
            problems.append(f"request {shown}{reason}")
    if problems:
        more = f" ({len(problems) - 1} more requests disagree)" if len(problems) > 1 else ""
        raise RequestMismatchError(f"{problems[0]}{more}")
    return len(rows)


def reconcile_workspace(workspace: Workspace) -> None:
    """Requests and checkpoints both agree with the ledger, read in one snapshot: `forget run` calls
    this before it selects anything, so a tampered table stops it before it erases or retrains.

    Raises `RequestMismatchError` or `CheckpointLineageError` (exit 1) naming the first disagreement.
    """
    with workspace.datastore.snapshot() as tx:
        reconcile_requests(workspace, tx)
        verify_checkpoint_table(workspace, tx)
