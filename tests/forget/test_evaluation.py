"""Issue 7: utility with Wilson intervals, membership inference before and after an erasure, renderings.

The end-to-end test builds a workspace that memorises its training data on purpose (one shard, a
wide MLP, 100 epochs, half the labels noisy), so a loss attack separates its training records from
held-out ones; then it erases 40 whole subjects (160 records) with `forget request` + `forget run`
and checks that the erased records now look like held-out data to the same attack. Every seed is
fixed (the workspace seed, the pseudonymisation key, the data, the member sample), so the numbers
are the same on every run on the same kind of machine.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from markupsafe import Markup
from torch import nn

from forget.data.ingest import ColumnChoice, ingest_file
from forget.erasure.job import run_job
from forget.erasure.requests import file_request
from forget.errors import InputError
from forget.evaluation import evaluate as evaluation
from forget.evaluation.evaluate import Attack, Comparison, EvaluationReport, evaluate
from forget.evaluation.stats import loss_scores, roc_auc, wilson_interval
from forget.training.predict import encode_file, shard_probabilities
from forget.training.train import plan_training, train
from forget.workspace.config import TrainingSettings
from forget.workspace.core import InitOptions, Workspace, init_workspace
from forget.workspace.keys import KEYS_DIR, PSEUDONYM_KEY
from reports.evaluation import (
    EvaluationFormatError,
    read_evaluation,
    render_evaluation_html,
    render_evaluation_section,
)
from reports.render import render_html
from sisa.aggregation import Aggregation
from tests.reports.test_render_golden import GOLDEN, synthetic_certificate, synthetic_view

MEMBERS_AUC_MIN = 0.70
"""A memorising model: its training records against held-out ones (measured: 0.80)."""
ERASED_AUC_TOLERANCE = 0.08
"""|AUC - 0.5| for erased against held-out: 160 vs 300 records give a Hanley-McNeil s.e. of about
0.028 under no leak, so 0.08 is close to 3 s.e. (measured: see the test)."""

FEATURES = 6


def wide_mlp(input_shape: tuple[int, ...], classes: int) -> nn.Module:
    """A model factory for `--model tests.forget.test_evaluation:wide_mlp`: wide enough to memorise."""
    width = math.prod(input_shape)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(width, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, classes)
    )


# ---------------------------------------------------------------------------------------------
# A memorising workspace, before and after an erasure
# ---------------------------------------------------------------------------------------------


def noisy_rows(rng: np.random.Generator, count: int, prefix: str, per_subject: int) -> list[dict[str, str]]:
    """Gaussian blobs of three classes; half of the labels are replaced by a random class."""
    rows = []
    for i in range(count):
        label = int(rng.integers(0, 3))
        shown = int(rng.integers(0, 3)) if rng.random() < 0.5 else label
        x = rng.normal(loc=label, scale=1.0, size=FEATURES)
        cells = {f"x{j}": f"{x[j]:.5f}" for j in range(FEATURES)}
        rows.append({"subject": f"{prefix}{i // per_subject:04d}", **cells, "label": "abc"[shown]})
    return rows


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def workspace_with_fixed_keys(root: Path, settings_: TrainingSettings) -> Workspace:
    """The pseudonymisation key fixes the record keys, hence the training order: fix it too."""
    keys = root.parent / f"{root.name}-keys"
    init_workspace(keys, InitOptions(shards=1, slices=1, seed=1))
    (keys / KEYS_DIR / PSEUDONYM_KEY).write_text("5a" * 32 + "\n")
    return init_workspace(root, InitOptions(shards=1, slices=1, seed=2026, training=settings_, keys_from=keys))


def group_auc(ws: Workspace, positives: Path, negatives: Path) -> float:
    """The loss attack by hand, for a group the workspace still holds (evaluate() refuses that)."""

    def scores(path: Path) -> np.ndarray[Any, Any]:
        features, labels = encode_file(ws, path, need_labels=True)
        return loss_scores(shard_probabilities(ws, features, "cpu").mean(axis=0), np.asarray(labels))

    return roc_auc(scores(positives), scores(negatives))


@pytest.fixture(scope="module")
def memorised(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("evaluation")
    rng = np.random.default_rng(1)
    retained = noisy_rows(rng, 400, "r", 2)
    erased = noisy_rows(rng, 160, "e", 4)  # 40 subjects of 4 records each
    held_out = noisy_rows(rng, 300, "h", 1)
    files = {
        "train": write(root / "train.csv", retained + erased),
        "erased": write(root / "erased.csv", erased),
        "held_out": write(root / "held-out.csv", held_out),
    }
    model = f"{__name__}:wide_mlp"
    ws = workspace_with_fixed_keys(root / "ws", TrainingSettings(model=model, epochs=100, batch_size=32, lr=3e-3))
    ingest_file(ws, files["train"], ColumnChoice(subject="subject", label="label"))
    train(ws, plan_training(ws), "cpu")
    before = evaluate(ws, files["held_out"], Aggregation.VOTE, "cpu", mia=True, seed=3, bootstrap=50)
    erased_before = group_auc(ws, files["erased"], files["held_out"])
    with pytest.raises(InputError, match="still holds records of 40 of its subjects"):
        evaluate(ws, files["held_out"], Aggregation.VOTE, "cpu", erased=files["erased"])
    for subject in sorted({r["subject"] for r in erased}):
        file_request(ws, subject)
    summary = run_job(ws, device="cpu")
    assert summary.records_erased == 160
    after = evaluate(ws, files["held_out"], Aggregation.VOTE, "cpu", erased=files["erased"], seed=3, bootstrap=50)
    return {"before": before, "erased_before": erased_before, "after": after, "files": files, "ws": ws}


def test_a_memorising_model_leaks_membership(memorised: dict[str, Any]) -> None:
    before: EvaluationReport = memorised["before"]
    assert before.membership is not None and before.membership.erased is None
    members = before.membership.result(Attack.LOSS, Comparison.MEMBERS)
    assert members is not None and members.positives == members.negatives == 300
    assert members.auc > MEMBERS_AUC_MIN, members
    assert members.advantage > members.advantage_null95
    lira = before.membership.result(Attack.LIRA_OFFLINE, Comparison.MEMBERS)
    assert lira is not None and lira.auc > MEMBERS_AUC_MIN
    # The records about to be erased are members too.
    assert memorised["erased_before"] > MEMBERS_AUC_MIN


def test_erased_records_look_like_held_out_data(memorised: dict[str, Any]) -> None:
    after: EvaluationReport = memorised["after"]
    assert after.membership is not None and after.membership.erased == 160
    for attack in Attack:
        erased = after.membership.result(attack, Comparison.ERASED)
        assert erased is not None
        assert abs(erased.auc - 0.5) < ERASED_AUC_TOLERANCE, erased
        assert abs(after.membership.mia_gap(attack) or 0.0) < ERASED_AUC_TOLERANCE
        # The retained records still leak: the model memorises what it keeps.
        kept = after.membership.result(attack, Comparison.MEMBERS)
        assert kept is not None and kept.auc > MEMBERS_AUC_MIN


def test_utility_has_wilson_intervals(memorised: dict[str, Any]) -> None:
    utility = memorised["after"].utility
    assert utility.rows == 300 and len(utility.shard_accuracy) == 1
    assert utility.accuracy.low < utility.accuracy.value < utility.accuracy.high
    assert (utility.accuracy.low, utility.accuracy.high) == wilson_interval(utility.accuracy.successes, 300)
    standalone = evaluation.evaluate_utility(
        memorised["ws"], memorised["files"]["held_out"], Aggregation.VOTE, "cpu", seed=3, bootstrap=50
    )
    assert standalone == utility


def test_a_reference_retrained_without_the_erased_records_is_identical(
    memorised: dict[str, Any], tmp_path: Path
) -> None:
    """The workspace itself is a model retrained on the retained data: every gap is zero."""
    ws: Workspace = memorised["ws"]
    files = memorised["files"]
    report = evaluate(ws, files["held_out"], Aggregation.VOTE, "cpu", erased=files["erased"], reference=ws, bootstrap=0)
    assert report.reference is not None
    assert report.reference.accuracy_gap == 0.0 and report.reference.prediction_agreement == 1.0
    assert report.reference.identical_checkpoints and report.reference.max_probability_difference == 0.0
    data = report.to_dict()
    assert data["reference"]["erased_auc_difference"] == {"loss": 0.0, "lira_offline": 0.0}
    assert data["membership"]["attacks"][0]["advantage_se"] is None
    # Tug-of-War (Zhao et al. 2024) over the forget, retain and test sets: exactly 1 for exact unlearning.
    assert report.reference.tug_of_war == 1.0
    assert report.reference.forget_accuracy_gap == 0.0 and report.reference.retain_accuracy_gap == 0.0
    tow = data["reference"]["tug_of_war"]
    assert tow["sets"] == ["test", "forget", "retain"] and tow["exact"] is True
    assert tow["note"].startswith("1.0 by construction: the checkpoints are identical to the reference's")
    page = render_evaluation_html(json.loads(json.dumps(data)))
    assert "Tug-of-War score (Zhao et al. 2024)" in page and "<strong>1.0000</strong>" in page


def test_the_report_renders_and_attaches_to_a_certificate(memorised: dict[str, Any]) -> None:
    data = json.loads(json.dumps(memorised["after"].to_dict()))  # what `--json` writes and a file gives back
    assert data["format"] == evaluation.FORMAT and read_evaluation(json.dumps(data).encode()) == data
    page = render_evaluation_html(data)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<script" not in page
    assert "Erased records are indistinguishable from held-out data" in page
    section = render_evaluation_section(data)
    assert isinstance(section, Markup) and "<!DOCTYPE" not in section
    view = synthetic_view()
    with_section = render_html(view, supplement=section)
    plain = render_html(view)
    assert plain == GOLDEN.read_text(), "without a supplement the certificate page must not change"
    # The signed claims come first, unchanged; the evaluation follows under its own heading.
    assert with_section.startswith(plain[: plain.rindex("</body>")])
    _, _, tail = with_section.partition("Supplementary evidence (not part of the signed statement)")
    assert "Membership inference" in tail and "it is not signed" in tail


def test_the_section_matches_the_certificate_by_checkpoint(memorised: dict[str, Any]) -> None:
    data = memorised["after"].to_dict()
    statement, _ = synthetic_certificate()
    rewound = statement["predicate"]["erasure"]["shards"][0]
    assert "<strong>not evaluated</strong>" in render_evaluation_section(data, statement)  # shard 1 of 1 shard
    rewound["shard"], rewound["checkpoint_after"] = 0, data["model"]["checkpoints"][0]
    assert "the same" in render_evaluation_section(data, statement)
    rewound["checkpoint_after"] = "<i>" + "0" * 61
    section = render_evaluation_section(data, statement)
    assert "<strong>another:</strong>" in section and "&lt;i&gt;000" in section


def test_rendering_escapes_untrusted_strings_and_refuses_malformed_reports(memorised: dict[str, Any]) -> None:
    data = json.loads(json.dumps(memorised["before"].to_dict()))
    data["file"] = "<script>alert(1)</script>.csv"
    data["utility"]["aggregation"] = '"><img src=x onerror=alert(1)>'
    for html in (render_evaluation_html(data), str(render_evaluation_section(data))):
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;.csv" in html
    bad = json.loads(json.dumps(data))
    bad["utility"]["ensemble_accuracy"]["value"] = "1.0"
    with pytest.raises(EvaluationFormatError, match=r"utility.ensemble_accuracy.value is not a finite number"):
        render_evaluation_html(bad)
    bad = json.loads(json.dumps(data))
    bad["membership"]["attacks"][0]["auc"] = 7
    with pytest.raises(EvaluationFormatError, match=r"attacks\[0\].auc = 7 is outside \[0, 1\]"):
        render_evaluation_section(bad)
    with pytest.raises(EvaluationFormatError, match="not an evaluation report of format forget/evaluation/v1"):
        read_evaluation(b'{"format": "other"}')
    with pytest.raises(EvaluationFormatError, match="is not JSON"):
        read_evaluation(b"{")


# ---------------------------------------------------------------------------------------------
# Issue 12: membership inference that does not cry wolf, on the page
# ---------------------------------------------------------------------------------------------


def test_the_page_says_inconclusive_for_a_small_erased_group(memorised: dict[str, Any]) -> None:
    data = json.loads(json.dumps(memorised["after"].to_dict()))
    for attack in data["membership"]["attacks"]:
        assert attack["conclusion"] in ("indistinguishable", "distinguishable")  # 160 and 300 records: powered
        if attack["comparison"] == "erased_vs_held_out":
            assert attack["conclusion"] == "indistinguishable" and attack["needed_positives"] == 84
            attack.update(positives=6, conclusion="inconclusive", reason="6 records give the test under 80% power")
    page = render_evaluation_html(data)
    assert "Inconclusive: this comparison cannot say" in page and "6 records give the test under 80% power" in page
    assert "are distinguishable from held-out data by at least one attack" not in page
    assert "(needs 84)" in page
    bad = json.loads(json.dumps(data))
    bad["membership"]["attacks"][0]["conclusion"] = "maybe"
    with pytest.raises(EvaluationFormatError, match=r"attacks\[0\].conclusion is not one of"):
        render_evaluation_html(bad)
