"""The CLI end to end: workspace discovery, keys, training, serving, and its errors."""

from __future__ import annotations

import csv
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_tabular_csv
from tests.helpers import WorkspaceCache, cli, cli_json, init_args

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]


def train_workspace(root: Path) -> None:
    ws = root / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    write_tabular_csv(root / "train.csv", rows=300, seed=1)
    cli("-w", ws, "ingest", root / "train.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")


@pytest.fixture
def trained(tmp_path: Path, built: WorkspaceCache) -> Path:
    """A trained workspace of its own (built once per session, copied here)."""
    built.copy("commands-trained", train_workspace, tmp_path)
    return tmp_path / "ws"


def test_init_writes_private_keys_and_refuses_a_second_init(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    for name in ("pseudonym.key", "signing.pem"):
        assert stat.S_IMODE((ws / "keys" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((ws / "keys").stat().st_mode) == 0o700
    assert "already holds a workspace" in cli(*init_args(ws, "sqlite:///forget.db"), expect=3).stderr


def test_keys_from_copies_keys_and_rejects_a_non_workspace(tmp_path: Path) -> None:
    cli(*init_args(tmp_path / "a", "sqlite:///forget.db"))
    cli(*init_args(tmp_path / "b", "sqlite:///forget.db", "--keys-from", tmp_path / "a"))
    for name in ("pseudonym.key", "signing.pem", "signing.pub.pem"):
        assert (tmp_path / "a/keys" / name).read_bytes() == (tmp_path / "b/keys" / name).read_bytes()
    result = cli(*init_args(tmp_path / "c", "sqlite:///forget.db", "--keys-from", tmp_path), expect=2)
    assert "is not a workspace with keys" in result.stderr
    assert not (tmp_path / "c" / "forget.toml").exists()


def test_workspace_is_found_by_option_then_environment_then_cwd(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = cli("shards", expect=3)
    assert missing.stderr.startswith("error: no forget workspace at") and missing.stderr.count("\n") == 1
    monkeypatch.setenv("FORGET_WORKSPACE", str(trained))
    assert len(cli_json("shards")) == 4
    monkeypatch.setenv("FORGET_WORKSPACE", str(tmp_path / "elsewhere"))
    assert "from $FORGET_WORKSPACE" in cli("shards", expect=3).stderr
    assert len(cli_json("-w", trained, "shards")) == 4
    monkeypatch.delenv("FORGET_WORKSPACE")
    monkeypatch.chdir(trained)
    assert len(cli_json("shards")) == 4


def test_a_missing_database_is_one_clear_line(trained: Path) -> None:
    (trained / "forget.db").unlink()
    result = cli("-w", trained, "shards", expect=3)
    assert "the workspace database" in result.stderr and "is missing" in result.stderr
    assert not (trained / "forget.db").exists(), "a failed command must not create an empty database"


def test_shards_lists_counts_and_latest_digests(trained: Path) -> None:
    shards = cli_json("-w", trained, "shards")
    assert sum(s["records"] for s in shards) == 300
    assert all(len(s["latest_checkpoint"]) == 64 and s["slices_trained"] == 5 for s in shards)
    assert "every shard is up to date" in cli("-w", trained, "train", "--device", "cpu").stdout


def test_retraining_one_shard_from_scratch_reproduces_it(trained: Path) -> None:
    before = cli_json("-w", trained, "shards")
    cli("-w", trained, "train", "--device", "cpu", "--shard", "2", "--from-scratch")
    assert cli_json("-w", trained, "shards") == before
    assert "shard 9 does not exist" in cli("-w", trained, "train", "--shard", "9", expect=2).stderr


def test_evaluate_and_predict(trained: Path, tmp_path: Path) -> None:
    write_tabular_csv(tmp_path / "test.csv", rows=200, seed=2)
    report = cli_json("-w", trained, "evaluate", tmp_path / "test.csv", "--device", "cpu")
    utility = report["utility"]
    assert utility["rows"] == 200 and len(utility["shard_accuracy"]) == 4
    assert utility["ensemble_accuracy"]["value"] > 0.6  # three overlapping blobs; chance is one third
    assert utility["aggregation"] == "geomean" and report["diagnosis"]["useful"]  # the workspace's default
    low, high = utility["ensemble_accuracy"]["ci95"]
    assert low < utility["ensemble_accuracy"]["value"] < high
    cli("-w", trained, "predict", tmp_path / "test.csv", "-o", tmp_path / "p.csv", "--aggregation", "mean")
    with (tmp_path / "p.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200 and set(rows[0]) == {"row", "prediction", "p_a", "p_b", "p_c"}
    assert {r["prediction"] for r in rows} <= {"a", "b", "c"}
    refused = cli("-w", trained, "predict", tmp_path / "test.csv", "--aggregation", "x", expect=2).stderr
    assert "'x' is not one of 'vote', 'mean', 'geomean'" in " ".join(re.sub(r"[│╭╮╰╯─]", " ", refused).split())


def test_untrained_and_empty_workspaces_say_what_to_do(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    assert "run `forget ingest FILE` first" in cli("-w", ws, "train", expect=3).stderr
    write_tabular_csv(tmp_path / "d.csv", rows=40)
    cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS)
    assert "is not trained" in cli("-w", ws, "evaluate", tmp_path / "d.csv", expect=3).stderr


def test_cuda_without_a_gpu_is_refused(trained: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert "sees no CUDA device" in cli("-w", trained, "train", "--device", "cuda", "--from-scratch",
                                        expect=3).stderr  # fmt: skip


def test_the_installed_command_runs_as_a_subprocess(trained: Path) -> None:
    env = {**os.environ, "FORGET_WORKSPACE": str(trained)}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "shards", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "cli", "-w", "/nonexistent", "shards"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 3 and bad.stderr.startswith("error: no forget workspace")


def test_an_encrypted_signing_key_needs_its_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    monkeypatch.setenv("FORGET_KEY_PASSPHRASE", "correct horse")
    cli(*init_args(ws, "sqlite:///forget.db"))
    assert b"ENCRYPTED" in (ws / "keys" / "signing.pem").read_bytes()
    write_tabular_csv(tmp_path / "d.csv", rows=30)
    monkeypatch.delenv("FORGET_KEY_PASSPHRASE")
    missing = cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS, expect=3)
    assert "needs a passphrase" in missing.stderr and missing.stderr.count("\n") == 1
    monkeypatch.setenv("FORGET_KEY_PASSPHRASE", "wrong")
    assert "the passphrase is wrong" in cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS, expect=3).stderr
    assert cli_json("-w", ws, "shards")[0]["records"] == 0, "a refused command wrote records"
    monkeypatch.setenv("FORGET_KEY_PASSPHRASE", "correct horse")
    cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS)
    cli("-w", ws, "ledger", "verify")


def test_two_workspaces_cannot_share_a_database(tmp_path: Path) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    cli(*init_args(tmp_path / "a", shared))
    result = cli(*init_args(tmp_path / "b", shared), expect=3)
    assert "already holds a forget workspace" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "b" / "forget.toml").exists() and not (tmp_path / "b" / "keys").exists()


def test_an_unexpected_exception_is_a_bug_with_its_own_exit_code(
    trained: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import forget.training.train
    from cli.main import run

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(forget.training.train, "shard_summaries", broken)
    monkeypatch.setattr(sys, "argv", ["forget", "-w", str(trained), "shards"])
    with pytest.raises(SystemExit) as exited:
        run()
    assert exited.value.code == 70
    assert "internal error in forget (a bug)" in capsys.readouterr().err


def test_version_is_printed_without_a_workspace() -> None:
    import forget

    assert cli("--version").stdout.strip() == f"forget {forget.__version__}"
