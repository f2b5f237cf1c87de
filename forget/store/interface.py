"""The data store as the application sees it: one interface, its row types, and its unit of work.

Application modules (forget.workspace, forget.data, forget.training, forget.erasure, forget.audit)
reach the database only through `Store`: named methods for records, placements, checkpoints,
requests, pins and locks, and two context managers that hand out a `Transaction`:

- `transaction()`, the unit of work: every write in the block commits together or not at all, and
  ledger entries appended on the same `Transaction` commit with the change they record;
- `snapshot()`, a read in which every statement sees one committed state.

`forget.store.datastore.DataStore` is the SQL implementation (SQLAlchemy: SQLite and PostgreSQL);
`tests/fakes.py` holds an in-memory one. Only forget.store and the ledger's own backend
(ledger.store) import SQLAlchemy; tests/test_layering.py checks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from forget.errors import WorkspaceError
from ledger.errors import VerificationError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

Transaction: TypeAlias = "Connection"
"""An open unit of work, opaque to the application: it only hands it back to the store's methods
and to the ledger (`Ledger.append`, `ledger.store` reads), which work in the same transaction.
Application code never calls a method on it."""


class OpenRequestExistsError(WorkspaceError):
    """The subject already has a pending or running request: the database allows one, so two
    portals filing for the same person at the same moment make one request, not two."""


class UnreadableEntryError(VerificationError):
    """The database could not read a ledger entry's bytes as JSON (an entry edited behind the triggers'
    back, or not forget's); callers name what they were checking and point at `forget ledger verify`."""


@dataclass(frozen=True)
class RequestRow:
    """One erasure request's row; times are ISO 8601 text, `shards` a JSON list."""

    request_id: str
    subject_key: str
    state: str
    received_at: str
    deadline: str
    extended_months: int
    run_id: str | None
    records_erased: int | None
    shards: str | None
    completed_at: str | None
    outcome: str | None
    note: str | None
    certificate_sha256: str | None = None
    extension_reason: str | None = None


@dataclass(frozen=True)
class StoredRecord:
    record_key: str
    subject_key: str
    shard: int
    slice: int
    label: int
    features: bytes


@dataclass(frozen=True)
class ShardRows:
    """One shard's records, grouped by slice and ordered by record key within each."""

    slice_keys: tuple[tuple[str, ...], ...]
    slice_labels: tuple[tuple[int, ...], ...]
    slice_features: tuple[bytes, ...]


RequestEntryRow: TypeAlias = tuple[Any, ...]
"""(index, kind, request_id, subject_key, received_at, deadline, months, outcome, records_erased,
completed_at) of one request entry; a field is None where the entry has none, and an integer may
come back as text (PostgreSQL), for the caller to check."""

LineageRow: TypeAlias = tuple[int, str, Any, Any, Any]
"""(index, kind, shard, slice, digest) of one lineage entry; numbers as the database returns them."""


class Store(Protocol):
    """What the application needs of its database (see the module's docstring)."""

    # -- units of work ----------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[Transaction]:
        """The unit of work: every write inside commits together or not at all."""
        ...

    def snapshot(self) -> AbstractContextManager[Transaction]:
        """A read in which every statement sees the same committed state."""
        ...

    def advisory_lock(self, name: str) -> AbstractContextManager[bool]:
        """A lock held for the block across hosts sharing the database (where it has one); yields
        whether it was granted."""
        ...

    # -- schema -----------------------------------------------------------------------------

    def create_schema(self) -> None: ...

    def check_schema(self) -> None: ...

    def schema_revision(self) -> str | None:
        """The schema revision the database holds; None for a database forget never initialised."""
        ...

    def close(self) -> None:
        """Release the store's connections (a store is not used after this)."""
        ...

    # -- records ----------------------------------------------------------------------------

    def existing_keys(self, keys: Sequence[str]) -> set[str]: ...

    def insert_records(self, tx: Transaction, rows: Iterable[StoredRecord]) -> None: ...

    def iter_records(self, tx: Transaction) -> Iterator[StoredRecord]:
        """Every record, ordered by record key, read in batches (in `tx`, which bounds the read)."""
        ...

    def shard_rows(self, shard: int, slices: int) -> ShardRows: ...

    def placements_of(self, record_keys: Sequence[str]) -> dict[str, tuple[int, int]]: ...

    def records_of_subjects(self, subject_keys: Sequence[str]) -> dict[str, list[str]]: ...

    def delete_records(self, tx: Transaction, record_keys: Sequence[str]) -> int: ...

    def shard_counts(self) -> dict[int, int]: ...

    def slice_record_keys(self, tx: Transaction, shard: int, slice_: int) -> list[str]: ...

    def erased_subjects(self, subject_keys: Sequence[str]) -> set[str]: ...

    def vacuum_records(self) -> None: ...

    # -- checkpoints of the current lineage -------------------------------------------------

    def checkpoint_map(self, tx: Transaction | None = None) -> dict[tuple[int, int], str]: ...

    def set_checkpoint(self, tx: Transaction, shard: int, slice_: int, digest: str) -> None: ...

    def drop_checkpoints(self, tx: Transaction, shard: int, from_slice: int) -> list[str]: ...

    def referenced_digests(self) -> set[str]: ...

    # -- pins -------------------------------------------------------------------------------

    def set_pins(self, tx: Transaction, pins: dict[str, str]) -> None: ...

    def pins(self) -> dict[str, str]: ...

    # -- erasure requests -------------------------------------------------------------------

    def add_request(self, tx: Transaction, row: RequestRow) -> None: ...

    def update_request(self, tx: Transaction, request_id: str, **values: object) -> None: ...

    def get_request(self, request_id: str, tx: Transaction | None = None) -> RequestRow | None: ...

    def find_requests(
        self, *, states: Sequence[str] | None = None, subject_key: str | None = None
    ) -> list[RequestRow]: ...

    def all_requests(self, tx: Transaction) -> list[RequestRow]: ...

    # -- the ledger's entries, read for checking the tables against it ------------------------

    def request_entries(self, tx: Transaction, kinds: Sequence[str]) -> list[RequestEntryRow]:
        """The request entries of these kinds in log order, in one query; raises
        `UnreadableEntryError` for an entry the database cannot read as JSON."""
        ...

    def lineage_window(
        self, tx: Transaction, start: int, stop: int, checkpoint: str, manifest: str, planned: str
    ) -> list[LineageRow]:
        """The lineage entries of indices start..stop-1, newest first; raises `UnreadableEntryError`."""
        ...
