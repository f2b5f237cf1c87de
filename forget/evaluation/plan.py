"""Choosing shards, slices and the model on the data at hand, before a workspace exists (`forget plan`).

1. Read the file with ingest's own reader, schema inference and encoding (forget.data.ingest); count
   rows, subjects (through the identity's canonical form), classes and encoded features.
2. Hold out a validation part by subject (a seeded hash of each subject, so a subject's records are
   all in it or all out of it) and train on the rest: the real trainer (`sisa.trainer.train_shard`)
   on an in-memory checkpoint store (`sisa.store.MemoryStore`), placement by the real
   `sisa.placement.place`, for every candidate (shards x slices x model x epochs).
3. Score each candidate on the validation part (`forget.evaluation.stats`): accuracy (Wilson
   interval) and balanced accuracy under the chosen aggregation; and its expected erasure cost,
   the share of a full training that one request retrains (exact under the placement: each
   subject's shard, rewound from its earliest slice), also in seconds measured here.
4. Recommend the cheapest erasure among the candidates within `max_loss` of the best accuracy that
   are significantly better than always predicting the majority class.

Nothing is written but the plan (counts, settings, scores: no row, id or cell value). Subject ids
are hashed in memory with a key derived from the seed and forgotten. `forget init --from-plan`
freezes the recommendation in `forget.toml` and logs the plan's digest and counts in the ledger's
first entry; the settings are configuration from then on and are never refitted (docs/training.md,
"Choosing settings on the data").
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forget.errors import InputError
from forget.evaluation.stats import (
    accuracy,
    balanced_accuracy,
    beats_baseline,
    majority_share,
    single_class_shards,
    steps_per_shard,
    wilson_interval,
)
from forget.workspace.config import AGGREGATIONS, TrainingSettings
from sisa.placement import PlacementMode, place
from sisa.schedule import Schedule
from sisa.store import MemoryStore

if TYPE_CHECKING:
    import pyarrow as pa

    from sisa.trainer import TrainingConfig

PLAN_FORMAT = "forget/plan/v1"

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]

Progress = Callable[[str], None]


class PlanError(InputError):
    """A plan that cannot be made or read as given (exit 2)."""


# ---------------------------------------------------------------------------------------------
# Simulating a workspace in memory
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """Where each training record lands under one layout."""

    shard: IntArray
    slice: IntArray


def place_records(
    subject_keys: Sequence[str], record_keys: Sequence[str], seed: int, shards: int, slices: int
) -> Placed:
    """The real placement (subject affinity) of every record: `sisa.placement.place`."""
    where = [
        place(r, s, seed=seed, shards=shards, slices=slices, mode=PlacementMode.SUBJECT)
        for r, s in zip(record_keys, subject_keys, strict=True)
    ]
    return Placed(
        shard=np.fromiter((w.shard for w in where), dtype=np.int64, count=len(where)),
        slice=np.fromiter((w.slice for w in where), dtype=np.int64, count=len(where)),
    )


def expected_retrain_share(subject_keys: Sequence[str], placed: Placed, shards: int, slices: int) -> float:
    """The mean, over subjects, of the share of a full training that erasing that subject retrains.

    Step k of a shard trains on slices 0..k, so it costs k + 1 slices' worth of passes under either
    schedule (sisa.schedule); a shard costs R(R+1)/2 such units and the workspace S times that. A
    subject whose earliest record is in slice j of its shard retrains steps j..R-1. With one record
    per subject this averages (2R+1)/(3SR).
    """
    first: dict[tuple[str, int], int] = {}
    for key, shard, slice_ in zip(subject_keys, placed.shard.tolist(), placed.slice.tolist(), strict=True):
        slot = (key, shard)
        first[slot] = min(first.get(slot, slice_), slice_)
    per_subject: dict[str, float] = {}
    for (key, _shard), j in first.items():
        per_subject[key] = per_subject.get(key, 0.0) + sum(k + 1 for k in range(j, slices))
    total = shards * slices * (slices + 1) / 2
    return float(np.mean(list(per_subject.values()))) / total if per_subject else 0.0


@dataclass(frozen=True)
class Simulation:
    """One candidate trained in memory on the plan's training part: its shards' probabilities and costs."""

    probabilities: FloatArray
    """(shards, rows, classes): each shard's class probabilities on the evaluated rows."""
    shard_records: tuple[int, ...]
    train_s: float
    retrain_share: float
    steps_per_shard: float
    """Optimizer steps of a shard of median size over its whole schedule."""


