"""Issue 12: `forget plan` on a small file, and `forget init --from-plan` freezing its choice."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from forget.audit.ledger_view import entries
from forget.evaluation.plan import (
    CandidateResult,
    Placed,
    Plan,
    PlanError,
    PlanOptions,
    expected_retrain_share,
    frozen_settings,
    make_plan,
    read_plan,
    recommend,
)
from forget.workspace.config import TrainingSettings
from forget.workspace.core import open_workspace
from reports.plan import PlanRenderError, render_plan_html, render_plan_png
from tests.helpers import cli

OPTIONS = PlanOptions(
    shards=(1, 4), slices=(1, 2), epochs=(5.0,), training=TrainingSettings(batch_size=16), validation=0.25
)


def blobs(path: Path, rows: int = 240, seed: int = 4) -> Path:
    """Three Gaussian classes, two rows per subject."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["person", "x0", "x1", "x2", "kind"])
        for i in range(rows):
            label = int(rng.integers(0, 3))
            cells = (f"{v:.4f}" for v in rng.normal(loc=1.5 * label, size=3))
            writer.writerow([f"Person-{i // 2:03d}", *cells, "abc"[label]])
    return path


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Plan]:
    path = blobs(tmp_path_factory.mktemp("plan") / "people.csv")
    return path, make_plan(path, "person", "kind", OPTIONS)


def test_a_plan_counts_sweeps_and_recommends(planned: tuple[Path, Plan]) -> None:
    _, plan = planned
    counts = plan.counts
    assert (counts.rows, counts.subjects, counts.classes, counts.features) == (240, 120, 3, 3)
    assert counts.train_rows + counts.validation_rows == 240 and counts.largest_subject_rows == 2
    assert [(r.shards, r.slices) for r in plan.results] == [(1, 1), (1, 2), (4, 1), (4, 2)]
    assert all(r.model == TrainingSettings().model and r.epochs == 5.0 for r in plan.results)
    assert plan.results[0].retrain_share == 1.0  # one shard, one slice: every request retrains everything
    assert plan.results[2].retrain_share == pytest.approx(0.25, abs=0.05)
    chosen = plan.recommendation()
    best = max(r.accuracy for r in plan.results)
    assert chosen.accuracy >= best - OPTIONS.max_loss
    cheaper = [r for r in plan.results if r.retrain_share < chosen.retrain_share]
    assert all(r.accuracy < best - OPTIONS.max_loss for r in cheaper)
    assert plan.aggregation == TrainingSettings().aggregation


def test_a_plan_repeats_and_holds_no_identifier(planned: tuple[Path, Plan]) -> None:
    path, plan = planned
    again = make_plan(path, "person", "kind", OPTIONS)
    assert [r.correct for r in again.results] == [r.correct for r in plan.results]
    assert again.recommended == plan.recommended
    text = json.dumps(plan.to_dict())
    assert "Person-" not in text and "person-" not in text
    assert Plan.from_dict(json.loads(text)) == plan
    assert plan.digest() == Plan.from_dict(json.loads(text)).digest()


def test_expected_retrain_share_is_exact() -> None:
    # Two subjects in a 2-shard x 2-slice layout: "a" has records in slices 1 and 0 of shard 0
    # (retrains both steps: 1 + 2 = 3 units), "b" one record in slice 1 of shard 1 (2 units).
    placed = Placed(shard=np.array([0, 0, 1]), slice=np.array([1, 0, 1]))
    share = expected_retrain_share(["a", "a", "b"], placed, shards=2, slices=2)
    assert share == pytest.approx(((3 + 2) / 2) / (2 * 3))


def result(shards: int, accuracy: float, share: float, rows: int = 1000) -> CandidateResult:
    correct = round(accuracy * rows)
    return CandidateResult(shards, 1, "tanh-256", 10.0, 1, 1.0, 1, 1.0, correct, rows, 0.0, 1.0, accuracy,
                           accuracy, accuracy, 0, share, 1.0, share)  # fmt: skip


