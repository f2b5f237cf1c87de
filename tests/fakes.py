"""In-memory stand-ins for the data store and the ledger's storage: the application without a database.

`FakeStore` implements `forget.store.interface.Store` with dicts; `FakeLedger` is a real
`ledger.log.Ledger` whose appends, signed heads and reads go to the same memory instead of SQL
(entries are the real canonical bytes, leaf hashes and signed notes, so `Entry.decode`,
`reconcile_requests` and the evidence schema work on them). A transaction applies its writes at
once and undoes them all if its block raises, as a database would. What the fake ledger does not
cover (proofs, `verify`, the anchor) raises: that is the SQL backend's to test.

`make_fake_workspace` builds a `Workspace` on them, with real keys in a temporary folder; the
`fake_workspace` fixture (tests/conftest.py) hands one to a test. Nothing here imports torch or
opens a database.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from forget.store.interface import (
    LineageRow,
    OpenRequestExistsError,
    RequestEntryRow,
    RequestRow,
    ShardRows,
    StoredRecord,
    Transaction,
)
from forget.subjects.pseudonym import generate_key_file, load_key_file
from forget.workspace.config import WorkspaceConfig
from forget.workspace.core import Workspace
from forget.workspace.keys import KEYS_DIR, PSEUDONYM_KEY, PUBLIC_KEY, SIGNING_KEY, Pins
from ledger import merkle
from ledger.keys import generate_signing_key, public_key_pem, write_private_key
from ledger.log import Entry, Ledger, request_id_of, utc_now
from ledger.note import Checkpoint, sign_note
from ledger.store import StoredEntry, StoredHead

FAKE_REVISION = "fake"


class FakeTransaction:
    """What `FakeStore.transaction()` yields: a token, checked by every method that takes one."""

    def __init__(self, store: FakeStore, writable: bool) -> None:
        self.store = store
        self.writable = writable
        self.open = True


class FakeStore:
    """`forget.store.interface.Store` in memory (see the module's docstring)."""

    def __init__(self, pins: Mapping[str, str] | None = None) -> None:
        self.records: dict[str, StoredRecord] = {}
        self.checkpoints: dict[tuple[int, int], str] = {}
        self.requests: dict[str, RequestRow] = {}
        self.pin_rows: dict[str, str] = dict(pins or {})
        self.statistics: dict[tuple[str, str, int], int] | None = None
        self.entries: list[StoredEntry] = []
        """The ledger's entries, appended by `FakeLedger`."""
        self.heads: list[StoredHead] = []
        self.transactions = 0
        """How many units of work committed (a test can check that a change was one)."""

    # -- units of work ----------------------------------------------------------------------

    def _state(self) -> tuple[Any, ...]:
        return (copy.copy(self.records), copy.copy(self.checkpoints), copy.copy(self.requests),
                copy.copy(self.pin_rows), copy.copy(self.statistics), len(self.entries), len(self.heads))  # fmt: skip

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        saved = self._state()
        tx = FakeTransaction(self, writable=True)
        try:
            yield cast(Transaction, tx)
        except BaseException:
            records, checkpoints, requests, pins, statistics, entries, heads = saved
            self.records, self.checkpoints, self.requests, self.pin_rows = records, checkpoints, requests, pins
            self.statistics = statistics
            del self.entries[entries:], self.heads[heads:]
            raise
        finally:
            tx.open = False
        self.transactions += 1

    @contextmanager
    def snapshot(self) -> Iterator[Transaction]:
        tx = FakeTransaction(self, writable=False)
        try:
            yield cast(Transaction, tx)
        finally:
            tx.open = False

    @contextmanager
    def advisory_lock(self, name: str) -> Iterator[bool]:
        yield True

    def _writing(self, tx: Transaction) -> None:
        fake = cast(FakeTransaction, tx)
        assert isinstance(fake, FakeTransaction) and fake.store is self, "not a transaction of this store"
        assert fake.open and fake.writable, "a write outside an open transaction()"

    def _reading(self, tx: Transaction | None) -> None:
        if tx is not None:
            fake = cast(FakeTransaction, tx)
            assert isinstance(fake, FakeTransaction) and fake.store is self and fake.open

    # -- schema -----------------------------------------------------------------------------

    def create_schema(self) -> None:
        pass

    def check_schema(self) -> None:
        pass

    def schema_revision(self) -> str | None:
        return FAKE_REVISION

    def close(self) -> None:
        pass

    # -- records ----------------------------------------------------------------------------

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        return {key for key in keys if key in self.records}

    def insert_records(self, tx: Transaction, rows: Iterable[StoredRecord]) -> None:
        self._writing(tx)
        for row in rows:
            assert row.record_key not in self.records, "duplicate record key"
            self.records[row.record_key] = row

    def iter_records(self, tx: Transaction) -> Iterator[StoredRecord]:
        self._reading(tx)
        for key in sorted(self.records):
            yield self.records[key]

    def record_batches(self, tx: Transaction, size: int) -> Iterator[list[tuple[str, int, bytes]]]:
        self._reading(tx)
        rows = [(r.subject_key, r.label, r.features) for r in self.records.values()]
        for start in range(0, len(rows), size):
            yield rows[start : start + size]

    def shard_rows(self, shard: int, slices: int) -> ShardRows:
        keys: list[list[str]] = [[] for _ in range(slices)]
        labels: list[list[int]] = [[] for _ in range(slices)]
        blobs: list[list[bytes]] = [[] for _ in range(slices)]
        for key in sorted(self.records):
            row = self.records[key]
            if row.shard == shard:
                keys[row.slice].append(key)
                labels[row.slice].append(row.label)
                blobs[row.slice].append(row.features)
        return ShardRows(tuple(map(tuple, keys)), tuple(map(tuple, labels)), tuple(b"".join(b) for b in blobs))

    def placements_of(self, record_keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        return {key: (self.records[key].shard, self.records[key].slice) for key in record_keys if key in self.records}

    def records_of_subjects(self, subject_keys: Sequence[str], tx: Transaction | None = None) -> dict[str, list[str]]:
        self._reading(tx)
        wanted = set(subject_keys)
        found: dict[str, list[str]] = {}
        for key in sorted(self.records):
            if self.records[key].subject_key in wanted:
                found.setdefault(self.records[key].subject_key, []).append(key)
        return found

    def delete_records(self, tx: Transaction, record_keys: Sequence[str]) -> int:
        self._writing(tx)
        return sum(self.records.pop(key, None) is not None for key in record_keys)

    def read_records(self, tx: Transaction, record_keys: Sequence[str]) -> list[StoredRecord]:
        self._reading(tx)
        return [self.records[key] for key in sorted(set(record_keys)) if key in self.records]

    def schema_statistics(self, tx: Transaction) -> dict[tuple[str, str, int], int] | None:
        self._reading(tx)
        return dict(self.statistics) if self.statistics is not None else None

    def write_schema_statistics(self, tx: Transaction, counts: Mapping[tuple[str, str, int], int] | None) -> None:
        self._writing(tx)
        self.statistics = dict(counts) if counts else None

    def shard_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for row in self.records.values():
            counts[row.shard] = counts.get(row.shard, 0) + 1
        return counts

    def slice_record_keys(self, tx: Transaction, shard: int, slice_: int) -> list[str]:
        self._reading(tx)
        return sorted(k for k, r in self.records.items() if (r.shard, r.slice) == (shard, slice_))

    def slices_record_keys(
        self, tx: Transaction, slices: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], list[str]]:
        return {place: self.slice_record_keys(tx, *place) for place in slices}

    def erased_subjects(self, subject_keys: Sequence[str]) -> set[str]:
        erased = {r.subject_key for r in self.requests.values() if r.outcome == "erased"}
        return erased & set(subject_keys)

    def vacuum_records(self) -> None:
        pass

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint_map(self, tx: Transaction | None = None) -> dict[tuple[int, int], str]:
        self._reading(tx)
        return dict(self.checkpoints)

    def set_checkpoint(self, tx: Transaction, shard: int, slice_: int, digest: str) -> None:
        self._writing(tx)
        self.checkpoints[(shard, slice_)] = digest

    def drop_checkpoints(self, tx: Transaction, shard: int, from_slice: int) -> list[str]:
        self._writing(tx)
        dropped = [key for key in self.checkpoints if key[0] == shard and key[1] >= from_slice]
        return [self.checkpoints.pop(key) for key in dropped]

    def referenced_digests(self) -> set[str]:
        return set(self.checkpoints.values())

    # -- pins -------------------------------------------------------------------------------

    def set_pins(self, tx: Transaction, pins: dict[str, str]) -> None:
        self._writing(tx)
        assert not set(pins) & set(self.pin_rows), "a pin is written once"
        self.pin_rows.update(pins)

    def pins(self) -> dict[str, str]:
        return dict(self.pin_rows)

    # -- requests ---------------------------------------------------------------------------

    def add_request(self, tx: Transaction, row: RequestRow) -> None:
        self._writing(tx)
        assert row.request_id not in self.requests, "duplicate request id"
        open_states = ("pending", "running")
        if row.state in open_states and any(
            r.subject_key == row.subject_key and r.state in open_states for r in self.requests.values()
        ):
            raise OpenRequestExistsError("the subject already has an open request")
        self.requests[row.request_id] = row

    def update_request(self, tx: Transaction, request_id: str, **values: object) -> None:
        self._writing(tx)
        if request_id in self.requests:  # as SQL's UPDATE: no row, no change
            self.requests[request_id] = dataclasses.replace(self.requests[request_id], **values)  # type: ignore[arg-type]

    def get_request(self, request_id: str, tx: Transaction | None = None) -> RequestRow | None:
        self._reading(tx)
        return self.requests.get(request_id)

    def find_requests(self, *, states: Sequence[str] | None = None, subject_key: str | None = None) -> list[RequestRow]:
        rows = [
            row
            for row in self.requests.values()
            if (states is None or row.state in states) and subject_key in (None, row.subject_key)
        ]
        return sorted(rows, key=lambda r: (r.deadline, r.request_id))

    def all_requests(self, tx: Transaction) -> list[RequestRow]:
        self._reading(tx)
        return [self.requests[key] for key in sorted(self.requests)]

    def quarantined_shards(self, kind: str, states: Sequence[str], tx: Transaction | None = None) -> set[int]:
        self._reading(tx)
        open_ = {row.request_id: row.subject_key for row in self.requests.values() if row.state in states}
        named = {int(s) for e in self._decoded() if e.kind == kind and e.payload.get("request_id") in open_
                 for s in e.payload["shards"]}  # fmt: skip
        subjects = set(open_.values())
        return named | {r.shard for r in self.records.values() if r.subject_key in subjects}

    # -- the ledger's entries ----------------------------------------------------------------

    def _decoded(self, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
        for stored in self.entries[start:stop]:
            yield Entry.decode(stored.entry)

    def request_entries(self, tx: Transaction, kinds: Sequence[str]) -> list[RequestEntryRow]:
        self._reading(tx)
        fields = ("request_id", "subject_key", "received_at", "deadline", "months", "outcome", "records_erased",
                  "completed_at")  # fmt: skip
        return [(e.index, e.kind, *(e.payload.get(f) for f in fields)) for e in self._decoded() if e.kind in kinds]

    def lineage_window(
        self, tx: Transaction, start: int, stop: int, checkpoint: str, manifest: str, planned: str
    ) -> list[LineageRow]:
        self._reading(tx)
        rows: list[LineageRow] = []
        for e in self._decoded(start, stop):
            if e.kind in (checkpoint, manifest):
                rows.append((e.index, e.kind, e.payload.get("shard"), e.payload.get("slice"),
                             e.payload.get("checkpoint_sha256")))  # fmt: skip
            elif e.kind == planned:
                rows += [(e.index, e.kind, r.get("shard"), r.get("from_slice"), None) for r in e.payload["rewinds"]]
        return sorted(rows, key=lambda row: row[0], reverse=True)


class FakeLedger(Ledger):
    """A `Ledger` whose storage is a `FakeStore`'s memory: append, sign, read. Proofs, `verify` and
    the anchor stay the SQL backend's (they raise here, reaching for SQL on a fake transaction)."""

    def __init__(self, store: FakeStore, origin: str, public_key: Ed25519PublicKey) -> None:
        super().__init__(origin, public_key, anchor=None)
        self.store = store

    def append(
        self, connection: Transaction, items: Sequence[tuple[str, Mapping[str, Any]]], time: str | None = None
    ) -> list[Entry]:
        self.store._writing(connection)
        stamp = time or utc_now()
        first = len(self.store.entries)
        made = [Entry(first + i, kind, stamp, payload) for i, (kind, payload) in enumerate(items)]
        for entry in made:
            data = entry.encode()
            stored = StoredEntry(entry.index, entry.kind, entry.time, data, merkle.leaf_hash(data),
                                 request_id_of(entry.payload))  # fmt: skip
            self.store.entries.append(stored)
        return made

    def sign_head(
        self, connection: Transaction, private_key: Ed25519PrivateKey, time: str | None = None
    ) -> StoredHead | None:
        self.store._writing(connection)
        size = len(self.store.entries)
        last = self.store.heads[-1] if self.store.heads else None
        if size == 0 or (last is not None and last.size == size):
            return last
        root = merkle.root_hash([stored.leaf_hash for stored in self.store.entries])
        note = sign_note(Checkpoint(self.origin, size, root).to_text(), self.origin, private_key)
        head = StoredHead(size, root, time or utc_now(), note)
        self.store.heads.append(head)
        return head

    def stored_entries(
        self,
        connection: Transaction,
        kind: str | None = None,
        start: int = 0,
        stop: int | None = None,
        request_id: str | None = None,
    ) -> Iterator[tuple[StoredEntry, Entry]]:
        self.store._reading(connection)
        for stored in self.store.entries[start:stop]:
            if (kind is None or stored.kind == kind) and (request_id is None or stored.request_id == request_id):
                yield stored, Entry.decode(stored.entry)

    def head(self, connection: Transaction) -> StoredHead | None:
        self.store._reading(connection)
        return self.store.heads[-1] if self.store.heads else None


def make_fake_workspace(root: Path, config: WorkspaceConfig | None = None) -> Workspace:
    """A workspace in `root` with real keys, whose store and ledger are in memory (pins included)."""
    config = config or WorkspaceConfig(shards=2, slices=2, seed=1, origin="forget.local/fake", database="fake://")
    keys = root / KEYS_DIR
    keys.mkdir(parents=True, mode=0o700)
    generate_key_file(keys / PSEUDONYM_KEY)
    signing = generate_signing_key()
    write_private_key(keys / SIGNING_KEY, signing)
    (keys / PUBLIC_KEY).write_bytes(public_key_pem(signing.public_key()))
    raw = signing.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pins = Pins(load_key_file(keys / PSEUDONYM_KEY, config.identity).fingerprint(), hashlib.sha256(raw).hexdigest(),
                config.identity)  # fmt: skip
    store = FakeStore(pins.rows())
    return Workspace(root, config, store=store, ledger=FakeLedger(store, config.origin, signing.public_key()))
