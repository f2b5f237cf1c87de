"""The feature schema: a function of the data that no single subject can shape (DESIGN invariant 9).

Every number in the schema is shared by all shards, so it must be one that erasing a person does
not change; otherwise an erasure could only be exact by retraining everything. The rule
`forget/schema/v1` is a pure function of the (value, subject) pairs, with one setting, k
(`min_subjects_per_category` in forget.toml):

- A category, or a label class, is kept only if at least k distinct subjects hold it. Rarer values
  share one "other" slot: every categorical column has it, as its last one-hot slot, and the label
  classes gain the class `(other)` when some row needs it. Their text is written nowhere.
- A numeric column is divided by a power of two, 2^e: the one nearest the 0.9-quantile of |value|,
  the value taken as a float32. There is no centre, on purpose: a float32 divided by a power of
  two is exact, so the stored features decode to exactly the values the rule saw and the schema
  can be re-derived from the data store bit for bit (forget.data.rederive), with no copy of the
  raw values. Erasing a subject who holds at most m records moves the quantile at most m places
  in the sorted values, so e changes only when those neighbours straddle a boundary 2^(e +- 1/2).
- A column marked `declared = true` keeps what the operator wrote (centre and scale, or the
  categories): no data shaped it, and the rule never touches it.

Where one erasure does change the outcome (a category held by exactly k subjects loses one, a
quantile next to a boundary), `forget run` sees it, says so, and retrains every shard on the new
encoding. Like ledger/merkle.py, this module is pure: no I/O, only numbers and strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

from forget.errors import InputError

if TYPE_CHECKING:
    # numpy loads only when a function needs it: `forget certificate verify` imports this module
    # (through forget.workspace.config) and must run without numpy.
    import numpy as np

    FloatArray = np.ndarray[Any, np.dtype[np.float64]]
    Float32Array = np.ndarray[Any, np.dtype[np.float32]]

RULE = "forget/schema/v1"
OTHER_LABEL = "(other)"
"""The class of every row whose label fewer than k subjects hold (a raw label spelled so joins it)."""
DEFAULT_MIN_SUBJECTS = 5
MAX_MAGNITUDE = 2.0**64
"""Larger numeric values are refused: with |e| <= MAX_EXPONENT every value stays a normal float32."""
FLUSHED_BELOW = 2.0**-64
"""Smaller magnitudes count as 0, so that no value becomes subnormal (and inexact) when scaled."""
MAX_EXPONENT = 60
QUANTILE = (9, 10)
"""The scale's order statistic: index floor(9 (n - 1) / 10) of the sorted |values|."""


class TooFewClassesError(InputError):
    """Fewer than two label classes are held by k subjects each: there is nothing to classify."""


