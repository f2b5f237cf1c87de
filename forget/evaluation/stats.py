"""The statistics of an evaluation and a plan: pure functions of arrays and counts, numpy only.

Intervals (Wilson for proportions, Hanley-McNeil for an AUC, stratified bootstrap percentiles),
classification measures (accuracy, balanced accuracy, macro-F1, the majority-class baseline and
the paired test against it), membership-inference scores and their ROC statistics, the decision
rule that turns them into a `Conclusion`, and the Tug-of-War score of an unlearned model against
a retrained one. No workspace, no torch, no I/O: `forget.evaluation.evaluate` loads the models and
the data and calls these; `forget.evaluation.plan` scores its candidates with them. Randomness
comes in as a `numpy.random.Generator`. The sources are cited where each measure is defined.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import numpy as np

Z95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal distribution."""

KS95 = 1.3581
"""The 95% critical value of the two-sample Kolmogorov-Smirnov statistic: sqrt(-ln(0.025) / 2)."""

LOW_FPR = 0.01

_TINY = float(np.finfo(np.float32).tiny)
"""Probabilities are float32 softmax outputs: anything below this is indistinguishable from zero."""

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
Rows = slice | np.ndarray[Any, np.dtype[np.bool_]]
"""A selection of rows: a range, or a boolean mask."""


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (Wilson 1927).

    Chosen over the normal (Wald) interval because it stays inside [0, 1] and keeps close to its
    nominal coverage for small samples and for proportions near 0 or 1, which is where a good
    classifier's accuracy lives (Brown, Cai and DasGupta, Statistical Science 2001).

    Raises `ValueError` for no trials, or successes outside [0, trials].
    """
    if trials < 1:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in [0, {trials}], got {successes}")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # Exact at the edges: rounding must not leave 0 or 1 outside their own interval.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def _as_scores(values: Sequence[float] | np.ndarray[Any, Any], name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty: an AUC needs at least one score on each side")
    if np.isnan(array).any():
        raise ValueError(f"{name} holds NaN scores")
    return array


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, tied values sharing the mean of their ranks (as scipy.stats.rankdata does)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], values.size)
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def roc_auc(
    positives: Sequence[float] | np.ndarray[Any, Any], negatives: Sequence[float] | np.ndarray[Any, Any]
) -> float:
    """P(score of a random positive > score of a random negative) + P(equal) / 2.

    The Mann-Whitney U statistic divided by n_pos * n_neg, from average ranks, so ties count one
    half and the cost is one sort. Higher scores mean "more likely a positive" (a member).
    """
    pos = _as_scores(positives, "positives")
    neg = _as_scores(negatives, "negatives")
    ranks = _average_ranks(np.concatenate((pos, neg)))
    u = float(ranks[: pos.size].sum()) - pos.size * (pos.size + 1) / 2.0
    return u / (pos.size * neg.size)


def hanley_mcneil_se(auc: float, positives: int, negatives: int) -> float:
    """The standard error of an AUC, Hanley and McNeil, Radiology 143 (1982), equation 2.

    Raises `ValueError` without at least one score on each side.
    """
    if positives < 1 or negatives < 1:
        raise ValueError("a standard error needs at least one score on each side")
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def auc_interval(auc: float, se: float) -> tuple[float, float]:
    """The normal 95% interval of an AUC, `auc -+ 1.96 se`, clipped to [0, 1]."""
    return max(0.0, auc - Z95 * se), min(1.0, auc + Z95 * se)


def roc_curve(
    positives: Sequence[float] | np.ndarray[Any, Any], negatives: Sequence[float] | np.ndarray[Any, Any]
) -> tuple[FloatArray, FloatArray]:
    """(FPR, TPR) at every distinct threshold "member if score >= t", from (0, 0) to (1, 1)."""
    pos = _as_scores(positives, "positives")
    neg = _as_scores(negatives, "negatives")
    scores = np.concatenate((pos, neg))
    is_pos = np.concatenate((np.ones(pos.size), np.zeros(neg.size)))
    order = np.argsort(-scores, kind="mergesort")
    scores, is_pos = scores[order], is_pos[order]
    # The last index of each group of equal scores: a threshold admits a whole group or none of it.
    last = np.append(np.flatnonzero(scores[1:] != scores[:-1]), scores.size - 1)
    tp = np.cumsum(is_pos)[last]
    fp = (last + 1) - tp
    tpr = np.concatenate(([0.0], tp / pos.size))
    fpr = np.concatenate(([0.0], fp / neg.size))
    return fpr, tpr


def membership_advantage(
    positives: Sequence[float] | np.ndarray[Any, Any], negatives: Sequence[float] | np.ndarray[Any, Any]
) -> float:
    """max over thresholds of TPR - FPR (Yeom et al. 2018): 0 for no leak, 1 for perfect separation.

    With the threshold chosen on the same scores it is the two-sample Kolmogorov-Smirnov statistic
    (one-sided), so even without any leak it is of order 1/sqrt(n): compare it with
    `advantage_null95`.
    """
    fpr, tpr = roc_curve(positives, negatives)
    return float(np.max(tpr - fpr))


def tpr_at_fpr(
    positives: Sequence[float] | np.ndarray[Any, Any],
    negatives: Sequence[float] | np.ndarray[Any, Any],
    fpr_limit: float = LOW_FPR,
) -> float:
    """The highest TPR among thresholds whose FPR is at most `fpr_limit` (Carlini et al. 2022)."""
    fpr, tpr = roc_curve(positives, negatives)
    return float(tpr[fpr <= fpr_limit].max())


def advantage_null95(positives: int, negatives: int) -> float:
    """The advantage that 5% of leak-free comparisons of these sizes exceed (the KS critical value)."""
    return KS95 * math.sqrt((positives + negatives) / (positives * negatives))


def bootstrap_advantage_se(
    positives: FloatArray, negatives: FloatArray, resamples: int, rng: np.random.Generator
) -> float | None:
    """The standard deviation of the advantage over stratified bootstrap resamples (None if 0 resamples)."""
    if resamples < 2:
        return None
    values = [
        membership_advantage(
            positives[rng.integers(0, positives.size, positives.size)],
            negatives[rng.integers(0, negatives.size, negatives.size)],
        )
        for _ in range(resamples)
    ]
    return float(np.std(values, ddof=1))


def loss_scores(probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> FloatArray:
    """Yeom et al. 2018: minus the cross-entropy loss, `log p_y`, of (rows, classes) probabilities."""
    p = np.asarray(probabilities, dtype=np.float64)
    true = p[np.arange(p.shape[0]), np.asarray(labels, dtype=np.int64)]
    return np.log(np.maximum(true, _TINY))


def logit_confidence(probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> FloatArray:
    """Carlini et al. 2022's logit scaling: `log p_y - log(sum of the other probabilities)`.

    The other classes are summed directly rather than taken as `1 - p_y`, which would round to 0
    for a confident float32 prediction.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    rows = np.arange(p.shape[0])
    index = np.asarray(labels, dtype=np.int64)
    true = p[rows, index]
    others = np.where(np.eye(p.shape[1], dtype=bool)[index], 0.0, p).sum(axis=1)
    phi: FloatArray = np.log(np.maximum(true, _TINY)) - np.log(np.maximum(others, _TINY))
    return phi


