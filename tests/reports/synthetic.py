"""A synthetic certificate: a small log written with the evidence types, a fixed key and clock.

No workspace, no torch, no database: the log is a list of payloads, its Merkle tree comes from
ledger.merkle, the claims from reports.certificate.derive_claims (as the issuer derives them).
The log holds a batch of two requests that share run 1, so a certificate of one can be checked
for traces of the other.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import merkle
from ledger.canonical import canonical_json
from ledger.evidence import (
    CheckpointRecorded,
    CheckpointsPurged,
    ErasurePlanned,
    Outcome,
    PlannedRewind,
    RequestCompleted,
    RequestQuarantined,
    RequestReceived,
    RequestStarted,
    SliceManifest,
    decode_entry,
)
from ledger.log import Entry
from ledger.note import Checkpoint, sign_note, verifier_key
from reports.certificate import LoggedEntry, build_statement, derive_claims, sign_certificate
from reports.verify import VerifierKey

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # Ed25519 signatures are deterministic
ORIGIN = "forget.local/golden"
TIME = "2026-11-22T09:00:00Z"
RUN = "run_00000000000000a1"
REQUEST = "req_0123456789abcdef"
SUBJECT = "ab" * 32
OTHER_REQUEST = "req_fedcba9876543210"
OTHER_SUBJECT = "cd" * 32
FORM = {"normalization": "NFC", "whitespace": "trimmed", "case": "insensitive", "email": "none"}


def digest(label: str) -> str:
    return (label * 64)[:64]


def _checkpoint(shard: int, slice_: int, sha: str, roots: Sequence[str]) -> CheckpointRecorded:
    return CheckpointRecorded(
        shard, slice_, sha, 20, tuple(roots), "c" * 64, "0.1.0", "2.13.0", "3.11.9", "cpu", 1, True
    )


def batch_log() -> list[tuple[str, dict[str, Any]]]:
    """Two requests in one run: REQUEST (shard 1, rewound to slice 2) and OTHER_REQUEST (shard 3)."""
    rewind = PlannedRewind(1, 2, digest("1"), digest("2"), (digest("2"), digest("a")))
    other_rewind = PlannedRewind(3, 0, None, digest("7"), (digest("7"),))
    roots = [digest("4"), digest("5"), digest("6"), digest("8")]
    items = [
        RequestReceived(OTHER_REQUEST, OTHER_SUBJECT, "2026-11-01T07:00:00Z", "2026-12-01T07:00:00Z", FORM, None),
        RequestReceived(REQUEST, SUBJECT, "2026-11-01T08:00:00Z", "2026-12-01T08:00:00Z", FORM, None),
        RequestStarted(REQUEST, RUN),
        RequestStarted(OTHER_REQUEST, RUN),
        ErasurePlanned(REQUEST, RUN, 2, (rewind,)),
        ErasurePlanned(OTHER_REQUEST, RUN, 1, (other_rewind,)),
        SliceManifest(1, 2, 19, roots[2]),
        SliceManifest(3, 0, 9, digest("9")),
        CheckpointsPurged(RUN, tuple(sorted({digest("2"), digest("a"), digest("7")}))),
        _checkpoint(1, 2, digest("3"), roots[:3]),
        _checkpoint(3, 0, digest("b"), [digest("9")]),
        _checkpoint(1, 3, digest("e"), roots),
        RequestCompleted(REQUEST, RUN, SUBJECT, Outcome.ERASED, 2, "2026-11-01T08:00:00Z", "2026-12-01T08:00:00Z",
                         TIME, True, {1: digest("e")}),
        RequestCompleted(OTHER_REQUEST, RUN, OTHER_SUBJECT, Outcome.ERASED, 1, "2026-11-01T07:00:00Z",
                         "2026-12-01T07:00:00Z", TIME, True, {3: digest("b")}),
    ]  # fmt: skip
    return [item.entry() for item in items]


NO_DATA_LOG: list[tuple[str, dict[str, Any]]] = [
    item.entry()
    for item in (
        RequestReceived(REQUEST, SUBJECT, "2026-11-01T08:00:00Z", "2026-12-01T08:00:00Z", FORM, digest("f")),
        RequestStarted(REQUEST, RUN),
        RequestCompleted(REQUEST, RUN, SUBJECT, Outcome.NO_DATA, 0, "2026-11-01T08:00:00Z", "2026-12-01T08:00:00Z",
                         TIME, True),
    )
]  # fmt: skip


def quarantined_log(shards: Sequence[int] = (1,), completed_at: str = TIME) -> list[tuple[str, dict[str, Any]]]:
    """`batch_log` as it is written now: each receipt followed by its quarantine, at the same entry
    time (certify() gives every entry TIME); REQUEST's quarantine names `shards`, and its completion
    is at `completed_at`."""
    log: list[tuple[str, dict[str, Any]]] = []
    for kind, payload in batch_log():
        if kind == "request.completed" and payload["request_id"] == REQUEST:
            payload = {**payload, "completed_at": completed_at}
        log.append((kind, payload))
        if kind == "request.received":
            named = tuple(shards) if payload["request_id"] == REQUEST else (3,)
            log.append(RequestQuarantined(payload["request_id"], named, TIME).entry())
    return log


def mine(log: Sequence[tuple[str, dict[str, Any]]], request_id: str = REQUEST) -> list[int]:
    """The indices the issuer carries for `request_id` in these logs (see forget.erasure.certify._gather)."""
    completed = next(i for i, (k, p) in enumerate(log) if k == "request.completed" and p["request_id"] == request_id)
    planned = next(
        (i for i, (k, p) in enumerate(log) if k == "erasure.planned" and p["request_id"] == request_id), None
    )
    shards = {int(s) for s in log[completed][1]["checkpoints_after"]}

    def needed(i: int, kind: str, payload: dict[str, Any]) -> bool:
        if payload.get("request_id") == request_id:
            return kind != "request.certified"
        in_window = planned is not None and planned < i < completed
        return in_window and (kind == "erasure.checkpoints_purged" or payload.get("shard") in shards)

    return [i for i, (kind, payload) in enumerate(log) if needed(i, kind, payload)]


@dataclass
class Synthetic:
    statement: dict[str, Any]
    envelope: bytes

    @property
    def envelope_json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.envelope)
        return value


def certify(
    log: Sequence[tuple[str, dict[str, Any]]] | None = None,
    *,
    carried: Sequence[int] | None = None,
    key: Ed25519PrivateKey = KEY,
    origin: str = ORIGIN,
    request_id: str = REQUEST,
    edit: Callable[[dict[str, Any]], None] | None = None,
    raw: dict[int, bytes] | None = None,
    claims_log: Sequence[tuple[str, dict[str, Any]]] | None = None,
) -> Synthetic:
    """Sign a certificate of `request_id` over `log`; `edit` changes the statement before signing,
    `raw` gives some entries other bytes than their canonical encoding, `claims_log` states the
    claims of another log than the one whose entries are carried."""
    log = batch_log() if log is None else log
    entries = [Entry(i, kind, TIME, payload).encode() for i, (kind, payload) in enumerate(log)]
    entries = [(raw or {}).get(i, data) for i, data in enumerate(entries)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    note = sign_note(Checkpoint(origin, len(entries), merkle.root_hash(leaves)).to_text(), origin, key)
    indices = mine(log, request_id) if carried is None else carried
    logged = [
        LoggedEntry(i, log[i][0], entries[i], leaves[i], tuple(merkle.inclusion_proof(i, leaves))) for i in indices
    ]
    if raw or claims_log is not None:  # entries that do not hold: the claims of a log that does
        claims = _claims(batch_log() if claims_log is None else claims_log, request_id)
    else:
        claims = derive_claims(request_id, [decode_entry(e.canonical) for e in logged])
    statement = build_statement(
        claims=claims, origin=origin, checkpoint_note=note, entries=logged, tool_version="0.1.0", issued_at=TIME
    )
    if edit is not None:
        edit(statement)
    return Synthetic(statement, sign_certificate(statement, key))


def _claims(log: Sequence[tuple[str, dict[str, Any]]], request_id: str) -> Any:
    """The claims of the log's canonical form (for logs whose bytes are deliberately wrong)."""
    entries = [Entry(i, kind, TIME, payload).encode() for i, (kind, payload) in enumerate(log)]
    return derive_claims(request_id, [decode_entry(entries[i]) for i in mine(log, request_id)])


