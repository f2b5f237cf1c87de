"""A checkpoint is used only as the ledger records it: the attack of a pre-erasure file put back.

The attacker can write the database tables (not the append-only ledger) and the checkpoint
folder. After an erasure they copy a checkpoint the erasure purged back into the store and point
one row of the `checkpoints` table at it. Every command that would use it must refuse (exit 1),
naming the shard and slice.
"""

from __future__ import annotations

import csv
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from forget.training.train import ShardPlan, shard_job
from forget.training.trust import (
    FIRST_WINDOW,
    CheckpointLineageError,
    Key,
    LoggedLineage,
    _BackwardFold,
    current_checkpoints,
    lineage_of_entries,
    read_lineage,
)
from forget.workspace.core import open_workspace
from ledger.log import Entry
from tests import crashing_job
from tests.conftest import write_rows, write_tabular_csv
from tests.helpers import WorkspaceCache, cli, cli_json, init_args

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]
ERASED = ["person-0003", "person-0010", "person-0042", "person-0009"]
SLICES = 5
LAST = SLICES - 1


@dataclass(frozen=True)
class Erased:
    ws: Path
    before: dict[Key, str]
    """The checkpoints table before the erasure."""
    after: dict[Key, str]
    saved: Path
    """A copy of the checkpoint folder from before the erasure (what the attacker kept)."""
    shard: int
    """A shard the erasure retrained from a slice before its last."""


def checkpoint_map(ws: Path) -> dict[Key, str]:
    return open_workspace(ws).datastore.checkpoint_map()


def execute(ws: Path, sql: str, **params: object) -> None:
    """As the attacker: a statement on the workspace's database, outside forget."""
    engine = open_workspace(ws).datastore.engine
    with engine.begin() as connection:
        connection.execute(sa.text(sql), params)
    engine.dispose()


def put_back(erased: Erased, shard: int, slice_: int) -> str:
    """Copy the pre-erasure checkpoint of (shard, slice) into the store and point the table at it."""
    old = erased.before[(shard, slice_)]
    target = erased.ws / "checkpoints" / old[:2] / old
    target.parent.mkdir(exist_ok=True)
    shutil.copy(erased.saved / old[:2] / old, target)
    execute(erased.ws, "UPDATE checkpoints SET digest = :d WHERE shard = :s AND slice = :k", d=old, s=shard, k=slice_)
    return old


def _build(root: Path, database_url: str) -> None:
    records = write_tabular_csv(root / "all.csv", rows=203)
    write_rows(root / "data.csv", records)
    ws = root / "ws"
    cli(*init_args(ws, database_url))
    cli("-w", ws, "ingest", root / "data.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")


def build(tmp_path: Path, database_url: str, built: WorkspaceCache) -> Path:
    """A trained workspace in tmp_path/ws: on SQLite built once per session and copied."""
    if database_url.startswith("sqlite"):
        built.copy("checkpoint-trust-trained", lambda root: _build(root, database_url), tmp_path)
    else:
        _build(tmp_path, database_url)
    return tmp_path / "ws"


Table = dict[Key, str]


def _erase(root: Path, database_url: str, built: WorkspaceCache) -> tuple[Table, Table, int]:
    ws = build(root, database_url, built)
    before = checkpoint_map(ws)
    shutil.copytree(ws / "checkpoints", root / "saved-checkpoints")
    for subject in ERASED:
        cli("-w", ws, "request", "--subject-id", subject)
    cli("-w", ws, "run", "--device", "cpu")
    after = checkpoint_map(ws)
    rewound = sorted(s for s in range(4) if before[(s, LAST - 1)] != after[(s, LAST - 1)])
    assert rewound, "the test data must make some erasure rewind a shard before its last slice"
    return before, after, rewound[0]


def erase(tmp_path: Path, database_url: str, built: WorkspaceCache) -> Erased:
    if database_url.startswith("sqlite"):
        before, after, shard = built.copy(
            "checkpoint-trust-erased", lambda root: _erase(root, database_url, built), tmp_path
        )
    else:
        before, after, shard = _erase(tmp_path, database_url, built)
    return Erased(tmp_path / "ws", before, after, tmp_path / "saved-checkpoints", shard)


