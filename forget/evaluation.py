"""Evaluating a workspace's ensemble: utility with confidence intervals, membership inference, unlearning metrics.

Three questions, one report (`EvaluationReport`, with `to_dict()` for `--json` and the HTML renderers
in `reports.evaluation`):

1. **Utility.** Ensemble accuracy (the workspace's aggregation, and the mean of the probabilities)
   and every shard's accuracy on a labelled file, each with a 95% Wilson score interval.
2. **Membership inference.** How well an attacker who sees the ensemble's mean class probabilities
   tells apart three groups: records the shards were trained on (sampled from the workspace's own
   data store), held-out records (the labelled file), and erased records (a file the operator
   supplies again for the evaluation only: the workspace holds no erased data). Two attacks:

   - `loss`: Yeom, Giacomelli, Fredrikson and Jha, "Privacy Risk in Machine Learning: Analyzing the
     Connection to Overfitting", IEEE CSF 2018. The score is minus the cross-entropy loss of the mean
     probability on the true label, `log p_y`: members tend to have a lower loss.
   - `lira_offline`: the statistic of Carlini, Chien, Nasr, Song, Terzis and Tramèr, "Membership
     Inference Attacks From First Principles", IEEE S&P 2022: the logit-scaled confidence
     `phi = log p_y - log(sum of the other classes' probabilities)`, compared with a Gaussian fitted
     to non-members (the offline variant's one-sided test; the score is the z-value). LiRA fits that
     Gaussian per example from shadow models trained without the example; we train none, so the
     held-out records of the same class stand in for them (class-conditional, population-level).
     It is therefore weaker than full LiRA; it is a calibrated, per-class version of the loss attack.

   For each attack and each comparison (members against held-out, erased against held-out): the ROC
   AUC (rank-based Mann-Whitney U, ties count one half) with its Hanley-McNeil standard error, the
   membership advantage `max(TPR - FPR)` over all thresholds (Yeom et al.'s measure) with a
   bootstrap standard error, and the TPR at 1% FPR (Carlini et al.'s recommended low-FPR measure).
3. **Unlearning metrics.** The MIA gap (erased-against-held-out AUC minus 0.5: zero when erased
   records look exactly like data the model never saw, which exact SISA guarantees for the retrained
   shards) and, given a reference workspace retrained from scratch on the retained data (for example
   `forget init REF --keys-from WS` then `ingest --schema WS/forget.toml` of the retained records),
   the accuracy gap to it, the agreement of the two ensembles' predictions and whether their
   checkpoints are identical (for exact SISA: gap 0, agreement 1, identical).

The attacker here sees the mean of the shards' probabilities, even when the workspace serves a
majority vote (labels only): a stronger attacker than the served API allows, so the numbers are an
upper bound on what the vote API leaks.

The statistics (`roc_auc`, `wilson_interval`, ...) are pure numpy functions; torch is reached only
through `forget.serving`, imported when a workspace is evaluated.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forget.errors import InputError, NotTrainedError

if TYPE_CHECKING:
    from forget.workspace import Workspace
    from sisa.aggregation import Aggregation

FORMAT = "forget/evaluation/v1"
"""The `format` field of `EvaluationReport.to_dict()`; renderers refuse anything else."""

Z95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal distribution."""

KS95 = 1.3581
"""The 95% critical value of the two-sample Kolmogorov-Smirnov statistic: sqrt(-ln(0.025) / 2)."""

LOW_FPR = 0.01

_TINY = float(np.finfo(np.float32).tiny)
"""Probabilities are float32 softmax outputs: anything below this is indistinguishable from zero."""

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


# ---------------------------------------------------------------------------------------------
# Pure statistics
# ---------------------------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (Wilson 1927).

    Chosen over the normal (Wald) interval because it stays inside [0, 1] and keeps close to its
    nominal coverage for small samples and for proportions near 0 or 1, which is where a good
    classifier's accuracy lives (Brown, Cai and DasGupta, Statistical Science 2001).
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
    """The standard error of an AUC, Hanley and McNeil, Radiology 143 (1982), equation 2."""
    if positives < 1 or negatives < 1:
        raise ValueError("a standard error needs at least one score on each side")
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


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


