"""Evaluating a workspace's ensemble: utility with confidence intervals, membership inference, unlearning metrics.

Three questions, one report (`EvaluationReport`, with `to_dict()` for `--json` and the HTML renderers
in `reports.evaluation`):

1. **Utility, and whether the model is any use.** Ensemble accuracy (the workspace's aggregation,
   and the mean of the probabilities) and every shard's accuracy on a labelled file, each with a 95%
   Wilson score interval; the majority-class baseline with an exact one-sided McNemar test against
   it, balanced accuracy and macro-F1 (stratified bootstrap intervals), per-class recall and F1,
   and the shards that predict one class. `diagnose` turns them, with the shards' sizes against
   the model (`ModelFit`), into a one-line verdict and warnings (`Finding`); `forget train` prints
   `training_verdict`, the same on a sample of the training records.
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
   Each comes with a `Conclusion` (`conclude`): inconclusive below the sample size at which the test
   has 80% power to see an AUC of 0.6 (and says how many records it needs), or when the AUC and the
   advantage disagree; indistinguishable or distinguishable otherwise.
3. **Unlearning metrics.** The MIA gap (erased-against-held-out AUC minus 0.5: zero when erased
   records look exactly like data the model never saw, which exact SISA guarantees for the retrained
   shards) and, given a reference workspace retrained from scratch on the retained data (for example
   `forget init REF --keys-from WS` then `ingest --schema WS/forget.toml` of the retained records),
   the accuracy gap to it, the agreement of the two ensembles' predictions, whether their
   checkpoints are identical, and the Tug-of-War score of Zhao et al. 2024 over the forget, retain
   and test sets (for exact SISA: gap 0, agreement 1, identical, ToW 1.0).

The attacker here sees the mean of the shards' probabilities, even when the workspace serves a
majority vote (labels only): a stronger attacker than the served API allows, so the numbers are an
upper bound on what the vote API leaks.

The statistics (`roc_auc`, `wilson_interval`, ...) are pure numpy functions in
`forget.evaluation.stats`; this module assembles them into the report's values and runs them on a
workspace's models and data. Torch is reached only through `forget.training.predict`, imported
when a workspace is evaluated.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forget.errors import InputError, NotTrainedError
from forget.evaluation.stats import (
    Conclusion,
    FloatArray,
    advantage_null95,
    auc_interval,
    balanced_accuracy,
    bootstrap_advantage_se,
    class_f1,
    conclude,
    hanley_mcneil_se,
    lira_offline_scores,
    loss_scores,
    macro_f1,
    mcnemar_better,
    membership_advantage,
    null_auc_se,
    roc_auc,
    single_class_shards,
    steps_per_shard,
    stratified_bootstrap,
    tpr_at_fpr,
    tug_of_war,
    wilson_interval,
)
from forget.evaluation.stats import accuracy as accuracy_of

if TYPE_CHECKING:
    from forget.data.ingest import TableSource
    from forget.workspace.core import Workspace
    from sisa.aggregation import Aggregation

FORMAT = "forget/evaluation/v1"
"""The `format` field of `EvaluationReport.to_dict()`; renderers refuse anything else."""

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
        """The proportion `successes / trials` with its Wilson interval; raises `ValueError` for counts out of range."""
        low, high = wilson_interval(successes, trials)
        return cls(successes, trials, low, high)

    @property
    def value(self) -> float:
        """successes / trials; raises `ZeroDivisionError` for a proportion of no trials."""
        return self.successes / self.trials

    def to_dict(self) -> dict[str, Any]:
        """The proportion as JSON-ready values: value, counts and interval."""
        return {"value": self.value, "correct": self.successes, "rows": self.trials, "ci95": [self.low, self.high]}


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% stratified-bootstrap percentile interval (None without resamples)."""

    value: float
    ci95: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready values."""
        return {"value": self.value, "ci95": None if self.ci95 is None else list(self.ci95)}


@dataclass(frozen=True)
class ClassReport:
    """One class of the evaluation file: how many rows it has, and how many the ensemble gets right."""

    label: str
    support: int
    predicted: int
    """Rows the ensemble assigns to this class."""
    recall: Proportion | None
    """None for a class with no row in the file."""
    f1: float

    def to_dict(self) -> dict[str, Any]:
        """The class's row as JSON-ready values."""
        return {
            "label": self.label,
            "support": self.support,
            "predicted": self.predicted,
            "recall": None if self.recall is None else self.recall.to_dict(),
            "f1": self.f1,
        }