def class_gaussians(scores: FloatArray, labels: np.ndarray[Any, Any], classes: int) -> tuple[FloatArray, FloatArray]:
    """Per class, the mean and standard deviation of non-members' scores (the global ones where a
    class has fewer than two non-members or no spread)."""
    index = np.asarray(labels, dtype=np.int64)
    global_mean = float(scores.mean())
    global_std = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
    global_std = global_std if global_std > 0 else 1.0
    means = np.full(classes, global_mean)
    stds = np.full(classes, global_std)
    for c in range(classes):
        chosen = scores[index == c]
        if chosen.size >= 2 and float(chosen.std(ddof=1)) > 0:
            means[c] = float(chosen.mean())
            stds[c] = float(chosen.std(ddof=1))
    return means, stds


def lira_offline_scores(
    probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], non_members: Rows, classes: int
) -> FloatArray:
    """Carlini et al. 2022, offline and class-conditional: each row's `logit_confidence` as a z-value
    against the Gaussian of the `non_members` rows of its class (`class_gaussians`)."""
    index = np.asarray(labels, dtype=np.int64)
    phi = logit_confidence(probabilities, index)
    means, stds = class_gaussians(phi[non_members], index[non_members], classes)
    scores: FloatArray = (phi - means[index]) / stds[index]
    return scores


def binomial_upper_tail(successes: int, trials: int, p: float = 0.5) -> float:
    """P(X >= successes) for X ~ Binomial(trials, p), summed exactly in log space (no scipy)."""
    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    steps = np.arange(1, trials + 1, dtype=np.float64)
    log_choose = np.concatenate(([0.0], np.cumsum(np.log(trials - steps + 1) - np.log(steps))))
    k = np.arange(successes, trials + 1)
    logs = log_choose[k] + k * math.log(p) + (trials - k) * math.log1p(-p)
    top = float(logs.max())
    return float(min(1.0, math.exp(top) * float(np.exp(logs - top).sum())))