def test_the_recommendation_rule() -> None:
    results = [result(1, 0.90, 1.0), result(5, 0.89, 0.2), result(20, 0.80, 0.05)]
    index, reason, warnings, stable = recommend(results, baseline=0.5, max_loss=0.02, largest_subject_rows=1)
    assert index == 1 and "cheapest erasure" in reason and stable and not warnings
    # Nothing beats the majority class: the most accurate, with a warning.
    index, reason, warnings, stable = recommend(results, baseline=0.9, max_loss=0.02, largest_subject_rows=1)
    assert index == 0 and "none beats the majority class" in reason and not stable
    assert "no candidate is significantly better than always predicting the majority class" in warnings[0]
    # A choice that one subject's rows could flip is flagged.
    _, _, warnings, stable = recommend(results, baseline=0.5, max_loss=0.011, largest_subject_rows=3)
    assert not stable and "knife edge" in warnings[-1]


def test_plan_options_and_files_are_checked(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"--validation must be between 0.05 and 0.5 \(got 0.9\)"):
        make_plan(tmp_path / "x.csv", "person", "kind", replace(OPTIONS, validation=0.9))
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("person,x,kind\np1,1,a\np2,2,b\n")
    with pytest.raises(PlanError, match="has 2 rows: too few to plan on"):
        make_plan(tiny, "person", "kind", OPTIONS)
    with pytest.raises(PlanError, match="has no column 'who'"):
        make_plan(blobs(tmp_path / "b.csv"), "who", "kind", OPTIONS)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(PlanError, match=r"not a plan of format forget/plan/v1 \(format: 'other'\)"):
        read_plan(tmp_path / "bad.json")


def test_renderings(planned: tuple[Path, Plan], monkeypatch: pytest.MonkeyPatch) -> None:
    _, plan = planned
    data = plan.to_dict()
    page = render_plan_html(data)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<script" not in page
    assert "Recommended:" in page and "--from-plan" in page
    data_bad = {**data, "file": "<script>x</script>.csv"}
    assert "&lt;script&gt;" in render_plan_html(data_bad)
    pytest.importorskip("matplotlib")
    assert render_plan_png(data).startswith(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(PlanRenderError, match="--png needs matplotlib"):
        render_plan_png(data)


def test_plan_then_init_from_plan(planned: tuple[Path, Plan], tmp_path: Path) -> None:
    path, _ = planned
    plan_json = tmp_path / "plan.json"
    shown = cli("plan", path, "--subject-column", "person", "--label-column", "kind", "--shards", "1,4",
                "--slices", "1,2", "--epochs", "5", "--batch-size", "16", "--validation", "0.25", "-o", plan_json,
                "--html", tmp_path / "plan.html")  # fmt: skip
    assert "recommended (row " in shown.stdout and f"forget init WORKSPACE --from-plan {plan_json}" in shown.stdout
    plan = read_plan(plan_json)
    shards, slices, settings, record = frozen_settings(plan)
    assert record["sha256"] == plan.digest() and record["file_sha256"] == plan.file_sha256
    cli("init", tmp_path / "ws", "--from-plan", plan_json, "--seed", "1")
    ws = open_workspace(tmp_path / "ws")
    assert (ws.config.shards, ws.config.slices) == (shards, slices)
    assert ws.config.training == settings and settings.epochs == 5.0 and settings.batch_size == 16
    first = next(iter(entries(ws)))
    assert first.kind == "workspace.initialized"
    logged = dict(first.payload)["plan"]
    assert logged["sha256"] == plan.digest() and logged["row"] == plan.recommended and logged["recommended"]
    assert logged["counts"]["rows"] == 240
    # A flag the plan fixes conflicts with it; --plan-row picks another row.
    conflict = cli("init", tmp_path / "ws2", "--from-plan", plan_json, "--shards", "3", expect=2)
    assert "--shards conflicts with --from-plan" in conflict.stderr
    assert not (tmp_path / "ws2" / "forget.toml").exists()
    cli("init", tmp_path / "ws3", "--from-plan", plan_json, "--plan-row", "0")
    assert open_workspace(tmp_path / "ws3").config.shards == 1
    assert (
        "--plan-row must be between 0 and 3"
        in cli("init", tmp_path / "ws4", "--from-plan", plan_json, "--plan-row", "9", expect=2).stderr
    )