# ---------------------------------------------------------------------------------------------
# Report values
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proportion:
    """A measured proportion (an accuracy) with its 95% Wilson score interval."""

    successes: int
    trials: int
    low: float
    high: float

    @classmethod
    def of(cls, successes: int, trials: int) -> Proportion:
        low, high = wilson_interval(successes, trials)
        return cls(successes, trials, low, high)

    @property
    def value(self) -> float:
        return self.successes / self.trials

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "correct": self.successes, "rows": self.trials, "ci95": [self.low, self.high]}


@dataclass(frozen=True)
class UtilityReport:
    rows: int
    aggregation: Aggregation
    accuracy: Proportion
    """The ensemble under the workspace's aggregation (the argument)."""
    accuracy_mean: Proportion
    """The ensemble under mean aggregation (argmax of the mean probability)."""
    shard_accuracy: tuple[Proportion, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "aggregation": self.aggregation.value,
            "interval": "wilson-95",
            "ensemble_accuracy": self.accuracy.to_dict(),
            "ensemble_accuracy_mean": self.accuracy_mean.to_dict(),
            "shard_accuracy": [p.to_dict() for p in self.shard_accuracy],
        }


class Attack(StrEnum):
    LOSS = "loss"
    """Yeom et al. 2018: score = log p_y, minus the loss of the mean probability on the true label."""
    LIRA_OFFLINE = "lira_offline"
    """Carlini et al. 2022, offline and class-conditional: z-value of the logit-scaled confidence."""


class Comparison(StrEnum):
    MEMBERS = "members_vs_held_out"
    """Retained training records (positives) against the held-out file (negatives)."""
    ERASED = "erased_vs_held_out"
    """Erased records (positives) against the held-out file: 0.5 AUC is perfect unlearning."""


@dataclass(frozen=True)
class AttackResult:
    attack: Attack
    comparison: Comparison
    positives: int
    negatives: int
    auc: float
    auc_se: float
    """Hanley-McNeil (1982)."""
    advantage: float
    advantage_se: float | None
    """Stratified bootstrap; None when no resamples were asked for."""
    advantage_null95: float
    tpr_at_low_fpr: float
    """TPR at FPR <= 1%; needs 100+ negatives to mean anything."""

    @property
    def auc_ci95(self) -> tuple[float, float]:
        return max(0.0, self.auc - Z95 * self.auc_se), min(1.0, self.auc + Z95 * self.auc_se)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack.value,
            "comparison": self.comparison.value,
            "positives": self.positives,
            "negatives": self.negatives,
            "auc": self.auc,
            "auc_se": self.auc_se,
            "auc_ci95": list(self.auc_ci95),
            "advantage": self.advantage,
            "advantage_se": self.advantage_se,
            "advantage_null95": self.advantage_null95,
            "tpr_at_1pct_fpr": self.tpr_at_low_fpr,
        }


def attack_result(
    attack: Attack,
    comparison: Comparison,
    positives: FloatArray,
    negatives: FloatArray,
    bootstrap: int,
    rng: np.random.Generator,
) -> AttackResult:
    auc = roc_auc(positives, negatives)
    return AttackResult(
        attack=attack,
        comparison=comparison,
        positives=int(positives.size),
        negatives=int(negatives.size),
        auc=auc,
        auc_se=hanley_mcneil_se(auc, positives.size, negatives.size),
        advantage=membership_advantage(positives, negatives),
        advantage_se=bootstrap_advantage_se(positives, negatives, bootstrap, rng),
        advantage_null95=advantage_null95(positives.size, negatives.size),
        tpr_at_low_fpr=tpr_at_fpr(positives, negatives),
    )


@dataclass(frozen=True)
class MembershipReport:
    members: int
    held_out: int
    erased: int | None
    seed: int
    bootstrap: int
    results: tuple[AttackResult, ...]

    def result(self, attack: Attack, comparison: Comparison) -> AttackResult | None:
        return next((r for r in self.results if r.attack is attack and r.comparison is comparison), None)

    def mia_gap(self, attack: Attack = Attack.LOSS) -> float | None:
        """Erased-against-held-out AUC minus 0.5 (None without erased records)."""
        erased = self.result(attack, Comparison.ERASED)
        return None if erased is None else erased.auc - 0.5

    def to_dict(self) -> dict[str, Any]:
        return {
            "threat_model": "the mean of the shards' class probabilities (black box)",
            "members": self.members,
            "held_out": self.held_out,
            "erased": self.erased,
            "seed": self.seed,
            "bootstrap": self.bootstrap,
            "attacks": [r.to_dict() for r in self.results],
            "mia_gap": None if self.erased is None else {a.value: self.mia_gap(a) for a in Attack},
        }