@dataclass(frozen=True)
class UtilityReport:
    """Utility on a labelled file: ensemble and per-shard accuracy (Wilson intervals), the majority-class
    baseline with its test, balanced accuracy, macro-F1 and per-class figures (`utility_of` builds it).
    """

    rows: int
    aggregation: Aggregation
    accuracy: Proportion
    """The ensemble under the workspace's aggregation (the argument)."""
    accuracy_mean: Proportion
    """The ensemble under mean aggregation (argmax of the mean probability)."""
    shard_accuracy: tuple[Proportion, ...]
    majority_class: int = 0
    """The most frequent class of the file: what a constant predictor would say."""
    majority: Proportion | None = None
    """The accuracy of always predicting `majority_class` (the baseline any model must beat)."""
    p_vs_majority: float = 1.0
    """One-sided exact McNemar p-value of "the ensemble is right more often than the baseline"."""
    balanced_accuracy: Estimate | None = None
    macro_f1: Estimate | None = None
    classes: tuple[ClassReport, ...] = ()
    single_class_shards: tuple[int, ...] = ()
    """Shards whose model predicts the same class for every row of the file."""
    ensemble_classes_predicted: int = 0
    shards: tuple[int, ...] = ()
    """The shard of each `shard_accuracy` entry: those that answered (open erasure requests
    quarantine the others, forget.erasure.quarantine); empty when the caller did not say (0, 1, ...)."""

    def better_than_majority(self, alpha: float = 0.05) -> bool:
        """Whether the ensemble beats always predicting the most frequent class at level `alpha`."""
        return self.p_vs_majority < alpha

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (`forget evaluate --json`'s `utility`)."""
        return {
            "rows": self.rows,
            "aggregation": self.aggregation.value,
            "interval": "wilson-95",
            "ensemble_accuracy": self.accuracy.to_dict(),
            "ensemble_accuracy_mean": self.accuracy_mean.to_dict(),
            "shards": list(self.shards or range(len(self.shard_accuracy))),
            "shard_accuracy": [p.to_dict() for p in self.shard_accuracy],
            "majority_baseline": None
            if self.majority is None
            else {**self.majority.to_dict(), "class_index": self.majority_class},
            "p_vs_majority": self.p_vs_majority,
            "balanced_accuracy": None if self.balanced_accuracy is None else self.balanced_accuracy.to_dict(),
            "macro_f1": None if self.macro_f1 is None else self.macro_f1.to_dict(),
            "bootstrap_interval": "stratified-percentile-95",
            "per_class": [c.to_dict() for c in self.classes],
            "single_class_shards": list(self.single_class_shards),
            "ensemble_classes_predicted": self.ensemble_classes_predicted,
        }


class Finding(StrEnum):
    """What makes a model useless, or suspect; each is a warning in the report and on stderr."""

    NOT_BETTER_THAN_BASELINE = "not_better_than_baseline"
    ONE_CLASS_ENSEMBLE = "one_class_ensemble"
    SINGLE_CLASS_SHARDS = "single_class_shards"
    SMALL_SHARDS = "small_shards"


MIN_STEPS_PER_SHARD = 100
"""Fewer optimizer steps than this per shard and the models hardly leave their initialisation
(measured in docs/benchmarks.md: shards trained in 30 to 60 steps predicted the majority class)."""
MIN_RECORDS_PER_CLASS = 10
"""Fewer training records per class per shard than this, on average, and a shard cannot learn the
classes apart (the Purchase-like data at 20 shards, 12 per class, is at the edge and still works)."""


@dataclass(frozen=True)
class ModelFit:
    """The facts about the shards and the model that say whether the shards can learn it."""

    records_per_shard: tuple[int, ...]
    parameters: int
    classes: int
    epochs: float
    batch_size: int

    @property
    def median_records(self) -> float:
        """The median records per shard (0 without shards)."""
        return float(np.median(self.records_per_shard)) if self.records_per_shard else 0.0

    @property
    def steps_per_shard(self) -> float:
        """Optimizer steps a shard of median size takes over its whole schedule."""
        return steps_per_shard(self.records_per_shard, self.epochs, self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        """The fit as JSON-ready values, with the ratios `diagnose` judges."""
        return {
            "records_per_shard_median": self.median_records,
            "records_per_shard_min": min(self.records_per_shard) if self.records_per_shard else 0,
            "parameters": self.parameters,
            "records_per_parameter": self.median_records / self.parameters if self.parameters else None,
            "steps_per_shard": self.steps_per_shard,
            "records_per_class_per_shard": self.median_records / self.classes if self.classes else None,
        }


@dataclass(frozen=True)
class Diagnosis:
    """The one-line verdict and its warnings: is the ensemble better than a constant, and can its shards learn?"""

    useful: bool
    verdict: str
    warnings: tuple[tuple[Finding, str], ...]
    fit: ModelFit | None

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis as JSON-ready values (warnings by their `Finding` code)."""
        return {
            "useful": self.useful,
            "verdict": self.verdict,
            "warnings": [{"code": code.value, "message": message} for code, message in self.warnings],
            "fit": None if self.fit is None else self.fit.to_dict(),
        }


def diagnose(utility: UtilityReport, fit: ModelFit | None, what: str = "held-out rows") -> Diagnosis:
    """The verdict on `utility` (rows of `what`), with the warnings of `Finding`.

    Messages name classes by index, never by label: a label is a cell value.
    """
    warnings: list[tuple[Finding, str]] = []
    accuracy = utility.accuracy
    baseline = utility.majority
    better = utility.better_than_majority()
    if baseline is not None and not better:
        warnings.append(
            (
                Finding.NOT_BETTER_THAN_BASELINE,
                f"the ensemble ({accuracy.value:.1%}) is not significantly better than always predicting the most"
                f" frequent class ({baseline.value:.1%}) on these {utility.rows} {what}"
                f" (p = {utility.p_vs_majority:.2g})",
            )
        )
    if utility.ensemble_classes_predicted == 1 and len(utility.classes) > 1:
        warnings.append(
            (Finding.ONE_CLASS_ENSEMBLE, f"the ensemble predicts one class (#{utility.majority_class}) for every row")
        )
    if utility.single_class_shards:
        count = len(utility.single_class_shards)
        shown = ", ".join(str(s) for s in utility.single_class_shards[:10])
        more = ", ..." if count > 10 else ""
        warnings.append(
            (
                Finding.SINGLE_CLASS_SHARDS,
                f"{count} of {len(utility.shard_accuracy)} shards predict a single class for every row"
                f" (shards {shown}{more})",
            )
        )
    if fit is not None:
        reasons = []
        if fit.steps_per_shard < MIN_STEPS_PER_SHARD:
            reasons.append(
                f"{fit.steps_per_shard:.0f} optimizer steps per shard (under {MIN_STEPS_PER_SHARD}: more epochs or a"
                " smaller batch)"
            )
        if fit.classes and fit.median_records / fit.classes < MIN_RECORDS_PER_CLASS:
            reasons.append(
                f"{fit.median_records / fit.classes:.1f} records per class per shard (under {MIN_RECORDS_PER_CLASS})"
            )
        if reasons:
            warnings.append(
                (
                    Finding.SMALL_SHARDS,
                    f"shards are too small for the model: a median of {fit.median_records:.0f} records for"
                    f" {fit.parameters:,} parameters, " + " and ".join(reasons) + "; use fewer shards (`forget plan`)",
                )
            )
    ba = utility.balanced_accuracy
    balanced = f"; balanced accuracy {ba.value:.1%}" if ba is not None else ""
    base = f"{baseline.value:.1%}" if baseline is not None else "?"
    useful = better and utility.ensemble_classes_predicted > 1
    if useful:
        verdict = (
            f"useful: {accuracy.value:.1%} accurate (95% CI {accuracy.low:.1%}-{accuracy.high:.1%}) on {utility.rows}"
            f" {what}, against {base} for always predicting the most frequent class (p = {utility.p_vs_majority:.2g})"
            f"{balanced}"
        )
    else:
        verdict = (
            f"NOT USEFUL: {accuracy.value:.1%} accurate on {utility.rows} {what}, not significantly better than"
            f" always predicting the most frequent class ({base}){balanced}"
        )
    if useful and warnings:
        verdict += f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''})"
    return Diagnosis(useful=useful, verdict=verdict, warnings=tuple(warnings), fit=fit)


class Attack(StrEnum):
    """The membership-inference attacks run (the module's docstring gives their references)."""

    LOSS = "loss"
    """Yeom et al. 2018: score = log p_y, minus the loss of the mean probability on the true label."""
    LIRA_OFFLINE = "lira_offline"
    """Carlini et al. 2022, offline and class-conditional: z-value of the logit-scaled confidence."""


class Comparison(StrEnum):
    """Which group of records an attack tries to tell from the held-out file."""

    MEMBERS = "members_vs_held_out"
    """Retained training records (positives) against the held-out file (negatives)."""
    ERASED = "erased_vs_held_out"
    """Erased records (positives) against the held-out file: 0.5 AUC is perfect unlearning."""


@dataclass(frozen=True)
class AttackResult:
    """One attack on one comparison: ROC AUC with its standard error, membership advantage with its
    bootstrap error and chance level, TPR at 1% FPR, and the `Conclusion` drawn from them.
    """

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
    conclusion: Conclusion = Conclusion.INCONCLUSIVE
    reason: str = ""
    needed_positives: int | None = None
    """Positives for 80% power to see an AUC of 0.6 against these negatives (None: no number suffices)."""

    @property
    def auc_ci95(self) -> tuple[float, float]:
        """The AUC's 95% interval, from its Hanley-McNeil standard error."""
        return auc_interval(self.auc, self.auc_se)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values."""
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
            "null_auc_se": null_auc_se(self.positives, self.negatives),
            "conclusion": self.conclusion.value,
            "reason": self.reason,
            "needed_positives": self.needed_positives,
        }


def attack_result(
    attack: Attack,
    comparison: Comparison,
    positives: FloatArray,
    negatives: FloatArray,
    bootstrap: int,
    rng: np.random.Generator,
) -> AttackResult:
    """Score one attack: the statistics of `positives` against `negatives` (attack scores), with
    `bootstrap` resamples drawn from `rng` for the advantage's standard error; raises nothing of its own.
    """
    auc = roc_auc(positives, negatives)
    se = hanley_mcneil_se(auc, positives.size, negatives.size)
    advantage = membership_advantage(positives, negatives)
    chance = advantage_null95(positives.size, negatives.size)
    conclusion, reason, needed = conclude(auc, se, advantage, chance, int(positives.size), int(negatives.size))
    return AttackResult(
        attack=attack,
        comparison=comparison,
        positives=int(positives.size),
        negatives=int(negatives.size),
        auc=auc,
        auc_se=se,
        advantage=advantage,
        advantage_se=bootstrap_advantage_se(positives, negatives, bootstrap, rng),
        advantage_null95=chance,
        tpr_at_low_fpr=tpr_at_fpr(positives, negatives),
        conclusion=conclusion,
        reason=reason,
        needed_positives=needed,
    )


@dataclass(frozen=True)
class MembershipReport:
    """The membership-inference section: group sizes, seed, resamples, and every attack's result."""

    members: int
    held_out: int
    erased: int | None
    seed: int
    bootstrap: int
    results: tuple[AttackResult, ...]

    def result(self, attack: Attack, comparison: Comparison) -> AttackResult | None:
        """The result of `attack` on `comparison`, or None when it was not run (no erased records)."""
        return next((r for r in self.results if r.attack is attack and r.comparison is comparison), None)

    def mia_gap(self, attack: Attack = Attack.LOSS) -> float | None:
        """Erased-against-held-out AUC minus 0.5 (None without erased records)."""
        erased = self.result(attack, Comparison.ERASED)
        return None if erased is None else erased.auc - 0.5

    def to_dict(self) -> dict[str, Any]:
        """The section as JSON-ready values, with the MIA gap per attack."""
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
    tug_of_war: float = 1.0
    """Zhao et al. 2024's Tug-of-War: the product of one minus the accuracy gaps on the forget, retain
    and test sets; 1.0 exactly for exact unlearning (the models are the retrained ones)."""
    tug_of_war_sets: tuple[str, ...] = ("test",)
    forget_accuracy_gap: float | None = None
    retain_accuracy_gap: float | None = None

    def to_dict(self, evaluated: MembershipReport | None) -> dict[str, Any]:
        """The comparison as JSON-ready values; `evaluated`'s erased AUCs give the AUC differences."""
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
            "tug_of_war": {
                "score": self.tug_of_war,
                "sets": list(self.tug_of_war_sets),
                "forget_accuracy_gap": self.forget_accuracy_gap,
                "retain_accuracy_gap": self.retain_accuracy_gap,
                "test_accuracy_gap": self.accuracy_gap,
                "exact": self.identical_checkpoints,
                "note": TOW_EXACT_NOTE if self.identical_checkpoints else TOW_APPROXIMATE_NOTE,
            },
        }


TOW_EXACT_NOTE = (
    "1.0 by construction: the checkpoints are identical to the reference's, so every accuracy gap is zero"
    " (exact unlearning); a value below 1.0 here would mean the reference was not built like this workspace"
)
TOW_APPROXIMATE_NOTE = (
    "the checkpoints differ from the reference's: for exact unlearning with the same configuration, keys and"
    " kind of device they would be identical and the score exactly 1.0"
)


@dataclass(frozen=True)
class EvaluationReport:
    """Everything `forget evaluate` measured, with which models: `file` is the evaluated file's name
    (`(table)` for a table handed in), `checkpoints` the latest digests of the shards that answered
    (`utility.shards`; open erasure requests quarantine the others). `to_dict()` is the
    `--json` output that `reports.evaluation` renders.
    """

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
    diagnosis: Diagnosis | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (format `forget/evaluation/v1`), with a fingerprint of the checkpoints."""
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
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_dict(),
        }


# ---------------------------------------------------------------------------------------------
# Evaluating a workspace
# ---------------------------------------------------------------------------------------------


def utility_of(
    probabilities: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    aggregation: Aggregation,
    class_names: Sequence[str] = (),
    seed: int = 0,
    bootstrap: int = 200,
    shards: Sequence[int] = (),
) -> UtilityReport:
    """Accuracy with Wilson intervals from per-shard probabilities of shape (shards, rows, classes), and the
    measures that tell a useful model from a constant one: the majority-class baseline with a paired
    test against it, balanced accuracy and macro-F1 (stratified bootstrap intervals, seeded), per-class
    recall (Wilson) and F1, and the shards that predict one class for every row. `shards` names the
    shard of each row of `probabilities` (default 0, 1, ...).

    Raises `InputError` (exit 2) for no rows.
    """
    from sisa.aggregation import Aggregation, aggregate

    rows = int(labels.shape[0])
    if rows == 0:
        raise InputError("the evaluation file has no rows")
    labels = np.asarray(labels, dtype=np.int64)
    classes = int(probabilities.shape[2]) if probabilities.ndim == 3 else int(labels.max()) + 1
    names = tuple(class_names) or tuple(str(c) for c in range(classes))

    def correct(predicted: np.ndarray[Any, Any]) -> int:
        return int((predicted == labels).sum())

    ids = tuple(shards) or tuple(range(int(probabilities.shape[0])))
    predicted = aggregate(probabilities, aggregation)
    support = np.bincount(labels, minlength=classes)
    majority_class = int(support.argmax())
    rng = np.random.default_rng([seed, 2])
    assigned = np.bincount(predicted, minlength=classes)
    hits = np.bincount(labels[predicted == labels], minlength=classes)
    f1 = class_f1(predicted, labels, classes)
    per_class = tuple(
        ClassReport(
            label=names[c],
            support=int(support[c]),
            predicted=int(assigned[c]),
            recall=None if support[c] == 0 else Proportion.of(int(hits[c]), int(support[c])),
            f1=float(f1[c]),
        )
        for c in range(classes)
    )

    def balanced(p: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
        return balanced_accuracy(p, y, classes)

    def macro(p: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
        return macro_f1(p, y, classes)

    return UtilityReport(
        rows=rows,
        aggregation=aggregation,
        accuracy=Proportion.of(correct(predicted), rows),
        accuracy_mean=Proportion.of(correct(aggregate(probabilities, Aggregation.MEAN)), rows),
        shard_accuracy=tuple(Proportion.of(correct(p.argmax(axis=1)), rows) for p in probabilities),
        majority_class=majority_class,
        majority=Proportion.of(int(support[majority_class]), rows),
        p_vs_majority=mcnemar_better(predicted == labels, labels == majority_class),
        balanced_accuracy=Estimate(balanced(predicted, labels), stratified_bootstrap(balanced, predicted, labels,
                                                                                      bootstrap, rng)),
        macro_f1=Estimate(macro(predicted, labels), stratified_bootstrap(macro, predicted, labels, bootstrap, rng)),
        classes=per_class,
        single_class_shards=tuple(ids[i] for i in single_class_shards(probabilities)),
        ensemble_classes_predicted=int(np.unique(predicted).size),
        shards=ids,
    )  # fmt: skip


def model_fit(workspace: Workspace) -> ModelFit:
    """Records per shard (from the data store) against the model's size and the training budget.

    Raises `NotTrainedError` (exit 3) before data is in; a model spec that cannot be built raises `SisaError`.
    """
    from sisa.models import parameter_count

    schema = workspace.config.schema
    if schema is None:
        raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
    counts = workspace.datastore.shard_counts()
    settings = workspace.config.training
    return ModelFit(
        records_per_shard=tuple(counts.get(s, 0) for s in range(workspace.config.shards)),
        parameters=parameter_count(settings.model, schema.shape, len(schema.labels)),
        classes=len(schema.labels),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
    )


def evaluate_utility(
    workspace: Workspace,
    path: TableSource,
    aggregation: Aggregation | None = None,
    device: str = "auto",
    *,
    seed: int = 0,
    bootstrap: int = 200,
) -> UtilityReport:
    """Ensemble and per-shard accuracy on a labelled file (str or Path), pyarrow Table or pandas
    DataFrame, each with a 95% Wilson interval, and the usefulness measures of `utility_of` (seeded
    bootstrap intervals). `aggregation` defaults to the workspace's.

    Raises `InputError` (exit 2) for rows the schema cannot encode or no label column,
    `NotTrainedError` (exit 3) while a shard is not fully trained, and what
    `forget.training.predict.shard_probabilities` raises for a checkpoint.
    """
    from forget.training.predict import encode_file, shard_answers

    aggregation = aggregation or _workspace_aggregation(workspace)

    features, labels = encode_file(workspace, path, need_labels=True)
    assert labels is not None
    schema = workspace.config.schema
    names = schema.labels if schema is not None else ()
    answers = shard_answers(workspace, features, device)
    return utility_of(answers.probabilities, np.asarray(labels), aggregation, names, seed, bootstrap, answers.shards)


def training_verdict(workspace: Workspace, device: str = "auto", rows: int = 2000, seed: int = 0) -> Diagnosis:
    """The verdict of `forget train`: the ensemble on a seeded sample of its own training records.

    Training records flatter a model (it has seen them), so a model that does not beat the
    majority class even there is certainly useless; one that does is only "not obviously useless",
    and `forget evaluate HELD_OUT` gives the real figure.

    Raises `NotTrainedError` (exit 3) before data is in or while a shard is not fully trained.
    """
    from forget.training.predict import shard_answers

    schema = workspace.config.schema
    if schema is None:
        raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
    features, labels = sample_members(workspace, rows, seed)
    answers = shard_answers(workspace, features, device)
    aggregation = _workspace_aggregation(workspace)
    utility = utility_of(answers.probabilities, labels, aggregation, schema.labels, seed, 0, answers.shards)
    return diagnose(utility, model_fit(workspace), what="training records (not held out: optimistic)")


def _workspace_aggregation(workspace: Workspace) -> Aggregation:
    from sisa.aggregation import Aggregation

    return Aggregation(workspace.config.training.aggregation)


def sample_members(
    workspace: Workspace, count: int, seed: int
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], np.ndarray[Any, np.dtype[np.int64]]]:
    """`count` retained training records drawn without replacement (seeded), with their labels.

    Records are numbered shard by shard in the data store's order (slice, then record key), so the
    same seed draws the same records from the same data; one shard is in memory at a time.

    Raises `NotTrainedError` (exit 3) before data is in, or when the workspace holds no records.
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


def _subjects_still_held(workspace: Workspace, path: TableSource) -> int:
    """How many subjects of `path` the workspace still holds records of (0 if it has no subject column)."""
    from forget.data.ingest import hash_ids, open_source

    schema = workspace.config.schema
    assert schema is not None
    table, name = open_source(path, [schema.subject_column, schema.label_column])
    if schema.subject_column not in table.column_names:
        return 0
    # Through the same canonical form and hash as ingest (forget.subjects.identity), so the keys match.
    keys = hash_ids(table, schema.subject_column, name, "subject id", workspace.pseudonymiser.subject)
    return len(workspace.datastore.records_of_subjects(sorted(set(keys))))


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
    return lira_offline_scores(probabilities, labels, held_out, classes)


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
    path: TableSource,
    aggregation: Aggregation | None = None,
    device: str = "auto",
    *,
    mia: bool = False,
    erased: TableSource | None = None,
    reference: Workspace | None = None,
    members: int | None = None,
    seed: int = 0,
    bootstrap: int = 200,
    now: datetime | None = None,
) -> EvaluationReport:
    """Utility on `path`; with `mia`, membership inference; with `reference`, the gap to a retrained model.

    `aggregation` defaults to the workspace's (`[training] aggregation`). `erased` (a labelled file
    of records the workspace has erased) implies `mia`. `members` is how many retained training
    records to sample (default: as many as `path` has rows) for the attacks and for the Tug-of-War
    score's retain set; `seed` draws them and drives the bootstraps (`bootstrap` resamples for the
    advantage's standard error and the balanced accuracy's and macro-F1's intervals).
    `path` and `erased` are files (str or Path), pyarrow Tables or pandas DataFrames.

    Raises `InputError` (exit 2) when `erased` names a subject whose records the workspace still
    holds, for rows the schema cannot encode or no rows at all, a reference with other classes;
    `NotTrainedError` (exit 3) before data is in or while a shard (or the reference's) is not
    fully trained; and what `forget.training.predict.shard_probabilities` raises for a checkpoint.
    """
    from forget.training.predict import encode_file, shard_answers

    schema = workspace.config.schema
    if schema is None:
        raise NotTrainedError("the workspace has no data yet: run `forget ingest FILE` first")
    if bootstrap < 0 or (members is not None and members < 1):
        raise InputError("--members must be at least 1 and --bootstrap at least 0")
    aggregation = aggregation or _workspace_aggregation(workspace)
    mia = mia or erased is not None
    features, label_list = encode_file(workspace, path, need_labels=True)
    assert label_list is not None
    labels = np.asarray(label_list, dtype=np.int64)
    if labels.size == 0:
        raise InputError(f"{_name(path)} has no rows to evaluate")

    # One pass of every shard's model over all the groups: held-out, then members, then erased.
    groups_x = [features]
    groups_y = [labels]
    member_count = erased_count = 0
    if mia or reference is not None:
        member_x, member_y = sample_members(workspace, members or labels.size, seed)
        member_count = int(member_y.size)
        groups_x.append(member_x)
        groups_y.append(member_y)
    if erased is not None:
        still = _subjects_still_held(workspace, erased)
        if still:
            raise InputError(
                f"{_name(erased)}: the workspace still holds records of {still} of its subjects;"
                " erase them (`forget run`) before evaluating them as erased"
            )
        erased_x, erased_y = encode_file(workspace, erased, need_labels=True)
        assert erased_y is not None
        erased_count = len(erased_y)
        if erased_count == 0:
            raise InputError(f"{_name(erased)} has no rows to evaluate")
        groups_x.append(erased_x)
        groups_y.append(np.asarray(erased_y, dtype=np.int64))
    all_x = np.concatenate(groups_x)
    all_y = np.concatenate(groups_y)
    # The shards that may answer now: open erasure requests quarantine the others, and the report
    # names the models it evaluated, never a quarantined one.
    answers = shard_answers(workspace, all_x, device)
    probabilities = answers.probabilities
    digests = list(answers.digests)
    held = labels.size
    groups = Groups(held, member_count, erased_count)
    utility = utility_of(probabilities[:, :held], labels, aggregation, schema.labels, seed, bootstrap, answers.shards)

    membership = None
    mean = probabilities.mean(axis=0)
    classes = len(schema.labels)
    if mia:
        rng = np.random.default_rng([seed, 1])
        results = []
        for attack in Attack:
            scores = _scores(attack, mean, all_y, slice(0, held), classes)
            negatives = scores[:held]
            results.append(attack_result(attack, Comparison.MEMBERS, scores[groups.members], negatives, bootstrap, rng))
            if erased_count:
                results.append(
                    attack_result(attack, Comparison.ERASED, scores[groups.erased], negatives, bootstrap, rng)
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
            workspace, reference, path, erased, aggregation, device, utility, probabilities, all_x, all_y, groups,
            digests,
        )  # fmt: skip
    return EvaluationReport(
        file=Path(path).name if isinstance(path, str | os.PathLike) else "(table)",
        evaluated_at=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        shards=workspace.config.shards,
        slices=workspace.config.slices,
        model=workspace.config.training.model,
        epochs=workspace.config.training.epochs,
        checkpoints=tuple(digests),
        utility=utility,
        membership=membership,
        reference=comparison,
        diagnosis=diagnose(utility, model_fit(workspace)),
    )


@dataclass(frozen=True)
class Groups:
    """Row ranges of the concatenated evaluation arrays: held-out, then members, then erased."""

    held: int
    member_count: int
    erased_count: int

    @property
    def members(self) -> slice:
        """The rows of the sampled training records."""
        return slice(self.held, self.held + self.member_count)

    @property
    def erased(self) -> slice:
        """The rows of the erased records."""
        return slice(self.held + self.member_count, self.held + self.member_count + self.erased_count)


def _accuracy(probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], aggregation: Aggregation) -> float:
    from sisa.aggregation import aggregate

    return accuracy_of(aggregate(probabilities, aggregation), labels)


