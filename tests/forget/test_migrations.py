"""Schema migrations: the head revision, and 0004's index of ledger entries by request id.

0004 adds `ledger_entries.request_id` (the payload's request id, copied at append time) with its
index, backfills the entries logged before it, and replaces the kind index by (kind, seq), on a
table whose UPDATE trigger it must lift and put back. Run on SQLite and PostgreSQL (`database_url`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Connection, Engine

from forget.store.datastore import create_engine, resolve_url
from forget.store.migrate import HEAD_REVISION, MIGRATIONS, check_revision, current_revision, upgrade
from ledger import merkle
from ledger.errors import VerificationError
from ledger.log import Entry, Ledger

ORIGIN = "test.local/migrations"
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"forget migration test key").digest())
TIME = "2026-11-22T12:00:00.000000Z"
REQUEST = "req_00000000000000aa"
OTHER = "req_00000000000000bb"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade_to(engine: Engine, revision: str) -> None:
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(resolve_url(database_url, tmp_path), must_exist=False)
    yield engine
    engine.dispose()


def test_the_head_revision_is_the_scripts_head() -> None:
    assert ScriptDirectory.from_config(_config()).get_current_head() == HEAD_REVISION == "0006"


ITEMS: list[tuple[str, dict[str, Any]]] = [
    ("workspace.initialized", {"origin": ORIGIN}),
    ("request.received", {"request_id": REQUEST, "subject_key": "ab" * 32}),
    ("erasure.planned", {"request_id": None, "run_id": "erase_0000000000000001"}),
    ("lineage.checkpoint", {"shard": 0, "slice": 1}),
    ("request.received", {"request_id": OTHER, "subject_key": "cd" * 32}),
    ("request.completed", {"request_id": REQUEST, "run_id": "run_0000000000000001"}),
    ("test.odd", {"request_id": 7}),
]


def _write_old_log(connection: Connection) -> None:
    """ITEMS as forget before 0004 stored them: entries without the column, and their subtree hashes."""
    known: dict[tuple[int, int], bytes] = {}
    for seq, (kind, payload) in enumerate(ITEMS):
        data = Entry(seq, kind, TIME, payload).encode()
        leaf = merkle.leaf_hash(data)
        connection.execute(
            sa.text("INSERT INTO ledger_entries (seq, kind, time, entry, leaf_hash) VALUES (:s, :k, :t, :e, :h)"),
            {"s": seq, "k": kind, "t": TIME, "e": data, "h": leaf},
        )
        known[(seq, seq + 1)] = leaf
        end, width, right = seq + 1, 1, leaf
        while end % (width * 2) == 0:
            right = merkle.node_hash(known[(end - 2 * width, end - width)], right)
            width *= 2
            known[(end - width, end)] = right
            level = width.bit_length() - 1
            connection.execute(
                sa.text("INSERT INTO ledger_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
                {"l": level, "i": (end - width) >> level, "h": right},
            )


def test_0004_backfills_request_ids_and_keeps_the_ledger_append_only(engine: Engine) -> None:
    _upgrade_to(engine, "0003")
    with engine.begin() as connection:
        _write_old_log(connection)
    assert current_revision(engine) == "0003"
    upgrade(engine)
    check_revision(engine)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT seq, request_id FROM ledger_entries ORDER BY seq")).all()
        indexes = {
            index["name"]: index["column_names"] for index in sa.inspect(connection).get_indexes("ledger_entries")
        }
    assert [tuple(row) for row in rows] == [(0, None), (1, REQUEST), (2, None), (3, None), (4, OTHER), (5, REQUEST),
                                            (6, None)]  # fmt: skip
    assert indexes["ix_ledger_entries_request_id"] == ["request_id", "seq"]
    assert indexes["ix_ledger_entries_kind_seq"] == ["kind", "seq"] and "ix_ledger_entries_kind" not in indexes
    ledger = Ledger(ORIGIN, KEY.public_key())
    with engine.begin() as connection:
        assert ledger.verify(connection).entries == len(ITEMS)
        assert [e.index for e in ledger.entries(connection, request_id=REQUEST)] == [1, 5]
        appended = ledger.append(connection, [("request.started", {"request_id": OTHER, "run_id": "run_01234567"})])
        assert [e.index for e in ledger.entries(connection, request_id=OTHER)] == [4, appended[0].index]
        assert [e.index for e in ledger.entries(connection, kind="request.received", start=2, stop=5)] == [4]
    with pytest.raises(sa.exc.DBAPIError, match="the ledger is append-only: UPDATE refused"), engine.begin() as c:
        c.execute(sa.text("UPDATE ledger_entries SET request_id = :r WHERE seq = 1"), {"r": OTHER})


def _edit_request_id(engine: Engine, seq: int, value: str) -> None:
    """What someone with the database's files (or its owner's role) can do behind the triggers."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("DROP TRIGGER ledger_entries_no_update")
        else:
            connection.exec_driver_sql("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        connection.execute(sa.text("UPDATE ledger_entries SET request_id = :r WHERE seq = :s"), {"r": value, "s": seq})


def test_an_index_edited_behind_the_triggers_is_caught(engine: Engine) -> None:
    upgrade(engine)
    ledger = Ledger(ORIGIN, KEY.public_key())
    with engine.begin() as connection:
        ledger.append(connection, ITEMS[:6], time=TIME)
    _edit_request_id(engine, 4, REQUEST)  # another request's receipt, slipped into this request's certificate
    with engine.connect() as connection:
        with pytest.raises(VerificationError, match=r"^entry 4: its stored request id differs from its payload$"):
            list(ledger.entries(connection, request_id=REQUEST))
        with pytest.raises(
            VerificationError, match=r"^entry 4 \(request.received\): its stored request id differs from its payload$"
        ):
            ledger.verify(connection)
