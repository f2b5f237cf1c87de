"""Erasure certificates: an in-toto Statement v1, in a DSSE envelope signed with Ed25519.

The statement carries the claims (request, erasure) and the evidence they rest on: the ledger
entries themselves (their canonical bytes), an inclusion proof for each, and the signed
checkpoint those proofs lead to. The format is documented in docs/certificate.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.canonical import canonical_json
from reports.dsse import INTOTO_PAYLOAD_TYPE, sign_envelope

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://forget.dev/attestations/erasure/v1"
PREDICATE_VERSION = 1


@dataclass(frozen=True)
class LoggedEntry:
    """A ledger entry as evidence: its canonical bytes and its inclusion proof."""

    index: int
    kind: str
    canonical: bytes
    leaf_hash: bytes
    inclusion_proof: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "canonical": base64.b64encode(self.canonical).decode("ascii"),
            "leaf_hash": self.leaf_hash.hex(),
            "inclusion_proof": [h.hex() for h in self.inclusion_proof],
        }


def build_statement(
    *,
    request: Mapping[str, Any],
    erasure: Mapping[str, Any] | None,
    origin: str,
    checkpoint_note: str,
    entries: Sequence[LoggedEntry],
    tool_version: str,
    issued_at: str,
) -> dict[str, Any]:
    """The statement; its subjects are the ledger entry that completed the request and the new models."""
    completed = next(e for e in entries if e.kind == "request.completed")
    subjects = [
        {
            "name": f"ledger:{origin}#{completed.index}",
            "digest": {"sha256": hashlib.sha256(completed.canonical).hexdigest()},
        }
    ]
    for shard in (erasure or {}).get("shards", []):
        if shard.get("checkpoint_after"):
            subjects.append(
                {
                    "name": f"checkpoint:shard-{shard['shard']}",
                    "digest": {"sha256": shard["checkpoint_after"]},
                }
            )
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "version": PREDICATE_VERSION,
            "issued_at": issued_at,
            "tool": {"name": "forget", "version": tool_version},
            "request": dict(request),
            "erasure": dict(erasure) if erasure is not None else None,
            "log": {
                "origin": origin,
                "checkpoint": checkpoint_note,
                "entries": [e.to_dict() for e in entries],
            },
        },
    }


def sign_certificate(statement: Mapping[str, Any], private_key: Ed25519PrivateKey) -> bytes:
    """The envelope as indented JSON; the signed payload inside is the statement's RFC 8785 form."""
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, canonical_json(statement), private_key)
    return (json.dumps(envelope, indent=2) + "\n").encode()
