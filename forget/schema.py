"""The feature encoding: fixed by a schema in `forget.toml`, inferred once, never refitted silently.

Every statistic in the schema (a column's centre and scale, its categories, the label classes)
is shared by all shards. Refitting it on new data would let every record influence every shard,
so an erasure would no longer be exact. The schema is therefore configuration: inferred on the
first ingest for a person to review, then used as written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from forget.errors import InputError


class ColumnKind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class FeatureColumn:
    name: str
    kind: ColumnKind
    center: float = 0.0
    scale: float = 1.0
    categories: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        return 1 if self.kind is ColumnKind.NUMERIC else len(self.categories)

    def to_dict(self) -> dict[str, Any]:
        if self.kind is ColumnKind.NUMERIC:
            return {"name": self.name, "kind": self.kind.value, "center": self.center, "scale": self.scale}
        return {"name": self.name, "kind": self.kind.value, "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureColumn:
        kind = ColumnKind(data["kind"])
        if kind is ColumnKind.NUMERIC:
            scale = float(data.get("scale", 1.0))
            if not math.isfinite(scale) or scale == 0:
                raise InputError(f"schema column {data['name']!r} has scale {scale}; it must be finite and non-zero")
            return cls(data["name"], kind, center=float(data.get("center", 0.0)), scale=scale)
        return cls(data["name"], kind, categories=tuple(str(c) for c in data["categories"]))


@dataclass(frozen=True)
class Schema:
    subject_column: str
    label_column: str
    labels: tuple[str, ...]
    features: tuple[FeatureColumn, ...]
    id_column: str | None = None
    input_shape: tuple[int, ...] = field(default=())

    @property
    def width(self) -> int:
        return sum(column.width for column in self.features)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.input_shape or (self.width,)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
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
        if len(schema.labels) < 2:
            raise InputError("the schema needs at least two label classes")
        return schema


def _significant(value: float, digits: int = 4) -> float:
    """Rounded, so the stored statistic is a reviewable setting rather than a fingerprint of the data."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def infer_numeric(name: str, mean: float, std: float) -> FeatureColumn:
    return FeatureColumn(
        name,
        ColumnKind.NUMERIC,
        center=_significant(mean),
        scale=_significant(std) if std > 0 else 1.0,
    )


def infer_categorical(name: str, values: list[str]) -> FeatureColumn:
    return FeatureColumn(name, ColumnKind.CATEGORICAL, categories=tuple(sorted(set(values))))