def simulate(
    features: FloatArray,
    labels: IntArray,
    classes: int,
    subject_keys: Sequence[str],
    record_keys: Sequence[str],
    shards: int,
    slices: int,
    config: TrainingConfig,
    evaluate_on: FloatArray,
) -> Simulation:
    """Train every shard as a workspace would (same placement, trainer and schedule), in memory."""
    import torch

    from sisa.aggregation import predict_proba
    from sisa.trainer import ShardTask, SliceData, load_model, train_shard

    if config.slices != slices:
        config = replace(config, slices=slices)
    placed = place_records(subject_keys, record_keys, config.seed, shards, slices)
    shape = tuple(features.shape[1:])
    cpu = torch.device("cpu")
    out = []
    sizes = []
    started = time.perf_counter()
    for shard in range(shards):
        mine = placed.shard == shard
        parts = tuple(
            SliceData(
                np.ascontiguousarray(features[mine & (placed.slice == k)]),
                np.ascontiguousarray(labels[mine & (placed.slice == k)]),
            )
            for k in range(slices)
        )
        sizes.append(int(mine.sum()))
        store = MemoryStore()
        digests = train_shard(ShardTask(shard, parts, shape, classes), config, store, cpu)
        model = load_model(store.get(digests[-1]), config, shard, shape, classes)
        out.append(predict_proba(model, evaluate_on, cpu))
    elapsed = time.perf_counter() - started
    return Simulation(
        probabilities=np.stack(out),
        shard_records=tuple(sizes),
        train_s=elapsed,
        retrain_share=expected_retrain_share(subject_keys, placed, shards, slices),
        steps_per_shard=steps_per_shard(sizes, config.epochs, config.batch_size),
    )


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanOptions:
    """What `forget plan` sweeps (shards, slices, models, epochs) and how it validates and recommends."""

    shards: tuple[int, ...] = (1, 5, 10, 20)
    slices: tuple[int, ...] = (1, 5, 10)
    models: tuple[str, ...] = ()
    """Model specs to try; empty: the settings' model."""
    epochs: tuple[float, ...] = ()
    """Epoch budgets to try; empty: the settings' epochs."""
    training: TrainingSettings = field(default_factory=TrainingSettings)
    aggregation: str = ""
    """vote, mean or geomean; empty: the settings' aggregation."""
    validation: float = 0.2
    seed: int = 0
    max_loss: float = 0.02
    """How much validation accuracy (absolute) the recommendation may give up against the best."""
    max_rows: int | None = 100_000
    """Larger files are subsampled by subject (seeded) to this many rows, and the plan says so."""

    def problems(self) -> list[str]:
        """What is wrong with these options, one line each (empty when usable); raises nothing."""
        found = []
        if not self.shards or min(self.shards) < 1:
            found.append("--shards needs positive counts, e.g. 1,5,10,20")
        if not self.slices or min(self.slices) < 1:
            found.append("--slices needs positive counts, e.g. 1,5,10")
        if not 0.05 <= self.validation <= 0.5:
            found.append(f"--validation must be between 0.05 and 0.5 (got {self.validation})")
        if not 0 <= self.max_loss < 1:
            found.append(f"--max-loss must be in [0, 1) (got {self.max_loss})")
        if self.max_rows is not None and self.max_rows < 10:
            found.append("--max-rows must be at least 10")
        for epochs in self.epochs:
            found.extend(replace(self.training, epochs=epochs).problems())
        if self.aggregation and self.aggregation not in AGGREGATIONS:
            found.append(f"--aggregation must be one of {', '.join(AGGREGATIONS)}")
        return found


