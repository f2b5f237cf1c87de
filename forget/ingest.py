"""Ingestion: read a CSV or Parquet file, pseudonymise, encode by the schema, place, store.

All checks run before anything is written; the rows then go in one transaction. A file that
fails any check leaves the workspace exactly as it was.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from forget.config import WorkspaceConfig
from forget.datastore import StoredRecord
from forget.errors import InputError
from forget.lineage import INGESTED, sign_head, slice_manifests
from forget.pseudonym import RecordKey
from forget.schema import ColumnKind, FeatureColumn, Schema, infer_categorical, infer_numeric
from forget.workspace import Workspace, purge_unreferenced
from ledger.canonical import canonical_sha256
from sisa.placement import place


@dataclass(frozen=True)
class ColumnChoice:
    subject: str | None = None
    label: str | None = None
    record_id: str | None = None
    input_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class IngestResult:
    rows: int
    subjects: int
    shards_touched: tuple[int, ...]
    schema_inferred: bool


def read_table(path: Path, string_columns: list[str]) -> pa.Table:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file")
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            options = pacsv.ConvertOptions(
                column_types={name: pa.string() for name in string_columns}, strings_can_be_null=False
            )
            parse = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            table = pacsv.read_csv(path, parse_options=parse, convert_options=options)
        elif suffix in (".parquet", ".pq"):
            table = pq.read_table(path)
        else:
            raise InputError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv or .parquet")
    except pa.ArrowInvalid as error:
        message = str(error).splitlines()[0]
        if "Empty CSV file" in message:
            raise InputError(f"{path} is empty") from error
        raise InputError(f"{path} cannot be read: {message}") from error
    if table.num_rows == 0:
        raise InputError(f"{path} has a header but no rows")
    return table


def _strings(table: pa.Table, column: str, path: Path, what: str) -> list[str]:
    array = table.column(column)
    if array.null_count:
        row = int(pc.index(pc.is_null(array), True).as_py()) + 1
        raise InputError(f"{path}: row {row} has an empty {what} ({column!r})")
    values = [str(v) for v in array.cast(pa.string()).to_pylist()]
    for row, value in enumerate(values, start=1):
        if not value.strip():
            raise InputError(f"{path}: row {row} has an empty {what} ({column!r})")
    return values


def _numeric(table: pa.Table, column: FeatureColumn | str, path: Path) -> np.ndarray[Any, np.dtype[np.float64]]:
    name = column if isinstance(column, str) else column.name
    array = table.column(name)
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type):
        if array.null_count:
            row = int(pc.index(pc.is_null(array), True).as_py()) + 1
            raise InputError(f"{path}: row {row} has no value in numeric column {name!r}")
        values = np.asarray(array.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    else:
        out = []
        for row, value in enumerate(array.cast(pa.string()).to_pylist(), start=1):
            try:
                out.append(float(value))
            except (TypeError, ValueError):
                raise InputError(
                    f"{path}: column {name!r} is numeric, but row {row} holds a non-numeric value"
                ) from None
        values = np.asarray(out, dtype=np.float64)
    if not np.isfinite(values).all():
        row = int(np.argmin(np.isfinite(values))) + 1
        raise InputError(f"{path}: row {row} has a non-finite value in numeric column {name!r}")
    return values


def _is_numeric_type(type_: pa.DataType) -> bool:
    return bool(pa.types.is_integer(type_) or pa.types.is_floating(type_))


def infer_schema(table: pa.Table, choice: ColumnChoice, path: Path) -> Schema:
    assert choice.subject is not None and choice.label is not None
    reserved = {choice.subject, choice.label, choice.record_id}
    features: list[FeatureColumn] = []
    for name in table.column_names:
        if name in reserved:
            continue
        if _is_numeric_type(table.column(name).type):
            values = _numeric(table, name, path)
            features.append(infer_numeric(name, float(np.mean(values)), float(np.std(values))))
        else:
            features.append(infer_categorical(name, _strings(table, name, path, "value")))
    if not features:
        raise InputError(f"{path} has no feature columns besides the subject, label and id columns")
    labels = tuple(sorted(set(_strings(table, choice.label, path, "label"))))
    if len(labels) < 2:
        raise InputError(f"{path}: the label column {choice.label!r} has only one class; a classifier needs two")
    schema = Schema(
        subject_column=choice.subject,
        label_column=choice.label,
        labels=labels,
        features=tuple(features),
        id_column=choice.record_id,
        input_shape=choice.input_shape or (),
    )
    return Schema.from_dict(schema.to_dict())  # the same validation as a schema read from a file


def encode(table: pa.Table, schema: Schema, path: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    blocks: list[np.ndarray[Any, Any]] = []
    for column in schema.features:
        if column.kind is ColumnKind.NUMERIC:
            blocks.append(((_numeric(table, column, path) - column.center) / column.scale)[:, None])
        else:
            index = {category: i for i, category in enumerate(column.categories)}
            values = _strings(table, column.name, path, "value")
            onehot = np.zeros((len(values), len(index)), dtype=np.float64)
            for row, value in enumerate(values):
                position = index.get(value)
                if position is None:
                    raise InputError(
                        f"{path}: row {row + 1} has category {value!r} in column {column.name!r},"
                        " which the schema does not know"
                    )
                onehot[row, position] = 1.0
            blocks.append(onehot)
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)


def load_schema_file(path: Path) -> Schema:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise InputError(f"cannot read schema file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"schema file {path} is not valid TOML: {error}") from error
    if "schema" not in data:
        raise InputError(f"{path} has no [schema] table")
    return Schema.from_dict(data["schema"])


def _resolve_schema(
    config: WorkspaceConfig, choice: ColumnChoice, given: Schema | None
) -> tuple[Schema | None, ColumnChoice]:
    schema = config.schema
    if schema is not None and given is not None and given != schema:
        raise InputError("the workspace already has a schema, and --schema differs from it")
    schema = schema or given
    if schema is None:
        if choice.subject is None or choice.label is None:
            raise InputError("the first ingest needs --subject-column and --label-column (or --schema FILE)")
        return None, choice
    for flag, given_name, expected in (
        ("--subject-column", choice.subject, schema.subject_column),
        ("--label-column", choice.label, schema.label_column),
        ("--id-column", choice.record_id, schema.id_column),
    ):
        if given_name is not None and given_name != expected:
            raise InputError(f"{flag} {given_name!r} differs from the schema's {expected!r}")
    if choice.input_shape is not None and choice.input_shape != schema.shape:
        raise InputError(f"--input-shape {choice.input_shape} differs from the schema's {schema.shape}")
    return schema, ColumnChoice(schema.subject_column, schema.label_column, schema.id_column, schema.input_shape)


def ingest_file(
    workspace: Workspace,
    path: Path,
    choice: ColumnChoice,
    schema_file: Path | None = None,
    allow_erased: bool = False,
) -> IngestResult:
    config = workspace.config
    schema, choice = _resolve_schema(config, choice, load_schema_file(schema_file) if schema_file else None)
    assert choice.subject is not None and choice.label is not None
    string_columns = [c for c in (choice.subject, choice.label, choice.record_id) if c]
    table = read_table(path, string_columns)
    needed = [*string_columns, *(f.name for f in schema.features)] if schema else string_columns
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        raise InputError(f"{path} has no column {missing[0]!r} (columns: {', '.join(table.column_names)})")
    inferred = schema is None
    if schema is None:
        schema = infer_schema(table, choice, path)
    new_schema = config.schema is None

    features = encode(table, schema, path)
    label_index = {label: i for i, label in enumerate(schema.labels)}
    labels = []
    for row, label in enumerate(_strings(table, schema.label_column, path, "label"), start=1):
        if label not in label_index:
            known = ", ".join(schema.labels)
            raise InputError(f"{path}: row {row} has label {label!r}, which the schema does not know ({known})")
        labels.append(label_index[label])
    subjects = _strings(table, schema.subject_column, path, "subject id")
    pseudo = workspace.pseudonymiser
    subject_keys = [pseudo.subject(s) for s in subjects]
    record_keys: list[RecordKey]
    if schema.id_column is not None:
        record_keys = [pseudo.record(r) for r in _strings(table, schema.id_column, path, "record id")]
    else:
        seen: Counter[tuple[str, bytes]] = Counter()
        record_keys = []
        for subject, row_features, class_index in zip(subjects, features, labels, strict=True):
            content = row_features.tobytes() + class_index.to_bytes(4, "little")
            record_keys.append(pseudo.record_from_content(subject, content, seen[(subject, content)]))
            seen[(subject, content)] += 1
    duplicates = [key for key, count in Counter(record_keys).items() if count > 1]
    if duplicates:
        row = record_keys.index(duplicates[0]) + 1
        raise InputError(f"{path}: row {row} repeats a record id that appears earlier in the file")
    store = workspace.datastore
    if not allow_erased:
        erased = store.erased_subjects(sorted(set(subject_keys)))
        if erased:
            row = next(i for i, key in enumerate(subject_keys, start=1) if key in erased)
            raise InputError(
                f"{path}: row {row} belongs to a subject whose data was erased on request; re-ingesting old data"
                " would undo the erasure (pass --allow-erased only for data the subject gave anew)"
            )
    already = store.existing_keys(record_keys)
    if already:
        row = next(i for i, key in enumerate(record_keys, start=1) if key in already)
        raise InputError(f"{path}: {len(already)} records are already in the workspace (the first at row {row})")

    rows = []
    for i, (record_key, subject_key) in enumerate(zip(record_keys, subject_keys, strict=True)):
        where = place(
            record_key,
            subject_key,
            seed=config.seed,
            shards=config.shards,
            slices=config.slices,
            mode=config.placement,
        )
        rows.append(StoredRecord(record_key, subject_key, where.shard, where.slice, labels[i], features[i].tobytes()))
    earliest: dict[int, int] = {}
    for row_ in rows:
        earliest[row_.shard] = min(earliest.get(row_.shard, row_.slice), row_.slice)

    stale: list[str] = []
    try:
        with store.engine.begin() as connection:
            store.insert_records(connection, rows)
            workspace.ledger.append(
                connection,
                [
                    (
                        INGESTED,
                        {
                            "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                            "records": len(rows),
                            "subjects": len(set(subject_keys)),
                            "schema_sha256": canonical_sha256(schema.to_dict()),
                        },
                    ),
                    *slice_manifests(workspace, connection, ((r.shard, r.slice) for r in rows)),
                ],
            )
            # Models trained before these records arrived no longer match the data: rewind them.
            for shard, first in earliest.items():
                stale.extend(store.drop_checkpoints(connection, shard, first))
            if new_schema:
                workspace.save_config(config.with_schema(schema))
    except BaseException:
        if new_schema and workspace.config is not config:
            workspace.save_config(config)  # the commit failed: the schema must not outlive the rows
        raise
    purge_unreferenced(workspace, stale)
    sign_head(workspace)
    return IngestResult(
        rows=len(rows),
        subjects=len(set(subject_keys)),
        shards_touched=tuple(sorted(earliest)),
        schema_inferred=inferred,
    )