@dataclass(frozen=True)
class ReferenceComparison:
    """The evaluated workspace against a reference retrained from scratch on the retained data."""

    accuracy: Proportion
    """The reference ensemble's accuracy on the same file, same aggregation."""
    accuracy_gap: float
    """Evaluated minus reference accuracy: 0 for exact unlearning."""
    prediction_agreement: float
    """Share of rows where the two ensembles predict the same class."""
    max_probability_difference: float
    """The largest absolute difference between the two ensembles' mean probabilities."""
    identical_checkpoints: bool
    """Every shard's latest checkpoint has the same sha256 in both workspaces."""
    erased_auc: dict[Attack, float] | None
    """The reference's erased-against-held-out AUC per attack (None without erased records)."""

    def to_dict(self, evaluated: MembershipReport | None) -> dict[str, Any]:
        gap_difference = None
        if self.erased_auc is not None and evaluated is not None:
            gap_difference = {}
            for attack, auc in self.erased_auc.items():
                own = evaluated.result(attack, Comparison.ERASED)
                gap_difference[attack.value] = None if own is None else own.auc - auc
        return {
            "accuracy": self.accuracy.to_dict(),
            "accuracy_gap": self.accuracy_gap,
            "prediction_agreement": self.prediction_agreement,
            "max_probability_difference": self.max_probability_difference,
            "identical_checkpoints": self.identical_checkpoints,
            "erased_auc": None if self.erased_auc is None else {a.value: v for a, v in self.erased_auc.items()},
            "erased_auc_difference": gap_difference,
        }


@dataclass(frozen=True)
class EvaluationReport:
    file: str
    evaluated_at: str
    shards: int
    slices: int
    model: str
    epochs: float
    checkpoints: tuple[str, ...]
    """Each shard's latest checkpoint (sha256): which models were evaluated."""
    utility: UtilityReport
    membership: MembershipReport | None = None
    reference: ReferenceComparison | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "file": self.file,
            "evaluated_at": self.evaluated_at,
            "model": {
                "shards": self.shards,
                "slices": self.slices,
                "model": self.model,
                "epochs": self.epochs,
                "checkpoints": list(self.checkpoints),
                "checkpoints_sha256": _fingerprint(self.checkpoints),
            },
            "utility": self.utility.to_dict(),
            "membership": None if self.membership is None else self.membership.to_dict(),
            "reference": None if self.reference is None else self.reference.to_dict(self.membership),
        }


# ---------------------------------------------------------------------------------------------
# Evaluating a workspace
# ---------------------------------------------------------------------------------------------


def utility_of(
    probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], aggregation: Aggregation
) -> UtilityReport:
    """Accuracy with Wilson intervals from per-shard probabilities of shape (shards, rows, classes)."""
    from sisa.aggregation import Aggregation, aggregate

    rows = int(labels.shape[0])
    if rows == 0:
        raise InputError("the evaluation file has no rows")

    def correct(predicted: np.ndarray[Any, Any]) -> int:
        return int((predicted == labels).sum())

    return UtilityReport(
        rows=rows,
        aggregation=aggregation,
        accuracy=Proportion.of(correct(aggregate(probabilities, aggregation)), rows),
        accuracy_mean=Proportion.of(correct(aggregate(probabilities, Aggregation.MEAN)), rows),
        shard_accuracy=tuple(Proportion.of(correct(p.argmax(axis=1)), rows) for p in probabilities),
    )


def evaluate_utility(workspace: Workspace, path: Path, aggregation: Aggregation, device: str = "auto") -> UtilityReport:
    """Ensemble and per-shard accuracy on a labelled file, each with a 95% Wilson interval."""
    from forget.serving import encode_file, shard_probabilities

    features, labels = encode_file(workspace, path, need_labels=True)
    assert labels is not None
    return utility_of(shard_probabilities(workspace, features, device), np.asarray(labels), aggregation)