@dataclass(frozen=True)
class DataCounts:
    """What the planned file holds: rows, subjects, classes, encoded width, and the validation split."""

    rows: int
    subjects: int
    classes: int
    features: int
    """Encoded width: a categorical column counts once per category."""
    majority_share: float
    """Share of the most frequent class over all rows."""
    largest_subject_rows: int
    train_rows: int
    validation_rows: int
    validation_subjects: int
    sampled_from: int | None
    """The file's row count when it was subsampled to `max_rows`, else None."""

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready values."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class CandidateResult:
    """One candidate (shards, slices, model, epochs) measured: validation accuracy and the cost of an erasure."""

    shards: int
    slices: int
    model: str
    epochs: float
    parameters: int
    records_per_shard: float
    """Median training records per shard in the plan (the full file adds the validation part)."""
    smallest_shard: int
    steps_per_shard: float
    correct: int
    rows: int
    accuracy_low: float
    accuracy_high: float
    accuracy_vote: float
    accuracy_mean: float
    balanced_accuracy: float
    single_class_shards: int
    """Shards whose model predicts one class for every validation row."""
    retrain_share: float
    """Expected share of a full training that one erasure request retrains."""
    train_s: float
    erase_s: float
    """retrain_share x the training time measured here, scaled to the whole file."""

    @property
    def accuracy(self) -> float:
        """Validation accuracy under the plan's aggregation: correct / rows."""
        return self.correct / self.rows

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values, with its accuracy."""
        return {**self.__dict__, "accuracy": self.accuracy}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateResult:
        """The result `to_dict` wrote; raises `KeyError` for a missing field (`Plan.from_dict`: `PlanError`)."""
        names = [f for f in cls.__dataclass_fields__]
        return cls(**{name: data[name] for name in names})


@dataclass(frozen=True)
class Plan:
    """A plan: every candidate measured on one file, the recommendation and why, and the warnings.

    `forget plan --output` writes `to_dict()`; `forget init --from-plan` takes `settings()` and logs
    `digest()`.
    """

    file: str
    file_sha256: str
    subject_column: str
    label_column: str
    counts: DataCounts
    training: TrainingSettings
    """The settings shared by every candidate (batch size, lr, optimizer, schedule, threads)."""
    aggregation: str
    seed: int
    validation: float
    max_loss: float
    baseline: float
    """The validation rows' majority-class share: what always predicting one class scores."""
    results: tuple[CandidateResult, ...]
    recommended: int
    """Index into `results`."""
    reason: str
    warnings: tuple[str, ...]
    stable_to_one_subject: bool
    """Whether removing any one validation subject's rows could not change which candidate is recommended."""

    def recommendation(self) -> CandidateResult:
        """The recommended candidate."""
        return self.results[self.recommended]

    def settings(self, index: int | None = None) -> tuple[int, int, TrainingSettings]:
        """(shards, slices, settings) of the recommendation, or of `results[index]`."""
        chosen = self.results[self.recommended if index is None else index]
        training = replace(self.training, model=chosen.model, epochs=chosen.epochs, aggregation=self.aggregation)
        return chosen.shards, chosen.slices, training

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON (format `forget/plan/v1`): what `forget plan --output` writes."""
        return {
            "format": PLAN_FORMAT,
            "file": self.file,
            "file_sha256": self.file_sha256,
            "subject_column": self.subject_column,
            "label_column": self.label_column,
            "counts": self.counts.to_dict(),
            "training": _settings_dict(self.training),
            "aggregation": self.aggregation,
            "seed": self.seed,
            "validation": self.validation,
            "max_loss": self.max_loss,
            "baseline": self.baseline,
            "results": [r.to_dict() for r in self.results],
            "recommended": self.recommended,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "stable_to_one_subject": self.stable_to_one_subject,
        }

    def digest(self) -> str:
        """sha256 of the plan's canonical JSON: what `forget init --from-plan` logs."""
        from ledger.canonical import canonical_sha256

        return canonical_sha256(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """The plan in parsed JSON, every setting checked.

        Raises `PlanError` (an `InputError`, exit 2) for another format, a missing or mistyped field, a
        recommendation that is not a result, or settings out of range.
        """
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise PlanError(f"not a plan of format {PLAN_FORMAT} (format: {found!r})")
        try:
            training = data["training"]
            plan = cls(
                file=str(data["file"]),
                file_sha256=str(data["file_sha256"]),
                subject_column=str(data["subject_column"]),
                label_column=str(data["label_column"]),
                counts=DataCounts(**data["counts"]),
                training=TrainingSettings(
                    model=str(training["model"]),
                    epochs=float(training["epochs"]),
                    batch_size=int(training["batch_size"]),
                    lr=float(training["lr"]),
                    optimizer=str(training["optimizer"]),
                    schedule=Schedule(training["schedule"]),
                    threads=int(training["threads"]),
                    aggregation=str(data["aggregation"]),
                ),
                aggregation=str(data["aggregation"]),
                seed=int(data["seed"]),
                validation=float(data["validation"]),
                max_loss=float(data["max_loss"]),
                baseline=float(data["baseline"]),
                results=tuple(CandidateResult.from_dict(r) for r in data["results"]),
                recommended=int(data["recommended"]),
                reason=str(data["reason"]),
                warnings=tuple(str(w) for w in data["warnings"]),
                stable_to_one_subject=bool(data["stable_to_one_subject"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PlanError(f"the plan is malformed: {error}") from error
        if not 0 <= plan.recommended < len(plan.results):
            raise PlanError("the plan's recommendation is not one of its results")
        for result in plan.results:
            _, _, settings = plan.settings(plan.results.index(result))
            problems = settings.problems()
            if problems:
                raise PlanError(f"the plan's settings are invalid: {problems[0]}")
        return plan


def read_plan(path: str | os.PathLike[str]) -> Plan:
    """The plan in a `forget plan --output` file (str or Path).

    Raises `PlanError` (an `InputError`, exit 2) when the file cannot be read, is not JSON, or is
    not a valid plan of this format.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise PlanError(f"cannot read the plan {path}: {error.strerror}") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PlanError(f"the plan {path} is not JSON: {error}") from error
    return Plan.from_dict(data)


def _settings_dict(settings: TrainingSettings) -> dict[str, Any]:
    return {
        "model": settings.model,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "optimizer": settings.optimizer,
        "schedule": settings.schedule.value,
        "threads": settings.threads,
    }


@dataclass(frozen=True)
class PlanData:
    """A file read for planning: encoded rows, class indices and keyed subject hashes (memory only)."""

    features: FloatArray
    labels: IntArray
    classes: tuple[str, ...]
    subject_keys: list[str]
    record_keys: list[str]
    file_sha256: str
    sampled_from: int | None


def encode_table(
    table: pa.Table, subject_keys: list[str], subject_column: str, label_column: str, path: Path | str
) -> tuple[FloatArray, IntArray, tuple[str, ...]]:
    """Features, class indices and class names as the first `forget ingest` of this table would make them.

    `path` names the rows in messages. Raises `InputError` (exit 2) as that ingest would.
    """
    from forget.data.ingest import ColumnChoice, encode, encode_labels, infer_schema
    from forget.data.schema import DEFAULT_MIN_SUBJECTS

    choice = ColumnChoice(subject=subject_column, label=label_column)
    schema = infer_schema(table, choice, path, subject_keys, DEFAULT_MIN_SUBJECTS)
    labels = np.asarray(encode_labels(table, schema, path), dtype=np.int64)
    return encode(table, schema, path).reshape(-1, *schema.shape), labels, tuple(schema.labels)


def read_plan_data(
    path: str | os.PathLike[str], subject_column: str, label_column: str, seed: int, max_rows: int | None
) -> PlanData:
    """Read, count and encode `path` exactly as `forget ingest` would, hashing subjects in memory.

    Raises `PlanError` (exit 2) for a missing column or fewer than 10 rows, and `InputError` (exit 2)
    for a file `forget ingest` would refuse.
    """
    path = Path(path)
    from forget.data.ingest import hash_ids, read_table
    from forget.subjects.identity import IdentityForm
    from forget.subjects.pseudonym import Pseudonymiser

    table = read_table(path, [subject_column, label_column])
    for column in (subject_column, label_column):
        if column not in table.column_names:
            raise PlanError(f"{path} has no column {column!r} (columns: {', '.join(table.column_names)})")
    if table.num_rows < 10:
        raise PlanError(f"{path} has {table.num_rows} rows: too few to plan on")
    # A key derived from the seed: the same plan on every run, and never written anywhere.
    key = hashlib.sha256(f"forget/plan/v1/{seed}".encode()).digest()
    pseudonymiser = Pseudonymiser(key, IdentityForm())
    subject_keys = [str(k) for k in hash_ids(table, subject_column, path, "subject id", pseudonymiser.subject)]
    sampled_from = None
    if max_rows is not None and table.num_rows > max_rows:
        # Whole subjects, by a seeded hash order: the sample keeps subject affinity.
        order = sorted(set(subject_keys), key=lambda s: hashlib.sha256(f"{seed}\x00sample\x00{s}".encode()).digest())
        sizes: dict[str, int] = {}
        for s in subject_keys:
            sizes[s] = sizes.get(s, 0) + 1
        kept: set[str] = set()
        total = 0
        for s in order:
            if total + sizes[s] > max_rows and total:
                break
            kept.add(s)
            total += sizes[s]
        rows = [i for i, s in enumerate(subject_keys) if s in kept]
        sampled_from = table.num_rows
        table = table.take(rows)
        subject_keys = [subject_keys[i] for i in rows]
    features, labels, classes = encode_table(table, subject_keys, subject_column, label_column, path)
    record_keys = [hashlib.sha256(f"{s}\x00{i}".encode()).hexdigest() for i, s in enumerate(subject_keys)]
    return PlanData(
        features=features,
        labels=labels,
        classes=classes,
        subject_keys=subject_keys,
        record_keys=record_keys,
        file_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        sampled_from=sampled_from,
    )


def validation_mask(subject_keys: Sequence[str], share: float, seed: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True for rows of held-out subjects: a seeded hash of the subject below `share`."""
    cut = int(share * 2**32)
    held: dict[str, bool] = {}
    out = np.zeros(len(subject_keys), dtype=bool)
    for i, key in enumerate(subject_keys):
        if key not in held:
            digest = hashlib.sha256(f"{seed}\x00validation\x00{key}".encode()).digest()
            held[key] = int.from_bytes(digest[:4], "big") < cut
        out[i] = held[key]
    return out


def make_plan(
    path: str | os.PathLike[str],
    subject_column: str,
    label_column: str,
    options: PlanOptions,
    progress: Progress | None = None,
) -> Plan:
    """Sweep the candidates on the file at `path` (str or Path) and recommend one; see the module's docstring.

    `progress` hears one line per candidate. Raises `PlanError` (exit 2) for options out of range,
    a file too small to plan on or to hold out subjects from, and `InputError` (exit 2) for a file
    `forget ingest` would refuse; a model that cannot be built raises `sisa.errors.SisaError`.
    """
    path = Path(path)
    from sisa.aggregation import Aggregation, aggregate
    from sisa.models import parameter_count
    from sisa.trainer import OptimizerKind, TrainingConfig

    problems = options.problems()
    if problems:
        raise PlanError(problems[0])
    say = progress or (lambda _message: None)
    data = read_plan_data(path, subject_column, label_column, options.seed, options.max_rows)
    classes = len(data.classes)
    held = validation_mask(data.subject_keys, options.validation, options.seed)
    if held.all() or not held.any():
        raise PlanError(f"{path}: too few subjects to hold out a validation part")
    train_idx = np.flatnonzero(~held)
    x_train, y_train = data.features[train_idx], data.labels[train_idx]
    x_val, y_val = data.features[held], data.labels[held]
    train_subjects = [data.subject_keys[i] for i in train_idx]
    train_records = [data.record_keys[i] for i in train_idx]
    sizes: dict[str, int] = {}
    for key in data.subject_keys:
        sizes[key] = sizes.get(key, 0) + 1
    counts = DataCounts(
        rows=len(data.labels),
        subjects=len(sizes),
        classes=classes,
        features=int(np.prod(data.features.shape[1:])),
        majority_share=majority_share(data.labels, classes),
        largest_subject_rows=max(sizes.values()),
        train_rows=int(train_idx.size),
        validation_rows=int(held.sum()),
        validation_subjects=len({data.subject_keys[i] for i in np.flatnonzero(held)}),
        sampled_from=data.sampled_from,
    )
    aggregation = Aggregation(options.aggregation or options.training.aggregation)
    models = options.models or (options.training.model,)
    epoch_list = options.epochs or (options.training.epochs,)
    scale = (data.sampled_from or counts.rows) / max(counts.train_rows, 1)
    _warm_up()
    results = []
    for model in models:
        parameters = parameter_count(model, data.features.shape[1:], classes)
        for epochs in epoch_list:
            for shards in options.shards:
                for slices in options.slices:
                    settings = replace(options.training, model=model, epochs=epochs)
                    config = TrainingConfig(
                        model=model,
                        slices=slices,
                        epochs=epochs,
                        batch_size=settings.batch_size,
                        lr=settings.lr,
                        seed=options.seed,
                        optimizer=OptimizerKind(settings.optimizer),
                        schedule=settings.schedule,
                        threads=settings.threads,
                    )
                    say(f"{model}, {epochs:g} epochs, {shards} shards x {slices} slices")
                    sim = simulate(
                        x_train, y_train, classes, train_subjects, train_records, shards, slices, config, x_val
                    )
                    predicted = aggregate(sim.probabilities, aggregation)
                    correct = int((predicted == y_val).sum())
                    low, high = wilson_interval(correct, int(y_val.size))
                    results.append(
                        CandidateResult(
                            shards=shards,
                            slices=slices,
                            model=model,
                            epochs=float(epochs),
                            parameters=parameters,
                            records_per_shard=float(np.median(sim.shard_records)),
                            smallest_shard=min(sim.shard_records),
                            steps_per_shard=round(sim.steps_per_shard, 1),
                            correct=correct,
                            rows=int(y_val.size),
                            accuracy_low=low,
                            accuracy_high=high,
                            accuracy_vote=accuracy(aggregate(sim.probabilities, Aggregation.VOTE), y_val),
                            accuracy_mean=accuracy(aggregate(sim.probabilities, Aggregation.MEAN), y_val),
                            balanced_accuracy=balanced_accuracy(predicted, y_val, classes),
                            single_class_shards=len(single_class_shards(sim.probabilities)),
                            retrain_share=sim.retrain_share,
                            train_s=round(sim.train_s, 3),
                            erase_s=round(sim.retrain_share * sim.train_s * scale, 3),
                        )
                    )
    baseline = majority_share(y_val, classes)
    recommended, reason, warnings, stable = recommend(results, baseline, options.max_loss, counts.largest_subject_rows)
    if data.sampled_from is not None:
        warnings.insert(
            0,
            f"the file's {data.sampled_from} rows were subsampled to {counts.rows} (--max-rows): the full file puts"
            f" {data.sampled_from / counts.rows:.1f}x as many records in each shard, so these accuracies are"
            " pessimistic",
        )
    return Plan(
        file=path.name,
        file_sha256=data.file_sha256,
        subject_column=subject_column,
        label_column=label_column,
        counts=counts,
        training=options.training,
        aggregation=aggregation.value,
        seed=options.seed,
        validation=options.validation,
        max_loss=options.max_loss,
        baseline=baseline,
        results=tuple(results),
        recommended=recommended,
        reason=reason,
        warnings=tuple(warnings),
        stable_to_one_subject=stable,
    )


def _warm_up() -> None:
    """Pay torch's one-off costs (the first optimizer step's lazy imports) before any candidate is timed."""
    import torch

    from sisa.optim import EagerAdam

    EagerAdam([torch.zeros(1, requires_grad=True)])


def recommend(
    results: Sequence[CandidateResult], baseline: float, max_loss: float, largest_subject_rows: int
) -> tuple[int, str, list[str], bool]:
    """(index, reason, warnings, stable): the cheapest erasure within `max_loss` of the best accuracy.

    Only candidates significantly better than the majority-class baseline are eligible. `stable`
    says whether the choice survives removing any one validation subject: every accuracy used in
    the decision is farther from its threshold than that subject's rows could move it.
    """
    warnings: list[str] = []
    best = max(range(len(results)), key=lambda i: (results[i].accuracy, -results[i].retrain_share))
    top = results[best].accuracy
    useful = [i for i, r in enumerate(results) if beats_baseline(r.correct, r.rows, baseline)]
    if not useful:
        warnings.append(
            f"no candidate is significantly better than always predicting the majority class ({baseline:.1%} of the"
            " validation rows): the features may not predict the label, or the data is too small for the model"
        )
        return best, "the most accurate candidate; none beats the majority class", warnings, False
    eligible = [i for i in useful if results[i].accuracy >= top - max_loss]
    if not eligible:
        eligible = [max(useful, key=lambda i: results[i].accuracy)]
    chosen = min(eligible, key=lambda i: (results[i].retrain_share, -results[i].accuracy))
    r = results[chosen]
    reason = (
        f"the cheapest erasure ({r.retrain_share:.1%} of a full training per request) among the candidates within"
        f" {max_loss:.0%} of the best validation accuracy ({top:.1%}) that beat the majority class ({baseline:.1%})"
    )
    if r.single_class_shards:
        warnings.append(f"{r.single_class_shards} of the recommended layout's shards predict a single class")
    # One validation subject moves any accuracy by at most its rows over the validation rows.
    wiggle = largest_subject_rows / r.rows
    threshold = top - max_loss
    cheaper = [i for i in useful if results[i].retrain_share < r.retrain_share]
    margins = [abs(results[i].accuracy - threshold) for i in [chosen, *cheaper]]
    margins.append(abs(r.accuracy - baseline))
    stable = min(margins) > 2 * wiggle
    if not stable:
        warnings.append(
            "the recommendation is on a knife edge: one validation subject's rows could change it;"
            " prefer the more accurate neighbour, or plan on more data"
        )
    return chosen, reason, warnings, stable


def frozen_settings(plan: Plan, row: int | None = None) -> tuple[int, int, TrainingSettings, dict[str, Any]]:
    """(shards, slices, settings, record) for `forget init --from-plan`: the recommendation or `row`.

    The record is what the ledger's first entry keeps: the plan's digest and the file's, the counts
    it was made on, the validation split, and which row was taken. No row, id or cell value.

    Raises `PlanError` (exit 2) for a `row` that is not one of the plan's results.
    """
    if row is not None and not 0 <= row < len(plan.results):
        raise PlanError(f"--plan-row must be between 0 and {len(plan.results) - 1}")
    index = plan.recommended if row is None else row
    shards, slices, settings = plan.settings(index)
    chosen = plan.results[index]
    record = {
        "format": PLAN_FORMAT,
        "sha256": plan.digest(),
        "file_sha256": plan.file_sha256,
        "counts": {
            "rows": plan.counts.rows,
            "subjects": plan.counts.subjects,
            "classes": plan.counts.classes,
            "features": plan.counts.features,
            "train_rows": plan.counts.train_rows,
            "validation_rows": plan.counts.validation_rows,
        },
        "row": index,
        "recommended": index == plan.recommended,
        "validation_accuracy": round(chosen.accuracy, 6),
        "seed": plan.seed,
    }
    return shards, slices, settings, record