@pytest.fixture
def erased(tmp_path: Path, database_url: str, built: WorkspaceCache) -> Erased:
    """A workspace after an erasure, with the checkpoints it had before (on SQLite: copied)."""
    return erase(tmp_path, database_url, built)


def refused(ws: Path, *args: object, shard: int, slice_: int) -> str:
    result = cli("-w", ws, *args, expect=1)
    assert f"error: shard {shard} slice {slice_}: " in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return str(result.stderr)


def test_a_pre_erasure_checkpoint_put_back_is_refused_by_every_command_that_would_use_it(
    erased: Erased, tmp_path: Path
) -> None:
    ws, shard = erased.ws, erased.shard
    request_id = cli_json("-w", ws, "status")["requests"][0]["request_id"]
    write_tabular_csv(tmp_path / "new.csv", rows=30, seed=11)
    cli("-w", ws, "predict", tmp_path / "new.csv")  # the untouched workspace serves
    cli("-w", ws, "ledger", "verify")

    old = put_back(erased, shard, LAST)
    message = refused(ws, "predict", tmp_path / "new.csv", shard=shard, slice_=LAST)
    assert f"checkpoint {old[:12]} is not the one the ledger records" in message
    assert f"records {erased.after[(shard, LAST)][:12]}" in message
    refused(ws, "evaluate", tmp_path / "new.csv", shard=shard, slice_=LAST)
    refused(ws, "ledger", "verify", shard=shard, slice_=LAST)
    refused(ws, "audit", "replay", request_id, shard=shard, slice_=LAST)
    refused(ws, "run", shard=shard, slice_=LAST)


def test_a_put_back_checkpoint_is_refused_even_when_open_requests_quarantine_every_shard(
    erased: Erased, tmp_path: Path
) -> None:
    """Tampering is named (exit 1) before the quarantine is (exit 3): it must not hide behind it."""
    ws, shard = erased.ws, erased.shard
    workspace = open_workspace(ws)
    with open(tmp_path / "all.csv", newline="") as file:
        subjects = {row["subject"] for row in csv.DictReader(file)} - set(ERASED)
    keys = {workspace.pseudonymiser.subject(subject): subject for subject in sorted(subjects)}
    placed = workspace.datastore.records_of_subjects(list(keys))
    one_per_shard: dict[int, str] = {}
    for key, records in placed.items():
        for placement in workspace.datastore.placements_of(records).values():
            one_per_shard.setdefault(placement[0], keys[key])
    assert sorted(one_per_shard) == [0, 1, 2, 3]
    for subject in one_per_shard.values():
        cli("-w", ws, "request", "--subject-id", subject)
    write_tabular_csv(tmp_path / "new.csv", rows=30, seed=11)
    assert "all 4 shards are quarantined" in cli("-w", ws, "predict", tmp_path / "new.csv", expect=3).stderr
    put_back(erased, shard, LAST)
    refused(ws, "predict", tmp_path / "new.csv", shard=shard, slice_=LAST)


def test_train_refuses_to_resume_from_a_pre_erasure_checkpoint(erased: Erased) -> None:
    ws, shard = erased.ws, erased.shard
    old = put_back(erased, shard, LAST - 1)
    execute(ws, "DELETE FROM checkpoints WHERE shard = :s AND slice = :k", s=shard, k=LAST)
    with pytest.raises(CheckpointLineageError, match=f"shard {shard} slice {LAST - 1}: checkpoint {old[:12]}"):
        # What the Dask executor ships to a worker: the digest comes from the ledger or not at all.
        shard_job(open_workspace(ws), ShardPlan(shard, LAST), "cpu")
    refused(ws, "train", "--device", "cpu", shard=shard, slice_=LAST - 1)
    assert checkpoint_map(ws)[(shard, LAST - 1)] == old and (shard, LAST) not in checkpoint_map(ws)


