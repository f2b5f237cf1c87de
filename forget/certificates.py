"""Issuing a request's certificate from the ledger, and replaying its erasure from scratch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import forget
from forget.errors import InputError
from forget.lineage import CHECKPOINT, SLICE_MANIFEST, sign_head
from forget.requests import RequestState, format_time, get_request
from forget.workspace import Workspace
from ledger import store
from ledger.errors import LedgerError
from ledger.log import Entry
from reports.certificate import LoggedEntry, build_statement, sign_certificate
from sisa.store import write_atomically

CERTIFICATES_DIR = "certificates"
CERTIFIED = "request.certified"


def certificate_path(workspace: Workspace, request_id: str) -> Path:
    return workspace.root / CERTIFICATES_DIR / f"{request_id}.json"


@dataclass
class _Evidence:
    entries: list[Entry] = field(default_factory=list)

    def first(self, kind: str) -> Entry | None:
        return next((e for e in self.entries if e.kind == kind), None)


def _gather(workspace: Workspace, request_id: str, connection: Any) -> _Evidence:
    """The entries a request's certificate rests on, in log order."""
    ledger = workspace.ledger
    evidence = _Evidence()
    for kind in ("request.received", "request.started", "request.completed"):
        evidence.entries += [
            e for e in ledger.entries(connection, kind=kind) if e.payload.get("request_id") == request_id
        ]
    completed = evidence.first("request.completed")
    if completed is None:
        raise LedgerError(f"the ledger has no completion of {request_id}")
    run_id = completed.payload["run_id"]
    planned = [e for e in ledger.entries(connection, kind="erasure.planned") if e.payload.get("run_id") == run_id]
    purged = [
        e for e in ledger.entries(connection, kind="erasure.checkpoints_purged") if e.payload.get("run_id") == run_id
    ]
    evidence.entries += planned + purged
    if planned and completed.payload["outcome"] == "erased":
        start, end = planned[0].index, completed.index
        shards = {int(s) for s in completed.payload["checkpoints_after"]}
        for kind in (SLICE_MANIFEST, CHECKPOINT):
            evidence.entries += [
                e for e in ledger.entries(connection, kind=kind, start=start)
                if e.index < end and e.payload["shard"] in shards
            ]  # fmt: skip
    evidence.entries.sort(key=lambda e: e.index)
    return evidence


def _erasure_claims(evidence: _Evidence) -> dict[str, Any] | None:
    completed = evidence.first("request.completed")
    planned = evidence.first("erasure.planned")
    assert completed is not None
    if completed.payload["outcome"] != "erased" or planned is None:
        return None
    after: dict[str, str] = completed.payload["checkpoints_after"]
    rewinds = {r["shard"]: r for r in planned.payload["rewinds"]}
    checkpoints = [e.payload for e in evidence.entries if e.kind == CHECKPOINT]
    shards = []
    for number in sorted(int(s) for s in after):
        last = [c for c in checkpoints if c["shard"] == number]
        shards.append(
            {
                **{k: rewinds[number][k] for k in ("shard", "from_slice", "restored_checkpoint", "checkpoint_before")},
                "checkpoint_after": after[str(number)],
                "retrained_checkpoints": [c["checkpoint_sha256"] for c in last],
                "retained_manifest_roots": last[-1]["manifest_roots"] if last else [],
            }
        )
    return {"run_id": completed.payload["run_id"], "shards": shards}


def build_certificate(workspace: Workspace, request_id: str) -> bytes:
    request = get_request(workspace, request_id)
    if request.state is not RequestState.COMPLETED:
        raise InputError(f"request {request.request_id} is {request.state.value}, not completed: run `forget run`")
    with workspace.datastore.engine.connect() as connection:
        evidence = _gather(workspace, request.request_id, connection)
        head = store.latest_head(connection)
        last_index = evidence.entries[-1].index
        if head is None or head.size <= last_index:
            raise LedgerError("no signed head covers the request's entries yet: run `forget run` again")
        logged = []
        for entry in evidence.entries:
            stored = store.read_entry(connection, entry.index)
            assert stored is not None
            proof = store.inclusion_proof(connection, entry.index, head.size)
            logged.append(LoggedEntry(entry.index, entry.kind, stored.entry, stored.leaf_hash, tuple(proof)))
    completed = evidence.first("request.completed")
    assert completed is not None
    claims = {
        k: completed.payload[k]
        for k in ("request_id", "subject_key", "outcome", "records_erased", "received_at", "deadline",
                  "completed_at", "deadline_met")
    }  # fmt: skip
    statement = build_statement(
        request=claims,
        erasure=_erasure_claims(evidence),
        origin=workspace.config.origin,
        checkpoint_note=head.note,
        entries=logged,
        tool_version=forget.__version__,
        issued_at=format_time(datetime.now(UTC)),
    )
    return sign_certificate(statement, workspace.signing_key())


def issue_certificates(workspace: Workspace, request_ids: Iterable[str]) -> list[Path]:
    """Write each request's certificate into the workspace and log its digest (request.certified)."""
    import hashlib

    paths = []
    store_ = workspace.datastore
    for request_id in request_ids:
        data = build_certificate(workspace, request_id)
        path = certificate_path(workspace, request_id)
        write_atomically(path, data)
        digest = hashlib.sha256(data).hexdigest()
        with store_.engine.begin() as connection:
            store_.update_request(connection, request_id, certificate_sha256=digest)
            workspace.ledger.append(connection, [(CERTIFIED, {"request_id": request_id, "certificate_sha256": digest})])
        paths.append(path)
    if paths:
        sign_head(workspace)
    return paths


def uncertified(workspace: Workspace) -> list[str]:
    rows = workspace.datastore.find_requests(states=[RequestState.COMPLETED])
    return [row.request_id for row in rows if row.certificate_sha256 is None]