def sample_members(
    workspace: Workspace, count: int, seed: int
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], np.ndarray[Any, np.dtype[np.int64]]]:
    """`count` retained training records drawn without replacement (seeded), with their labels.

    Records are numbered shard by shard in the data store's order (slice, then record key), so the
    same seed draws the same records from the same data; one shard is in memory at a time.
    """
    schema = workspace.config.schema
    if schema is None:
        raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
    counts = workspace.datastore.shard_counts()
    shards = workspace.config.shards
    sizes = np.array([counts.get(s, 0) for s in range(shards)], dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        raise NotTrainedError("the workspace holds no training records to sample members from")
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    features: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    labels: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    for shard in range(shards):
        local = chosen[(chosen >= offsets[shard]) & (chosen < offsets[shard + 1])] - offsets[shard]
        if local.size == 0:
            continue
        rows = workspace.datastore.shard_rows(shard, workspace.config.slices)
        shard_features = np.frombuffer(b"".join(rows.slice_features), dtype=np.float32)
        shard_labels = np.asarray([label for part in rows.slice_labels for label in part], dtype=np.int64)
        shard_features = shard_features.reshape(shard_labels.size, *schema.shape)
        features.append(shard_features[local])
        labels.append(shard_labels[local])
    return np.concatenate(features), np.concatenate(labels)


def _subjects_still_held(workspace: Workspace, path: Path) -> int:
    """How many subjects of `path` the workspace still holds records of (0 if it has no subject column)."""
    from forget.ingest import read_table

    schema = workspace.config.schema
    assert schema is not None
    table = read_table(path, [schema.subject_column, schema.label_column])
    if schema.subject_column not in table.column_names:
        return 0
    # Hashed exactly as ingest hashed them (no stripping), so the keys match.
    raw = {str(v) for v in table.column(schema.subject_column).to_pylist() if v is not None and str(v).strip()}
    keys = [workspace.pseudonymiser.subject(s) for s in sorted(raw)]
    return len(workspace.datastore.records_of_subjects(keys))


def _fingerprint(digests: Sequence[str]) -> str:
    """sha256 of the digests in shard order, one hex digest and a newline each."""
    return hashlib.sha256("".join(f"{d}\n" for d in digests).encode()).hexdigest()


def _scores(
    attack: Attack,
    probabilities: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    held_out: slice,
    classes: int,
) -> FloatArray:
    """The attack's score of every row; `held_out` marks the non-members that calibrate LiRA."""
    if attack is Attack.LOSS:
        return loss_scores(probabilities, labels)
    phi = logit_confidence(probabilities, labels)
    means, stds = class_gaussians(phi[held_out], labels[held_out], classes)
    index = np.asarray(labels, dtype=np.int64)
    scores: FloatArray = (phi - means[index]) / stds[index]
    return scores


def _erased_aucs(
    probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], held: int, classes: int
) -> dict[Attack, float]:
    """Erased-against-held-out AUC per attack; the first `held` rows are held out, the rest erased."""
    out = {}
    for attack in Attack:
        scores = _scores(attack, probabilities, labels, slice(0, held), classes)
        out[attack] = roc_auc(scores[held:], scores[:held])
    return out