@pytest.mark.slow
def test_slices_an_erasure_dropped_are_not_resurrected(
    tmp_path: Path, database_url: str, built: WorkspaceCache
) -> None:
    """Killed after the erasure dropped the rows, before retraining: the old files are still there."""
    ws = build(tmp_path, database_url, built)
    before = checkpoint_map(ws)
    for subject in ERASED:
        cli("-w", ws, "request", "--subject-id", subject)
    killed = crashing_job.start(ws, "erased")
    _, killed_err = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed_err
    dropped = sorted(set(before) - set(checkpoint_map(ws)))
    assert dropped
    for shard, slice_ in dropped:
        digest = before[(shard, slice_)]
        execute(ws, "INSERT INTO checkpoints (shard, slice, digest) VALUES (:s, :k, :d)", s=shard, k=slice_, d=digest)
    shard, slice_ = dropped[0]
    message = refused(ws, "ledger", "verify", shard=shard, slice_=slice_)
    assert "erasure.planned entry" in message and "rewound the shard from slice" in message
    assert f"({len(dropped) - 1} more rows of the checkpoints table disagree)" in message
    write_tabular_csv(tmp_path / "new.csv", rows=30, seed=11)
    served = min(s for s, k in dropped if k == LAST)  # predict checks the last slices, which it uses
    refused(ws, "predict", tmp_path / "new.csv", shard=served, slice_=LAST)
    refused(ws, "train", "--device", "cpu", shard=shard, slice_=slice_)
    refused(ws, "run", "--device", "cpu", shard=shard, slice_=slice_)
    # Undone, the job resumes and finishes.
    for shard, slice_ in dropped:
        execute(ws, "DELETE FROM checkpoints WHERE shard = :s AND slice = :k", s=shard, k=slice_)
    cli("-w", ws, "run", "--device", "cpu")
    cli("-w", ws, "ledger", "verify")
    cli("-w", ws, "predict", tmp_path / "new.csv")


def test_checkpoints_stale_after_an_ingest_are_not_resurrected(tmp_path: Path, built: WorkspaceCache) -> None:
    ws = build(tmp_path, "sqlite:///forget.db", built)
    before = checkpoint_map(ws)
    more = write_tabular_csv(tmp_path / "more.csv", rows=40, seed=23)
    for row in more:
        row["record"] = "new-" + row["record"]
    write_rows(tmp_path / "more.csv", more)
    cli("-w", ws, "ingest", tmp_path / "more.csv", *COLUMNS)
    dropped = sorted(set(before) - set(checkpoint_map(ws)))
    shard, slice_ = dropped[-1]
    execute(ws, "INSERT INTO checkpoints (shard, slice, digest) VALUES (:s, :k, :d)", s=shard, k=slice_,
            d=before[(shard, slice_)])  # fmt: skip
    message = refused(ws, "ledger", "verify", shard=shard, slice_=slice_)
    assert "changed after it was logged (index " in message and "): lineage.slice entry " in message


def test_a_checkpoint_file_altered_on_disk_is_refused_naming_its_shard_and_slice(
    erased: Erased, tmp_path: Path
) -> None:
    ws, shard = erased.ws, erased.shard
    current = erased.after[(shard, LAST)]
    path = ws / "checkpoints" / current[:2] / current
    path.write_bytes((erased.saved / erased.before[(shard, LAST)][:2] / erased.before[(shard, LAST)]).read_bytes())
    write_tabular_csv(tmp_path / "new.csv", rows=30, seed=11)
    message = refused(ws, "predict", tmp_path / "new.csv", shard=shard, slice_=LAST)
    assert f"checkpoint {current[:12]} is corrupt" in message


def test_a_resume_checkpoint_altered_on_disk_stops_training_naming_its_shard_and_slice(
    tmp_path: Path, built: WorkspaceCache
) -> None:
    ws = build(tmp_path, "sqlite:///forget.db", built)
    table = checkpoint_map(ws)
    resume = table[(2, LAST - 1)]
    (ws / "checkpoints" / resume[:2] / resume).write_bytes(b"not the logged checkpoint")
    execute(ws, "DELETE FROM checkpoints WHERE shard = 2 AND slice = :k", k=LAST)  # as a crash would leave it
    message = refused(ws, "train", "--device", "cpu", shard=2, slice_=LAST - 1)
    assert f"checkpoint {resume[:12]} is corrupt: its bytes hash to" in message


def test_the_backward_scan_gives_what_folding_every_entry_gives(erased: Erased) -> None:
    workspace = open_workspace(erased.ws)
    ledger = workspace.ledger  # opened first: opening it reads the database (SQLite would wait on the snapshot)
    with workspace.datastore.snapshot() as connection:
        fast = read_lineage(workspace, connection, erased.after)
        slow = lineage_of_entries(ledger.entries(connection))
    assert fast.checkpoints == {key: slow.checkpoints[key] for key in erased.after}
    assert {key: c.digest for key, c in fast.checkpoints.items()} == erased.after
    fast.check(erased.after)
    assert any(c.dropped_by is None for c in slow.checkpoints.values())


