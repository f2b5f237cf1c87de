"""The log: entries as canonical JSON leaves, signed tree heads, proofs, and full verification.

With an anchor (`ledger.anchor`), the log is also checked against evidence kept outside its
database: every batch of entries is recorded there before it commits; no head is signed unless
the database's log extends the last anchored head and its unsigned tail is what forget appended;
signed heads are copied there after they commit (`anchor_pending`); and `verify` checks the log
against every anchored head.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Connection

from ledger import merkle, store
from ledger.anchor import Anchor, AnchorContents, AnchoredHead, append_record, head_record
from ledger.canonical import canonical_json
from ledger.errors import LedgerError, VerificationError
from ledger.note import Checkpoint, NoteError, sign_note, verify_note

ENTRY_FORMAT = 1
_REFUSED = "nothing was signed"


def utc_now() -> str:
    """The current UTC time as the entries and heads record it: ISO 8601 with microseconds and a `Z`.

    One format, so that times compare as text. Raises nothing.
    """
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def request_id_of(payload: Mapping[str, Any]) -> str | None:
    """The request an entry belongs to, as the store indexes it: the payload's `request_id` when it
    is a string. Migration 0004 applied the same rule to the entries logged before it."""
    value = payload.get("request_id")
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Entry:
    """One leaf: its bytes are the RFC 8785 form of {v, index, kind, time, payload}."""

    index: int
    kind: str
    time: str
    payload: Mapping[str, Any]

    def encode(self) -> bytes:
        """The entry's leaf bytes: RFC 8785 canonical JSON, so that one entry has one encoding and one leaf hash.

        Raises `CanonicalizationError` (from `canonical_json`) for a payload with no canonical form
        (a float that is not finite, a non-string key, a value of a type JSON does not have).
        """
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
        """The entry whose leaf bytes are `data`: the inverse of `encode`, for reading the log back.

        Raises `VerificationError` for a JSON value that is not an entry of format 1; bytes that are not
        JSON raise `ValueError`, a missing field `KeyError` (`Ledger.verify` turns both into a
        `VerificationError` naming the entry).
        """
        value = json.loads(data)
        if not isinstance(value, dict) or value.get("v") != ENTRY_FORMAT:
            raise VerificationError("not a ledger entry of format 1")
        return cls(int(value["index"]), str(value["kind"]), str(value["time"]), value["payload"])

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain JSON values, for `forget ledger` output and reports; raises nothing."""
        return {"index": self.index, "kind": self.kind, "time": self.time, "payload": dict(self.payload)}


@dataclass(frozen=True)
class VerifyReport:
    """What `Ledger.verify` checked, for a person: how many entries and heads, and the root they lead to.

    It is returned only when everything held (verification raises otherwise), so every field is a count of
    things that checked out.
    """

    entries: int
    heads: int
    root_hash: bytes
    anchored: int = 0
    """Heads found in the anchor, each checked against the log."""
    unanchored: int = 0
    """Heads in the database newer than the last anchored one (a crash after signing; the next signing copies them)."""


def _fold(stack: Sequence[tuple[int, bytes]]) -> bytes:
    """MTH of a tree from its perfect subtrees, left to right (RFC 9162's split at powers of two)."""
    if not stack:
        return merkle.EMPTY_ROOT
    acc = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        acc = merkle.node_hash(left, acc)
    return acc


