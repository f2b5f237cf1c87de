"""Tests for `ledger.store` and `ledger.log` on SQLite and PostgreSQL: proofs, signed heads, tampering.

Every test runs on both databases (`database_url`; PostgreSQL when FORGET_TEST_POSTGRES_URL is set).
The database must refuse any change to the ledger's tables; an edit made behind the triggers' back
(dropped or disabled triggers, a superuser in replica mode) must be caught by `Ledger.verify` and by
`forget ledger verify`, with a message that says where.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy.engine import Connection, Engine

from forget.store.datastore import create_engine, resolve_url
from forget.store.migrate import upgrade
from ledger import merkle, store
from ledger.errors import VerificationError
from ledger.log import Entry, Ledger
from ledger.note import Checkpoint, parse_verifier_key, verify_note
from tests.conftest import write_tabular_csv
from tests.helpers import cli, init_args

ORIGIN = "test.local/ledger"
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"forget test ledger key").digest())
TIME = "2026-11-22T12:00:00.000000Z"
TABLES = ("ledger_entries", "ledger_nodes", "ledger_heads")
REFUSED = "the ledger is append-only"


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A fresh database with the workspace schema (tables and their append-only triggers)."""
    engine = create_engine(resolve_url(database_url, tmp_path), must_exist=False)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(ORIGIN, KEY.public_key())


def _items(first: int, count: int) -> list[tuple[str, dict[str, Any]]]:
    kinds = ("test.ingested", "test.slice", "test.checkpoint")
    return [
        (
            kinds[i % 3],
            {"n": i, "digest": hashlib.sha256(str(i).encode()).hexdigest(), "note": "ü→" * (i % 4)},
        )
        for i in range(first, first + count)
    ]


def _append(engine: Engine, ledger: Ledger, count: int) -> list[Entry]:
    with engine.begin() as connection:
        first = store.size(connection)
        return ledger.append(connection, _items(first, count), time=TIME)


def _sign(engine: Engine, ledger: Ledger) -> store.StoredHead:
    with engine.begin() as connection:
        head = ledger.sign_head(connection, KEY, time=TIME)
    assert head is not None
    return head


def _log(engine: Engine, ledger: Ledger, *sizes: int) -> None:
    """Append up to each of `sizes` in turn, signing a head at each."""
    for size in sizes:
        with engine.connect() as connection:
            have = store.size(connection)
        _append(engine, ledger, size - have)
        _sign(engine, ledger)


def _verify(engine: Engine, ledger: Ledger) -> Any:
    with engine.connect() as connection:
        return ledger.verify(connection)