def test_a_long_log_is_read_backwards_only_as_far_as_the_wanted_slices(tmp_path: Path, built: WorkspaceCache) -> None:
    """4,096 later entries of other shards: asking for shard 0 reads window after window back to its own."""
    ws = build(tmp_path, "sqlite:///forget.db", built)
    workspace = open_workspace(ws)
    table, ledger = workspace.datastore.checkpoint_map(), workspace.ledger
    with workspace.datastore.engine.begin() as connection:
        noise = [("lineage.checkpoint", {"shard": 1 + i % 3, "slice": i % SLICES, "checkpoint_sha256": "ab" * 32})
                 for i in range(FIRST_WINDOW * 4)]  # fmt: skip
        ledger.append(connection, noise)
    wanted = {(0, k): table[(0, k)] for k in range(SLICES)}
    with workspace.datastore.snapshot() as connection:
        lineage = read_lineage(workspace, connection, wanted)
    lineage.check(wanted)
    assert set(lineage.checkpoints) == set(wanted)
    with pytest.raises(CheckpointLineageError, match=r"^shard 1 slice 0: .* records abababababab \(14 more rows"):
        current_checkpoints(workspace)


Event = tuple[str, int, int]


def entries_of(events: list[Event]) -> list[Entry]:
    made = []
    for index, (kind, shard, slice_) in enumerate(events):
        if kind == "checkpoint":
            payload: dict[str, object] = {"shard": shard, "slice": slice_, "checkpoint_sha256": f"{index:064x}"}
            made.append(Entry(index, "lineage.checkpoint", "t", payload))
        elif kind == "manifest":
            made.append(Entry(index, "lineage.slice", "t", {"shard": shard, "slice": slice_}))
        else:
            made.append(Entry(index, "erasure.planned", "t", {"rewinds": [{"shard": shard, "from_slice": slice_}]}))
    return made


def backwards(events: list[Event], wanted: set[Key]) -> LoggedLineage:
    fold = _BackwardFold(wanted)
    for index, (kind, shard, slice_) in reversed(list(enumerate(events))):
        kinds = {"checkpoint": "lineage.checkpoint", "manifest": "lineage.slice", "rewind": "erasure.planned"}
        fold.add(index, kinds[kind], shard, slice_, f"{index:064x}")
    return LoggedLineage(fold.decided)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["checkpoint", "manifest", "rewind"]), st.integers(0, 1),
                          st.integers(0, 2)), max_size=30))  # fmt: skip
def test_folding_backwards_equals_folding_forwards(events: list[Event]) -> None:
    forwards = lineage_of_entries(entries_of(events))
    assert backwards(events, set(forwards.checkpoints)) == forwards


def test_a_rewind_or_a_manifest_drops_its_slice_and_later_ones_only_when_logged_after_the_checkpoint() -> None:
    events: list[Event] = [("manifest", 0, 0), ("rewind", 0, 0), *[("checkpoint", 0, k) for k in range(3)]]
    current = lineage_of_entries(entries_of(events))
    assert all(current.objection(0, k, f"{2 + k:064x}") is None for k in range(3))
    late = lineage_of_entries(entries_of([*events, ("rewind", 0, 2), ("manifest", 0, 1), ("rewind", 1, 0)]))
    assert late.objection(0, 0, f"{2:064x}") is None
    assert "records of slice 1 changed after it was logged (index 3): lineage.slice entry 6" in str(
        late.objection(0, 1, f"{3:064x}")
    )
    assert "erasure.planned entry 5 rewound the shard from slice 2 after it was logged (index 4)" in str(
        late.objection(0, 2, f"{4:064x}")  # the first entry that drops it
    )
    assert "no lineage.checkpoint entry" in str(current.objection(0, 5, "0" * 64))
    assert "the latest lineage.checkpoint entry for it (index 2) records 000000000000" in str(
        current.objection(0, 0, "f" * 64)
    )
    with pytest.raises(CheckpointLineageError, match=r"^shard 0 slice 1: .* \(1 more rows of the checkpoints table"):
        late.check({(0, k): f"{2 + k:064x}" for k in range(3)})