class Ledger:
    """A log named `origin` whose heads are signed by the key that `public_key` verifies.

    With an `anchor`, appends are recorded there, signing is checked against it, and `verify`
    checks every head it holds (see the module's docstring).
    """

    def __init__(self, origin: str, public_key: Ed25519PublicKey, anchor: Anchor | None = None) -> None:
        self.origin = origin
        self.public_key = public_key
        self.anchor = anchor

    # -- writing --------------------------------------------------------------------------

    def append(
        self, connection: Connection, items: Sequence[tuple[str, Mapping[str, Any]]], time: str | None = None
    ) -> list[Entry]:
        """Append (kind, payload) items in the caller's transaction; returns them with their indices."""
        stamp = time or utc_now()
        store.lock_for_append(connection)  # before the size: the entries' indices come from it
        first = store.size(connection)
        made = [Entry(first + i, kind, stamp, payload) for i, (kind, payload) in enumerate(items)]
        rows = [(e.kind, e.time, e.encode(), request_id_of(e.payload)) for e in made]
        if self.anchor is not None and rows:
            # Before the batch commits: an entry in the database with no such record was not ours.
            self.anchor.append([append_record(first, [merkle.leaf_hash(row[2]) for row in rows])])
        store.append(connection, rows)
        return made

    def sign_head(
        self, connection: Connection, private_key: Ed25519PrivateKey, time: str | None = None
    ) -> store.StoredHead | None:
        """Sign the current tree, after checking it is consistent with the last signed one.

        With an anchor, first check the log against it (`check_anchor`); the caller copies the new
        head to the anchor after its transaction commits (`anchor_pending`), never before, so a
        crash in between leaves a head that only the database holds, which the next signing heals.

        Signers and appenders queue on one lock first, so the size, the last head and the root
        read below are one state (on PostgreSQL each statement would otherwise see its own).
        """
        store.lock_for_append(connection)
        tree_size = store.size(connection)
        # The anchor's check already binds the root to the newest signed head (anchored or not).
        checked = self._check_anchor(connection, tree_size)[1] if self.anchor is not None else None
        last = store.latest_head(connection)
        if last is not None and tree_size < last.size:
            raise VerificationError(
                f"the ledger holds {tree_size} entries, fewer than the {last.size} its last signed head covers"
            )
        if tree_size == 0 or (last is not None and last.size == tree_size):
            return last
        root = checked if checked is not None else store.root(connection, tree_size)
        if last is not None and checked is None:
            proof = store.consistency_proof(connection, last.size, tree_size)
            merkle.verify_consistency(last.size, tree_size, last.root_hash, root, proof)
        text = Checkpoint(self.origin, tree_size, root).to_text()
        head = store.StoredHead(tree_size, root, time or utc_now(), sign_note(text, self.origin, private_key))
        store.add_head(connection, head)
        return head

    # -- the anchor -----------------------------------------------------------------------

    def _anchor(self) -> Anchor:
        if self.anchor is None:
            raise LedgerError("this ledger has no anchor")
        return self.anchor

    def read_anchor(self) -> AnchorContents:
        """The anchor's records, once its opening record (if any) names this log."""
        anchor = self._anchor()
        contents = anchor.read()
        if contents.origin is not None and contents.origin != self.origin:
            raise VerificationError(f"the anchor {anchor.location} belongs to log {contents.origin!r}, not this one")
        return contents

    def _anchored_checkpoint(self, head: AnchoredHead) -> None:
        checkpoint = self.checkpoint(head.note)
        if (checkpoint.size, checkpoint.root_hash) != (head.size, head.root_hash):
            raise VerificationError(f"the anchored head of size {head.size} does not match its signed note")

    def check_anchor(self, connection: Connection) -> list[store.StoredHead]:
        """See `_check_anchor`; returns the database's heads that the anchor lacks."""
        return self._check_anchor(connection, store.size(connection))[0]

    def _check_anchor(self, connection: Connection, tree_size: int) -> tuple[list[store.StoredHead], bytes]:
        """Refuse unless the database's log extends the last anchored head and its tail is forget's own.

        In O(log n) reads plus the unsigned tail: the last anchored head's signature; each newer
        head in the database (signed but not yet anchored: a crash) signed by this log's key and
        matching the stored tree; every entry after the last of these heads recorded in the anchor
        as appended by forget, and the root recomputed from those entries' bytes; a consistency
        proof from the anchored head to that root; the stored hashes agreeing with it; and the
        database still holding the anchored head. Returns the database's heads that the anchor
        lacks, and the root of the current tree recomputed so. Raises `VerificationError` ending
        in "nothing was signed" on the first failure.
        """
        contents = self.read_anchor()
        anchored = contents.last
        if anchored is not None:
            self._anchored_checkpoint(anchored)
            if tree_size < anchored.size:
                raise VerificationError(
                    f"the ledger holds {tree_size} entries, fewer than the {anchored.size} of the last anchored head:"
                    f" entries were removed; {_REFUSED}"
                )
        try:
            pending = store.heads_after(connection, anchored.size if anchored else 0)
            for head in pending:
                self._check_unanchored(connection, head, tree_size)
            base = pending[-1].size if pending else anchored.size if anchored else 0
            root = self._tail_root(connection, base, tree_size, contents)
            # Bind the root to the anchored head, and to the newest signed one (their prefixes rest
            # on stored hashes that only these proofs tie to what was signed).
            for earlier, what in ((anchored, "the last anchored head"), (pending[-1] if pending else None, "")):
                if earlier is None:
                    continue
                proof = store.consistency_proof(connection, earlier.size, tree_size)
                try:
                    merkle.verify_consistency(earlier.size, tree_size, earlier.root_hash, root, proof)
                except VerificationError:
                    raise VerificationError(
                        f"the ledger's first {earlier.size} entries differ from"
                        f" {what or f'its signed head of size {earlier.size}'}: the log was rewritten or forked;"
                        f" {_REFUSED}"
                    ) from None
            if root != store.root(connection, tree_size):
                raise VerificationError(
                    f"the stored hashes of entries {base}..{tree_size - 1} do not match them; {_REFUSED}"
                )
        except merkle.TreeRangeError as error:
            raise VerificationError(f"the ledger's stored hashes are incomplete ({error}); {_REFUSED}") from None
        if anchored is not None:
            kept = store.head_at_least(connection, anchored.size)
            if kept is None or kept.size != anchored.size or kept.root_hash != anchored.root_hash:
                raise VerificationError(
                    f"the anchored head of size {anchored.size} is missing from the database (heads were deleted,"
                    f" or the database was restored from an older backup); {_REFUSED}"
                )
        return pending, root

    def _check_unanchored(self, connection: Connection, head: store.StoredHead, tree_size: int) -> None:
        checkpoint = self.checkpoint(head.note)
        if (checkpoint.size, checkpoint.root_hash) != (head.size, head.root_hash):
            raise VerificationError(f"the signed head of size {head.size} does not match its stored root")
        if head.size > tree_size or store.root(connection, head.size) != head.root_hash:
            raise VerificationError(
                f"the database's head of size {head.size} (not yet anchored) does not match its log; {_REFUSED}"
            )

    def _tail_root(self, connection: Connection, base: int, tree_size: int, contents: AnchorContents) -> bytes:
        """The root over the stored hashes of [0, base) and the tail's entries, each of them forget's own."""
        leaves: list[bytes] = []
        for stored in store.read_entries(connection, start=base, stop=tree_size, stream=False):
            index = base + len(leaves)
            if stored.seq != index:
                raise VerificationError(f"entry {index} is missing from the ledger; {_REFUSED}")
            leaf = merkle.leaf_hash(stored.entry)
            _check_entry(stored, index, leaf)
            if not _ours(contents, index, leaf):
                raise VerificationError(
                    f"entry {index} ({stored.kind}) was not appended by forget: the anchor has no record of it;"
                    f" {_REFUSED}"
                )
            leaves.append(leaf)
        if len(leaves) != tree_size - base:
            raise VerificationError(f"entry {base + len(leaves)} is missing from the ledger; {_REFUSED}")
        return store.root_with_tail(connection, tree_size, base, leaves)

    def anchor_pending(self, connection: Connection) -> list[store.StoredHead]:
        """Copy to the anchor the database's signed heads newer than its last one.

        Called once the transaction that signed a head has committed; also heals a head left by a
        crash between that commit and this copy. Each head's signature by this log's key is
        checked; that is enough, since only `sign_head`, after its checks against the anchor,
        signs with it (and whoever holds the key needs no forged database to lie).
        """
        contents = self.read_anchor()
        last = contents.last
        pending = store.heads_after(connection, last.size if last else 0)
        for head in pending:
            checkpoint = self.checkpoint(head.note)
            if (checkpoint.size, checkpoint.root_hash) != (head.size, head.root_hash):
                raise VerificationError(f"the signed head of size {head.size} does not match its stored root")
        self._anchor().append([head_record(h.size, h.root_hash, h.time, h.note) for h in pending])
        return pending

    # -- reading --------------------------------------------------------------------------

    def entries(
        self,
        connection: Connection,
        kind: str | None = None,
        start: int = 0,
        stop: int | None = None,
        request_id: str | None = None,
    ) -> Iterator[Entry]:
        """Entries of indices start..stop-1 in order, of one kind if given; see `stored_entries`."""
        for _, entry in self.stored_entries(connection, kind, start, stop, request_id):
            yield entry

    def stored_entries(
        self,
        connection: Connection,
        kind: str | None = None,
        start: int = 0,
        stop: int | None = None,
        request_id: str | None = None,
    ) -> Iterator[tuple[store.StoredEntry, Entry]]:
        """Each entry as stored (its bytes and leaf hash) and decoded. With `request_id`, the entries
        of that request, read through the store's index and checked against their payloads: an
        entry whose payload names another request raises `VerificationError`. Only an unbounded
        read streams (in batches, a server-side cursor on PostgreSQL)."""
        stream = stop is None and request_id is None
        for stored in store.read_entries(connection, kind, start, stop, stream, request_id):
            entry = Entry.decode(stored.entry)
            if request_id is not None and request_id_of(entry.payload) != request_id:
                raise VerificationError(f"entry {stored.seq}: its stored request id differs from its payload")
            yield stored, entry

    def head(self, connection: Connection) -> store.StoredHead | None:
        """The latest signed head in the database, or None before the first signing.

        Not checked here (the database is not trusted): `checkpoint(head.note)` checks its signature,
        and `verify` checks it against the entries and the anchor. Raises nothing of its own.
        """
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
        contents = self.read_anchor() if self.anchor is not None else None
        if contents is not None:
            contents.appends.check()
        anchored = contents.heads if contents is not None else ()
        for kept in anchored:
            self._anchored_checkpoint(kept)
        # Entries after the last head must have been appended by forget (see `check_anchor`).
        tail_from = max([h.size for h in heads] + [h.size for h in anchored] + [0]) if contents is not None else None
        next_head = next_anchored = 0
        node_rows = store.read_nodes_in_completion_order(connection)
        stack: list[tuple[int, bytes]] = []
        count = 0
        previous: store.StoredHead | None = None
        for stored in store.read_entries(connection):
            if stored.seq != count:
                raise VerificationError(f"entry {count} is missing from the ledger")
            leaf = merkle.leaf_hash(stored.entry)
            _check_entry(stored, count, leaf)
            if (
                contents is not None
                and tail_from is not None
                and count >= tail_from
                and not _ours(contents, count, leaf)
            ):
                raise VerificationError(
                    f"entry {count} ({stored.kind}) was not appended by forget: the anchor has no record of it"
                )
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
            while next_anchored < len(anchored) and anchored[next_anchored].size == count:
                if _fold(stack) != anchored[next_anchored].root_hash:
                    raise VerificationError(
                        f"entries before {count} differ from the anchored head of size {count}:"
                        " the log was rewritten after that head was signed"
                    )
                next_anchored += 1
            while next_head < len(heads) and heads[next_head].size == count:
                head = heads[next_head]
                self._check_head(connection, head, _fold(stack), previous)
                previous, next_head = head, next_head + 1
        if next_head < len(heads):
            raise VerificationError(
                f"a signed head covers {heads[next_head].size} entries, but the ledger holds only {count}"
            )
        if next_anchored < len(anchored):
            raise VerificationError(
                f"the anchored head of size {anchored[next_anchored].size} covers more entries than the ledger's"
                f" {count}: entries were removed"
            )
        if next(node_rows, None) is not None:
            raise VerificationError("the ledger holds subtree hashes for entries that do not exist")
        unanchored = _match_anchored(heads, anchored) if contents is not None else 0
        return VerifyReport(count, len(heads), _fold(stack), len(anchored), unanchored)

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


