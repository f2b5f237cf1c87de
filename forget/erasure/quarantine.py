"""Quarantine: exact from the moment a request is filed, not from the moment it is carried out.

A request is filed (forget.erasure.requests.file_request) together with a `request.quarantined`
entry naming the shards that hold the subject's records, in the same transaction and with the
same entry time as its `request.received`. From that commit on, every prediction path (the
service's ensemble, `forget predict`, `forget evaluate`) leaves those shards out, and keeps them
out while the request is open: `forget run` retrains them without the subject and completes the
request, which is what lets them answer again. The certificate states how long the subject's
data were still in use after the request was received (reports.certificate).

The set is read from the ledger, not kept in a table: `quarantined_shards` asks the store for
the shards the open requests' entries name, and for the shards that hold a record of an open
request's subject now (records ingested after the request was filed).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from forget.errors import NotTrainedError
from ledger.evidence import EntryKind, RequestQuarantined

if TYPE_CHECKING:
    from forget.store.interface import Transaction
    from forget.workspace.core import Workspace

QUARANTINED = EntryKind.REQUEST_QUARANTINED.value
OPEN_STATES = ("pending", "running")
"""The states of a request whose shards may not answer (forget.erasure.requests.RequestState)."""


class AllShardsQuarantinedError(NotTrainedError):
    """Every shard holds a record of a subject with an open request: there is no model left that
    may answer, so nothing answers (exit 3; 503 from the service)."""


def shards_of_subject(workspace: Workspace, subject_key: str) -> tuple[int, ...]:
    """The shards holding a record of the subject now, in increasing order (empty when none).

    Two indexed reads of the data store; raises nothing of its own (a database failure propagates).
    """
    store = workspace.datastore
    records = store.records_of_subjects([subject_key]).get(subject_key, [])
    if not records:
        return ()
    return tuple(sorted({shard for shard, _ in store.placements_of(records).values()}))


def quarantine_entry(request_id: str, shards: Iterable[int], quarantined_at: str) -> RequestQuarantined:
    """The entry that records the quarantine; raises `EvidenceError` for a malformed id or time."""
    return RequestQuarantined(request_id, tuple(sorted(set(shards))), quarantined_at)


def quarantined_shards(workspace: Workspace, tx: Transaction | None = None) -> frozenset[int]:
    """The shards that may not answer now: those of every pending or running request.

    Raises `UnreadableEntryError` (a `VerificationError`) when the ledger holds an entry the
    database cannot read as JSON.
    """
    return frozenset(workspace.datastore.quarantined_shards(QUARANTINED, OPEN_STATES, tx))


def serving_shards(workspace: Workspace, quarantined: Iterable[int] | None = None) -> tuple[int, ...]:
    """The shards that may answer: every shard of the workspace but the quarantined ones.

    Raises `AllShardsQuarantinedError` when none may: an answer from the others does not exist,
    and an answer from a quarantined one would use data that must be forgotten.
    """
    held = frozenset(quarantined) if quarantined is not None else quarantined_shards(workspace)
    shards = tuple(s for s in range(workspace.config.shards) if s not in held)
    if not shards:
        raise AllShardsQuarantinedError(
            f"all {workspace.config.shards} shards are quarantined by open erasure requests: no model may answer"
            " until `forget run` has retrained them",
            hint="run `forget run` (or wait for the service's next in-process run), then try again",
        )
    return shards