def resign(statement: dict[str, Any], key: Ed25519PrivateKey = KEY) -> bytes:
    return sign_certificate(statement, key)


def pinned(origin: str = ORIGIN, key: Ed25519PrivateKey = KEY) -> VerifierKey:
    return VerifierKey(origin, key.public_key())


def verifier_line(origin: str = ORIGIN, key: Ed25519PrivateKey = KEY) -> str:
    return verifier_key(origin, key.public_key())


def entry_of(statement: dict[str, Any], kind: str, request_id: str | None = REQUEST) -> dict[str, Any]:
    """The carried entry of `kind` (of `request_id` where it names one), as the statement holds it."""
    for item in statement["predicate"]["log"]["entries"]:
        payload = json.loads(base64.b64decode(item["canonical"]))["payload"]
        if item["kind"] == kind and payload.get("request_id", request_id) == request_id:
            found: dict[str, Any] = item
            return found
    raise KeyError(kind)


def rewrite_entry(item: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    """Change a carried entry's payload and recompute its bytes and leaf hash (its proof then fails)."""
    value = json.loads(base64.b64decode(item["canonical"]))
    change(value["payload"])
    data = canonical_json(value)
    item["canonical"] = base64.b64encode(data).decode()
    item["leaf_hash"] = merkle.leaf_hash(data).hex()