def _check_entry(stored: store.StoredEntry, index: int, leaf: bytes) -> None:
    try:
        entry = Entry.decode(stored.entry)
    except (ValueError, KeyError, TypeError) as error:
        raise VerificationError(f"entry {index} is not a readable ledger entry: {error}") from error
    if (entry.index, entry.kind, entry.time) != (stored.seq, stored.kind, stored.time):
        raise VerificationError(f"entry {index}: its stored index, kind or time differ from its payload")
    if leaf != stored.leaf_hash:
        raise VerificationError(f"entry {index} ({stored.kind}) was changed: its leaf hash does not match")
    if stored.request_id != request_id_of(entry.payload):
        raise VerificationError(f"entry {index} ({stored.kind}): its stored request id differs from its payload")


def _match_anchored(heads: Sequence[store.StoredHead], anchored: Sequence[AnchoredHead]) -> int:
    """Every anchored head must be in the database; a database head may lack from the anchor only
    if it is newer than every anchored one (a crash between the two writes). Returns how many do."""
    in_database = {head.size: head for head in heads}
    for anchored_head in anchored:
        kept = in_database.get(anchored_head.size)
        if kept is None:
            raise VerificationError(
                f"the anchored head of size {anchored_head.size} is missing from the database: heads were deleted,"
                " or the database was restored from an older backup"
            )
        if kept.root_hash != anchored_head.root_hash:
            raise VerificationError(f"the database's head of size {anchored_head.size} differs from the anchored one")
    last = anchored[-1].size if anchored else 0
    sizes = {h.size for h in anchored}
    for head in heads:
        if head.size <= last and head.size not in sizes:
            raise VerificationError(f"the database's signed head of size {head.size} is missing from the anchor")
    return sum(1 for head in heads if head.size > last)


def _ours(contents: AnchorContents, index: int, leaf: bytes) -> bool:
    """Whether the anchor records forget appending this leaf at this index."""
    return contents.recorded(index, leaf)
