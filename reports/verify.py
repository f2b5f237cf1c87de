"""Offline verification of a certificate with the certificate and a public key alone.

Imports neither torch nor a database driver. Every check raises `CertificateError` naming what
failed; a certificate that returns from `verify_certificate` is valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import merkle
from ledger.errors import VerificationError
from ledger.note import Checkpoint, NoteError, verify_note
from reports.certificate import PREDICATE_TYPE, STATEMENT_TYPE
from reports.dsse import envelope_payload, parse_envelope, signature_for, verify_envelope
from reports.errors import CertificateError, CertificateFormatError


@dataclass(frozen=True)
class VerifiedCertificate:
    statement: dict[str, Any]
    checkpoint: Checkpoint
    entries: int
    later_size: int | None = None

    def summary(self) -> dict[str, Any]:
        request = self.predicate["request"]
        return {
            "request_id": request["request_id"],
            "outcome": request["outcome"],
            "records_erased": request["records_erased"],
            "deadline_met": request["deadline_met"],
            "origin": self.checkpoint.origin,
            "tree_size": self.checkpoint.size,
            "root_hash": self.checkpoint.root_hash.hex(),
            "entries_proven": self.entries,
            "later_tree_size": self.later_size,
        }

    @property
    def predicate(self) -> dict[str, Any]:
        predicate: dict[str, Any] = self.statement["predicate"]
        return predicate


def _checkpoint(note: str, origin: str, public_key: Ed25519PublicKey, what: str) -> Checkpoint:
    try:
        checkpoint = Checkpoint.parse(verify_note(note, origin, public_key))
    except VerificationError as error:
        raise CertificateError(f"{what} does not verify: {error}") from error
    except NoteError as error:
        raise CertificateError(f"{what} is malformed: {error}") from error
    if checkpoint.origin != origin:
        raise CertificateError(f"{what} is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint


def _field(mapping: Any, *path: str) -> Any:
    value = mapping
    for name in path:
        if not isinstance(value, dict) or name not in value:
            raise CertificateError(f"the statement has no {'.'.join(path)}")
        value = value[name]
    return value


def _entries(predicate: dict[str, Any], checkpoint: Checkpoint) -> dict[str, list[dict[str, Any]]]:
    """Check each entry's leaf hash and inclusion proof; returns their decoded payloads by kind."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in _field(predicate, "log", "entries"):
        index = item.get("index")
        try:
            canonical = base64.b64decode(item["canonical"], validate=True)
            proof = [bytes.fromhex(h) for h in item["inclusion_proof"]]
            stated_leaf = bytes.fromhex(item["leaf_hash"])
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            raise CertificateError(f"ledger entry {index} in the certificate is malformed") from error
        leaf = merkle.leaf_hash(canonical)
        if leaf != stated_leaf:
            raise CertificateError(f"ledger entry {index}: its leaf hash does not match its bytes")
        try:
            merkle.verify_inclusion(leaf, int(index), checkpoint.size, proof, checkpoint.root_hash)
        except (VerificationError, ValueError, TypeError) as error:
            raise CertificateError(f"ledger entry {index}: the inclusion proof fails: {error}") from error
        entry = json.loads(canonical)
        if entry.get("index") != index or entry.get("kind") != item.get("kind"):
            raise CertificateError(f"ledger entry {index}: its index or kind differ from the logged bytes")
        by_kind.setdefault(entry["kind"], []).append(entry["payload"])
    return by_kind


def _claims_match_log(predicate: dict[str, Any], logged: dict[str, list[dict[str, Any]]]) -> None:
    """The statement's claims must be what the log says, field by field."""
    request = _field(predicate, "request")
    completed = [p for p in logged.get("request.completed", []) if p.get("request_id") == request.get("request_id")]
    if len(completed) != 1:
        raise CertificateError("the certificate does not carry the ledger entry that completed its request")
    entry = completed[0]
    for name in ("subject_key", "outcome", "records_erased", "received_at", "deadline", "completed_at",
                 "deadline_met"):  # fmt: skip
        if request.get(name) != entry.get(name):
            raise CertificateError(f"the statement's request.{name} differs from the logged completion")
    erasure = predicate.get("erasure")
    if entry["outcome"] == "no_data":
        if erasure is not None:
            raise CertificateError("the statement claims an erasure, but the log says no data was held")
        return
    if not isinstance(erasure, dict):
        raise CertificateError("the statement has no erasure, but the log says records were erased")
    planned = [p for p in logged.get("erasure.planned", []) if p.get("run_id") == entry.get("run_id")]
    if len(planned) != 1:
        raise CertificateError("the certificate does not carry the ledger entry that planned its erasure")
    rewinds = {r["shard"]: r for r in planned[0]["rewinds"]}
    after = entry.get("checkpoints_after", {})
    for shard in _field(erasure, "shards"):
        number = shard.get("shard")
        logged_rewind = rewinds.get(number)
        if logged_rewind is None:
            raise CertificateError(f"the statement's shard {number} was not rewound by the logged plan")
        for name in ("from_slice", "restored_checkpoint", "checkpoint_before"):
            if shard.get(name) != logged_rewind.get(name):
                raise CertificateError(f"the statement's shard {number} {name} differs from the logged plan")
        if shard.get("checkpoint_after") != after.get(str(number)):
            raise CertificateError(f"the statement's shard {number} checkpoint_after differs from the log")