def mcnemar_better(model_correct: np.ndarray[Any, Any], baseline_correct: np.ndarray[Any, Any]) -> float:
    """One-sided exact McNemar (sign) test: the p-value of "the model is right more often than the baseline".

    Both are judged on the same rows, so only the rows where they disagree carry information
    (McNemar 1947): under the null hypothesis each such row favours either with probability one half.
    """
    model = np.asarray(model_correct, dtype=bool)
    baseline = np.asarray(baseline_correct, dtype=bool)
    wins = int((model & ~baseline).sum())
    losses = int((~model & baseline).sum())
    return binomial_upper_tail(wins, wins + losses)


def accuracy(predicted: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> float:
    """The share of rows predicted right (0.0 for no row)."""
    return float((np.asarray(predicted) == np.asarray(labels)).mean()) if np.asarray(labels).size else 0.0


def majority_share(labels: np.ndarray[Any, Any], classes: int) -> float:
    """The accuracy of always predicting the most frequent class of `labels` (0.0 for no row)."""
    return float(np.bincount(labels, minlength=classes).max() / labels.size) if labels.size else 0.0


def beats_baseline(correct: int, rows: int, baseline: float) -> bool:
    """One-sided binomial test at 2.5% (normal approximation, continuity correction): accuracy > baseline.

    For an accuracy measured against a fixed share (`forget plan`'s validation baseline); where
    the baseline's own predictions are at hand, the paired `mcnemar_better` is the sharper test.
    """
    if baseline >= 1:
        return False
    sd = math.sqrt(rows * baseline * (1 - baseline))
    return correct - 0.5 > rows * baseline + Z95 * sd


def single_class_shards(probabilities: np.ndarray[Any, Any]) -> tuple[int, ...]:
    """The shards whose (shards, rows, classes) probabilities pick the same class for every row."""
    return tuple(shard for shard, p in enumerate(probabilities) if np.unique(p.argmax(axis=1)).size == 1)


def steps_per_shard(records_per_shard: Sequence[int], epochs: float, batch_size: int) -> float:
    """Optimizer steps a shard of median size takes over its whole schedule (0 without shards)."""
    median = float(np.median(records_per_shard)) if len(records_per_shard) else 0.0
    return median * epochs / batch_size


def class_recalls(predicted: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], classes: int) -> FloatArray:
    """Per class: the share of its rows predicted as it (NaN for a class with no row)."""
    support = np.bincount(labels, minlength=classes).astype(np.float64)
    hits = np.bincount(labels[predicted == labels], minlength=classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls: FloatArray = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    return recalls


def balanced_accuracy(predicted: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], classes: int) -> float:
    """The mean recall over the classes present in `labels` (Brodersen et al. 2010): 1/K for a constant.

    0.0 when `labels` is empty (no class is present).
    """
    recalls = class_recalls(predicted, labels, classes)
    return float(np.nanmean(recalls)) if not np.isnan(recalls).all() else 0.0


def _f1_parts(
    predicted: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], classes: int
) -> tuple[FloatArray, FloatArray]:
    """Per class: twice the hits, and the rows labelled it plus the rows predicted as it."""
    true_counts = np.bincount(labels, minlength=classes).astype(np.float64)
    predicted_counts = np.bincount(predicted, minlength=classes).astype(np.float64)
    hits = np.bincount(labels[predicted == labels], minlength=classes).astype(np.float64)
    return 2 * hits, true_counts + predicted_counts


def class_f1(predicted: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], classes: int) -> FloatArray:
    """Per class, F1 = 2 hits / (rows labelled it + rows predicted as it); 0 for a class that is neither."""
    twice_hits, denominator = _f1_parts(predicted, labels, classes)
    f1: FloatArray = np.where(denominator > 0, twice_hits / np.maximum(denominator, 1), 0.0)
    return f1


def macro_f1(predicted: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], classes: int) -> float:
    """The unweighted mean F1 over the classes that occur as a label or a prediction (as scikit-learn's)."""
    twice_hits, denominator = _f1_parts(predicted, labels, classes)
    present = denominator > 0
    f1 = twice_hits[present] / denominator[present]
    return float(f1.mean()) if f1.size else 0.0


