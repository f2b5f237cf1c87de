"""Recording checkpoints several slices to a transaction: fewer commits, the same crash safety.

A checkpoint is recorded only once its file is stored; a failure keeps what was stored; a crash
loses at most unrecorded work, and the next training ends with the same models.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import forget.training.train
from forget.store.checkpoints import checkpoint_store
from forget.training.train import plan_training, train
from forget.workspace.core import open_workspace
from ledger.log import Ledger
from sisa.store import CheckpointStore
from sisa.trainer import TrainedSlice
from tests.conftest import write_tabular_csv
from tests.helpers import WorkspaceCache, cli, init_args

ROOT = Path(__file__).resolve().parents[2]
SHARDS, SLICES = 4, 5


def ingested(tmp_path: Path, name: str, keys_from: Path | None = None) -> Path:
    """A 4 x 5 workspace with data and no checkpoint; `keys_from` shares keys (and so placement)."""
    if not (tmp_path / "all.csv").exists():
        write_tabular_csv(tmp_path / "all.csv", rows=120)
    ws = tmp_path / name
    cli(*init_args(ws, "sqlite:///forget.db", *(["--keys-from", keys_from] if keys_from else [])))
    cli("-w", ws, "ingest", tmp_path / "all.csv", "--subject-column", "subject", "--label-column", "label")
    return ws


def recorded_state(ws: Path) -> dict[tuple[int, int], str]:
    """The current checkpoints, after checking that every one has its file, with the right bytes."""
    workspace = open_workspace(ws)
    current = workspace.datastore.checkpoint_map()
    store = checkpoint_store(workspace)
    for digest in current.values():
        store.get(digest)  # raises unless the file is there and hashes to its digest
    return current


def _trained(root: Path) -> dict[tuple[int, int], str]:
    source = ingested(root, "reference")
    train(open_workspace(source), plan_training(open_workspace(source)), device="cpu")
    return recorded_state(source)


@pytest.fixture
def reference(tmp_path: Path, built: WorkspaceCache) -> tuple[Path, dict[tuple[int, int], str]]:
    """tmp_path/reference, trained (built once per session, copied here), and its checkpoints."""
    return tmp_path / "reference", built.copy("training-record-reference", _trained, tmp_path)


def untrained(tmp_path: Path, built: WorkspaceCache, reference: Path) -> Path:
    """`ingested(tmp_path, ..., keys_from=reference)`: the same for every test (the reference is a
    copy of one workspace, so its keys are the same), so built once per session and copied."""
    built.copy("training-record-ingested", lambda root: ingested(root, "ingested", keys_from=reference), tmp_path)
    return tmp_path / "ingested"


def count_appends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of entries of each ledger append (one append per recording transaction)."""
    sizes: list[int] = []
    original = Ledger.append

    def counting(self: Ledger, connection: object, items: list[object], *args: object) -> object:
        sizes.append(len(items))
        return original(self, connection, items, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Ledger, "append", counting)
    return sizes


def test_quick_slices_are_recorded_a_shard_at_a_time(
    tmp_path: Path,
    reference: tuple[Path, dict[tuple[int, int], str]],
    monkeypatch: pytest.MonkeyPatch,
    built: WorkspaceCache,
) -> None:
    source, expected = reference
    ws = untrained(tmp_path, built, source)
    sizes = count_appends(monkeypatch)
    seen: list[tuple[int, int]] = []
    workspace = open_workspace(ws)

    def on_slice(result: TrainedSlice) -> None:
        # told only once the slice is recorded
        assert workspace.datastore.checkpoint_map()[(result.shard, result.slice)] == result.digest
        seen.append((result.shard, result.slice))

    monkeypatch.setattr(forget.training.train, "RECORD_EVERY_S", 3600.0)
    train(workspace, plan_training(workspace), device="cpu", on_slice=on_slice)
    assert sizes == [SLICES] * SHARDS
    assert seen == [(shard, s) for shard in range(SHARDS) for s in range(SLICES)]
    assert recorded_state(ws) == expected


def test_slow_slices_are_recorded_one_at_a_time(
    tmp_path: Path,
    reference: tuple[Path, dict[tuple[int, int], str]],
    monkeypatch: pytest.MonkeyPatch,
    built: WorkspaceCache,
) -> None:
    source, expected = reference
    ws = untrained(tmp_path, built, source)
    sizes = count_appends(monkeypatch)
    monkeypatch.setattr(forget.training.train, "RECORD_EVERY_S", 0.0)
    train(open_workspace(ws), plan_training(open_workspace(ws)), device="cpu")
    assert sizes == [1] * (SHARDS * SLICES)
    assert recorded_state(ws) == expected


def test_a_failure_keeps_the_stored_slices_and_training_resumes_after_them(
    tmp_path: Path,
    reference: tuple[Path, dict[tuple[int, int], str]],
    monkeypatch: pytest.MonkeyPatch,
    built: WorkspaceCache,
) -> None:
    source, expected = reference
    ws = untrained(tmp_path, built, source)
    monkeypatch.setattr(forget.training.train, "RECORD_EVERY_S", 3600.0)
    original = CheckpointStore.put
    calls: list[int] = []

    def put_then_fail(self: CheckpointStore, data: bytes) -> str:
        calls.append(1)
        if len(calls) == SLICES + 4:  # shard 1 slice 3; its slices 0 to 2 are stored, not yet recorded
            raise OSError(28, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(CheckpointStore, "put", put_then_fail)
    with pytest.raises(OSError, match="No space left"):
        train(open_workspace(ws), plan_training(open_workspace(ws)), device="cpu")
    kept = recorded_state(ws)
    assert sorted(kept) == [(0, s) for s in range(SLICES)] + [(1, s) for s in range(3)]
    monkeypatch.setattr(CheckpointStore, "put", original)
    plans = plan_training(open_workspace(ws))
    assert [(p.shard, p.start_slice) for p in plans] == [(1, 3), (2, 0), (3, 0)]
    train(open_workspace(ws), plans, device="cpu")
    assert recorded_state(ws) == expected


CRASH = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import forget.training.train
    from forget.training.train import plan_training, train
    from forget.workspace.core import open_workspace
    from sisa.store import CheckpointStore

    forget.training.train.RECORD_EVERY_S = 3600.0
    original, calls = CheckpointStore.put, []

    def put_then_die(self, data):
        digest = original(self, data)
        calls.append(digest)
        if len(calls) == int(sys.argv[2]):
            os._exit(9)  # as a SIGKILL would: stored and fsync'd, never recorded
        return digest

    CheckpointStore.put = put_then_die
    ws = open_workspace(Path(sys.argv[1]))
    train(ws, plan_training(ws), device="cpu")
    """
)


def test_a_crash_between_storing_and_recording_loses_only_that_work(
    tmp_path: Path, reference: tuple[Path, dict[tuple[int, int], str]], built: WorkspaceCache
) -> None:
    source, expected = reference
    ws = untrained(tmp_path, built, source)
    killed = subprocess.run(
        [sys.executable, "-c", CRASH, str(ws), str(SLICES + 3)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == 9, killed.stderr
    assert sorted(recorded_state(ws)) == [(0, s) for s in range(SLICES)]  # shard 1's three stored slices: lost work
    cli("-w", ws, "train", "--device", "cpu")  # collects the unrecorded files, resumes at shard 1
    assert recorded_state(ws) == expected
    workspace = open_workspace(ws)
    assert set(checkpoint_store(workspace).digests()) == set(expected.values())
    cli("-w", ws, "ledger", "verify")