class ColumnKind(StrEnum):
    """How a feature column is encoded: one scaled number, or a one-hot block of its kept categories."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


def _power_of_two_exponent(value: float) -> int | None:
    mantissa, exponent = math.frexp(value)
    if mantissa == 0.5 and -MAX_EXPONENT <= exponent - 1 <= MAX_EXPONENT:
        return exponent - 1
    return None


@dataclass(frozen=True)
class FeatureColumn:
    """One feature column of the schema and its encoding: a numeric column's centre and scale, or a
    categorical column's kept categories.
    """

    name: str
    kind: ColumnKind
    center: float = 0.0
    scale: float = 1.0
    categories: tuple[str, ...] = ()
    """The kept categories, sorted; the column's one-hot block has one more slot, last: "other"."""
    declared: bool = False
    """Set by the operator: never re-derived. A numeric column whose centre is not 0 or whose scale
    is not a power of two is declared whatever the flag says (the rule only makes those)."""

    @property
    def width(self) -> int:
        """How many model inputs the column takes: 1 for a number, categories + 1 ("other") for a category."""
        return 1 if self.kind is ColumnKind.NUMERIC else len(self.categories) + 1

    @property
    def other_slot(self) -> int:
        """The index, within the column's one-hot block, of the slot every category not kept shares."""
        return len(self.categories)

    def to_dict(self) -> dict[str, Any]:
        """The column as forget.toml's `[[schema.features]]` table writes it."""
        data: dict[str, Any] = {"name": self.name, "kind": str(self.kind)}  # str(): enum .value is slow in 3.11
        if self.kind is ColumnKind.NUMERIC:
            data.update(center=self.center, scale=self.scale)
        else:
            data["categories"] = list(self.categories)
        if self.declared:
            data["declared"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureColumn:
        """The column in a `[[schema.features]]` table.

        Raises `InputError` (exit 2) for a non-finite centre or scale, a zero scale, or a category listed
        twice; `KeyError` or `ValueError` for a missing name or an unknown kind (`Schema.from_dict` turns
        those into `InputError`).
        """
        kind = ColumnKind(data["kind"])
        declared = bool(data.get("declared", False))
        if kind is ColumnKind.NUMERIC:
            center = float(data.get("center", 0.0))
            scale = float(data.get("scale", 1.0))
            if not math.isfinite(scale) or scale == 0 or not math.isfinite(center):
                raise InputError(
                    f"schema column {data['name']!r} has centre {center} and scale {scale};"
                    " both must be finite and the scale non-zero"
                )
            declared = declared or center != 0.0 or _power_of_two_exponent(scale) is None
            return cls(str(data["name"]), kind, center=center, scale=scale, declared=declared)
        categories = tuple(str(c) for c in data["categories"])
        if len(set(categories)) != len(categories):
            raise InputError(f"schema column {data['name']!r} lists a category twice")
        return cls(str(data["name"]), kind, categories=tuple(sorted(categories)), declared=declared)


@dataclass(frozen=True)
class Schema:
    """The feature schema: which columns are the subject, label and record id, the kept label classes,
    and each feature column's encoding (the module's docstring gives the rule that derives it).
    """

    subject_column: str
    label_column: str
    labels: tuple[str, ...]
    features: tuple[FeatureColumn, ...]
    id_column: str | None = None
    input_shape: tuple[int, ...] = field(default=())

    @property
    def width(self) -> int:
        """How many model inputs a row encodes to: the sum of the feature columns' widths."""
        return sum(column.width for column in self.features)

    @property
    def shape(self) -> tuple[int, ...]:
        """One row's input shape for the model: `input_shape` when set (a CNN's), else `(width,)`."""
        return self.input_shape or (self.width,)

    @property
    def other_label(self) -> int | None:
        """The index of the class `(other)`, or None when every label has k subjects."""
        return self.labels.index(OTHER_LABEL) if OTHER_LABEL in self.labels else None

    def class_of(self, label: str) -> int | None:
        """A label's class index: a label the schema does not keep is `(other)` if it has one."""
        try:
            return self.labels.index(label)
        except ValueError:
            return self.other_label

    @cached_property
    def sha256(self) -> str:
        """sha256 of the schema's canonical JSON (RFC 8785): what the ledger records of a schema.

        Cached: a wide schema (600 columns) takes tens of milliseconds to serialise, and a run asks
        for the digest of the same schema several times.
        """
        from ledger.canonical import canonical_sha256

        return canonical_sha256(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The schema as forget.toml's `[schema]` table (and `forget schema`) writes it, rule included."""
        data: dict[str, Any] = {
            "rule": RULE,
            "subject_column": self.subject_column,
            "label_column": self.label_column,
            "labels": list(self.labels),
            "input_shape": list(self.shape),
            "features": [column.to_dict() for column in self.features],
        }
        if self.id_column is not None:
            data["id_column"] = self.id_column
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        """The schema in a `[schema]` table.

        Raises `InputError` (exit 2) for another rule, a missing or mistyped field, an `input_shape` that
        does not hold the features, a label class listed twice, or fewer than two classes.
        """
        rule = data.get("rule", RULE)
        if rule != RULE:
            raise InputError(f"the schema follows rule {rule!r}; this forget knows {RULE!r}")
        try:
            schema = cls(
                subject_column=str(data["subject_column"]),
                label_column=str(data["label_column"]),
                labels=tuple(str(label) for label in data["labels"]),
                features=tuple(FeatureColumn.from_dict(column) for column in data["features"]),
                id_column=data.get("id_column"),
                input_shape=tuple(int(d) for d in data.get("input_shape", ())),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"the schema is malformed: {error}") from error
        if math.prod(schema.shape) != schema.width:
            raise InputError(f"schema input_shape {list(schema.shape)} does not hold {schema.width} features")
        if len(set(schema.labels)) != len(schema.labels):
            raise InputError("the schema lists a label class twice")
        if len(schema.labels) < 2:
            raise InputError("the schema needs at least two label classes")
        return schema


# -- the values the rule and the exact encoding work on ---------------------------------------


def first_out_of_range(values: FloatArray) -> int | None:
    """The index of the first value beyond +-2^64 (or not finite), which no scale can hold exactly."""
    import numpy as np

    bad = ~(np.abs(values) <= MAX_MAGNITUDE)
    return int(np.argmax(bad)) if bad.any() else None


def canonical_numbers(values: FloatArray) -> FloatArray:
    """Each value as a float32 (exactly representable in float64), magnitudes below 2^-64 as 0.

    Callers refuse values beyond `MAX_MAGNITUDE` first (`first_out_of_range`).
    """
    import numpy as np

    canonical = np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)
    canonical[np.abs(canonical) < FLUSHED_BELOW] = 0.0
    return canonical


def nearest_power_exponent(magnitude: float) -> int:
    """e with 2^(e - 1/2) <= magnitude < 2^(e + 1/2), clamped to +-MAX_EXPONENT; 0 for 0.

    Decided on magnitude^2, which is exact in float64 for a float32 magnitude (24-bit mantissa).
    """
    if magnitude == 0:
        return 0
    _, exponent = math.frexp(magnitude * magnitude)  # magnitude^2 in [2^(E-1), 2^E)
    return max(-MAX_EXPONENT, min(MAX_EXPONENT, exponent // 2))


def scale_exponent(canonical: FloatArray) -> int:
    """The exponent of a numeric column's scale: nearest power of two to the 0.9-quantile of |v|."""
    import numpy as np

    count = len(canonical)
    if count == 0:
        return 0
    index = (QUANTILE[0] * (count - 1)) // QUANTILE[1]
    return nearest_power_exponent(float(np.partition(np.abs(canonical), index)[index]))


def encode_numbers(column: FeatureColumn, values: FloatArray) -> Float32Array:
    """The model's input for one numeric column (float32).

    Derived columns: the float32 value divided by 2^e, exactly (see `decode_numbers`); declared
    ones: (value - centre) / scale in float64, then rounded to float32.
    """
    import numpy as np

    if column.declared:
        return ((np.asarray(values, dtype=np.float64) - column.center) / column.scale).astype(np.float32)
    return (canonical_numbers(values) * (1.0 / column.scale)).astype(np.float32)


def decode_numbers(column: FeatureColumn, encoded: Float32Array) -> FloatArray:
    """The canonical values back from a derived column's encoding: exact, since 2^-e scaling is.

    Raises `ValueError` for a declared column, whose encoding the rule did not make.
    """
    import numpy as np

    if column.declared:
        raise ValueError(f"column {column.name!r} is declared: its encoding is not decoded")
    return np.asarray(encoded, dtype=np.float64) * column.scale


def record_content(features: Float32Array, class_index: int) -> bytes:
    """The bytes that key a record of a file without an id column: its encoding and its class."""
    import numpy as np

    return np.ascontiguousarray(features, dtype=np.float32).tobytes() + int(class_index).to_bytes(4, "little")


# -- the rule ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleCounts:
    """Everything the rule reads of the data, as counts: the rule is a function of these alone.

    Distinct-subject counts per value (erasing a subject takes exactly one from each value it
    held, since every record of the subject goes) and row counts per magnitude bucket (the
    0.9-quantile's bucket is found by walking them). forget.data.statistics keeps them in the
    data store, so an erasure re-derives the schema without reading the retained records.
    """

    labels: Mapping[str | None, int]
    """Distinct subjects per label; None for the rows already in `(other)`."""
    categories: Mapping[str, Mapping[str | None, int]]
    """Per derived categorical column: distinct subjects per value; None for "other"."""
    magnitudes: Mapping[str, Mapping[int, int]]
    """Per derived numeric column: rows per `magnitude_bucket` of the canonical values."""


ZERO_BUCKET = -MAX_EXPONENT - 1
"""The bucket of 0: below every other, since |v| orders the buckets (and 0's exponent is 0)."""


def magnitude_bucket(magnitude: float) -> int:
    """`nearest_power_exponent`, with 0 in a bucket of its own below the others: non-decreasing in
    the magnitude, so the bucket of the q-th smallest magnitude is where the counts reach q."""
    return ZERO_BUCKET if magnitude == 0 else nearest_power_exponent(magnitude)


def holder_counts(values: Sequence[str | None], subjects: Sequence[str]) -> dict[str | None, int]:
    """How many distinct subjects hold each value (None, already "other", counts as any value)."""
    counts: dict[str | None, int] = {}
    for value, _ in set(zip(values, subjects, strict=True)):
        counts[value] = counts.get(value, 0) + 1
    return counts


def kept_of_counts(counts: Mapping[str | None, int], min_subjects: int) -> tuple[str, ...]:
    """The values at least `min_subjects` distinct subjects hold, sorted; None (already "other") never counts."""
    return tuple(sorted(value for value, holders in counts.items() if value is not None and holders >= min_subjects))


def kept_values(values: Sequence[str | None], subjects: Sequence[str], min_subjects: int) -> tuple[str, ...]:
    """The values at least `min_subjects` distinct subjects hold, sorted; None (already "other") never counts."""
    return kept_of_counts(holder_counts(values, subjects), min_subjects)


def labels_of_counts(counts: Mapping[str | None, int], min_subjects: int) -> tuple[str, ...]:
    """The kept classes, sorted, then `(other)` if any row's label is not kept. In `counts`, None
    stands for the rows already in `(other)` (the callers map the label `(other)` to it).

    Raises `TooFewClassesError` (an `InputError`, exit 2) when fewer than two classes are held by k subjects.
    """
    kept = kept_of_counts(counts, min_subjects)
    known = set(kept)
    labels = (*kept, OTHER_LABEL) if any(v not in known and n > 0 for v, n in counts.items()) else kept
    if len(labels) < 2:
        raise TooFewClassesError(
            f"fewer than two label classes are held by at least {min_subjects} subjects each"
            f" ({len(kept)} such classes{', plus (other)' if len(labels) > len(kept) else ''}); a classifier"
            " needs two: add data, or lower min_subjects_per_category"
        )
    return labels


def derive_labels(values: Sequence[str | None], subjects: Sequence[str], min_subjects: int) -> tuple[str, ...]:
    """The kept classes, sorted, then `(other)` if any row's label is not kept (`labels_of_counts`)."""
    plain = [None if value == OTHER_LABEL else value for value in values]
    return labels_of_counts(holder_counts(plain, subjects), min_subjects)


def exponent_of_buckets(buckets: Mapping[int, int]) -> int:
    """The scale exponent from rows per magnitude bucket: `scale_exponent` without the values."""
    count = sum(buckets.values())
    if count == 0:
        return 0
    index = (QUANTILE[0] * (count - 1)) // QUANTILE[1]
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen > index:
            return 0 if bucket == ZERO_BUCKET else bucket
    raise AssertionError("the walk ends in the last bucket")  # pragma: no cover


def magnitude_counts(canonical: FloatArray) -> dict[int, int]:
    """Rows per `magnitude_bucket` of canonical values (`canonical_numbers`)."""
    import numpy as np

    buckets = magnitude_buckets(np.asarray(canonical, dtype=np.float64))
    found, counts = np.unique(buckets, return_counts=True)
    return {int(b): int(n) for b, n in zip(found.tolist(), counts.tolist(), strict=True)}


def magnitude_buckets(canonical: FloatArray) -> np.ndarray[Any, np.dtype[np.int64]]:
    """`magnitude_bucket` of each canonical value, vectorised (the same decision, on |v|^2, exact)."""
    import numpy as np

    magnitude = np.abs(np.asarray(canonical, dtype=np.float64))
    _, exponent = np.frexp(magnitude * magnitude)
    buckets: np.ndarray[Any, np.dtype[np.int64]] = np.clip(exponent.astype(np.int64) // 2, -MAX_EXPONENT, MAX_EXPONENT)
    buckets[magnitude == 0] = ZERO_BUCKET
    return buckets


@dataclass(frozen=True)
class ColumnValues:
    """What the rule reads of the data: per column its values, per row its subject and label."""

    subjects: Sequence[str]
    """The keyed subject id of each row (distinct subjects are counted, never rows)."""
    labels: Sequence[str | None]
    """Each row's label; None for a row already in `(other)`."""
    numbers: Mapping[str, FloatArray]
    """Each derived numeric column's canonical values (`canonical_numbers`)."""
    texts: Mapping[str, Sequence[str | None]]
    """Each derived categorical column's values; None for a row already in "other"."""

    def counts(self) -> RuleCounts:
        """What the rule reads of these values (`RuleCounts`)."""
        labels = [None if value == OTHER_LABEL else value for value in self.labels]
        return RuleCounts(
            labels=holder_counts(labels, self.subjects),
            categories={name: holder_counts(texts, self.subjects) for name, texts in self.texts.items()},
            magnitudes={name: magnitude_counts(values) for name, values in self.numbers.items()},
        )


def derive_schema(template: Schema, data: ColumnValues, min_subjects: int) -> Schema:
    """The schema the rule makes of `data`, keeping the template's columns, kinds and declared parts.

    One function for the first ingest (the template only names the columns) and for the check
    after an erasure (the template is the current schema), so both see the same rule.

    Raises `InputError` (exit 2) for `min_subjects` below 1, and `TooFewClassesError` when fewer than
    two label classes are kept.
    """
    return derive_from_counts(template, data.counts(), min_subjects)


def derive_from_counts(template: Schema, counts: RuleCounts, min_subjects: int) -> Schema:
    """The schema the rule makes of data with these counts (`derive_schema` reads them of values).

    Raises what `derive_schema` raises.
    """
    if min_subjects < 1:
        raise InputError(f"min_subjects_per_category must be at least 1 (got {min_subjects})")
    features = []
    for column in template.features:
        if column.declared:
            features.append(column)
        elif column.kind is ColumnKind.NUMERIC:
            exponent = exponent_of_buckets(counts.magnitudes.get(column.name, {}))
            features.append(FeatureColumn(column.name, column.kind, scale=math.ldexp(1.0, exponent)))
        else:
            kept = kept_of_counts(counts.categories.get(column.name, {}), min_subjects)
            features.append(FeatureColumn(column.name, column.kind, categories=kept))
    flat = template.input_shape in ((), (template.width,))
    schema = replace(
        template,
        labels=labels_of_counts(counts.labels, min_subjects),
        features=tuple(features),
        input_shape=() if flat else template.input_shape,
    )
    return Schema.from_dict(schema.to_dict())  # the validation of a schema read from a file


def schema_changes(old: Schema, new: Schema) -> list[str]:
    """What differs, by column and count, never by value: this goes into the append-only ledger."""
    changes: list[str] = []
    if old.labels != new.labels:
        removed, added = len(set(old.labels) - set(new.labels)), len(set(new.labels) - set(old.labels))
        changes.append(f"labels: {removed} removed, {added} added")
    new_columns = {column.name: column for column in new.features}
    for column in old.features:
        after = new_columns.get(column.name)
        if after is None or after == column:
            continue
        if column.kind is ColumnKind.NUMERIC:
            changes.append(f"column {column.name!r}: scale {_scale_text(column.scale)} -> {_scale_text(after.scale)}")
        else:
            removed = len(set(column.categories) - set(after.categories))
            added = len(set(after.categories) - set(column.categories))
            changes.append(f"column {column.name!r}: categories {removed} removed, {added} added")
    if old.shape != new.shape:
        changes.append(f"input_shape: {list(old.shape)} -> {list(new.shape)}")
    return changes


def _scale_text(scale: float) -> str:
    """A derived scale is a power of two: say which one exactly (the ledger holds no fractions)."""
    mantissa, exponent = math.frexp(scale)
    return f"2^{exponent - 1}" if mantissa == 0.5 else repr(scale)