def stratified_bootstrap(
    statistic: Callable[[np.ndarray[Any, Any], np.ndarray[Any, Any]], float],
    predicted: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float] | None:
    """The 95% percentile interval of `statistic(predicted, labels)` over resamples drawn within each class.

    Resampling within each true class keeps every class's size, so a rare class never vanishes from
    a resample (its recall would be undefined). None when fewer than 2 resamples are asked for.
    """
    if resamples < 2:
        return None
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    values = []
    for _ in range(resamples):
        index = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        values.append(statistic(predicted[index], labels[index]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def null_auc_se(positives: int, negatives: int) -> float:
    """The standard error of an AUC when the two groups do not differ (Mann-Whitney's null variance)."""
    return math.sqrt((positives + negatives + 1) / (12 * positives * negatives))


MIA_EFFECT = 0.1
"""The smallest leak a membership test must be able to see: an AUC 0.1 away from 0.5 (0.6)."""
MIA_POWER_Z = 0.8416212335729143
"""The standard normal quantile for 80% power."""


def needed_positives(negatives: int, effect: float = MIA_EFFECT) -> int | None:
    """Positives needed, against `negatives`, for 80% power to see an AUC `effect` from 0.5 at 5% (two-sided).

    Solves null_auc_se(n, negatives) <= effect / (1.96 + 0.84); None when no number of positives is
    enough because the negatives alone are too few.
    """
    target = (effect / (Z95 + MIA_POWER_Z)) ** 2
    denominator = 12 * negatives * target - 1
    if denominator <= 0:
        return None
    return max(1, math.ceil((negatives + 1) / denominator))


class Conclusion(StrEnum):
    """What a membership-inference result allows one to say: indistinguishable, distinguishable, or nothing."""

    INDISTINGUISHABLE = "indistinguishable"
    """The test has power, and the AUC's interval holds 0.5: no leak as large as MIA_EFFECT."""
    DISTINGUISHABLE = "distinguishable"
    """The AUC is above 0.5 beyond its interval and the advantage above its chance level."""
    INCONCLUSIVE = "inconclusive"
    """Too few records for the test to have power, or the statistics disagree: nothing is claimed."""


def conclude(
    auc: float, auc_se: float, advantage: float, chance: float, positives: int, negatives: int
) -> tuple[Conclusion, str, int | None]:
    """(conclusion, reason, positives needed) for one attack and comparison; see docs/evaluation.md."""
    needed = needed_positives(negatives)
    powered = needed is not None and positives >= needed
    low, high = auc_interval(auc, auc_se)
    if not powered:
        if needed is None:
            why = (
                f"{negatives} held-out records are too few for the test to see an AUC of {0.5 + MIA_EFFECT:g}"
                " with 80% power, however many positives: use a larger held-out file"
            )
        else:
            why = (
                f"{positives} records give the test under 80% power to see an AUC of {0.5 + MIA_EFFECT:g};"
                f" it needs at least {needed} (against these {negatives} held-out records)"
            )
        return Conclusion.INCONCLUSIVE, why, needed
    if low <= 0.5 <= high:
        return (
            Conclusion.INDISTINGUISHABLE,
            f"AUC {auc:.3f} is within its 95% interval of 0.5, with 80% power to see {0.5 + MIA_EFFECT:g}",
            needed,
        )
    if high < 0.5:
        return (
            Conclusion.INCONCLUSIVE,
            f"AUC {auc:.3f} is below 0.5: these records look less like members than the held-out ones, which"
            " points to a difference between the two files, not to membership",
            needed,
        )
    if advantage <= chance:
        return (
            Conclusion.INCONCLUSIVE,
            f"AUC {auc:.3f} is above 0.5 but the advantage {advantage:.3f} is within its chance level {chance:.3f}",
            needed,
        )
    return (
        Conclusion.DISTINGUISHABLE,
        f"AUC {auc:.3f} is above 0.5 beyond its 95% interval and the advantage {advantage:.3f} exceeds its"
        f" chance level {chance:.3f}",
        needed,
    )


def tug_of_war(forget_gap: float | None, retain_gap: float | None, test_gap: float) -> tuple[float, tuple[str, ...]]:
    """Zhao et al. 2024: the product of (1 - |accuracy gap|) over the forget, retain and test sets.

    Returns the score and the sets it was computed over (a set without data is left out, and said so).
    """
    score = 1.0 - abs(test_gap)
    sets = ["test"]
    for name, gap in (("forget", forget_gap), ("retain", retain_gap)):
        if gap is not None:
            score *= 1.0 - abs(gap)
            sets.append(name)
    return score, tuple(sets)
