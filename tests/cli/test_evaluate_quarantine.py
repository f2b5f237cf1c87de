"""`forget evaluate` while erasure requests are open: it evaluates the shards that may answer, names
them, and names their checkpoints only (a quarantined shard's model is neither used nor claimed).

While `forget run` retrains a shard, that shard has no last checkpoint; its request is running,
so the shard is quarantined and the evaluation goes on without it.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from forget.workspace.core import open_workspace
from tests import crashing_job
from tests.conftest import write_tabular_csv
from tests.helpers import cli, cli_json, init_args

SHARDS = 4


def shard_of(ws: Path, subject: str) -> int:
    workspace = open_workspace(ws)
    key = workspace.pseudonymiser.subject(subject)
    records = workspace.datastore.records_of_subjects([key])[key]
    [shard] = {shard for shard, _ in workspace.datastore.placements_of(records).values()}
    return shard


@pytest.mark.slow
def test_evaluate_names_the_shards_that_answered_before_and_during_a_run(tmp_path: Path, database_url: str) -> None:
    write_tabular_csv(tmp_path / "data.csv", rows=240)
    write_tabular_csv(tmp_path / "held-out.csv", rows=60, seed=11)
    ws = tmp_path / "ws"
    cli(*init_args(ws, database_url, "--shards", str(SHARDS), "--slices", "2"))
    cli("-w", ws, "ingest", tmp_path / "data.csv", "--subject-column", "subject", "--label-column", "label",
        "--id-column", "record")  # fmt: skip
    cli("-w", ws, "train", "--device", "cpu")
    every = cli_json("-w", ws, "evaluate", tmp_path / "held-out.csv", "--json")
    assert every["utility"]["shards"] == list(range(SHARDS))
    all_digests = every["model"]["checkpoints"]

    cli("-w", ws, "request", "--subject-id", "person-0007")
    held = shard_of(ws, "person-0007")
    answering = [s for s in range(SHARDS) if s != held]
    pending = cli_json("-w", ws, "evaluate", tmp_path / "held-out.csv", "--json")
    assert pending["utility"]["shards"] == answering
    assert pending["model"]["checkpoints"] == [all_digests[s] for s in answering]
    assert len(pending["utility"]["shard_accuracy"]) == len(answering)

    killed = crashing_job.start(ws, "erased")  # the shard's checkpoints are dropped; the request runs
    _, err = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, err
    running = cli_json("-w", ws, "evaluate", tmp_path / "held-out.csv", "--json")
    assert running["utility"]["shards"] == answering
    assert running["model"]["checkpoints"] == [all_digests[s] for s in answering]
    html = cli("-w", ws, "evaluate", tmp_path / "held-out.csv", "--html", tmp_path / "report.html")
    assert html.exit_code == 0
    page = (tmp_path / "report.html").read_text()
    assert f"shard {held}<" not in page and f"shard {answering[-1]}<" in page

    cli("-w", ws, "run", "--device", "cpu")
    after = cli_json("-w", ws, "evaluate", tmp_path / "held-out.csv", "--json")
    assert after["utility"]["shards"] == list(range(SHARDS))
