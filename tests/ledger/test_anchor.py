"""Tests for `ledger.anchor` and the anchored `Ledger`: every attack of a database writer.

The database's owner can drop the append-only triggers and rewrite anything in it, hashes and
heads included (issue 11, item 2). These tests do exactly that, on SQLite and PostgreSQL, and
check that `Ledger.verify` fails and `sign_head` refuses, naming what it found, once the heads
are also kept in an anchor outside the database. They also pin the anchor's crash behaviour:
a torn last line, and a crash between the head's commit and its copy to the anchor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from forget.store.datastore import create_engine, resolve_url
from forget.store.migrate import upgrade
from ledger import merkle, store
from ledger.anchor import FileAnchor, FsspecAnchor, append_record, head_record, open_anchor
from ledger.errors import LedgerError, VerificationError
from ledger.log import Ledger
from tests.ledger.test_store import _bypass

ORIGIN = "test.local/anchored"
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"forget test anchored ledger").digest())
TIME = "2026-11-22T12:00:00.000000Z"
REFUSED = "nothing was signed"


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(resolve_url(database_url, tmp_path), must_exist=False)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def anchor(tmp_path: Path) -> FileAnchor:
    created = FileAnchor(tmp_path / "ledger-anchor.jsonl")
    created.create(ORIGIN)
    return created


@pytest.fixture
def ledger(anchor: FileAnchor) -> Ledger:
    return Ledger(ORIGIN, KEY.public_key(), anchor)


def _items(first: int, count: int) -> list[tuple[str, dict[str, Any]]]:
    kinds = ("request.received", "request.started", "request.completed")
    return [
        (kinds[i % 3], {"n": i, "request_id": f"req-{i:04d}", "records_erased": i % 5})
        for i in range(first, first + count)
    ]


def _append(engine: Engine, ledger: Ledger, count: int, time: str = TIME) -> None:
    with engine.begin() as connection:
        ledger.append(connection, _items(store.size(connection), count), time=time)


def _sign(engine: Engine, ledger: Ledger) -> store.StoredHead | None:
    """What `forget.training.lineage.sign_head` does: sign in one transaction, copy to the anchor after."""
    with engine.begin() as connection:
        head = ledger.sign_head(connection, KEY, time=TIME)
    with engine.connect() as connection:
        ledger.anchor_pending(connection)
    return head


def _grow(engine: Engine, ledger: Ledger, *sizes: int) -> None:
    for size in sizes:
        with engine.connect() as connection:
            have = store.size(connection)
        _append(engine, ledger, size - have)
        _sign(engine, ledger)


def _verify(engine: Engine, ledger: Ledger) -> Any:
    with engine.connect() as connection:
        return ledger.verify(connection)


def _tamper(engine: Engine, *statements: tuple[str, dict[str, Any]]) -> None:
    with engine.begin() as connection:
        _bypass(connection, statements)


def _heads(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return [h.size for h in store.all_heads(connection)]


def _edit(engine: Engine, seq: int) -> tuple[bytes, bytes]:
    """Entry `seq` with its payload changed (as a forger would write it), and its leaf hash."""
    with engine.connect() as connection:
        stored = store.read_entry(connection, seq)
    assert stored is not None
    value = json.loads(stored.entry)
    value["payload"]["records_erased"] = 0
    value["payload"]["n"] = -1
    edited = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return edited, merkle.leaf_hash(edited)


def _rewrite_hashes(engine: Engine) -> None:
    """Recompute every stored subtree hash from the (edited) entries, as a forger who knows RFC 9162 can."""
    with engine.connect() as connection:
        leaves = [merkle.leaf_hash(e.entry) for e in store.read_entries(connection)]
        nodes = list(store.read_nodes_in_completion_order(connection))
    _tamper(
        engine,
        *[
            (
                "UPDATE ledger_nodes SET hash = :h WHERE level = :level AND idx = :idx",
                {"h": merkle.root_hash(leaves[idx << level : (idx + 1) << level]), "level": level, "idx": idx},
            )
            for level, idx, _ in nodes
        ],
    )


# --- the attacks of issue 11, item 2 ----------------------------------------------------------


def test_an_edited_completion_with_rewritten_hashes_and_deleted_heads_is_caught(engine: Engine, ledger: Ledger) -> None:
    _grow(engine, ledger, 6, 9)
    edited, leaf = _edit(engine, 5)  # entry 5 is a request.completed
    _tamper(engine, ("UPDATE ledger_entries SET entry = :e, leaf_hash = :h WHERE seq = 5", {"e": edited, "h": leaf}))
    _rewrite_hashes(engine)
    _tamper(engine, ("DELETE FROM ledger_heads", {}))
    # Without the anchor, the database alone is a consistent, unsigned log: nothing to catch it.
    with engine.connect() as connection:
        assert Ledger(ORIGIN, KEY.public_key()).verify(connection).heads == 0
    with pytest.raises(
        VerificationError,
        match=r"^entries before 6 differ from the anchored head of size 6: the log was rewritten after that head",
    ):
        _verify(engine, ledger)
    _append(engine, ledger, 2)  # the next command appends, and signs
    with pytest.raises(
        VerificationError,
        match=rf"^the ledger's first 9 entries differ from the last anchored head: the log was rewritten or forked;"
        rf" {REFUSED}$",
    ):
        _sign(engine, ledger)
    assert _heads(engine) == []


def test_deleted_heads_alone_are_caught(engine: Engine, ledger: Ledger) -> None:
    _grow(engine, ledger, 4, 7)
    _tamper(engine, ("DELETE FROM ledger_heads WHERE size = 7", {}))
    with pytest.raises(VerificationError, match=r"^the anchored head of size 7 is missing from the database"):
        _verify(engine, ledger)
    _append(engine, ledger, 1)
    with pytest.raises(
        VerificationError, match=rf"^the anchored head of size 7 is missing from the database .*{REFUSED}$"
    ):
        _sign(engine, ledger)


def test_a_truncated_tail_regrown_to_the_same_size_is_a_fork_and_refused(engine: Engine, ledger: Ledger) -> None:
    _grow(engine, ledger, 5, 10)
    _tamper(  # the tail with its heads and subtree hashes: the database is a clean log of 5 entries
        engine,
        ("DELETE FROM ledger_entries WHERE seq >= 5", {}),
        ("DELETE FROM ledger_nodes WHERE ((idx + 1) << level) > 5", {}),
        ("DELETE FROM ledger_heads WHERE size > 5", {}),
    )
    with pytest.raises(
        VerificationError, match=r"^the anchored head of size 10 covers more entries than the ledger's 5"
    ):
        _verify(engine, ledger)
    later = "2026-12-01T09:00:00.000000Z"  # later commands append other entries
    _append(engine, ledger, 3, later)
    with pytest.raises(
        VerificationError, match=r"^the ledger holds 8 entries, fewer than the 10 of the last anchored head"
    ):
        _sign(engine, ledger)
    _append(engine, ledger, 2, later)  # ...up to the anchored size: a second history of 10 entries
    with pytest.raises(VerificationError, match=r"^the ledger's first 10 entries differ from the last anchored head"):
        _sign(engine, ledger)
    assert _heads(engine) == [5]
    with pytest.raises(VerificationError, match=r"^entries before 10 differ from the anchored head of size 10"):
        _verify(engine, ledger)


def test_a_forged_entry_appended_at_the_tail_is_not_signed(engine: Engine, ledger: Ledger) -> None:
    _grow(engine, ledger, 4)
    # The database's owner appends a well-formed entry, its leaf and its subtree hashes all
    # correct (the triggers allow an in-order insert): only the anchor knows forget did not write it.
    forged = Ledger(ORIGIN, KEY.public_key())  # no anchor: what raw SQL amounts to
    with engine.begin() as connection:
        forged.append(connection, [("request.completed", {"request_id": "req-forged", "records_erased": 0})])
    _append(engine, ledger, 2)  # then forget appends on top of it
    with pytest.raises(
        VerificationError,
        match=rf"^entry 4 \(request.completed\) was not appended by forget: the anchor has no record of it; {REFUSED}$",
    ):
        _sign(engine, ledger)
    with pytest.raises(VerificationError, match=r"^entry 4 \(request.completed\) was not appended by forget"):
        _verify(engine, ledger)
    assert _heads(engine) == [4]


def test_tail_subtree_hashes_that_do_not_match_their_entries_are_not_signed(engine: Engine, ledger: Ledger) -> None:
    _grow(engine, ledger, 4)
    _append(engine, ledger, 4)  # completes the subtree 4..7 and the root 0..7
    # The stored root of 0..7 no longer matches the entries (the subtree 4..5 is not on the path).
    _tamper(engine, ("UPDATE ledger_nodes SET hash = :h WHERE level = 3 AND idx = 0", {"h": b"\x07" * 32}))
    with pytest.raises(VerificationError, match=rf"^the stored hashes of entries 4\.\.7 do not match them; {REFUSED}$"):
        _sign(engine, ledger)
    assert _heads(engine) == [4]


def test_a_crash_between_commit_and_anchor_is_healed_by_the_next_signing(
    engine: Engine, ledger: Ledger, anchor: FileAnchor
) -> None:
    _grow(engine, ledger, 3)
    _append(engine, ledger, 2)
    with engine.begin() as connection:  # signed and committed; the process dies before the copy
        ledger.sign_head(connection, KEY, time=TIME)
    report = _verify(engine, ledger)
    assert (report.heads, report.anchored, report.unanchored) == (2, 1, 1)
    assert [h.size for h in anchor.read().heads] == [3]
    _append(engine, ledger, 1)
    _sign(engine, ledger)
    assert [h.size for h in anchor.read().heads] == [3, 5, 6]
    report = _verify(engine, ledger)
    assert (report.heads, report.anchored, report.unanchored) == (3, 3, 0)


def test_a_head_only_the_anchor_holds_is_refused_never_adopted(
    engine: Engine, ledger: Ledger, anchor: FileAnchor
) -> None:
    _grow(engine, ledger, 3)
    _append(engine, ledger, 2)
    with engine.connect() as connection:
        root = store.root(connection, 5)
    from ledger.note import Checkpoint, sign_note

    note = sign_note(Checkpoint(ORIGIN, 5, root).to_text(), ORIGIN, KEY)
    anchor.append([head_record(5, root, TIME, note)])  # as if the database lost its newest head
    with pytest.raises(VerificationError, match=r"^the anchored head of size 5 is missing from the database"):
        _sign(engine, ledger)


def test_an_anchor_of_another_log_or_a_missing_one_is_refused(engine: Engine, tmp_path: Path) -> None:
    other = FileAnchor(tmp_path / "other.jsonl")
    other.create("test.local/another")
    with engine.begin() as connection, pytest.raises(VerificationError, match=r"belongs to log 'test\.local/another'"):
        Ledger(ORIGIN, KEY.public_key(), other).sign_head(connection, KEY)
    gone = FileAnchor(tmp_path / "gone.jsonl")
    with engine.begin() as connection, pytest.raises(VerificationError, match=r"gone.jsonl is missing: restore it"):
        Ledger(ORIGIN, KEY.public_key(), gone).sign_head(connection, KEY)


def test_a_forged_head_in_the_anchor_fails_its_signature(engine: Engine, ledger: Ledger, anchor: FileAnchor) -> None:
    _grow(engine, ledger, 3)
    _append(engine, ledger, 1)
    with engine.connect() as connection:
        root = store.root(connection, 4)
    from ledger.note import Checkpoint, sign_note

    stranger = Ed25519PrivateKey.generate()
    anchor.append([head_record(4, root, TIME, sign_note(Checkpoint(ORIGIN, 4, root).to_text(), ORIGIN, stranger))])
    with pytest.raises(VerificationError, match=r"^note has no signature by test\.local/anchored"):
        _verify(engine, ledger)
    with pytest.raises(VerificationError, match=r"^note has no signature by test\.local/anchored"):
        _sign(engine, ledger)


def test_a_log_from_before_anchors_adopts_an_empty_anchor_file(engine: Engine, tmp_path: Path) -> None:
    plain = Ledger(ORIGIN, KEY.public_key())
    for size in (3, 6):  # signed without an anchor, as forget did before
        with engine.begin() as connection:
            plain.append(connection, _items(store.size(connection), size - store.size(connection)), time=TIME)
            plain.sign_head(connection, KEY, time=TIME)
    empty = FileAnchor(tmp_path / "adopted.jsonl")
    empty.path.write_bytes(b"")  # `touch`: trust the database's heads as they are, once
    adopted = Ledger(ORIGIN, KEY.public_key(), empty)
    _grow(engine, adopted, 8)
    assert [h.size for h in empty.read().heads] == [3, 6, 8]
    report = _verify(engine, adopted)
    assert (report.entries, report.anchored, report.unanchored) == (8, 3, 0)


# --- the anchor file itself ------------------------------------------------------------------


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(anchor: FileAnchor) -> None:
    anchor.append([append_record(0, [b"\x01" * 32])])
    whole = anchor.path.read_bytes()
    torn = json.dumps(append_record(1, [b"\x02" * 32])).encode()[:30]
    anchor.path.write_bytes(whole + torn)  # a crash mid-write: no newline
    contents = anchor.read()
    assert contents.torn and contents.appends.indices() == {0}
    anchor.append([append_record(1, [b"\x03" * 32])])
    assert anchor.path.read_bytes().startswith(whole) and not anchor.read().torn
    assert anchor.read().recorded(1, b"\x03" * 32) and not anchor.read().recorded(1, b"\x02" * 32)
    assert anchor.path.read_bytes().count(b"\n") == whole.count(b"\n") + 1


def test_a_complete_line_that_is_not_a_record_is_refused(anchor: FileAnchor) -> None:
    anchor.append([append_record(0, [b"\x01" * 32])])
    with anchor.path.open("ab") as handle:
        handle.write(b'{"v":1,"type":"head","size":"x"}\n')
    with pytest.raises(VerificationError, match=r"ledger-anchor.jsonl: line 3 is not a record forget wrote"):
        anchor.read()


def test_append_records_are_parsed_newest_first_and_only_as_far_as_needed(anchor: FileAnchor) -> None:
    anchor.append([append_record(0, [b"\x01" * 32])])
    with anchor.path.open("ab") as handle:
        handle.write(b'{"first":1,"leaves":"not a list","type":"append","v":1}\n')
    anchor.append([append_record(2, [b"\x02" * 32, b"\x03" * 32])])
    contents = anchor.read()  # the broken batch is not read yet: signing asks about the newest entries
    assert contents.recorded(3, b"\x03" * 32) and contents.recorded(2, b"\x02" * 32)
    with pytest.raises(VerificationError, match=r"line 3 is not a record forget wrote \(not an append record"):
        contents.recorded(0, b"\x01" * 32)  # reaching it fails, as `Ledger.verify` (which checks all) does
    with pytest.raises(VerificationError, match="line 3 is not a record forget wrote"):
        anchor.read().appends.check()


def test_two_different_heads_of_one_size_in_the_anchor_are_a_fork(anchor: FileAnchor) -> None:
    anchor.append([head_record(4, b"\x01" * 32, TIME, "n"), head_record(4, b"\x01" * 32, TIME, "n")])
    assert len(anchor.read().heads) == 1  # the same head twice (two processes healing) is one head
    anchor.append([head_record(4, b"\x02" * 32, TIME, "n")])
    with pytest.raises(VerificationError, match=r"holds two different heads of size 4: the log was forked"):
        anchor.read()


def test_create_refuses_an_existing_anchor_and_append_a_missing_one(tmp_path: Path) -> None:
    anchor = FileAnchor(tmp_path / "a.jsonl")
    with pytest.raises(VerificationError, match="is missing: nothing was signed"):
        anchor.append([append_record(0, [b"\x01" * 32])])
    anchor.create(ORIGIN)
    with pytest.raises(LedgerError, match="already exists"):
        anchor.create(ORIGIN)
    assert anchor.read().origin == ORIGIN
    assert isinstance(open_anchor("a.jsonl", tmp_path), FileAnchor)
    assert open_anchor(str(tmp_path / "a.jsonl"), Path("/elsewhere")).location == str(tmp_path / "a.jsonl")


def test_an_fsspec_anchor_keeps_one_object_per_record(engine: Engine) -> None:
    pytest.importorskip("fsspec")
    url = f"memory://anchors/{hashlib.sha256(str(engine.url).encode()).hexdigest()[:12]}"
    anchor = open_anchor(url, Path("/unused"))
    assert isinstance(anchor, FsspecAnchor)
    with pytest.raises(VerificationError, match="is missing"):
        anchor.read()
    anchor.create(ORIGIN)
    ledger = Ledger(ORIGIN, KEY.public_key(), anchor)
    _grow(engine, ledger, 3, 5)
    contents = anchor.read()
    assert [h.size for h in contents.heads] == [3, 5] and contents.appends.indices() == {0, 1, 2, 3, 4}
    _sign(engine, ledger)  # nothing new: writing the same records again adds no object
    count = len(anchor.fs.find(anchor.root))
    anchor.append([head_record(5, contents.heads[-1].root_hash, TIME, contents.heads[-1].note)])
    assert len(anchor.fs.find(anchor.root)) == count
    _tamper(engine, ("DELETE FROM ledger_heads WHERE size = 5", {}))
    with pytest.raises(VerificationError, match="the anchored head of size 5 is missing from the database"):
        _verify(engine, ledger)
    sa.inspect(engine)  # the engine is still usable


# --- end to end through the CLI ----------------------------------------------------------------


@pytest.mark.slow
def test_cli_verify_and_the_next_command_catch_a_rewritten_completion(tmp_path: Path, database_url: str) -> None:
    from tests.conftest import write_tabular_csv
    from tests.helpers import cli
    from tests.ledger.test_store import _cli_workspace

    ws = _cli_workspace(tmp_path, database_url)
    subject = next(row["subject"] for row in write_tabular_csv(tmp_path / "again.csv", rows=40, seed=3))
    cli("-w", ws, "request", "--subject-id", subject)
    cli("-w", ws, "run", "--device", "cpu")
    completed = [line for line in cli("-w", ws, "ledger", "show").stdout.splitlines() if "request.completed" in line]
    seq = int(completed[0].split()[0])
    target = create_engine(resolve_url(database_url, ws), must_exist=True)
    try:
        edited, leaf = _edit(target, seq)
        _tamper(
            target,
            ("UPDATE ledger_entries SET entry = :e, leaf_hash = :h WHERE seq = :s", {"e": edited, "h": leaf, "s": seq}),
        )
        _rewrite_hashes(target)
        _tamper(target, ("DELETE FROM ledger_heads", {}))
        with target.connect() as connection:  # the database alone now holds a consistent, unsigned log
            Ledger(ORIGIN, KEY.public_key()).verify(connection)
    finally:
        target.dispose()
    result = cli("-w", ws, "ledger", "verify", expect=1)
    assert (
        result.stderr.startswith("error: entries before ") and "differ from the anchored head of size" in result.stderr
    )
    signing = cli("-w", ws, "request", "--subject-id", "someone-else", expect=1)
    assert signing.stderr.endswith(f"the log was rewritten or forked; {REFUSED}\n")
    assert signing.stderr.count("\n") == 1
