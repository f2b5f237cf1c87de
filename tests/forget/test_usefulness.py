"""Issue 12: evaluation that says when a model is useless, on a data set built to collapse to one class.

The data: 90% of the labels are "no", and the single feature is noise around a constant, so nothing
predicts the label; 400 training rows over 20 shards (about 20 records and 50 optimizer steps a
shard). Every shard then learns the prior and predicts "no" for every row: the ensemble is exactly
the majority-class baseline, and the report must say so rather than print an 89% accuracy.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from forget.data.ingest import ColumnChoice, ingest_file
from forget.evaluation.evaluate import Finding, diagnose, evaluate, training_verdict, utility_of
from forget.training.train import plan_training, train
from forget.workspace.config import TrainingSettings
from forget.workspace.core import InitOptions, init_workspace
from reports.evaluation import render_evaluation_html
from sisa.aggregation import Aggregation
from tests.helpers import cli

SETTINGS = TrainingSettings(epochs=20, batch_size=8, lr=1e-2)


def collapsing_rows(path: Path, rows: int, seed: int, prefix: str) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "noise", "label"])
        for i in range(rows):
            label = "yes" if rng.random() < 0.1 else "no"
            writer.writerow([f"{prefix}{i:04d}", f"{1 + 0.001 * rng.normal():.6f}", label])
    return path


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("collapse")
    train_csv = collapsing_rows(root / "train.csv", 400, 1, "t")
    held_out = collapsing_rows(root / "held-out.csv", 300, 2, "h")
    ws = init_workspace(root / "ws", InitOptions(shards=20, slices=1, seed=3, training=SETTINGS))
    ingest_file(ws, train_csv, ColumnChoice(subject="subject", label="label"))
    train(ws, plan_training(ws), "cpu")
    report = evaluate(ws, held_out, device="cpu", seed=1, bootstrap=50)
    return {"ws": ws, "report": report, "held_out": held_out, "train": train_csv, "root": root}


def test_a_collapsed_ensemble_is_called_useless(collapsed: dict[str, Any]) -> None:
    report = collapsed["report"]
    utility = report.utility
    assert utility.aggregation is Aggregation.GEOMEAN  # the workspace's default, not the CLI's old vote
    assert utility.majority is not None and utility.accuracy.value == utility.majority.value  # "no" everywhere
    assert utility.p_vs_majority == 1.0 and not utility.better_than_majority()
    assert utility.ensemble_classes_predicted == 1
    assert len(utility.single_class_shards) == 20
    assert utility.balanced_accuracy is not None and utility.balanced_accuracy.value == 0.5
    recalls = {c.label: c.recall.value for c in utility.classes if c.recall is not None}
    assert recalls == {"no": 1.0, "yes": 0.0}
    assert utility.macro_f1 is not None and utility.macro_f1.value < 0.5
    diagnosis = report.diagnosis
    assert diagnosis is not None and not diagnosis.useful
    assert diagnosis.verdict.startswith("NOT USEFUL: ")
    codes = [code for code, _ in diagnosis.warnings]
    assert codes == [
        Finding.NOT_BETTER_THAN_BASELINE,
        Finding.ONE_CLASS_ENSEMBLE,
        Finding.SINGLE_CLASS_SHARDS,
        Finding.SMALL_SHARDS,
    ]
    messages = dict(diagnosis.warnings)
    assert "20 of 20 shards predict a single class" in messages[Finding.SINGLE_CLASS_SHARDS]
    assert "optimizer steps per shard (under 100" in messages[Finding.SMALL_SHARDS]
    # Class labels are cell values: no message names them.
    for _, message in diagnosis.warnings:
        assert "'no'" not in message and '"no"' not in message and "yes" not in message


def test_the_report_and_its_page_carry_the_warnings(collapsed: dict[str, Any]) -> None:
    data = json.loads(json.dumps(collapsed["report"].to_dict()))
    assert data["diagnosis"]["useful"] is False
    assert data["diagnosis"]["warnings"][0]["code"] == "not_better_than_baseline"
    assert data["utility"]["majority_baseline"]["class_index"] == 0
    page = render_evaluation_html(data)
    assert "NOT USEFUL" in page and "single_class_shards" in page and "Per class" in page


def test_train_and_evaluate_end_with_the_verdict(collapsed: dict[str, Any], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cli("init", ws, "--shards", "20", "--slices", "1", "--seed", "3", "--epochs", "20", "--batch-size", "8",
        "--lr", "0.01")  # fmt: skip
    cli("-w", ws, "ingest", collapsed["train"], "--subject-column", "subject", "--label-column", "label")
    trained = cli("-w", ws, "train", "--device", "cpu")
    last = trained.stdout.strip().splitlines()[-1]
    assert last.startswith("NOT USEFUL: ") and "training records (not held out: optimistic)" in last
    assert "warning: 20 of 20 shards predict a single class" in trained.stderr
    evaluated = cli("-w", ws, "evaluate", collapsed["held_out"], "--device", "cpu")
    assert evaluated.stdout.strip().splitlines()[-1].startswith("NOT USEFUL: ")
    assert "warning: the ensemble (" in evaluated.stderr and "is not significantly better" in evaluated.stderr
    as_json = json.loads(cli("-w", ws, "train", "--device", "cpu", "--json").stdout)
    assert as_json["diagnosis"]["useful"] is False and as_json["shards_trained"] == []


def test_training_verdict_on_a_useful_model(tmp_path: Path) -> None:
    """The same machinery says "useful" when the features do predict the label."""
    rng = np.random.default_rng(5)
    path = tmp_path / "blobs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "x0", "x1", "label"])
        for i in range(300):
            label = int(rng.integers(0, 3))
            writer.writerow([f"s{i}", *(f"{v:.4f}" for v in rng.normal(loc=2 * label, size=2)), "abc"[label]])
    ws = init_workspace(tmp_path / "ws", InitOptions(shards=2, slices=2, seed=1))
    ingest_file(ws, path, ColumnChoice(subject="subject", label="label"))
    train(ws, plan_training(ws), "cpu")
    diagnosis = training_verdict(ws, "cpu")
    assert diagnosis.useful and diagnosis.verdict.startswith("useful: ")
    assert diagnosis.fit is not None and diagnosis.fit.classes == 3


def test_diagnose_without_workspace_facts() -> None:
    probabilities = np.array([[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1])
    utility = utility_of(probabilities, labels, Aggregation.MEAN, ("a", "b"), bootstrap=0)
    assert utility.accuracy.value == 1.0 and utility.balanced_accuracy is not None
    assert utility.balanced_accuracy.ci95 is None  # no resamples asked for
    diagnosis = diagnose(utility, None)
    # 4 rows: right on every row, yet 2 wins against the baseline are not significant (p = 0.25).
    assert utility.p_vs_majority == 0.25 and not diagnosis.useful
