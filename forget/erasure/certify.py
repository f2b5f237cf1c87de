"""Issuing a request's certificate from the ledger entries it rests on, checked before it is written."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import forget
from forget.audit.witness import cosigned_note
from forget.erasure.requests import RequestState, format_time, get_request
from forget.errors import InputError
from forget.training.lineage import sign_head
from forget.workspace.core import Workspace
from ledger import store
from ledger.errors import LedgerError
from ledger.evidence import EntryKind, EvidenceError, Outcome, RequestCertified, decode_entry
from ledger.log import Entry
from ledger.store import StoredEntry
from reports.certificate import LoggedEntry, build_statement, derive_claims, sign_certificate
from reports.errors import CertificateError
from reports.verify import DEFAULT_MAX_BYTES, VerifierKey, verify_certificate
from sisa.store import write_atomically

if TYPE_CHECKING:
    from forget.store.interface import Transaction

CERTIFICATES_DIR = "certificates"
CERTIFIED = EntryKind.REQUEST_CERTIFIED.value


def certificate_path(workspace: Workspace, request_id: str) -> Path:
    """Where a request's certificate is written in the workspace; raises nothing (it may not exist)."""
    return workspace.root / CERTIFICATES_DIR / f"{request_id}.json"


def _gather(workspace: Workspace, request_id: str, tx: Transaction) -> list[tuple[StoredEntry, Entry]]:
    """The entries a request's certificate rests on, in log order: its own, and its run's shared ones.

    Its receipt, quarantine, extensions, start and completion; for an erasure, its own plan, its run's purge,
    and the new manifests and checkpoints of its shards logged between its plan and its completion.
    Never another request's entry: a certificate is handed to one person.

    Its own entries are read through the store's request-id index (one query, checked against
    their payloads by the ledger); the shared ones by kind between its plan and its completion.
    Each comes with its stored bytes and leaf hash, which the certificate carries.
    """
    ledger = workspace.ledger
    own = list(ledger.stored_entries(tx, request_id=request_id))
    stored = {entry.index: row for row, entry in own}

    def mine(kind: EntryKind, start: int = 0) -> list[Entry]:
        return [e for _, e in own if e.kind == kind.value and e.index >= start]

    received = mine(EntryKind.REQUEST_RECEIVED)
    if not received:
        raise LedgerError(f"the ledger has no receipt of {request_id}")
    first = received[0].index
    completed = mine(EntryKind.REQUEST_COMPLETED, first)
    if not completed:
        raise LedgerError(f"the ledger has no completion of {request_id}")
    end = completed[0]
    run_id = end.payload["run_id"]
    started = [e for e in mine(EntryKind.REQUEST_STARTED, first) if e.payload.get("run_id") == run_id]
    quarantined = mine(EntryKind.REQUEST_QUARANTINED, first)
    entries = [*received, *quarantined, *mine(EntryKind.REQUEST_EXTENDED, first), *started, end]
    planned = [e for e in mine(EntryKind.ERASURE_PLANNED, first) if e.payload.get("run_id") == run_id]
    if planned and end.payload["outcome"] == Outcome.ERASED.value:
        begin = planned[0].index
        shards = {int(s) for s in end.payload["checkpoints_after"]}
        entries += planned[:1]

        def window(kind: EntryKind) -> Iterator[Entry]:
            for row, entry in ledger.stored_entries(tx, kind=kind.value, start=begin, stop=end.index):
                stored[entry.index] = row
                yield entry

        entries += [e for e in window(EntryKind.ERASURE_PURGED) if e.payload.get("run_id") == run_id]
        # A schema that changed in this run re-encoded every record and restarted every shard.
        entries += [e for e in window(EntryKind.SCHEMA_REDERIVED)
                    if e.payload.get("run_id") == run_id and e.payload.get("changed")]  # fmt: skip
        for kind in (EntryKind.SLICE_MANIFEST, EntryKind.CHECKPOINT):
            entries += [e for e in window(kind) if e.payload.get("shard") in shards]
    return [(stored[e.index], e) for e in sorted(entries, key=lambda e: e.index)]


def build_certificate(workspace: Workspace, request_id: str) -> bytes:
    """The request's certificate, signed, anchored in the latest signed head, and checked.

    The claims are derived from the gathered entries by the verifier's own rules
    (`reports.certificate.derive_claims`), and the signed result is verified with the workspace's
    verifier key before it is returned: a certificate that would not verify is never issued.
    Raises `InputError` for a request that is not completed, `LedgerError` when no signed head
    covers its entries or an entry breaks the evidence schema, `CertificateError` when the result
    would not verify, and `UnknownRequestError` for an unknown id.
    """
    request = get_request(workspace, request_id)
    if request.state is not RequestState.COMPLETED:
        raise InputError(f"request {request.request_id} is {request.state.value}, not completed: run `forget run`")
    with workspace.datastore.snapshot() as tx:
        entries = _gather(workspace, request.request_id, tx)
        head = store.latest_head(tx)
        if head is None or head.size <= entries[-1][1].index:
            raise LedgerError("no signed head covers the request's entries yet: run `forget run` again")
        logged = []
        for stored, entry in entries:
            proof = store.inclusion_proof(tx, entry.index, head.size)
            logged.append(LoggedEntry(entry.index, entry.kind, stored.entry, stored.leaf_hash, tuple(proof)))
    try:
        decoded = [decode_entry(item.canonical) for item in logged]
    except EvidenceError as error:
        raise LedgerError(
            f"a ledger entry of {request.request_id} does not follow the evidence schema: {error}"
        ) from None
    claims = derive_claims(request.request_id, decoded)
    statement = build_statement(
        claims=claims,
        origin=workspace.config.origin,
        checkpoint_note=cosigned_note(workspace, head.size),
        entries=logged,
        tool_version=forget.__version__,
        issued_at=format_time(datetime.now(UTC)),
    )
    data = sign_certificate(statement, workspace.signing_key())
    key = VerifierKey(workspace.config.origin, workspace.ledger.public_key)
    try:
        verify_certificate(data, key, max_bytes=max(DEFAULT_MAX_BYTES, len(data)))
    except CertificateError as error:
        raise CertificateError(f"the certificate of {request.request_id} would not verify: {error}") from error
    return data


def issue_certificates(workspace: Workspace, request_ids: Iterable[str]) -> list[Path]:
    """Write each request's certificate into the workspace and log its digest (request.certified).

    Raises what `build_certificate` raises, for the first request whose certificate cannot be
    built; those before it are written and logged.
    """
    paths = []
    store_ = workspace.datastore
    for request_id in request_ids:
        data = build_certificate(workspace, request_id)
        path = certificate_path(workspace, request_id)
        write_atomically(path, data)
        digest = hashlib.sha256(data).hexdigest()
        with store_.transaction() as tx:
            store_.update_request(tx, request_id, certificate_sha256=digest)
            workspace.ledger.append(tx, [RequestCertified(request_id, digest).entry()])
        paths.append(path)
    if paths:
        sign_head(workspace)
    return paths


def uncertified(workspace: Workspace) -> list[str]:
    """The completed requests without a certificate yet; raises nothing of its own."""
    rows = workspace.datastore.find_requests(states=[RequestState.COMPLETED])
    return [row.request_id for row in rows if row.certificate_sha256 is None]
