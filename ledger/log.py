"""The log: entries as canonical JSON leaves, signed tree heads, proofs, and full verification."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Connection

from ledger import merkle, store
from ledger.canonical import canonical_json
from ledger.errors import LedgerError, VerificationError
from ledger.note import Checkpoint, NoteError, sign_note, verify_note

ENTRY_FORMAT = 1


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Entry:
    """One leaf: its bytes are the RFC 8785 form of {v, index, kind, time, payload}."""

    index: int
    kind: str
    time: str
    payload: Mapping[str, Any]

    def encode(self) -> bytes:
        return canonical_json(
            {
                "v": ENTRY_FORMAT,
                "index": self.index,
                "kind": self.kind,
                "time": self.time,
                "payload": self.payload,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        value = json.loads(data)
        if not isinstance(value, dict) or value.get("v") != ENTRY_FORMAT:
            raise VerificationError("not a ledger entry of format 1")
        return cls(int(value["index"]), str(value["kind"]), str(value["time"]), value["payload"])

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "time": self.time, "payload": dict(self.payload)}


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    heads: int
    root_hash: bytes


def _fold(stack: Sequence[tuple[int, bytes]]) -> bytes:
    """MTH of a tree from its perfect subtrees, left to right (RFC 9162's split at powers of two)."""
    if not stack:
        return merkle.EMPTY_ROOT
    acc = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        acc = merkle.node_hash(left, acc)
    return acc


class Ledger:
    """A log named `origin` whose heads are signed by the key that `public_key` verifies."""

    def __init__(self, origin: str, public_key: Ed25519PublicKey) -> None:
        self.origin = origin
        self.public_key = public_key

    # -- writing --------------------------------------------------------------------------

    def append(
        self, connection: Connection, items: Sequence[tuple[str, Mapping[str, Any]]], time: str | None = None
    ) -> list[Entry]:
        """Append (kind, payload) items in the caller's transaction; returns them with their indices."""
        stamp = time or utc_now()
        first = store.size(connection)
        made = [Entry(first + i, kind, stamp, payload) for i, (kind, payload) in enumerate(items)]
        store.append(connection, [(e.kind, e.time, e.encode()) for e in made])
        return made

    def sign_head(
        self, connection: Connection, private_key: Ed25519PrivateKey, time: str | None = None
    ) -> store.StoredHead | None:
        """Sign the current tree, after checking it is consistent with the last signed one."""
        tree_size = store.size(connection)
        last = store.latest_head(connection)
        if last is not None and tree_size < last.size:
            raise VerificationError(
                f"the ledger holds {tree_size} entries, fewer than the {last.size} its last signed head covers"
            )
        if tree_size == 0 or (last is not None and last.size == tree_size):
            return last
        root = store.root(connection, tree_size)
        if last is not None:
            proof = store.consistency_proof(connection, last.size, tree_size)
            merkle.verify_consistency(last.size, tree_size, last.root_hash, root, proof)
        text = Checkpoint(self.origin, tree_size, root).to_text()
        head = store.StoredHead(tree_size, root, time or utc_now(), sign_note(text, self.origin, private_key))
        store.add_head(connection, head)
        return head

    # -- reading --------------------------------------------------------------------------

    def entries(self, connection: Connection, kind: str | None = None, start: int = 0) -> Iterator[Entry]:
        for stored in store.read_entries(connection, kind=kind, start=start):
            yield Entry.decode(stored.entry)

    def head(self, connection: Connection) -> store.StoredHead | None:
        return store.latest_head(connection)

    def checkpoint(self, note: str) -> Checkpoint:
        """The checkpoint a note carries, after checking this log's signature on it."""
        try:
            checkpoint = Checkpoint.parse(verify_note(note, self.origin, self.public_key))
        except NoteError as error:
            raise VerificationError(f"signed head is malformed: {error}") from error
        if checkpoint.origin != self.origin:
            raise VerificationError(f"signed head is for log {checkpoint.origin!r}, not {self.origin!r}")
        return checkpoint

    def inclusion(self, connection: Connection, index: int, tree_size: int | None = None) -> tuple[list[bytes], int]:
        """Inclusion proof of entry `index` in the tree of `tree_size` (default: the latest head)."""
        if tree_size is None:
            head = store.latest_head(connection)
            if head is None or head.size <= index:
                raise LedgerError(f"no signed head covers entry {index} yet")
            tree_size = head.size
        if not 0 <= index < tree_size <= store.size(connection):
            raise LedgerError(f"entry {index} is not in a tree of {tree_size} (the log has {store.size(connection)})")
        return store.inclusion_proof(connection, index, tree_size), tree_size

    # -- verification ---------------------------------------------------------------------

    def verify(self, connection: Connection) -> VerifyReport:
        """Recompute the tree from the stored entry bytes; check stored hashes and every signed head.

        Raises `VerificationError` naming the first entry, subtree or head that does not check out.
        """
        heads = store.all_heads(connection)
        next_head = 0
        node_rows = store.read_nodes_in_completion_order(connection)
        stack: list[tuple[int, bytes]] = []
        count = 0
        previous: store.StoredHead | None = None
        for stored in store.read_entries(connection):
            if stored.seq != count:
                raise VerificationError(f"entry {count} is missing from the ledger")
            try:
                entry = Entry.decode(stored.entry)
            except (ValueError, KeyError, TypeError) as error:
                raise VerificationError(f"entry {count} is not a readable ledger entry: {error}") from error
            if (entry.index, entry.kind, entry.time) != (stored.seq, stored.kind, stored.time):
                raise VerificationError(f"entry {count}: its stored index, kind or time differ from its payload")
            leaf = merkle.leaf_hash(stored.entry)
            if leaf != stored.leaf_hash:
                raise VerificationError(f"entry {count} ({stored.kind}) was changed: its leaf hash does not match")
            stack.append((1, leaf))
            count += 1
            while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
                (width, right), (_, left) = stack.pop(), stack.pop()
                node = merkle.node_hash(left, right)
                stack.append((width * 2, node))
                level, idx = (width * 2).bit_length() - 1, (count - width * 2) // (width * 2)
                stored_node = next(node_rows, None)
                if stored_node != (level, idx, node):
                    raise VerificationError(
                        f"the stored hash of entries {count - 2 * width}..{count - 1} does not match them"
                    )
            while next_head < len(heads) and heads[next_head].size == count:
                head = heads[next_head]
                self._check_head(connection, head, _fold(stack), previous)
                previous, next_head = head, next_head + 1
        if next_head < len(heads):
            raise VerificationError(
                f"a signed head covers {heads[next_head].size} entries, but the ledger holds only {count}"
            )
        if next(node_rows, None) is not None:
            raise VerificationError("the ledger holds subtree hashes for entries that do not exist")
        return VerifyReport(count, len(heads), _fold(stack))

    def verify_against(self, connection: Connection, note: str) -> None:
        """Check the log against a head kept elsewhere: catches a truncation that took its heads along."""
        checkpoint = self.checkpoint(note)
        held = store.size(connection)
        if checkpoint.size > held:
            raise VerificationError(
                f"the given head covers {checkpoint.size} entries, the ledger holds only {held}: entries were removed"
            )
        if store.root(connection, checkpoint.size) != checkpoint.root_hash:
            raise VerificationError(f"the ledger's first {checkpoint.size} entries differ from the given head")

    def _check_head(
        self, connection: Connection, head: store.StoredHead, root: bytes, previous: store.StoredHead | None
    ) -> None:
        checkpoint = self.checkpoint(head.note)
        if (checkpoint.size, checkpoint.root_hash) != (head.size, head.root_hash):
            raise VerificationError(f"the signed head of size {head.size} does not match its stored root")
        if root != head.root_hash:
            raise VerificationError(
                f"entries before {head.size} were changed after their head was signed: the roots differ"
            )
        if previous is not None:
            proof = store.consistency_proof(connection, previous.size, head.size)
            merkle.verify_consistency(previous.size, head.size, previous.root_hash, head.root_hash, proof)
