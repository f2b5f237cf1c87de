"""The ledger as the application shows it: head, entries, proofs, export, verification, keys."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from forget.data.statistics import verify_statistics
from forget.erasure.reconcile import reconcile_requests
from forget.training.trust import verify_checkpoint_table
from forget.workspace.core import Workspace
from ledger import merkle, store
from ledger.errors import LedgerError
from ledger.log import Entry, VerifyReport
from ledger.note import verifier_key


@dataclass(frozen=True)
class InclusionProof:
    """An entry's RFC 9162 inclusion proof in the tree of `tree_size`, checked before it is handed out,
    with the signed head of that size when there is one (`forget ledger prove`).
    """

    index: int
    tree_size: int
    leaf_hash: str
    proof: tuple[str, ...]
    root_hash: str
    head_note: str | None
    """The signed note of the head of this size, when one was signed at exactly this size."""

    def to_dict(self) -> dict[str, Any]:
        """The proof as JSON-ready values (hashes in hex)."""
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash,
            "proof": list(self.proof),
            "root_hash": self.root_hash,
            "head_note": self.head_note,
        }


def latest_note(workspace: Workspace) -> str:
    """The latest signed tree head, as its C2SP signed note (`forget ledger head`).

    Raises `ledger.errors.LedgerError` (exit 3 through `forget.errors.translated()`) before any head is signed.
    """
    with workspace.datastore.snapshot() as tx:
        head = store.latest_head(tx)
    if head is None:
        raise LedgerError("the ledger has no signed head yet: ingest or train first")
    return head.note


def ledger_size(workspace: Workspace) -> int:
    """How many entries the ledger holds now (one indexed query); raises nothing of its own."""
    with workspace.datastore.snapshot() as tx:
        return store.size(tx)


def entries(workspace: Workspace, kind: str | None = None) -> Iterator[Entry]:
    """The ledger's entries in log order (only those of `kind` when given), read in one snapshot.

    Raises `ledger.errors.LedgerError` for an entry that cannot be decoded.
    """
    with workspace.datastore.snapshot() as tx:
        yield from workspace.ledger.entries(tx, kind=kind)


def prove(workspace: Workspace, index: int, tree_size: int | None = None) -> InclusionProof:
    """An inclusion proof, checked against the root before it is handed out.

    Raises `ledger.errors.LedgerError` (exit 3 through `forget.errors.translated()`) for an index
    or size beyond the log, or a stored tree that does not match its signed head, and
    `VerificationError` (exit 1) for a proof that does not verify.
    """
    with workspace.datastore.snapshot() as tx:
        proof, size = workspace.ledger.inclusion(tx, index, tree_size)
        stored = store.read_entry(tx, index)
        assert stored is not None
        root = store.root(tx, size)
        head = next((h for h in store.all_heads(tx) if h.size == size), None)
    leaf = merkle.leaf_hash(stored.entry)
    merkle.verify_inclusion(leaf, index, size, proof, root)
    if head is not None and head.root_hash != root:
        raise LedgerError(f"the stored tree of size {size} does not match its signed head: run `forget ledger verify`")
    return InclusionProof(
        index, size, leaf.hex(), tuple(p.hex() for p in proof), root.hex(), head.note if head else None
    )


def export(workspace: Workspace, out: IO[str]) -> int:
    """JSON Lines: one object per entry with its index, kind, leaf hash and canonical bytes (base64).

    The canonical bytes are what the leaf hash covers, so an outside party recomputes every leaf
    and the root from this file alone; `entry` repeats them as JSON for reading.

    Raises `ledger.errors.LedgerError` for an entry that cannot be read back.
    """
    count = 0
    with workspace.datastore.snapshot() as tx:
        for stored in store.read_entries(tx):
            line = {
                "index": stored.seq,
                "kind": stored.kind,
                "leaf_hash": stored.leaf_hash.hex(),
                "canonical": base64.b64encode(stored.entry).decode("ascii"),
                "entry": json.loads(stored.entry),
            }
            out.write(json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n")
            count += 1
    return count


def verify(workspace: Workspace, kept_head: str | None = None) -> VerifyReport:
    """Verify the whole log, and against a head kept outside the database when one is given; then
    that the mutable tables agree with it: each checkpoints row is the lineage's current checkpoint
    and each requests row what its request entries say; and that the schema rule's kept counts are
    those of the stored records (forget.data.statistics), all in one snapshot.

    Raises `ledger.errors.VerificationError` or `CheckpointLineageError` (exit 1) naming the
    first thing that does not check out, `RequestMismatchError` (exit 1) for a request row the log
    contradicts, and `StatisticsMismatchError` (exit 1) for kept counts the records contradict.
    """
    ledger, datastore = workspace.ledger, workspace.datastore  # opened first: they may read the database
    with datastore.snapshot() as tx:
        report = ledger.verify(tx)
        if kept_head is not None:
            ledger.verify_against(tx, kept_head)
        verify_checkpoint_table(workspace, tx)
        reconcile_requests(workspace, tx)
        if workspace.config.schema is not None:
            verify_statistics(workspace.config.schema, datastore, tx)
    return report


def consistency_bundle(workspace: Workspace, old_size: int) -> dict[str, Any]:
    """The latest signed head and a proof that it extends the tree of `old_size` (RFC 9162 2.1.4).

    Raises `ledger.errors.LedgerError` (exit 3) before any head is signed, or for `old_size` out of range.
    """
    with workspace.datastore.snapshot() as tx:
        head = store.latest_head(tx)
        if head is None:
            raise LedgerError("the ledger has no signed head yet")
        if not 0 < old_size <= head.size:
            raise LedgerError(f"--consistency-from must be between 1 and the head's size {head.size}")
        proof = store.consistency_proof(tx, old_size, head.size)
    return {"note": head.note, "consistency_from": old_size, "consistency_proof": [h.hex() for h in proof]}


def public_keys(workspace: Workspace) -> tuple[str, str]:
    """The signing key's public half as PEM, and as a C2SP note verifier key.

    Raises `KeyMismatchError` (exit 3) when the public key file is not the pinned one.
    """
    return workspace.public_key_pem().decode(), verifier_key(workspace.config.origin, workspace.ledger.public_key)
