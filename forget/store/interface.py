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

from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    """One record as stored: its keyed ids, its placement, its class index and its float32 features' bytes.

    No raw id or value: `record_key` and `subject_key` are keyed hashes (forget.subjects.pseudonym).
    """

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
    """What the application needs of its database (see the module's docstring).

    A method raises its own errors only where it says so; a failing database raises the backend's
    error (SQLAlchemy's, in `DataStore`), which `forget.errors.translated()` makes a `StorageError`
    (exit 3) when the disk is full or read-only.
    """

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

    def create_schema(self) -> None:
        """Create the schema at the newest revision (`forget init`)."""
        ...

    def check_schema(self) -> None:
        """Raise `WorkspaceError` (exit 3) unless the schema is at this forget's revision."""
        ...

    def schema_revision(self) -> str | None:
        """The schema revision the database holds; None for a database forget never initialised."""
        ...

    def close(self) -> None:
        """Release the store's connections (a store is not used after this)."""
        ...

    # -- records ----------------------------------------------------------------------------

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        """Those of the record keys that are stored."""
        ...

    def insert_records(self, tx: Transaction, rows: Iterable[StoredRecord]) -> None:
        """Insert records in `tx`; a record key stored already fails the transaction."""
        ...

    def iter_records(self, tx: Transaction) -> Iterator[StoredRecord]:
        """Every record, ordered by record key, read in batches (in `tx`, which bounds the read)."""
        ...

    def record_batches(self, tx: Transaction, size: int) -> Iterator[list[tuple[str, int, bytes]]]:
        """Every record's (subject key, label, features), in batches of up to `size`, in no set order
        (a full count's read: no row objects, no sort)."""
        ...

    def shard_rows(self, shard: int, slices: int) -> ShardRows:
        """One shard's records by slice (`ShardRows`), ordered by record key within each."""
        ...

    def placements_of(self, record_keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """The (shard, slice) of each stored record among `record_keys`."""
        ...

    def records_of_subjects(self, subject_keys: Sequence[str], tx: Transaction | None = None) -> dict[str, list[str]]:
        """Each subject's stored record keys (in `tx` when given); a subject without records is absent."""
        ...

    def delete_records(self, tx: Transaction, record_keys: Sequence[str]) -> int:
        """Delete records in `tx`; returns how many were deleted."""
        ...

    def read_records(self, tx: Transaction, record_keys: Sequence[str]) -> list[StoredRecord]:
        """The stored records among `record_keys`, in key order, read in `tx`."""
        ...

    # -- the schema rule's counts (forget.data.statistics) ----------------------------------

    def schema_statistics(self, tx: Transaction) -> dict[tuple[str, str, int], int] | None:
        """The kept counts, (part, column, bucket) to count; None when none are kept."""
        ...

    def write_schema_statistics(self, tx: Transaction, counts: Mapping[tuple[str, str, int], int] | None) -> None:
        """Replace the kept counts in `tx`; None drops them (the next use counts the records again)."""
        ...

    def shard_counts(self) -> dict[int, int]:
        """Records per shard; a shard without records is absent."""
        ...

    def slice_record_keys(self, tx: Transaction, shard: int, slice_: int) -> list[str]:
        """The record keys of (shard, slice) in key order, read in `tx`."""
        ...

    def slices_record_keys(
        self, tx: Transaction, slices: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], list[str]]:
        """`slice_record_keys` of many slices at once (an ingest names every slice), each in key order."""
        ...

    def erased_subjects(self, subject_keys: Sequence[str]) -> set[str]:
        """Those of the subject keys whose records a completed request erased."""
        ...

    def vacuum_records(self) -> None:
        """Make deleted records' bytes unrecoverable where the database keeps them (PostgreSQL's VACUUM)."""
        ...

    # -- checkpoints of the current lineage -------------------------------------------------

    def checkpoint_map(self, tx: Transaction | None = None) -> dict[tuple[int, int], str]:
        """The checkpoints table, (shard, slice) to digest, in `tx` when given; not checked against the ledger."""
        ...

    def set_checkpoint(self, tx: Transaction, shard: int, slice_: int, digest: str) -> None:
        """Make `digest` the current checkpoint of (shard, slice) in `tx`."""
        ...

    def drop_checkpoints(self, tx: Transaction, shard: int, from_slice: int) -> list[str]:
        """Drop the shard's checkpoints from `from_slice` on in `tx`; returns their digests, for purging."""
        ...

    def referenced_digests(self) -> set[str]:
        """The digests the checkpoints table names."""
        ...

    # -- pins -------------------------------------------------------------------------------

    def set_pins(self, tx: Transaction, pins: dict[str, str]) -> None:
        """Record the workspace's pins in `tx` (at init)."""
        ...

    def pins(self) -> dict[str, str]:
        """The pins recorded at init, as name-value rows."""
        ...

    # -- erasure requests -------------------------------------------------------------------

    def add_request(self, tx: Transaction, row: RequestRow) -> None:
        """Insert a request's row in `tx`; raises `OpenRequestExistsError` when the subject has an open one."""
        ...

    def update_request(self, tx: Transaction, request_id: str, **values: object) -> None:
        """Set columns of a request's row in `tx`."""
        ...

    def get_request(self, request_id: str, tx: Transaction | None = None) -> RequestRow | None:
        """A request's row, or None for an unknown id."""
        ...

    def find_requests(self, *, states: Sequence[str] | None = None, subject_key: str | None = None) -> list[RequestRow]:
        """The requests in `states` and/or of `subject_key`, by deadline then id."""
        ...

    def all_requests(self, tx: Transaction) -> list[RequestRow]:
        """Every request's row, read in `tx`."""
        ...

    def quarantined_shards(self, kind: str, states: Sequence[str], tx: Transaction | None = None) -> set[int]:
        """The shards that must not answer predictions, in one query: those the `kind` entries
        (request.quarantined) of the requests in `states` name, and those holding a record of such
        a request's subject now. Raises `UnreadableEntryError` for an entry that is not JSON."""
        ...

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
