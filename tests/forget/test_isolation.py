"""Isolation: one erasure reads and rewrites only its own shard's records and checkpoints.

The SISA claim behind the erasure's cost (issue 15): a shard is retrained from its own records and
its own checkpoint, and nothing of another shard is read, written or reloaded. Every record and
checkpoint access of the data store and of the checkpoint files is recorded with the shard it
belongs to while `run_job` erases one subject, and must name that subject's shard only. (The
checkpoints *table* is read whole, as metadata: every row is checked against the ledger.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from forget.erasure.job import run_job
from forget.erasure.requests import file_request
from forget.workspace.core import Workspace, open_workspace
from sisa.store import CheckpointStore
from tests.conftest import write_tabular_csv
from tests.helpers import cli, init_args

SHARDS = 4


class Accesses:
    """Which shards each kind of access touched."""

    def __init__(self, shard_of_record: dict[str, int], shard_of_digest: dict[str, int]) -> None:
        self.shard_of_record = shard_of_record
        self.shard_of_digest = shard_of_digest
        self.touched: dict[str, set[int]] = {}

    def note(self, kind: str, shards: Sequence[int]) -> None:
        self.touched.setdefault(kind, set()).update(shards)

    def records(self, kind: str, keys: Sequence[str]) -> None:
        self.note(kind, [self.shard_of_record[k] for k in keys if k in self.shard_of_record])


def watch(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Accesses:
    """Spies on the store's class and the checkpoint files' class: training opens stores of its own."""
    store = workspace.datastore
    with store.snapshot() as tx:
        records = list(store.iter_records(tx))
    digests = {digest: shard for (shard, _), digest in store.checkpoint_map().items()}
    seen = Accesses({r.record_key: r.shard for r in records}, digests)

    def spy(cls: type, name: str, record: Callable[..., None]) -> None:
        original = getattr(cls, name)

        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            record(*args, **kwargs)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapped)

    kind = type(store)
    spy(kind, "iter_records", lambda *a, **k: seen.note("iter_records (every shard)", range(SHARDS)))
    spy(kind, "record_batches", lambda *a, **k: seen.note("record_batches (every shard)", range(SHARDS)))
    spy(kind, "shard_rows", lambda shard, *a, **k: seen.note("shard_rows", [shard]))
    spy(kind, "read_records", lambda tx, keys: seen.records("read_records", keys))
    spy(kind, "delete_records", lambda tx, keys: seen.records("delete_records", keys))
    spy(kind, "insert_records", lambda tx, rows: seen.note("insert_records", [r.shard for r in rows]))
    spy(kind, "slice_record_keys", lambda tx, shard, slice_: seen.note("slice_record_keys", [shard]))
    spy(kind, "slices_record_keys", lambda tx, slices: seen.note("slices_record_keys", [s for s, _ in slices]))
    spy(kind, "set_checkpoint", lambda tx, shard, *a: seen.note("set_checkpoint", [shard]))
    spy(kind, "drop_checkpoints", lambda tx, shard, *a: seen.note("drop_checkpoints", [shard]))
    spy(CheckpointStore, "get", lambda digest: seen.note("checkpoint file read", [digests.get(digest, -1)]))
    return seen


@pytest.mark.slow
def test_one_erasure_touches_only_its_own_shard(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tabular_csv(tmp_path / "data.csv", rows=240)
    ws = tmp_path / "ws"
    cli(*init_args(ws, database_url, "--shards", str(SHARDS), "--slices", "3"))
    cli("-w", ws, "ingest", tmp_path / "data.csv", "--subject-column", "subject", "--label-column", "label",
        "--id-column", "record")  # fmt: skip
    cli("-w", ws, "train", "--device", "cpu")
    workspace = open_workspace(ws)
    before = workspace.datastore.checkpoint_map()
    file_request(workspace, "person-0007")
    subject = workspace.pseudonymiser.subject("person-0007")
    held = workspace.datastore.records_of_subjects([subject])[subject]
    shards = {shard for shard, _ in workspace.datastore.placements_of(held).values()}
    assert len(shards) == 1, "placement by subject puts a subject in one shard"
    [erased_shard] = shards

    seen = watch(workspace, monkeypatch)
    summary = run_job(workspace, device="cpu")
    assert summary.shards_retrained == (erased_shard,)
    assert seen.touched, "the spies saw nothing: the test does not watch the job"
    assert {"shard_rows", "delete_records", "set_checkpoint"} <= set(seen.touched)
    for kind, touched in seen.touched.items():
        assert touched == {erased_shard}, f"{kind} touched shards {sorted(touched)}, the erasure is in {erased_shard}"
    after = workspace.datastore.checkpoint_map()
    assert {k: v for k, v in after.items() if k[0] != erased_shard} == {
        k: v for k, v in before.items() if k[0] != erased_shard
    }
