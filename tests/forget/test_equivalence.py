"""Invariant 2: erasing a set F leaves models bit-identical to training on D minus F from scratch.

The erasure takes production's one path: `forget request` for each subject, then `forget run`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from forget.erasure.rewind import plan_erasure, subject_records
from forget.store.checkpoints import checkpoint_store
from forget.workspace.core import open_workspace
from tests.conftest import write_rows, write_tabular_csv
from tests.helpers import cli, cli_json, init_args

SLICES = 5


def choose_subjects(workspace_dir: Path, subjects: list[str]) -> list[str]:
    """A subject with a record in the first slice and one in the last, in different shards."""
    ws = open_workspace(workspace_dir)
    store = ws.datastore
    by_key = {ws.pseudonymiser.subject(s): s for s in subjects}
    index = store.records_of_subjects(list(by_key))
    places = store.placements_of([r for recs in index.values() for r in recs])
    first = last = None
    for key, recs in sorted(index.items()):
        slices = {places[r][1] for r in recs}
        shard = places[recs[0]][0]
        if first is None and 0 in slices:
            first = (by_key[key], shard)
        elif last is None and SLICES - 1 in slices and first is not None and shard != first[1]:
            last = (by_key[key], shard)
    assert first is not None and last is not None, "the generated data should hold both cases"
    chosen = [first[0], last[0]]
    # Placement depends on the workspace's random key: make sure a rewound shard is left with a
    # record count that is no multiple of the slice count, erasing one more subject if needed.
    counts = store.shard_counts()
    keys_of = {by_key[key]: recs for key, recs in index.items()}

    def left(shard: int) -> int:
        return counts[shard] - sum(1 for s in chosen for r in keys_of[s] if places[r][0] == shard)

    for key, recs in sorted(index.items()):
        if any(left(shard) % SLICES for shard in (first[1], last[1])):
            break
        if by_key[key] not in chosen and places[recs[0]][0] in (first[1], last[1]):
            chosen.append(by_key[key])
    return chosen


@pytest.mark.parametrize(
    ("id_column", "placement"), [(True, "subject"), (False, "record")], ids=["id-column", "content-keys"]
)
def test_erasure_equals_retraining_without_the_subjects(
    tmp_path: Path, database_url: str, second_database_url: str, id_column: bool, placement: str
) -> None:
    records = write_tabular_csv(tmp_path / "all.csv", rows=203)
    columns = ["--subject-column", "subject", "--label-column", "label"]
    if id_column:
        columns += ["--id-column", "record"]
    a, b = tmp_path / "a", tmp_path / "b"
    cli(*init_args(a, database_url, "--placement", placement))
    cli("-w", a, "ingest", tmp_path / "all.csv", *columns)
    cli("-w", a, "train", "--device", "cpu")

    ws = open_workspace(a)
    before = ws.datastore.checkpoint_map()
    erased_subjects = choose_subjects(a, sorted({r["subject"] for r in records}))
    plan = plan_erasure(ws, subject_records(ws, erased_subjects))
    assert min(r.from_slice for r in plan.rewinds) == 0
    counts = ws.datastore.shard_counts()
    for subject in erased_subjects:
        cli("-w", a, "request", "--subject-id", subject)
    summary = cli_json("-w", a, "run", "--device", "cpu")
    after = ws.datastore.checkpoint_map()
    rewound = {r.shard: r.from_slice for r in plan.rewinds}
    left = ws.datastore.shard_counts()
    assert any(left[s] % SLICES for s in rewound), "cover a shard whose count is not a multiple of the slices"
    assert sum(counts.values()) - sum(left.values()) == len(plan.record_keys) == summary["records_erased"]
    assert len(summary["completed"]) == len(erased_subjects) and not summary["schema_changed"]

    # Untouched shards and the clean prefix of rewound shards keep their exact checkpoints.
    for (shard, slice_), digest in before.items():
        if shard not in rewound or slice_ < rewound[shard]:
            assert after[(shard, slice_)] == digest
        else:
            assert digest not in checkpoint_store(ws), "a checkpoint that saw an erased record survived"
    assert sorted(summary["shards_retrained"]) == sorted(rewound)
    assert set(checkpoint_store(ws).digests()) == set(after.values())
    cli("-w", a, "ledger", "verify")

    retained = [r for r in records if r["subject"] not in erased_subjects]
    write_rows(tmp_path / "retained.csv", retained)
    cli(*init_args(b, second_database_url, "--placement", placement, "--keys-from", a))
    cli("-w", b, "ingest", tmp_path / "retained.csv", *columns, "--schema", a / "forget.toml")
    cli("-w", b, "train", "--device", "cpu")
    fresh = open_workspace(b).datastore.checkpoint_map()
    assert fresh == after, "the erased workspace differs from training without the subjects"