def _leaves(engine: Engine) -> list[bytes]:
    with engine.connect() as connection:
        return [merkle.leaf_hash(e.entry) for e in store.read_entries(connection)]


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return {
            table: [tuple(row) for row in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
            for table in TABLES
        }


# --- appends, roots and proofs ------------------------------------------------------------------


def test_batched_appends_match_the_list_forms_for_every_size_up_to_40(engine: Engine, ledger: Ledger) -> None:
    for batch in (1, 2, 3, 5, 1, 8, 13, 7):  # 40 entries; batch edges fall inside and across subtrees
        made = _append(engine, ledger, batch)
        expected_root = merkle.root_hash(_leaves(engine))  # read first: SQLite transactions are IMMEDIATE
        with engine.connect() as connection:
            size = store.size(connection)
            assert [e.index for e in made] == list(range(size - batch, size))
            assert store.root(connection, size) == expected_root
    leaves = _leaves(engine)
    assert len(leaves) == 40
    with engine.connect() as connection:
        stored = list(store.read_entries(connection))
        assert [Entry.decode(s.entry) for s in stored] == [
            Entry(i, kind, TIME, payload) for i, (kind, payload) in enumerate(_items(0, 40))
        ]
        assert [s.leaf_hash for s in stored] == leaves
        # Every perfect subtree is stored once, with its hash, and nothing else is.
        expected_nodes = {
            (level, idx): merkle.root_hash(leaves[idx << level : (idx + 1) << level])
            for level in range(1, 6)
            for idx in range(40 >> level)
        }
        assert {(lv, ix): h for lv, ix, h in store.read_nodes_in_completion_order(connection)} == expected_nodes
        # Every size; every index and old size on SQLite, a spread of them on PostgreSQL, where each
        # proof costs two round trips (the dialects differ only in the queries, not in the tree walk).
        exhaustive = engine.dialect.name == "sqlite"
        for size in range(1, 41):
            tree = leaves[:size]
            assert store.root(connection, size) == merkle.root_hash(tree), size
            spread = range(size + 1) if exhaustive else sorted({0, 1, size // 3, size // 2, size - 1, size})
            for index in (i for i in spread if i < size):
                proof = store.inclusion_proof(connection, index, size)
                assert proof == merkle.inclusion_proof(index, tree), (index, size)
            for old in spread:
                proof = store.consistency_proof(connection, old, size)
                assert proof == merkle.consistency_proof(old, tree), (old, size)
        assert store.root(connection, 0) == merkle.EMPTY_ROOT
        with pytest.raises(merkle.TreeRangeError, match=r"no hash for leaves 40\.\.40$"):
            store.root(connection, 41)


def test_sign_head_signs_a_c2sp_checkpoint_note_and_verify_passes(engine: Engine, ledger: Ledger) -> None:
    with engine.begin() as connection:
        assert ledger.sign_head(connection, KEY) is None  # nothing to sign in an empty log
    _append(engine, ledger, 5)
    first = _sign(engine, ledger)
    with engine.connect() as connection:
        assert first.size == 5 and first.root_hash == store.root(connection, 5)
    checkpoint = Checkpoint.parse(verify_note(first.note, ORIGIN, KEY.public_key()))
    assert checkpoint == Checkpoint(ORIGIN, 5, first.root_hash)
    assert ledger.checkpoint(first.note) == checkpoint
    assert _sign(engine, ledger) == first  # no new entries: the last head, not a second one

    _append(engine, ledger, 12)
    second = _sign(engine, ledger)
    assert (second.size, second.root_hash) == (17, merkle.root_hash(_leaves(engine)))
    with engine.connect() as connection:
        assert store.all_heads(connection) == [first, second]
        assert store.head_at_least(connection, 3) == first
        assert store.head_at_least(connection, 6) == second
        merkle.verify_consistency(5, 17, first.root_hash, second.root_hash, store.consistency_proof(connection, 5, 17))
        proof, size = ledger.inclusion(connection, 9)
        stored = store.read_entry(connection, 9)
    assert stored is not None and size == 17
    merkle.verify_inclusion(merkle.leaf_hash(stored.entry), 9, 17, proof, second.root_hash)

    report = _verify(engine, ledger)
    assert (report.entries, report.heads, report.root_hash) == (17, 2, second.root_hash)
    # The same log checked with another key: its heads are not that key's.
    stranger = Ledger(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with engine.connect() as connection, pytest.raises(VerificationError, match="note has no signature by"):
        stranger.verify(connection)


# --- the database refuses changes ---------------------------------------------------------------

CHANGES = [
    ("UPDATE", "UPDATE ledger_entries SET entry = :blob WHERE seq = 3"),
    ("UPDATE", "UPDATE ledger_entries SET kind = 'forged' WHERE seq = 3"),
    ("DELETE", "DELETE FROM ledger_entries WHERE seq = 7"),
    ("DELETE", "DELETE FROM ledger_entries"),
    ("UPDATE", "UPDATE ledger_nodes SET hash = :blob WHERE level = 1 AND idx = 1"),
    ("DELETE", "DELETE FROM ledger_nodes WHERE level = 3"),
    ("DELETE", "DELETE FROM ledger_nodes"),
    ("UPDATE", "UPDATE ledger_heads SET root_hash = :blob"),
    ("UPDATE", "UPDATE ledger_heads SET note = 'forged'"),
    ("DELETE", "DELETE FROM ledger_heads WHERE size = 8"),
    ("DELETE", "DELETE FROM ledger_heads"),
]


def _refused(engine: Engine, statement: str, message: str, **params: Any) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=message), engine.begin() as connection:
        connection.execute(sa.text(statement), params)


def test_update_delete_and_truncate_are_refused_by_the_database(engine: Engine, ledger: Ledger) -> None:
    _log(engine, ledger, 5, 8)
    before = _snapshot(engine)
    for op, statement in CHANGES:
        params = {"blob": b"\x00" * 32} if ":blob" in statement else {}
        _refused(engine, statement, f"{REFUSED}: {op} refused", **params)
    if engine.dialect.name == "postgresql":  # SQLite has no TRUNCATE: its unqualified DELETE is above
        for table in TABLES:
            _refused(engine, f"TRUNCATE {table}", f"{REFUSED}: TRUNCATE refused on {table}")
        _refused(engine, "TRUNCATE ledger_entries, ledger_nodes, ledger_heads CASCADE", "TRUNCATE refused")
    assert _snapshot(engine) == before
    assert _verify(engine, ledger).entries == 8


def test_insert_or_replace_is_refused(engine: Engine, ledger: Ledger) -> None:
    _log(engine, ledger, 8)
    before = _snapshot(engine)
    blob = b"\x00" * 32
    if engine.dialect.name == "sqlite":
        replaces = [
            "INSERT OR REPLACE INTO ledger_entries (seq, kind, time, entry, leaf_hash)"
            " VALUES (3, 'forged', 't', :blob, :blob)",
            "REPLACE INTO ledger_nodes VALUES (1, 1, :blob)",
            "INSERT OR REPLACE INTO ledger_heads VALUES (8, :blob, 't', 'forged')",
            "INSERT INTO ledger_entries (seq, kind, time, entry, leaf_hash) VALUES (3, 'k', 't', :blob, :blob) "
            "ON CONFLICT (seq) DO UPDATE SET entry = excluded.entry",
        ]
        for statement in replaces:
            _refused(engine, statement, f"{REFUSED}: out-of-order insert refused", blob=blob)
        # A foreign connection, without our engine's PRAGMA recursive_triggers, is refused too.
        path = engine.url.database
        assert path is not None
        foreign = sqlite3.connect(path)
        try:
            assert foreign.execute("PRAGMA recursive_triggers").fetchone() == (0,)
            for statement in replaces:
                with pytest.raises(sqlite3.DatabaseError, match=f"{REFUSED}: out-of-order insert refused"):
                    foreign.execute(statement, {"blob": blob})
                foreign.rollback()
        finally:
            foreign.close()
    else:
        upserts = [
            "INSERT INTO ledger_entries (seq, kind, time, entry, leaf_hash) VALUES (3, 'forged', 't', :blob, :blob) "
            "ON CONFLICT (seq) DO UPDATE SET entry = excluded.entry, leaf_hash = excluded.leaf_hash",
            "INSERT INTO ledger_nodes VALUES (1, 1, :blob) ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash",
            "INSERT INTO ledger_heads VALUES (8, :blob, 't', 'forged') "
            "ON CONFLICT (size) DO UPDATE SET note = excluded.note",
        ]
        for statement in upserts:
            _refused(engine, statement, f"{REFUSED}: out-of-order insert refused", blob=blob)
    assert _snapshot(engine) == before


def test_out_of_order_inserts_are_refused(engine: Engine, ledger: Ledger) -> None:
    _log(engine, ledger, 6)
    before = _snapshot(engine)
    blob = b"\x00" * 32
    row = "INSERT INTO ledger_entries (seq, kind, time, entry, leaf_hash) VALUES (:seq, 'k', 't', :blob, :blob)"
    for seq in (7, 100, 5, 0, -1):  # a gap, far ahead, an existing index, the start, a negative one
        _refused(engine, row, f"{REFUSED}: out-of-order insert refused", seq=seq, blob=blob)
    _refused(engine, "INSERT INTO ledger_nodes VALUES (1, 0, :blob)", "out-of-order insert refused", blob=blob)
    for size in (6, 3):  # a head no larger than the last one
        _refused(
            engine,
            "INSERT INTO ledger_heads VALUES (:size, :blob, 't', 'n')",
            "out-of-order",
            size=size,
            blob=blob,
        )
    assert _snapshot(engine) == before
    # The next index in order is accepted (the triggers do not refuse everything).
    with engine.begin() as connection:
        connection.execute(sa.text(row), {"seq": 6, "blob": blob})
    with engine.connect() as connection:
        assert store.size(connection) == 7
    with pytest.raises(VerificationError, match=r"^entry 6 is not a readable ledger entry"):
        _verify(engine, ledger)


# --- edits behind the triggers' back --------------------------------------------------------------


def _bypass(connection: Connection, statements: Sequence[tuple[str, dict[str, Any]]], how: str = "disable") -> None:
    """Run `statements` around the append-only triggers, as the database's owner (or its files') can."""
    if connection.dialect.name == "sqlite":
        names = connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars().all()
        for name in names:
            connection.exec_driver_sql(f"DROP TRIGGER {name}")
        for statement, params in statements:
            connection.execute(sa.text(statement), params)
        return
    if how == "replica":  # a superuser session: no ordinary trigger fires
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for statement, params in statements:
            connection.execute(sa.text(statement), params)
        return
    for table in TABLES:
        connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    for statement, params in statements:
        connection.execute(sa.text(statement), params)
    for table in TABLES:  # and cover the tracks
        connection.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def _tamper(engine: Engine, *statements: tuple[str, dict[str, Any]], how: str = "disable") -> None:
    with engine.begin() as connection:
        _bypass(connection, statements, how)


def _edited_entry(engine: Engine, seq: int) -> bytes:
    """Entry `seq`'s bytes with one payload value changed, still valid canonical JSON."""
    with engine.connect() as connection:
        stored = store.read_entry(connection, seq)
    assert stored is not None
    value = json.loads(stored.entry)
    value["payload"]["n"] = 1000 + seq
    edited = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert edited != stored.entry
    return edited


def _set_entry(engine: Engine, seq: int) -> tuple[str, dict[str, Any]]:
    return "UPDATE ledger_entries SET entry = :entry WHERE seq = :seq", {
        "entry": _edited_entry(engine, seq),
        "seq": seq,
    }


def test_verify_names_an_entry_whose_payload_was_edited(engine: Engine, ledger: Ledger) -> None:
    _log(engine, ledger, 6, 9)
    kinds = [kind for kind, _ in _items(0, 9)]
    _tamper(engine, _set_entry(engine, 5))  # SQLite: triggers dropped; PostgreSQL: disabled, then re-enabled
    with pytest.raises(VerificationError, match=rf"^entry 5 \({kinds[5]}\) was changed: its leaf hash does not match$"):
        _verify(engine, ledger)
    if engine.dialect.name == "postgresql":  # a superuser in replica mode, where no ordinary trigger fires
        _tamper(engine, _set_entry(engine, 2), how="replica")
        with pytest.raises(VerificationError, match=rf"^entry 2 \({kinds[2]}\) was changed"):
            _verify(engine, ledger)


def test_verify_catches_an_edit_that_rewrites_the_hashes_too(engine: Engine, ledger: Ledger) -> None:
    _log(engine, ledger, 6, 9)
    edited = _edited_entry(engine, 5)
    leaf = merkle.leaf_hash(edited)
    _tamper(
        engine,
        ("UPDATE ledger_entries SET entry = :e, leaf_hash = :h WHERE seq = 5", {"e": edited, "h": leaf}),
    )
    with pytest.raises(VerificationError, match=r"^the stored hash of entries 4\.\.5 does not match them$"):
        _verify(engine, ledger)

    # Rewrite every stored subtree hash as well: only the signed heads are left to catch it.
    leaves = _leaves(engine)
    rewrites = [
        (
            "UPDATE ledger_nodes SET hash = :h WHERE level = :level AND idx = :idx",
            {"h": merkle.root_hash(leaves[idx << level : (idx + 1) << level]), "level": level, "idx": idx},
        )
        for level in (1, 2, 3)
        for idx in range(9 >> level)
    ]
    _tamper(engine, *rewrites)
    with pytest.raises(VerificationError, match=r"^entries before 6 were changed after their head was signed"):
        _verify(engine, ledger)

    # Forging the stored root of a head does not help without the signing key.
    _tamper(engine, ("UPDATE ledger_heads SET root_hash = :r WHERE size = 6", {"r": merkle.root_hash(leaves[:6])}))
    with pytest.raises(VerificationError, match=r"^the signed head of size 6 does not match its stored root$"):
        _verify(engine, ledger)


def test_verify_names_a_changed_kind_column_and_a_missing_entry(engine: Engine, ledger: Ledger) -> None:
    _log(engine, ledger, 9)
    _tamper(engine, ("UPDATE ledger_entries SET kind = 'forged' WHERE seq = 2", {}))
    with pytest.raises(VerificationError, match=r"^entry 2: its stored index, kind or time differ from its payload$"):
        _verify(engine, ledger)
    _tamper(engine, ("DELETE FROM ledger_entries WHERE seq = 2", {}))
    with pytest.raises(VerificationError, match=r"^entry 2 is missing from the ledger$"):
        _verify(engine, ledger)


def test_verify_catches_the_last_entries_deleted(engine: Engine, ledger: Ledger) -> None:
    _log(engine, ledger, 4, 9)
    with engine.connect() as connection:
        kept = store.latest_head(connection)
    assert kept is not None and kept.size == 9
    _tamper(engine, ("DELETE FROM ledger_entries WHERE seq >= 7", {}))
    with pytest.raises(VerificationError, match=r"^a signed head covers 9 entries, but the ledger holds only 7$"):
        _verify(engine, ledger)
    # Drop the head that covers them too: the subtree hashes they completed still give it away.
    _tamper(engine, ("DELETE FROM ledger_heads WHERE size = 9", {}))
    with pytest.raises(VerificationError, match=r"^the ledger holds subtree hashes for entries that do not exist$"):
        _verify(engine, ledger)
    # Drop those as well, and the database is a consistent, shorter log signed at size 4: rolling the
    # whole database back to an earlier signed head is caught only by a later head kept elsewhere
    # (an auditor's copy of `forget ledger head`), which this pins as the limit of `verify` alone.
    _tamper(engine, ("DELETE FROM ledger_nodes WHERE ((idx + 1) << level) > 7", {}))
    report = _verify(engine, ledger)
    assert (report.entries, report.heads) == (7, 1)
    # ...and that is what `forget ledger verify --head SAVED` adds.
    with engine.connect() as connection, pytest.raises(VerificationError, match="entries were removed"):
        ledger.verify_against(connection, kept.note)


def test_sign_head_refuses_a_tree_inconsistent_with_the_last_head(engine: Engine, ledger: Ledger) -> None:
    _log(engine, ledger, 5)
    edited = _edited_entry(engine, 4)
    leaf = merkle.leaf_hash(edited)
    _tamper(
        engine,
        ("UPDATE ledger_entries SET entry = :e, leaf_hash = :h WHERE seq = 4", {"e": edited, "h": leaf}),
    )
    _append(engine, ledger, 3)
    with pytest.raises(VerificationError, match="old root mismatch: the consistency proof from size 5 to size 8"):
        _sign(engine, ledger)
    with engine.connect() as connection:
        assert [h.size for h in store.all_heads(connection)] == [5]


def test_sign_head_refuses_a_log_shorter_than_the_last_head(engine: Engine, ledger: Ledger) -> None:
    _log(engine, ledger, 8)
    _tamper(  # the last three entries and their subtree hashes, as a restored old backup would lack them
        engine,
        ("DELETE FROM ledger_entries WHERE seq >= 5", {}),
        ("DELETE FROM ledger_nodes WHERE ((idx + 1) << level) > 5", {}),
    )
    with pytest.raises(VerificationError, match="holds 5 entries, fewer than the 8 its last signed head covers"):
        _sign(engine, ledger)


# --- end to end through the CLI ---------------------------------------------------------------


def _cli_workspace(tmp_path: Path, database_url: str) -> Path:
    ws = tmp_path / "ws"
    cli(*init_args(ws, database_url, "--shards", "2", "--slices", "2"))
    write_tabular_csv(tmp_path / "people.csv", rows=40, seed=3)
    columns = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]
    cli("-w", ws, "ingest", tmp_path / "people.csv", *columns)
    cli("-w", ws, "train", "--device", "cpu")
    return ws


def test_cli_export_prove_keys_and_verify_catch_an_edited_ledger(tmp_path: Path, database_url: str) -> None:
    ws = _cli_workspace(tmp_path, database_url)

    # `forget ledger head`: a signed checkpoint; `forget keys public`: a PEM and a verifier key for it.
    note = cli("-w", ws, "ledger", "head").stdout
    pem, _, vkey = cli("-w", ws, "keys", "public").stdout.partition("-----END PUBLIC KEY-----\n")
    name, public_key = parse_verifier_key(vkey.removesuffix("\n"))
    assert vkey.endswith("\n") and "\n" not in vkey[:-1]
    assert load_pem_public_key((pem + "-----END PUBLIC KEY-----\n").encode()) == public_key
    origin, size_line, root64 = verify_note(note, name, public_key).splitlines()
    assert origin == name
    size, head_root = int(size_line), base64.b64decode(root64)

    # `forget ledger export`: every leaf and the root, from the file alone.
    lines = [json.loads(line) for line in cli("-w", ws, "ledger", "export").stdout.splitlines()]
    assert [line["index"] for line in lines] == list(range(size)) and size >= 8
    leaves = [hashlib.sha256(b"\x00" + base64.b64decode(line["canonical"])).digest() for line in lines]
    assert [leaf.hex() for leaf in leaves] == [line["leaf_hash"] for line in lines]
    assert merkle.root_hash(leaves) == head_root
    for line in lines:
        assert json.loads(base64.b64decode(line["canonical"])) == line["entry"]

    # `forget ledger prove INDEX`: an RFC 9162 inclusion proof against that head.
    for index in (0, 5, size - 1):
        proof = json.loads(cli("-w", ws, "ledger", "prove", index).stdout)
        assert (proof["index"], proof["tree_size"], proof["head_note"]) == (index, size, note)
        assert bytes.fromhex(proof["leaf_hash"]) == leaves[index]
        hashes = [bytes.fromhex(h) for h in proof["proof"]]
        merkle.verify_inclusion(leaves[index], index, size, hashes, head_root)
    assert cli("-w", ws, "ledger", "verify").stdout.startswith(f"ledger verified: {size} entries")

    # Behind the triggers' back: drop the last two entries, then edit entry 5's payload.
    target = create_engine(resolve_url(database_url, ws), must_exist=True)
    try:
        _tamper(target, (f"DELETE FROM ledger_entries WHERE seq >= {size - 2}", {}))
        result = cli("-w", ws, "ledger", "verify", expect=1)
        assert result.stderr == f"error: a signed head covers {size} entries, but the ledger holds only {size - 2}\n"
        _tamper(target, _set_entry(target, 5))
    finally:
        target.dispose()
    result = cli("-w", ws, "ledger", "verify", expect=1)
    assert result.stdout == ""
    assert result.stderr == f"error: entry 5 ({lines[5]['kind']}) was changed: its leaf hash does not match\n"
    # A proof for the edited entry is refused rather than handed out.
    assert "root mismatch" in cli("-w", ws, "ledger", "prove", 5, "--size", size - 2, expect=1).stderr
