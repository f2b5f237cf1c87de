"""The Dask executor on a two-worker LocalCluster bound to 127.0.0.1: same bits as local, and retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forget.workspace.core import open_workspace
from tests.conftest import write_tabular_csv
from tests.helpers import cli, cli_json, init_args

distributed = pytest.importorskip("distributed")

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        worker_dashboard_address=None,
    ) as local:  # fmt: skip
        yield local


def digests(ws: Path) -> dict[tuple[int, int], str]:
    return open_workspace(ws).datastore.checkpoint_map()


def test_training_and_erasure_on_dask_equal_the_local_executor(tmp_path: Path, cluster: Any) -> None:
    records = write_tabular_csv(tmp_path / "d.csv", rows=160)
    local, remote = tmp_path / "local", tmp_path / "remote"
    cli(*init_args(local, "sqlite:///forget.db"))
    cli(*init_args(remote, "sqlite:///forget.db", "--keys-from", local))
    for ws in (local, remote):
        cli(
            "-w",
            ws,
            "ingest",
            tmp_path / "d.csv",
            *COLUMNS,
            *(["--schema", local / "forget.toml"] if ws == remote else []),
        )
    cli("-w", local, "train", "--device", "cpu")
    result = cli_json("-w", remote, "train", "--device", "cpu", "--executor", "dask", "--scheduler",
                      cluster.scheduler_address)  # fmt: skip
    assert len(result["shards_trained"]) == 4
    assert digests(remote) == digests(local)
    subject = records[0]["subject"]
    for ws, extra in ((local, []), (remote, ["--executor", "dask", "--scheduler", cluster.scheduler_address])):
        cli("-w", ws, "request", "--subject-id", subject)
        cli("-w", ws, "run", "--device", "cpu", *extra)
    assert digests(remote) == digests(local)
    cli("-w", remote, "ledger", "verify")


def test_a_worker_killed_mid_shard_is_retried_and_the_job_completes(
    tmp_path: Path, cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    write_tabular_csv(tmp_path / "d.csv", rows=120)
    reference, ws = tmp_path / "reference", tmp_path / "ws"
    cli(*init_args(reference, "sqlite:///forget.db"))
    cli(*init_args(ws, "sqlite:///forget.db", "--keys-from", reference))
    cli("-w", reference, "ingest", tmp_path / "d.csv", *COLUMNS)
    cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS, "--schema", reference / "forget.toml")
    cli("-w", reference, "train", "--device", "cpu")
    marker = tmp_path / "worker-died"
    # Workers inherit this environment: the first one to finish a slice exits hard, once.
    monkeypatch.setenv("FORGET_WORKER_CRASH_ONCE", str(marker))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, worker_dashboard_address=None) as fragile:  # fmt: skip
        cli("-w", ws, "train", "--device", "cpu", "--executor", "dask", "--scheduler", fragile.scheduler_address)
    assert marker.exists(), "the fault was never injected"
    assert digests(ws) == digests(reference)


def test_an_unreachable_scheduler_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    write_tabular_csv(tmp_path / "d.csv", rows=40)
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS)
    result = cli("-w", ws, "train", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", expect=3)
    assert "cannot reach the Dask scheduler" in result.stderr and result.stderr.count("\n") == 1
    assert digests(ws) == {}
    assert "needs --scheduler" in cli("-w", ws, "train", "--executor", "dask", expect=2).stderr
