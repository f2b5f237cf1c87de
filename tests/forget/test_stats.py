"""forget.evaluation.stats: hand-computed cases, published values, and the laws the statistics obey.

Property tests (hypothesis) check what must hold for any input: an interval holds its estimate and
stays in [0, 1], an AUC counts pairs and is antisymmetric, a test's p-value is a probability, a
perfect prediction scores 1. The module is pure numpy: a subprocess checks it imports no torch.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forget.evaluation import evaluate, stats
from forget.evaluation.stats import (
    advantage_null95,
    hanley_mcneil_se,
    loss_scores,
    membership_advantage,
    roc_auc,
    tpr_at_fpr,
    wilson_interval,
)
from reports import evaluation as rendering


def test_the_module_is_pure_numpy() -> None:
    code = "import sys, forget.evaluation.stats; print(sorted({'torch', 'sqlalchemy', 'pyarrow'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_renderer_uses_the_same_constants() -> None:
    """reports imports nothing of the application layer, so it repeats these two."""
    assert rendering.Z95 == stats.Z95 and rendering.FORMAT == evaluate.FORMAT


def test_auc_of_a_hand_computed_case() -> None:
    # Pairs (pos > neg): 0.9 beats 3, 0.8 beats 3, 0.4 beats 0.1, ties 0.4 (one half): 7.5 of 9.
    assert roc_auc([0.9, 0.8, 0.4], [0.5, 0.4, 0.1]) == pytest.approx(7.5 / 9)
    assert roc_auc([1, 2, 3], [1, 2, 3]) == pytest.approx(0.5)
    assert roc_auc([5, 6], [1, 2, 3]) == 1.0
    assert roc_auc([1, 2, 3], [5, 6]) == 0.0


def brute_force_auc(a: list[float], b: list[float]) -> float:
    wins = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in itertools.product(a, b))
    return wins / (len(a) * len(b))


scores = st.lists(st.integers(-5, 5).map(float) | st.floats(-1e6, 1e6), min_size=1, max_size=40)


@given(scores, scores)
@settings(max_examples=200, deadline=None)
def test_auc_is_antisymmetric_and_counts_pairs(a: list[float], b: list[float]) -> None:
    auc = roc_auc(a, b)
    assert auc == pytest.approx(1 - roc_auc(b, a), abs=1e-12)
    assert auc == pytest.approx(brute_force_auc(a, b), abs=1e-12)


def test_auc_refuses_empty_and_nan_scores() -> None:
    with pytest.raises(ValueError, match="negatives is empty"):
        roc_auc([1.0], [])
    with pytest.raises(ValueError, match="positives holds NaN"):
        roc_auc([math.nan], [1.0])


def test_wilson_interval_matches_hand_computation() -> None:
    # p = 0.8, n = 10, z = 1.96: centre 0.7168, half-width 0.2266 (Brown, Cai and DasGupta's formula).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(0, 0)


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_holds_the_estimate(case: tuple[int, int]) -> None:
    successes, trials = case
    low, high = wilson_interval(successes, trials)
    assert 0.0 <= low <= successes / trials <= high <= 1.0


def test_hanley_mcneil_and_advantage() -> None:
    # A = 0.5, 50 and 50: Q1 = Q2 = 1/3, var = (0.25 + 98 * (1/3 - 1/4)) / 2500.
    assert hanley_mcneil_se(0.5, 50, 50) == pytest.approx(math.sqrt((0.25 + 98 / 12) / 2500))
    assert membership_advantage([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert membership_advantage([1.0, 2.0], [1.0, 2.0]) == 0.0
    # Thresholds: >= 0.8 takes 2/3 of positives and 0 negatives.
    assert membership_advantage([0.9, 0.8, 0.4], [0.5, 0.4, 0.1]) == pytest.approx(2 / 3)
    assert tpr_at_fpr([0.9, 0.8, 0.4], [0.5, 0.4, 0.1], 0.0) == pytest.approx(2 / 3)
    assert advantage_null95(100, 100) == pytest.approx(1.3581 * math.sqrt(0.02))


def test_loss_scores_survive_saturated_probabilities() -> None:
    probabilities = np.array([[1.0, 0.0], [0.25, 0.75], [0.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 1, 0])
    result = loss_scores(probabilities, labels)
    assert result[0] == 0.0 and result[1] == pytest.approx(math.log(0.75)) and np.isfinite(result[2])
    phi = stats.logit_confidence(probabilities, labels)
    assert phi[0] > 80 and phi[1] == pytest.approx(math.log(3)) and phi[2] < -80


def test_binomial_tail_and_mcnemar_match_hand_computation() -> None:
    for n in (0, 1, 7, 20):
        for k in range(n + 2):
            exact = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if k <= n else 0.0
            assert stats.binomial_upper_tail(k, n) == pytest.approx(exact if k > 0 else 1.0, rel=1e-9)
    assert stats.binomial_upper_tail(5000, 10000) == pytest.approx(0.5039893, rel=1e-5)
    model = np.array([True] * 9 + [False])
    baseline = np.array([False] * 7 + [True] * 3)
    # Disagreements: the model wins 7 rows, loses 1: P(X >= 7 | n = 8) = 9/256.
    assert stats.mcnemar_better(model, baseline) == pytest.approx(9 / 256)
    assert stats.mcnemar_better(baseline, baseline) == 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60))
def test_balanced_accuracy_and_macro_f1_match_scikit_learn(pairs: list[tuple[int, int]]) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    labels = np.array([p[0] for p in pairs])
    predicted = np.array([p[1] for p in pairs])
    ours = stats.balanced_accuracy(predicted, labels, 4)
    # scikit-learn's balanced accuracy ignores predicted-only classes too, but warns; compare the mean recall.
    recalls = [np.mean(predicted[labels == c] == c) for c in np.unique(labels)]
    assert ours == pytest.approx(float(np.mean(recalls)))
    assert stats.macro_f1(predicted, labels, 4) == pytest.approx(
        metrics.f1_score(labels, predicted, average="macro", zero_division=0)
    )


def test_stratified_bootstrap_interval_holds_the_estimate() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    predicted = np.where(rng.random(400) < 0.7, labels, rng.integers(0, 3, 400))

    def statistic(p: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
        return stats.balanced_accuracy(p, y, 3)

    interval = stats.stratified_bootstrap(statistic, predicted, labels, 200, np.random.default_rng(1))
    assert interval is not None and interval[0] < statistic(predicted, labels) < interval[1]
    assert interval[1] - interval[0] < 0.15
    assert stats.stratified_bootstrap(statistic, predicted, labels, 0, np.random.default_rng(1)) is None


def test_the_issue_case_is_inconclusive_not_red() -> None:
    """6 erased rows, AUC 0.313 +/- 0.094, advantage 0.023 against a chance level of 0.561 (issue 12)."""
    conclusion, reason, needed = stats.conclude(0.313, 0.094, 0.023, 0.561, positives=6, negatives=300)
    assert conclusion is stats.Conclusion.INCONCLUSIVE and needed == 84
    assert reason == (
        "6 records give the test under 80% power to see an AUC of 0.6; it needs at least 84 (against these 300"
        " held-out records)"
    )
    assert stats.needed_positives(300) == 84 and stats.needed_positives(20) is None
    conclusion, reason, _ = stats.conclude(0.5, 0.05, 0.1, 0.3, positives=10, negatives=20)
    assert conclusion is stats.Conclusion.INCONCLUSIVE and "use a larger held-out file" in reason


def test_conclusions_with_power() -> None:
    conclude = stats.conclude
    assert conclude(0.51, 0.03, 0.06, 0.13, 160, 300)[0] is stats.Conclusion.INDISTINGUISHABLE
    assert conclude(0.70, 0.03, 0.30, 0.13, 160, 300)[0] is stats.Conclusion.DISTINGUISHABLE
    above, reason, _ = conclude(0.58, 0.03, 0.10, 0.13, 160, 300)
    assert above is stats.Conclusion.INCONCLUSIVE and "within its chance level" in reason
    below, reason, _ = conclude(0.40, 0.03, 0.12, 0.13, 160, 300)
    assert below is stats.Conclusion.INCONCLUSIVE and "points to a difference between the two files" in reason


def test_tug_of_war() -> None:
    assert stats.tug_of_war(0.0, 0.0, 0.0) == (1.0, ("test", "forget", "retain"))
    score, sets = stats.tug_of_war(0.1, None, -0.05)
    assert score == pytest.approx(0.9 * 0.95) and sets == ("test", "forget")


# ---------------------------------------------------------------------------------------------
# Laws
# ---------------------------------------------------------------------------------------------

labelled = st.integers(1, 5).flatmap(
    lambda k: st.tuples(
        st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=80)
    )
)


def arrays(case: tuple[int, list[tuple[int, int]]]) -> tuple[int, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    classes, pairs = case
    return classes, np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64)


@given(st.floats(0, 1), st.floats(0, 1))
def test_an_auc_interval_holds_the_auc_within_0_and_1(auc: float, se: float) -> None:
    low, high = stats.auc_interval(auc, se)
    assert 0.0 <= low <= auc <= high <= 1.0


@given(scores, scores)
@settings(max_examples=100, deadline=None)
def test_the_roc_curve_climbs_from_0_to_1_and_bounds_the_advantage(a: list[float], b: list[float]) -> None:
    fpr, tpr = stats.roc_curve(a, b)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and fpr[-1] == pytest.approx(1.0) and tpr[-1] == pytest.approx(1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    advantage = membership_advantage(a, b)
    assert 0.0 <= advantage <= 1.0 and advantage == pytest.approx(float(np.max(tpr - fpr)))
    assert 0.0 <= tpr_at_fpr(a, b, 0.0) <= tpr_at_fpr(a, b, 0.5) <= tpr_at_fpr(a, b, 1.0) == 1.0
    assert hanley_mcneil_se(roc_auc(a, b), len(a), len(b)) >= 0.0


@given(st.integers(0, 200).flatmap(lambda n: st.tuples(st.integers(0, n + 1), st.just(n))))
def test_the_binomial_tail_is_a_probability_and_symmetric_at_one_half(case: tuple[int, int]) -> None:
    k, n = case
    tail = stats.binomial_upper_tail(k, n)
    assert 0.0 <= tail <= 1.0
    assert stats.binomial_upper_tail(k + 1, n) <= tail + 1e-12  # summed in floating point: not exactly monotone
    if 1 <= k <= n:  # P(X >= k) + P(X <= k - 1) = 1, and P(X <= k - 1) = P(X >= n - k + 1) at p = 1/2
        assert tail + stats.binomial_upper_tail(n - k + 1, n) == pytest.approx(1.0, abs=1e-9)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_mcnemar_is_a_p_value_that_ignores_agreement(pairs: list[tuple[bool, bool]]) -> None:
    model = np.array([p[0] for p in pairs])
    baseline = np.array([p[1] for p in pairs])
    p = stats.mcnemar_better(model, baseline)
    assert 0.0 <= p <= 1.0
    agree = np.ones(5, dtype=bool)
    assert stats.mcnemar_better(np.concatenate((model, agree)), np.concatenate((baseline, agree))) == p


@given(labelled)
@settings(max_examples=100, deadline=None)
def test_classification_measures_lie_in_0_1_and_a_perfect_prediction_scores_1(
    case: tuple[int, list[tuple[int, int]]],
) -> None:
    classes, labels, predicted = arrays(case)
    for measure in (stats.balanced_accuracy, stats.macro_f1):
        assert 0.0 <= measure(predicted, labels, classes) <= 1.0
        assert measure(labels, labels, classes) == 1.0
    f1 = stats.class_f1(predicted, labels, classes)
    assert ((f1 >= 0.0) & (f1 <= 1.0)).all()
    assert 0.0 <= stats.accuracy(predicted, labels) <= 1.0 and stats.accuracy(labels, labels) == 1.0
    share = stats.majority_share(labels, classes)
    present = np.unique(labels).size
    assert 1 / present <= share <= 1.0
    constant = np.full_like(labels, int(np.bincount(labels).argmax()))
    assert stats.accuracy(constant, labels) == share
    assert stats.balanced_accuracy(constant, labels, classes) == pytest.approx(1 / present)


def test_empty_selections_score_zero() -> None:
    empty = np.array([], dtype=np.int64)
    assert stats.balanced_accuracy(empty, empty, 3) == 0.0
    assert stats.macro_f1(empty, empty, 3) == 0.0
    assert stats.accuracy(empty, empty) == 0.0 and stats.majority_share(empty, 3) == 0.0
    assert stats.steps_per_shard([], 10.0, 32) == 0.0


@given(st.integers(0, 400), st.integers(1, 400), st.floats(0, 1))
def test_beating_the_baseline_needs_more_than_its_share(correct: int, rows: int, baseline: float) -> None:
    correct = min(correct, rows)
    if stats.beats_baseline(correct, rows, baseline):
        assert correct / rows > baseline
    assert not stats.beats_baseline(rows, rows, 1.0)


@given(st.integers(2, 5000))
def test_needed_positives_is_the_smallest_count_with_power(negatives: int) -> None:
    needed = stats.needed_positives(negatives)
    target = stats.MIA_EFFECT / (stats.Z95 + stats.MIA_POWER_Z)
    if needed is None:
        assert stats.null_auc_se(10**9, negatives) > target
        return
    assert stats.null_auc_se(needed, negatives) <= target * (1 + 1e-12)
    if needed > 1:
        assert stats.null_auc_se(needed - 1, negatives) > target


@given(st.floats(-1, 1), st.none() | st.floats(-1, 1), st.none() | st.floats(-1, 1))
def test_tug_of_war_lies_in_0_1_and_is_1_only_without_gaps(
    test_gap: float, forget_gap: float | None, retain_gap: float | None
) -> None:
    score, sets = stats.tug_of_war(forget_gap, retain_gap, test_gap)
    assert 0.0 <= score <= 1.0 and sets[0] == "test"
    assert len(sets) == 1 + (forget_gap is not None) + (retain_gap is not None)
    assert score <= 1.0 - abs(test_gap)  # each set's factor is at most 1
    zero = stats.tug_of_war(None if forget_gap is None else 0.0, None if retain_gap is None else 0.0, 0.0)
    assert zero == (1.0, sets)


def test_single_class_shards_and_steps() -> None:
    probabilities = np.array(
        [[[0.9, 0.1], [0.8, 0.2]], [[0.9, 0.1], [0.2, 0.8]], [[0.4, 0.6], [0.1, 0.9]]], dtype=np.float32
    )
    assert stats.single_class_shards(probabilities) == (0, 2)
    assert stats.steps_per_shard([10, 30, 20], 4.0, 8) == 10.0


def test_lira_scores_are_z_values_against_the_non_members_of_each_class() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    held = slice(0, 200)
    scores = stats.lira_offline_scores(probabilities, labels, held, 3)
    for c in range(3):
        mine = scores[:200][labels[:200] == c]
        assert mine.mean() == pytest.approx(0.0, abs=1e-9) and mine.std(ddof=1) == pytest.approx(1.0)
    mask = np.zeros(300, dtype=bool)
    mask[:200] = True
    assert np.array_equal(stats.lira_offline_scores(probabilities, labels, mask, 3), scores)
