"""Issuing a request's certificate from the ledger entries it rests on, checked before it is written."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from reports.certificate import LoggedEntry, build_statement, derive_claims, sign_certificate
from reports.errors import CertificateError
from reports.verify import DEFAULT_MAX_BYTES, VerifierKey, verify_certificate
from sisa.store import write_atomically

CERTIFICATES_DIR = "certificates"
CERTIFIED = EntryKind.REQUEST_CERTIFIED.value


def certificate_path(workspace: Workspace, request_id: str) -> Path:
    return workspace.root / CERTIFICATES_DIR / f"{request_id}.json"


def _gather(workspace: Workspace, request_id: str, connection: Any) -> list[Entry]:
    """The entries a request's certificate rests on, in log order: its own, and its run's shared ones.

    Its receipt, extensions, start and completion; for an erasure, its own plan, its run's purge,
    and the new manifests and checkpoints of its shards logged between its plan and its completion.
    Never another request's entry: a certificate is handed to one person.
    """
    ledger = workspace.ledger

    def mine(kind: EntryKind, start: int = 0) -> list[Entry]:
        return [e for e in ledger.entries(connection, kind=kind.value, start=start)
                if e.payload.get("request_id") == request_id]  # fmt: skip

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
    entries = [*received, *mine(EntryKind.REQUEST_EXTENDED, first), *started, end]
    planned = [e for e in mine(EntryKind.ERASURE_PLANNED, first) if e.payload.get("run_id") == run_id]
    if planned and end.payload["outcome"] == Outcome.ERASED.value:
        begin = planned[0].index
        shards = {int(s) for s in end.payload["checkpoints_after"]}
        entries += planned[:1]
        entries += [e for e in ledger.entries(connection, kind=EntryKind.ERASURE_PURGED.value, start=begin)
                    if e.index < end.index and e.payload.get("run_id") == run_id]  # fmt: skip
        # A schema that changed in this run re-encoded every record and restarted every shard.
        schema = ledger.entries(connection, kind=EntryKind.SCHEMA_REDERIVED.value, start=begin)
        entries += [e for e in schema if e.index < end.index and e.payload.get("run_id") == run_id
                    and e.payload.get("changed")]  # fmt: skip
        for kind in (EntryKind.SLICE_MANIFEST, EntryKind.CHECKPOINT):
            entries += [e for e in ledger.entries(connection, kind=kind.value, start=begin)
                        if e.index < end.index and e.payload.get("shard") in shards]  # fmt: skip
    return sorted(entries, key=lambda e: e.index)


def build_certificate(workspace: Workspace, request_id: str) -> bytes:
    """The request's certificate, signed, anchored in the latest signed head, and checked.

    The claims are derived from the gathered entries by the verifier's own rules
    (`reports.certificate.derive_claims`), and the signed result is verified with the workspace's
    verifier key before it is returned: a certificate that would not verify is never issued.
    """
    request = get_request(workspace, request_id)
    if request.state is not RequestState.COMPLETED:
        raise InputError(f"request {request.request_id} is {request.state.value}, not completed: run `forget run`")
    with workspace.datastore.engine.connect() as connection:
        entries = _gather(workspace, request.request_id, connection)
        head = store.latest_head(connection)
        if head is None or head.size <= entries[-1].index:
            raise LedgerError("no signed head covers the request's entries yet: run `forget run` again")
        logged = []
        for entry in entries:
            stored = store.read_entry(connection, entry.index)
            assert stored is not None
            proof = store.inclusion_proof(connection, entry.index, head.size)
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
    """Write each request's certificate into the workspace and log its digest (request.certified)."""
    paths = []
    store_ = workspace.datastore
    for request_id in request_ids:
        data = build_certificate(workspace, request_id)
        path = certificate_path(workspace, request_id)
        write_atomically(path, data)
        digest = hashlib.sha256(data).hexdigest()
        with store_.engine.begin() as connection:
            store_.update_request(connection, request_id, certificate_sha256=digest)
            workspace.ledger.append(connection, [RequestCertified(request_id, digest).entry()])
        paths.append(path)
    if paths:
        sign_head(workspace)
    return paths


def uncertified(workspace: Workspace) -> list[str]:
    rows = workspace.datastore.find_requests(states=[RequestState.COMPLETED])
    return [row.request_id for row in rows if row.certificate_sha256 is None]