def evaluate(
    workspace: Workspace,
    path: Path,
    aggregation: Aggregation,
    device: str = "auto",
    *,
    mia: bool = False,
    erased: Path | None = None,
    reference: Workspace | None = None,
    members: int | None = None,
    seed: int = 0,
    bootstrap: int = 200,
    now: datetime | None = None,
) -> EvaluationReport:
    """Utility on `path`; with `mia`, membership inference; with `reference`, the gap to a retrained model.

    `erased` (a labelled file of records the workspace has erased) implies `mia`. `members` is how
    many retained training records to sample (default: as many as `path` has rows); `seed` draws
    them and drives the bootstrap (`bootstrap` resamples for the advantage's standard error).
    Raises InputError when `erased` names a subject whose records the workspace still holds.
    """
    from forget.serving import encode_file, latest_digests, shard_probabilities

    schema = workspace.config.schema
    if schema is None:
        raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
    if bootstrap < 0 or (members is not None and members < 1):
        raise InputError("--members must be at least 1 and --bootstrap at least 0")
    mia = mia or erased is not None
    digests = latest_digests(workspace)
    features, label_list = encode_file(workspace, path, need_labels=True)
    assert label_list is not None
    labels = np.asarray(label_list, dtype=np.int64)
    if labels.size == 0:
        raise InputError(f"{path} has no rows to evaluate")

    # One pass of every shard's model over all the groups: held-out, then members, then erased.
    groups_x = [features]
    groups_y = [labels]
    member_count = erased_count = 0
    if mia:
        member_x, member_y = sample_members(workspace, members or labels.size, seed)
        member_count = int(member_y.size)
        groups_x.append(member_x)
        groups_y.append(member_y)
    if erased is not None:
        still = _subjects_still_held(workspace, erased)
        if still:
            raise InputError(
                f"{erased}: the workspace still holds records of {still} of its subjects;"
                " erase them (`forget run`) before evaluating them as erased"
            )
        erased_x, erased_y = encode_file(workspace, erased, need_labels=True)
        assert erased_y is not None
        erased_count = len(erased_y)
        if erased_count == 0:
            raise InputError(f"{erased} has no rows to evaluate")
        groups_x.append(erased_x)
        groups_y.append(np.asarray(erased_y, dtype=np.int64))
    all_x = np.concatenate(groups_x)
    all_y = np.concatenate(groups_y)
    probabilities = shard_probabilities(workspace, all_x, device)
    held = labels.size
    utility = utility_of(probabilities[:, :held], labels, aggregation)

    membership = None
    mean = probabilities.mean(axis=0)
    classes = len(schema.labels)
    if mia:
        rng = np.random.default_rng([seed, 1])
        results = []
        for attack in Attack:
            scores = _scores(attack, mean, all_y, slice(0, held), classes)
            negatives = scores[:held]
            results.append(
                attack_result(attack, Comparison.MEMBERS, scores[held : held + member_count], negatives, bootstrap, rng)
            )
            if erased_count:
                results.append(
                    attack_result(attack, Comparison.ERASED, scores[held + member_count :], negatives, bootstrap, rng)
                )
        membership = MembershipReport(
            members=member_count,
            held_out=held,
            erased=erased_count if erased is not None else None,
            seed=seed,
            bootstrap=bootstrap,
            results=tuple(results),
        )

    comparison = None
    if reference is not None:
        comparison = _compare(
            reference, path, erased, aggregation, device, utility, probabilities[:, :held], digests, schema.labels
        )
    return EvaluationReport(
        file=path.name,
        evaluated_at=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        shards=workspace.config.shards,
        slices=workspace.config.slices,
        model=workspace.config.training.model,
        epochs=workspace.config.training.epochs,
        checkpoints=tuple(digests),
        utility=utility,
        membership=membership,
        reference=comparison,
    )


def _compare(
    reference: Workspace,
    path: Path,
    erased: Path | None,
    aggregation: Aggregation,
    device: str,
    utility: UtilityReport,
    probabilities: np.ndarray[Any, Any],
    digests: list[str],
    classes: tuple[str, ...],
) -> ReferenceComparison:
    """`probabilities`: the evaluated workspace's per-shard probabilities on `path`'s rows."""
    from forget.serving import encode_file, latest_digests, shard_probabilities
    from sisa.aggregation import aggregate

    schema = reference.config.schema
    if schema is None:
        raise NotTrainedError(f"the reference workspace {reference.root} has no data yet")
    if schema.labels != classes:
        raise InputError(
            f"the reference's label classes {list(schema.labels)} differ from this workspace's {list(classes)}"
        )
    features, label_list = encode_file(reference, path, need_labels=True)
    assert label_list is not None
    labels = np.asarray(label_list, dtype=np.int64)
    groups_x, groups_y = [features], [labels]
    if erased is not None:
        erased_x, erased_y = encode_file(reference, erased, need_labels=True)
        assert erased_y is not None
        groups_x.append(erased_x)
        groups_y.append(np.asarray(erased_y, dtype=np.int64))
    theirs = shard_probabilities(reference, np.concatenate(groups_x), device)
    held = labels.size
    reference_utility = utility_of(theirs[:, :held], labels, aggregation)
    their_mean = theirs.mean(axis=0)
    erased_auc = None
    if erased is not None:
        erased_auc = _erased_aucs(their_mean, np.concatenate(groups_y), held, len(schema.labels))
    agreement = aggregate(probabilities, aggregation) == aggregate(theirs[:, :held], aggregation)
    return ReferenceComparison(
        accuracy=reference_utility.accuracy,
        accuracy_gap=utility.accuracy.value - reference_utility.accuracy.value,
        prediction_agreement=float(agreement.mean()),
        max_probability_difference=float(np.abs(probabilities.mean(axis=0) - their_mean[:held]).max()),
        identical_checkpoints=latest_digests(reference) == digests,
        erased_auc=erased_auc,
    )