def _name(source: TableSource) -> str:
    """What a message calls `source`: the file's path as given, or "the table"."""
    from forget.data.ingest import TABLE

    return str(source) if isinstance(source, str | os.PathLike) else TABLE


def _compare(
    workspace: Workspace,
    reference: Workspace,
    path: TableSource,
    erased: TableSource | None,
    aggregation: Aggregation,
    device: str,
    utility: UtilityReport,
    probabilities: np.ndarray[Any, Any],
    all_x: np.ndarray[Any, Any],
    all_y: np.ndarray[Any, Any],
    groups: Groups,
    digests: list[str],
) -> ReferenceComparison:
    """`probabilities`: the evaluated workspace's per-shard probabilities on every group of `all_x`."""
    from forget.training.predict import encode_file, latest_digests, shard_probabilities
    from sisa.aggregation import aggregate

    schema = reference.config.schema
    own_schema = workspace.config.schema
    assert own_schema is not None
    if schema is None:
        raise NotTrainedError(f"the reference workspace {reference.root} has no data yet")
    if schema.labels != own_schema.labels:
        raise InputError(
            f"the reference's {len(schema.labels)} label classes differ from this workspace's {len(own_schema.labels)}:"
            " build it with `ingest --schema WS/forget.toml`"
        )
    held = groups.held
    features, label_list = encode_file(reference, path, need_labels=True)
    assert label_list is not None
    labels = np.asarray(label_list, dtype=np.int64)
    groups_x, groups_y = [features], [labels]
    # The retain set is this workspace's own records, encoded by its schema: the reference sees the
    # same arrays when both use one schema (`ingest --schema WS/forget.toml`), and is scored on them.
    same_schema = schema == own_schema
    if same_schema and groups.member_count:
        groups_x.append(all_x[groups.members])
        groups_y.append(all_y[groups.members])
    if erased is not None:
        erased_x, erased_y = encode_file(reference, erased, need_labels=True)
        assert erased_y is not None
        groups_x.append(erased_x)
        groups_y.append(np.asarray(erased_y, dtype=np.int64))
    theirs = shard_probabilities(reference, np.concatenate(groups_x), device)
    their_labels = np.concatenate(groups_y)
    retained = groups.member_count if same_schema else 0
    their_groups = Groups(held, retained, theirs.shape[1] - held - retained)
    reference_utility = utility_of(theirs[:, :held], labels, aggregation, bootstrap=0)
    their_mean = theirs.mean(axis=0)
    erased_auc = None
    if erased is not None:
        keep = np.r_[0:held, their_groups.erased]
        erased_auc = _erased_aucs(their_mean[keep], their_labels[keep], held, len(schema.labels))
    agreement = aggregate(probabilities[:, :held], aggregation) == aggregate(theirs[:, :held], aggregation)
    test_gap = utility.accuracy.value - reference_utility.accuracy.value
    retain_gap = None
    if retained:
        retain_gap = _accuracy(probabilities[:, groups.members], all_y[groups.members], aggregation) - _accuracy(
            theirs[:, their_groups.members], their_labels[their_groups.members], aggregation
        )
    forget_gap = None
    if erased is not None and groups.erased_count:
        forget_gap = _accuracy(probabilities[:, groups.erased], all_y[groups.erased], aggregation) - _accuracy(
            theirs[:, their_groups.erased], their_labels[their_groups.erased], aggregation
        )
    tow, tow_sets = tug_of_war(forget_gap, retain_gap, test_gap)
    return ReferenceComparison(
        accuracy=reference_utility.accuracy,
        accuracy_gap=test_gap,
        prediction_agreement=float(agreement.mean()),
        max_probability_difference=float(np.abs(probabilities[:, :held].mean(axis=0) - their_mean[:held]).max()),
        identical_checkpoints=latest_digests(reference) == digests,
        erased_auc=erased_auc,
        tug_of_war=tow,
        tug_of_war_sets=tow_sets,
        forget_accuracy_gap=forget_gap,
        retain_accuracy_gap=retain_gap,
    )
