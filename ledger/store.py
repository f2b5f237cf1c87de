"""The ledger's storage through SQLAlchemy: entries, perfect-subtree hashes, signed tree heads.

The only module of `ledger` that imports SQLAlchemy. Every function takes a `Connection` whose
transaction the caller owns, so a ledger entry commits together with the effect it records, or
not at all. The tables refuse UPDATE, DELETE and TRUNCATE in the database itself (see
`APPEND_ONLY_DDL`); the signed Merkle root is what finally catches an edit made around them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ledger import merkle

metadata = sa.MetaData()

entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("entry", sa.LargeBinary, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    # The payload's request id, copied at append time (`append`): the index that lets a
    # certificate read its request's entries alone. Not covered by the leaf hash, so
    # `Ledger.verify` checks it against the payload.
    sa.Column("request_id", sa.Text, nullable=True),
    # (kind, seq): a kind's entries in an index range read in order (migration 0004).
    sa.Index("ix_ledger_entries_kind_seq", "kind", "seq"),
    sa.Index(
        "ix_ledger_entries_request_id",
        "request_id",
        "seq",
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    ),
)

nodes = sa.Table(
    "ledger_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

heads = sa.Table(
    "ledger_heads",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)

_SQLITE_GUARDS = {
    "ledger_entries": "NEW.seq != (SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_entries)",
    "ledger_nodes": "EXISTS (SELECT 1 FROM ledger_nodes WHERE level = NEW.level AND idx = NEW.idx)",
    "ledger_heads": "NEW.size <= (SELECT COALESCE(MAX(size), -1) FROM ledger_heads)",
}


def append_only_ddl(dialect: str) -> list[str]:
    """Triggers that make the three tables append-only, for SQLite or PostgreSQL."""
    statements: list[str] = []
    if dialect == "sqlite":
        for table, guard in _SQLITE_GUARDS.items():
            for op in ("UPDATE", "DELETE"):
                statements.append(
                    f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: {op} refused'); END"
                )
            # An insert guard as well: INSERT OR REPLACE deletes without firing DELETE triggers
            # unless recursive_triggers is on, which a foreign connection need not set.
            statements.append(
                f"CREATE TRIGGER {table}_append_only BEFORE INSERT ON {table} WHEN {guard} "
                f"BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: out-of-order insert refused'); END"
            )
        return statements
    if dialect == "postgresql":
        statements.append(
            "CREATE OR REPLACE FUNCTION ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'the ledger is append-only: % refused on %', TG_OP, TG_TABLE_NAME; END $$"
        )
        pg_guards = {
            "ledger_entries": "NEW.seq <> (SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_entries)",
            "ledger_nodes": "EXISTS (SELECT 1 FROM ledger_nodes WHERE level = NEW.level AND idx = NEW.idx)",
            "ledger_heads": "NEW.size <= (SELECT COALESCE(MAX(size), -1) FROM ledger_heads)",
        }
        for table, guard in pg_guards.items():
            statements += [
                f"CREATE OR REPLACE FUNCTION {table}_guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {guard} THEN RAISE EXCEPTION 'the ledger is append-only: out-of-order insert refused'; "
                "END IF; RETURN NEW; END $$",
                f"CREATE TRIGGER {table}_append_only BEFORE INSERT ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {table}_guard()",
                f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse()",
                # Row triggers do not fire on TRUNCATE.
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse()",
            ]
        return statements
    raise ValueError(f"no append-only triggers for the {dialect} dialect")


@dataclass(frozen=True)
class StoredEntry:
    """One row of the entries table: the entry's bytes and leaf hash as stored, not yet checked.

    The columns beside the bytes (kind, time, request id) exist for queries; `Ledger.verify` checks
    them against the decoded bytes.
    """

    seq: int
    kind: str
    time: str
    entry: bytes
    leaf_hash: bytes
    request_id: str | None = None
    """The request id column (a copy of the payload's, for the index); None where it has none."""


@dataclass(frozen=True)
class StoredHead:
    """One row of the heads table: a signed tree head as the database holds it, not yet checked.

    Its note carries the signature; `Ledger.checkpoint` verifies it before the root is trusted.
    """

    size: int
    root_hash: bytes
    time: str
    note: str


def size(connection: Connection) -> int:
    """The number of entries in the log (the next entry's index), from the table's largest index.

    Raises nothing of its own; SQLAlchemy's errors (`sqlalchemy.exc.DBAPIError`) propagate.
    """
    value = connection.execute(sa.select(sa.func.max(entries.c.seq))).scalar()
    return 0 if value is None else int(value) + 1


def _is_perfect(start: int, end: int) -> tuple[int, int]:
    width = end - start
    level = width.bit_length() - 1
    return level, start >> level


@functools.lru_cache(maxsize=256)
def _fetch_query(leaves: int, inner: int) -> sa.TextClause:
    """One statement per shape: leaves by primary key, subtree hashes joined from a VALUES list.

    A row-value `(level, idx) IN (...)` made SQLite 3.40 scan the whole node table once it held
    two or more pairs (170 ms a proof at 10^6 entries); the join uses the primary key (0.2 ms).
    """
    parts = []
    prefix = ""
    if leaves:
        marks = ", ".join(f":s{j}" for j in range(leaves))
        parts.append(f"SELECT 0 AS level, seq AS idx, leaf_hash AS hash FROM ledger_entries WHERE seq IN ({marks})")
    if inner:
        rows = ", ".join(f"(:l{j}, :i{j})" for j in range(inner))
        prefix = f"WITH k(l, i) AS (VALUES {rows}) "
        parts.append("SELECT n.level, n.idx, n.hash FROM k JOIN ledger_nodes n ON n.level = k.l AND n.idx = k.i")
    return sa.text(prefix + " UNION ALL ".join(parts))


def _fetch(connection: Connection, ranges: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Hashes of perfect subtrees, in one round trip however many are asked."""
    leaves = sorted({start for start, end in ranges if end - start == 1})
    inner = sorted({_is_perfect(start, end) for start, end in ranges if end - start > 1})
    if not leaves and not inner:
        return {}
    params: dict[str, int] = {f"s{j}": seq for j, seq in enumerate(leaves)}
    for j, (level, idx) in enumerate(inner):
        params[f"l{j}"] = level
        params[f"i{j}"] = idx
    rows = connection.execute(_fetch_query(len(leaves), len(inner)), params)
    return {(int(idx) << int(level), (int(idx) + 1) << int(level)): bytes(h) for level, idx, h in rows}


class _Recorder:
    """Runs a proof computation once with placeholder hashes to learn which subtrees it reads."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        self.ranges.append((start, end))
        return b"\x00" * merkle.HASH_SIZE


class _Lookup:
    def __init__(self, connection: Connection, ranges: Sequence[tuple[int, int]]) -> None:
        self.hashes = _fetch(connection, ranges)

    def __call__(self, start: int, end: int) -> bytes:
        try:
            return self.hashes[(start, end)]
        except KeyError:
            raise merkle.TreeRangeError(f"the ledger store has no hash for leaves {start}..{end - 1}") from None


def root(connection: Connection, tree_size: int) -> bytes:
    """MTH(D[0:tree_size]) from the stored subtree hashes, fetched in one round trip: O(log n) hashes.

    Raises `merkle.TreeRangeError` (a `LedgerError` and `ValueError`) if `tree_size` is negative or
    the store lacks a hash the root needs (a size beyond the log).
    """
    recorder = _Recorder()
    merkle.root_hash_from(tree_size, recorder)
    return merkle.root_hash_from(tree_size, _Lookup(connection, recorder.ranges))


def root_with_tail(connection: Connection, tree_size: int, base: int, tail: Sequence[bytes]) -> bytes:
    """MTH(D[0:tree_size]) from the stored hashes of D[0:base] and the given leaf hashes of D[base:tree_size].

    The signer recomputes the unsigned tail from the entries themselves, so a stored subtree hash
    that does not match its entries is never signed; the prefix rests on the stored hashes, which
    the consistency proof from the last anchored head binds. O(len(tail) + log n) hashes.
    """
    if len(tail) != tree_size - base or not 0 <= base <= tree_size:
        raise merkle.TreeRangeError(f"{len(tail)} leaves do not fill the tail {base}..{tree_size}")

    def mixed(stored: merkle.SubtreeHash) -> merkle.SubtreeHash:
        def subtree(start: int, end: int) -> bytes:
            if end <= base:
                return stored(start, end)
            if start >= base:
                return merkle.root_hash(tail[start - base : end - base])
            middle = (start + end) // 2  # a perfect subtree splits into two halves
            return merkle.node_hash(subtree(start, middle), subtree(middle, end))

        return subtree

    recorder = _Recorder()
    merkle.root_hash_from(tree_size, mixed(recorder))
    return merkle.root_hash_from(tree_size, mixed(_Lookup(connection, recorder.ranges)))


def inclusion_proof(connection: Connection, index: int, tree_size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of entry `index` in the tree of `tree_size`, from the stored hashes.

    Two passes: one with placeholders learns which subtrees the proof reads, one query fetches them.
    Raises `merkle.TreeRangeError` if `index` is outside the tree or the store lacks a hash.
    """
    recorder = _Recorder()
    merkle.inclusion_proof_from(index, tree_size, recorder)
    return merkle.inclusion_proof_from(index, tree_size, _Lookup(connection, recorder.ranges))


def consistency_proof(connection: Connection, old_size: int, tree_size: int) -> list[bytes]:
    """The RFC 9162 consistency proof from the tree of `old_size` to the tree of `tree_size`, from the stored hashes.

    Raises `merkle.TreeRangeError` if `old_size` is outside 0..`tree_size` or the store lacks a hash.
    """
    recorder = _Recorder()
    merkle.consistency_proof_from(old_size, tree_size, recorder)
    return merkle.consistency_proof_from(old_size, tree_size, _Lookup(connection, recorder.ranges))


def lock_for_append(connection: Connection) -> None:
    """Queue concurrent appenders until this transaction ends, before anyone reads the log's size.

    Two transactions that both read size N would both number their entries from N: the entries'
    payloads would then disagree with their stored index for good. On PostgreSQL a table lock
    queues them (taking it twice in one transaction is harmless); SQLite's write transactions
    already hold the database's one write lock from their BEGIN.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE ledger_entries IN SHARE ROW EXCLUSIVE MODE")


def append(connection: Connection, rows: Sequence[tuple[str, str, bytes, str | None]]) -> list[int]:
    """Append (kind, time, entry bytes, request id) rows and the subtree hashes they complete; returns
    their indices. The request id is the payload's (`ledger.log.request_id_of`), copied for the index.

    Appending leaf i completes the perfect subtree of width 2^h ending at i for every h with
    2^h dividing i+1; its hash needs the left sibling, which is read once per batch at most.
    """
    lock_for_append(connection)
    start = size(connection)
    known: dict[tuple[int, int], bytes] = {}
    entry_rows: list[tuple[int, str, str, bytes, bytes, str | None]] = []
    node_rows: list[tuple[int, int, bytes]] = []
    for offset, (kind, time, entry, request_id) in enumerate(rows):
        seq = start + offset
        leaf = merkle.leaf_hash(entry)
        known[(seq, seq + 1)] = leaf
        entry_rows.append((seq, kind, time, entry, leaf, request_id))
        end, width, right = seq + 1, 1, leaf
        while end % (width * 2) == 0:
            left_range = (end - 2 * width, end - width)
            if left_range not in known:
                known.update(_fetch(connection, [left_range]))
            right = merkle.node_hash(known[left_range], right)
            width *= 2
            known[(end - width, end)] = right
            level = width.bit_length() - 1
            node_rows.append((level, (end - width) >> level, right))
    # The driver's executemany directly: SQLAlchemy's per-row parameter processing cost more
    # than the inserts themselves (about a third of an append).
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        _copy_rows(connection, entry_rows, node_rows)
        return list(range(start, start + len(entry_rows)))
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    if entry_rows:
        columns = "seq, kind, time, entry, leaf_hash, request_id"
        sql = f"INSERT INTO ledger_entries ({columns}) VALUES ({', '.join([mark] * 6)})"
        connection.exec_driver_sql(sql, entry_rows)
    if node_rows:
        connection.exec_driver_sql(
            f"INSERT INTO ledger_nodes (level, idx, hash) VALUES ({mark}, {mark}, {mark})", node_rows
        )
    return list(range(start, start + len(entry_rows)))


def _copy_rows(
    connection: Connection, entry_rows: Sequence[tuple[object, ...]], node_rows: Sequence[tuple[object, ...]]
) -> None:
    """PostgreSQL's COPY: half the time of a pipelined executemany. Row triggers still fire."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    for sql, rows in (
        ("COPY ledger_entries (seq, kind, time, entry, leaf_hash, request_id) FROM STDIN", entry_rows),
        ("COPY ledger_nodes (level, idx, hash) FROM STDIN", node_rows),
    ):
        if rows:
            with cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)


def read_entries(
    connection: Connection,
    kind: str | None = None,
    start: int = 0,
    stop: int | None = None,
    stream: bool = True,
    request_id: str | None = None,
) -> Iterator[StoredEntry]:
    """Entries in order; `stream` reads them in batches (a server-side cursor on PostgreSQL, three
    round trips, which a read of a few entries is better off without). With `request_id`, only the
    entries whose request id column holds it, through its index: the column is a copy the leaf hash
    does not cover, so a caller that relies on it checks the payload too."""
    query = sa.select(entries).where(entries.c.seq >= start).order_by(entries.c.seq)
    if stop is not None:
        query = query.where(entries.c.seq < stop)
    if kind is not None:
        query = query.where(entries.c.kind == kind)
    if request_id is not None:
        query = query.where(entries.c.request_id == request_id)
    # On the statement, not the connection: Connection.execution_options changes the connection in
    # place, and a later INSERT in the same transaction would then run as a server-side cursor.
    for row in connection.execute(query.execution_options(yield_per=5000) if stream else query):
        yield _stored(row)


def read_entry(connection: Connection, seq: int) -> StoredEntry | None:
    """The entry of index `seq` as stored, or None if the log is shorter; unchecked (see `StoredEntry`)."""
    row = connection.execute(sa.select(entries).where(entries.c.seq == seq)).first()
    return None if row is None else _stored(row)


def _stored(row: sa.Row[Any]) -> StoredEntry:
    return StoredEntry(int(row.seq), row.kind, row.time, bytes(row.entry), bytes(row.leaf_hash), row.request_id)


def read_nodes_in_completion_order(connection: Connection) -> Iterator[tuple[int, int, bytes]]:
    """(level, idx, hash) ordered by the leaf that completed each subtree, then by level."""
    # SQLite has no power() in every build; a shift works in SQLite and PostgreSQL alike.
    query = sa.select(nodes.c.level, nodes.c.idx, nodes.c.hash).order_by(sa.text("(idx + 1) << level, level"))
    for level, idx, h in connection.execute(query.execution_options(yield_per=5000)):
        yield int(level), int(idx), bytes(h)


def add_head(connection: Connection, head: StoredHead) -> None:
    """Insert a signed head in the caller's transaction; the caller has checked it (`Ledger.sign_head`).

    Raises SQLAlchemy's `IntegrityError` for a second head of the same size.
    """
    connection.execute(heads.insert().values(size=head.size, root_hash=head.root_hash, time=head.time, note=head.note))


def latest_head(connection: Connection) -> StoredHead | None:
    """The largest signed head, or None before the first signing; unchecked (see `StoredHead`)."""
    row = connection.execute(sa.select(heads).order_by(heads.c.size.desc()).limit(1)).first()
    return None if row is None else StoredHead(int(row.size), bytes(row.root_hash), row.time, row.note)


def all_heads(connection: Connection) -> list[StoredHead]:
    """Every signed head, in increasing size: what `Ledger.verify` checks one against the next; unchecked."""
    rows = connection.execute(sa.select(heads).order_by(heads.c.size))
    return [StoredHead(int(r.size), bytes(r.root_hash), r.time, r.note) for r in rows]


def heads_after(connection: Connection, tree_size: int) -> list[StoredHead]:
    """The signed heads larger than `tree_size`, in increasing size."""
    rows = connection.execute(sa.select(heads).where(heads.c.size > tree_size).order_by(heads.c.size))
    return [StoredHead(int(r.size), bytes(r.root_hash), r.time, r.note) for r in rows]


def head_at_least(connection: Connection, tree_size: int) -> StoredHead | None:
    """The first signed head that covers an entry of index `tree_size - 1`."""
    query = sa.select(heads).where(heads.c.size >= tree_size).order_by(heads.c.size).limit(1)
    row = connection.execute(query).first()
    return None if row is None else StoredHead(int(row.size), bytes(row.root_hash), row.time, row.note)
