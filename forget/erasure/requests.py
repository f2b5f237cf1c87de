"""Erasure requests: filing (idempotent), the Art. 12(3) deadline and its extension, status.

A request names a raw subject id; it is hashed with the workspace key on arrival and only the
keyed hash is stored or logged. Every transition is a ledger entry in the same transaction; filing
also quarantines the subject's shards (forget.erasure.quarantine) in that transaction.
"""

from __future__ import annotations

import calendar
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from forget.erasure.quarantine import quarantine_entry, shards_of_subject
from forget.errors import InputError
from forget.store.interface import OpenRequestExistsError, RequestRow
from forget.workspace.core import Workspace
from ledger.evidence import EntryKind

DEADLINE_MONTHS = 1
"""GDPR Art. 12(3): without undue delay and in any event within one month of receipt."""
MAX_EXTENSION_MONTHS = 2
"""Art. 12(3): extendable by two further months where necessary."""

RECEIVED = EntryKind.REQUEST_RECEIVED.value
EXTENDED = EntryKind.REQUEST_EXTENDED.value


REQUEST_ID = re.compile(r"req_[0-9a-f]{16}")


class RequestState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"


class Outcome(StrEnum):
    ERASED = "erased"
    NO_DATA = "no_data"
    """The workspace held no record of the subject: answered as "no data held"."""


class UnknownRequestError(InputError):
    pass


def format_time(moment: datetime) -> str:
    """`moment` in UTC as `YYYY-MM-DDTHH:MM:SSZ` (the ledger's spelling); raises nothing."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without a zone is taken as UTC. Raises `InputError` for anything else."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-22T09:30:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` later, or the month's last day when it has no such day (Jan 31 + 1 = Feb 28).

    Raises `ValueError` beyond year 9999.
    """
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class ErasureRequest:
    request_id: str
    subject_key: str
    state: RequestState
    received_at: datetime
    deadline: datetime
    extended_months: int
    completed_at: datetime | None
    outcome: Outcome | None
    records_erased: int | None
    note: str | None = None
    """The DSAR ticket reference, as filed; erasable with the row (the ledger holds its digest)."""
    extension_reason: str | None = None

    @classmethod
    def from_row(cls, row: RequestRow) -> ErasureRequest:
        """The request a row holds; raises `InputError` or `ValueError` for a row forget did not write."""
        return cls(
            request_id=row.request_id,
            subject_key=row.subject_key,
            state=RequestState(row.state),
            received_at=parse_time(row.received_at),
            deadline=parse_time(row.deadline),
            extended_months=row.extended_months,
            completed_at=parse_time(row.completed_at) if row.completed_at else None,
            outcome=Outcome(row.outcome) if row.outcome else None,
            records_erased=row.records_erased,
            note=row.note,
            extension_reason=row.extension_reason,
        )

    def overdue(self, now: datetime) -> bool:
        """Completed after its deadline, or still open past it; raises nothing."""
        end = self.completed_at if self.completed_at is not None else now
        return end > self.deadline

    def days_left(self, now: datetime) -> float:
        """Days until the deadline (negative once past); raises nothing."""
        return (self.deadline - now) / timedelta(days=1)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """The request as `forget status --json` and the HTTP API show it; raises nothing."""
        return {
            "request_id": self.request_id,
            "subject_key": self.subject_key,
            "state": self.state.value,
            "received_at": format_time(self.received_at),
            "deadline": format_time(self.deadline),
            "extended_months": self.extended_months,
            "days_left": None if self.state is RequestState.COMPLETED else round(self.days_left(now), 2),
            "overdue": self.overdue(now),
            "completed_at": format_time(self.completed_at) if self.completed_at else None,
            "outcome": self.outcome.value if self.outcome else None,
            "records_erased": self.records_erased,
            "note": self.note,
            "extension_reason": self.extension_reason,
        }


def _sign(workspace: Workspace) -> None:
    from forget.training.lineage import sign_head  # the ledger's signing code is not needed to read requests

    sign_head(workspace)


CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a stated receipt time may lie (clocks differ); beyond it, it is a typo."""
MAX_TEXT_LENGTH = 2000


def _free_text(text: str | None, what: str) -> str | None:
    """A ticket note or a reason: one or more lines of text, kept in the erasable request row."""
    if text is None or not text.strip():
        return None
    cleaned = text.strip()
    if len(cleaned) > MAX_TEXT_LENGTH:
        raise InputError(f"{what} is longer than {MAX_TEXT_LENGTH} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in cleaned):
        raise InputError(f"{what} holds control characters")
    return cleaned


def file_request(
    workspace: Workspace, subject_id: str, received_at: datetime | None = None, note: str | None = None
) -> tuple[ErasureRequest, bool]:
    """Record a request; returns it and whether it is new (a pending one for the subject is reused).

    The id goes through the workspace's identity form (forget.subjects.identity) and is hashed; `note` (a
    DSAR ticket reference) stays in the request's row, and the ledger logs only its keyed digest.
    A new request's request.received and request.quarantined entries commit with its row and share
    one entry time: from that commit on, the shards holding the subject's records answer no prediction.
    Raises `InputError` for a malformed id, a receipt time in the future, or an unusable note.
    """
    pseudonymiser = workspace.pseudonymiser
    subject_key = pseudonymiser.subject(subject_id)
    note = _free_text(note, "--note")
    now = datetime.now(UTC)
    if received_at is not None and received_at > now + CLOCK_SKEW:
        raise InputError(
            f"--received-at {format_time(received_at)} is in the future (now {format_time(now)}); a request"
            " cannot be received later than it is filed"
        )
    store = workspace.datastore
    open_ = store.find_requests(states=[RequestState.PENDING, RequestState.RUNNING], subject_key=subject_key)
    if open_:
        return ErasureRequest.from_row(open_[0]), False
    received = received_at or now
    deadline = add_months(received, DEADLINE_MONTHS)
    shards = shards_of_subject(workspace, subject_key)
    row = RequestRow(
        request_id=f"req_{secrets.token_hex(8)}",
        subject_key=subject_key,
        state=RequestState.PENDING.value,
        received_at=format_time(received),
        deadline=format_time(deadline),
        extended_months=0,
        run_id=None,
        records_erased=None,
        shards=None,
        completed_at=None,
        outcome=None,
        note=note,
    )
    try:
        with store.transaction() as tx:
            store.add_request(tx, row)
            # One entry time for both, the moment of filing: the certificate checks that the
            # quarantine came with the receipt.
            quarantine = quarantine_entry(row.request_id, shards, format_time(now))
            workspace.ledger.append(
                tx,
                [
                    (
                        RECEIVED,
                        {
                            "request_id": row.request_id,
                            "subject_key": subject_key,
                            "received_at": row.received_at,
                            "deadline": row.deadline,
                            "identity_form": pseudonymiser.form.to_dict(),
                            "note_digest": pseudonymiser.text_digest(note) if note is not None else None,
                        },
                    ),
                    quarantine.entry(),
                ],
                time=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            )
    except OpenRequestExistsError:
        # Another caller filed for the subject between the check above and this insert.
        open_ = store.find_requests(states=[RequestState.PENDING, RequestState.RUNNING], subject_key=subject_key)
        if not open_:
            raise
        return ErasureRequest.from_row(open_[0]), False
    _sign(workspace)
    return ErasureRequest.from_row(row), True


def get_request(workspace: Workspace, request_id: str) -> ErasureRequest:
    """The request with this id; raises `UnknownRequestError` (exit 2, HTTP 404) when there is none."""
    row = workspace.datastore.get_request(request_id.strip())
    if row is None:
        # Echo the id only when it has a request id's shape: a subject id typed here by mistake
        # must not reach a log.
        shown = request_id.strip() if REQUEST_ID.fullmatch(request_id.strip()) else "with that id"
        raise UnknownRequestError(f"no erasure request {shown} in this workspace (ids look like req_0123456789abcdef)")
    return ErasureRequest.from_row(row)


def extend_request(workspace: Workspace, request_id: str, months: int, reason: str) -> ErasureRequest:
    """Art. 12(3) extension by one or two months in all; the reason goes to the ledger (no personal data).

    Raises `InputError` for other months, a missing reason, a completed request, a request received
    more than a month ago, or more than two months in all; `UnknownRequestError` for an unknown id.
    """
    if months not in (1, 2):
        raise InputError("--months must be 1 or 2")
    cleaned = _free_text(reason, "--reason")
    if cleaned is None:
        raise InputError("an extension needs a --reason (Art. 12(3): the subject must be told why)")
    request = get_request(workspace, request_id)
    if request.state is RequestState.COMPLETED:
        raise InputError(f"request {request.request_id} is already completed")
    if datetime.now(UTC) > add_months(request.received_at, DEADLINE_MONTHS):
        raise InputError(
            f"request {request.request_id} was received more than a month ago: Art. 12(3) allows an extension"
            " only if the subject is told within one month of receipt"
        )
    if request.extended_months + months > MAX_EXTENSION_MONTHS:
        raise InputError(
            f"request {request.request_id} is already extended by {request.extended_months} month(s);"
            f" Art. 12(3) allows {MAX_EXTENSION_MONTHS} in all"
        )
    extended = request.extended_months + months
    deadline = add_months(request.received_at, DEADLINE_MONTHS + extended)
    store = workspace.datastore
    with store.transaction() as tx:
        store.update_request(
            tx,
            request.request_id,
            deadline=format_time(deadline),
            extended_months=extended,
            extension_reason=cleaned,
        )
        payload = {
            "request_id": request.request_id,
            "months": months,
            "deadline": format_time(deadline),
            "reason_digest": workspace.pseudonymiser.text_digest(cleaned),
        }
        workspace.ledger.append(tx, [(EXTENDED, payload)])
    _sign(workspace)
    return get_request(workspace, request.request_id)


def list_requests(
    workspace: Workspace, request_id: str | None = None, subject_id: str | None = None
) -> list[ErasureRequest]:
    """All requests, one by id, or a subject's (by deadline); raises `UnknownRequestError` for an
    unknown id and `InputError` for a malformed subject id."""
    if request_id is not None:
        return [get_request(workspace, request_id)]
    subject_key = workspace.pseudonymiser.subject(subject_id) if subject_id is not None else None
    return [ErasureRequest.from_row(row) for row in workspace.datastore.find_requests(subject_key=subject_key)]