def _subjects_match(statement: dict[str, Any]) -> None:
    """The in-toto subjects name the completion entry and the new models; they must match the predicate."""
    predicate = statement["predicate"]
    completed = [e for e in predicate["log"]["entries"] if e.get("kind") == "request.completed"]
    name = f"ledger:{predicate['log']['origin']}#{completed[0]['index']}"
    expected = {name: hashlib.sha256(base64.b64decode(completed[0]["canonical"])).hexdigest()}
    for shard in (predicate.get("erasure") or {}).get("shards", []):
        expected[f"checkpoint:shard-{shard['shard']}"] = shard["checkpoint_after"]
    subjects = _field(statement, "subject")
    stated = {s.get("name"): s.get("digest", {}).get("sha256") for s in subjects if isinstance(s, dict)}
    if stated != expected or len(subjects) != len(expected):
        raise CertificateError("the statement's subjects do not match its request and checkpoints")


def parse_later_checkpoint(data: bytes) -> dict[str, Any]:
    """A bundle from `forget ledger head --consistency-from SIZE`: a signed note and a proof."""
    try:
        bundle = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CertificateFormatError("the later checkpoint is not a JSON bundle from `forget ledger head`") from error
    if not isinstance(bundle, dict) or not {"note", "consistency_from", "consistency_proof"} <= set(bundle):
        raise CertificateFormatError("the later checkpoint lacks note, consistency_from or consistency_proof")
    return bundle


def verify_certificate(
    data: bytes, public_key: Ed25519PublicKey, later_checkpoint: bytes | None = None
) -> VerifiedCertificate:
    envelope = parse_envelope(data)
    # Key first (a wrong key is the likeliest mistake), then the content, each check with its own
    # message, and the envelope signature last: it covers everything, so it would mask the rest.
    signature_for(envelope, public_key)
    payload = envelope_payload(envelope)
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CertificateError("the signed statement is not JSON") from error
    if _field(statement, "_type") != STATEMENT_TYPE:
        raise CertificateError(f"the statement type is not {STATEMENT_TYPE}")
    if _field(statement, "predicateType") != PREDICATE_TYPE:
        raise CertificateError(f"the predicate type is not {PREDICATE_TYPE}")
    predicate = _field(statement, "predicate")
    origin = _field(predicate, "log", "origin")
    checkpoint = _checkpoint(_field(predicate, "log", "checkpoint"), origin, public_key, "the signed checkpoint")
    logged = _entries(predicate, checkpoint)
    _claims_match_log(predicate, logged)
    _subjects_match(statement)
    verify_envelope(envelope, public_key)
    later_size = None
    if later_checkpoint is not None:
        bundle = parse_later_checkpoint(later_checkpoint)
        later = _checkpoint(bundle["note"], origin, public_key, "the later checkpoint")
        if bundle["consistency_from"] != checkpoint.size:
            raise CertificateError(
                f"the later checkpoint's proof starts at size {bundle['consistency_from']},"
                f" the certificate's log has size {checkpoint.size}"
            )
        try:
            proof = [bytes.fromhex(h) for h in bundle["consistency_proof"]]
            merkle.verify_consistency(checkpoint.size, later.size, checkpoint.root_hash, later.root_hash, proof)
        except (VerificationError, ValueError, TypeError) as error:
            raise CertificateError(f"the log did not only grow since the certificate: {error}") from error
        later_size = later.size
    return VerifiedCertificate(statement, checkpoint, sum(map(len, logged.values())), later_size)
