"""Ingestion: read a CSV or Parquet file (or a table), pseudonymise, encode by the schema, place, store.

All checks run before anything is written; the rows then go in one transaction. A file that
fails any check leaves the workspace exactly as it was. Wherever a file is read, a pyarrow Table
or a pandas DataFrame is taken too (`TableSource`); messages then name "the table" where they
would name the file.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import itertools
import os
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from forget.data.schema import (
    ColumnKind,
    ColumnValues,
    FeatureColumn,
    Schema,
    canonical_numbers,
    derive_schema,
    encode_numbers,
    first_out_of_range,
)
from forget.data.statistics import record_ingest
from forget.errors import InputError
from forget.store.checkpoints import purge_unreferenced
from forget.store.interface import StoredRecord
from forget.subjects.pseudonym import InvalidIdError, RecordKey
from forget.training.lineage import INGESTED, sign_head, slice_manifests
from forget.workspace.config import WorkspaceConfig
from forget.workspace.core import Workspace
from sisa.placement import place_all

DataFrame: TypeAlias = Any
"""A pandas DataFrame. pandas is optional: it is never imported here, only recognised when given."""
TableSource: TypeAlias = "str | os.PathLike[str] | pa.Table | DataFrame"
"""Rows to read: a CSV/TSV/Parquet file's path (str or Path), a pyarrow Table or a pandas DataFrame."""
TABLE = "the table"
"""What messages call rows handed in as a table, where they would name a file."""


@dataclass(frozen=True)
class ColumnChoice:
    """Which columns of the first file are the subject id, the label and the record id (`ingest --...-column`).

    Later ingests take them from the workspace's schema; a name given then must match it.
    `input_shape` (`--input-shape 1,8,8`) reshapes the features for a convolutional model.
    """

    subject: str | None = None
    label: str | None = None
    record_id: str | None = None
    input_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class IngestResult:
    """What an ingest stored: rows and distinct subjects, the shards whose checkpoints it rewound,
    and whether it derived the workspace's schema (the first ingest)."""

    rows: int
    subjects: int
    shards_touched: tuple[int, ...]
    schema_inferred: bool


def open_source(source: TableSource, string_columns: list[str]) -> tuple[pa.Table, Path | str]:
    """The rows of `source`, and what messages call it: the file's path, or `TABLE`.

    A file is read by `read_table` (`string_columns` are read as text, so an id `007` keeps its
    zeros); a table is taken by `table_of`. Raises `InputError` (exit 2) when neither can read it.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        return read_table(path, string_columns), path
    return table_of(source), TABLE


def table_of(source: pa.Table | DataFrame) -> pa.Table:
    """A pyarrow Table or a pandas DataFrame as a pyarrow Table (the index is dropped), with
    dictionary (categorical) columns decoded to their values.

    Raises `InputError` (exit 2) for any other object, a DataFrame whose column mixes types that
    Arrow cannot hold in one column, duplicate column names, or no rows.
    """
    if isinstance(source, pa.Table):
        table = source
    else:
        pandas = sys.modules.get("pandas")  # whoever holds a DataFrame has imported pandas already
        if pandas is None or not isinstance(source, pandas.DataFrame):
            raise InputError(
                f"cannot read rows from a {type(source).__name__}: give a CSV or Parquet file's path,"
                " a pyarrow Table or a pandas DataFrame"
            )
        try:
            table = pa.Table.from_pandas(source, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            mixed = re.search(r"Conversion failed for column (.+?) with type (\w+)", str(error))
            where = f"its column {mixed.group(1)!r} ({mixed.group(2)})" if mixed else "a column"
            raise InputError(
                f"{TABLE} cannot be converted to Arrow: {where} holds values of more than one type"
                " (the values are not shown)"
            ) from None
    names = table.column_names
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise InputError(f"{TABLE} has more than one column named {repeated!r}")
    for index, column in enumerate(table.schema):
        if pa.types.is_dictionary(column.type):
            table = table.set_column(index, column.name, table.column(index).cast(column.type.value_type))
    if table.num_rows == 0:
        raise InputError(f"{TABLE} has no rows")
    return table.replace_schema_metadata(None)


def source_sha256(source: TableSource, table: pa.Table) -> tuple[str, str]:
    """The ledger's record of what was read: ("file_sha256", the file's sha256) for a file, or
    ("table_sha256", the sha256 of `table` as one Arrow IPC stream) for a table handed in."""
    if isinstance(source, str | os.PathLike):
        return "file_sha256", hashlib.sha256(Path(source).read_bytes()).hexdigest()
    sink = pa.BufferOutputStream()
    combined = table.combine_chunks()
    with pa.ipc.new_stream(sink, combined.schema) as writer:
        writer.write_table(combined)
    return "table_sha256", hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def read_table(path: Path, string_columns: list[str]) -> pa.Table:
    """A CSV, TSV or Parquet file's rows; `string_columns` are read as text from a CSV or TSV.

    Raises `InputError` (exit 2) for a missing file, an unknown suffix, a file Arrow cannot parse
    (the message never quotes the file's cells), an empty file, or a header without rows.
    """
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
        raise InputError(f"{path} cannot be read: {_without_cells(message, path)}") from None
    if table.num_rows == 0:
        raise InputError(f"{path} has a header but no rows")
    return table


def _strings(table: pa.Table, column: str, path: Path | str, what: str) -> list[str]:
    array = table.column(column)
    if array.null_count:
        row = int(pc.index(pc.is_null(array), True).as_py()) + 1
        raise InputError(f"{path}: row {row} has an empty {what} ({column!r})")
    values: list[str] = array.cast(pa.string()).to_pylist()  # no nulls (checked above): every value is a str
    if not all(map(str.strip, values)):  # the scan in C; the loop below only finds the row
        for row, value in enumerate(values, start=1):
            if not value.strip():
                raise InputError(f"{path}: row {row} has an empty {what} ({column!r})")
    return values


K = TypeVar("K", bound=str)


def _without_cells(message: str, path: Path) -> str:
    """Arrow's parse errors quote the offending row (`Expected 5 columns, got 6: alice@example.org,...`):
    keep the diagnosis, drop the cells, since stderr ends up in cron mail and CI logs."""
    counts = re.search(r"Expected (\d+) columns, got (\d+)", message)
    if counts:
        row = _first_ragged_row(path, int(counts.group(1)))
        where = f"row {row}" if row is not None else "a row"
        return f"{where} has {counts.group(2)} columns, the header {counts.group(1)} (the row's content is not shown)"
    parts = message.split(": ")
    kept = list(itertools.takewhile(lambda part: not any(mark in part for mark in "'\"@,"), parts))
    if len(kept) == len(parts):
        return message
    return ": ".join(kept or ["parse error"]) + " (details withheld: they may quote personal data)"


def _first_ragged_row(path: Path, width: int) -> int | None:
    """The first data row (1-based, after the header) whose field count differs from the header's."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            for number, fields in enumerate(csv.reader(handle, delimiter=delimiter)):
                if number > 0 and len(fields) != width:
                    return number
    except (OSError, csv.Error):
        return None
    return None


def _feature_at(schema: Schema, position: int) -> str:
    for column in schema.features:
        if position < column.width:
            return column.name
        position -= column.width
    return "?"


def hash_ids(
    table: pa.Table, column: str, path: Path | str, what: str, hash_id: Callable[[str | int | float], K]
) -> list[K]:
    """Each cell through the workspace's one canonical form (forget.subjects.identity), then hashed.

    Typed columns keep their type so that an integral float (a Parquet id of `1.0`) becomes `1`.
    `path` names the rows in messages. Raises `InputError` (exit 2) for an empty cell, a column
    that is neither text nor integers, or an id the canonical form refuses.
    """
    array = table.column(column)
    if array.null_count:
        row = int(pc.index(pc.is_null(array), True).as_py()) + 1
        raise InputError(f"{path}: row {row} has an empty {what} ({column!r})")
    if not (_is_numeric_type(array.type) or pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        raise InputError(f"{path}: the {what} column {column!r} has type {array.type}; ids are text or integers")
    keys = []
    # A subject's rows repeat its id: each distinct id is canonicalised and hashed once. Only str
    # and int values are remembered: equal floats (0.0 and -0.0) need not be the same id.
    known: dict[str | int, K] = {}
    for row, value in enumerate(array.to_pylist(), start=1):
        key = known.get(value) if type(value) is str or type(value) is int else None
        if key is None:
            try:
                key = hash_id(value)
            except InvalidIdError as error:
                raise InputError(f"{path}: row {row}, column {column!r}: {error}") from None
            if type(value) is str or type(value) is int:
                known[value] = key
        keys.append(key)
    return keys


def _numeric(table: pa.Table, column: FeatureColumn | str, path: Path | str) -> np.ndarray[Any, np.dtype[np.float64]]:
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


def infer_schema(
    table: pa.Table, choice: ColumnChoice, path: Path | str, subject_keys: list[str], min_subjects: int
) -> Schema:
    """The first ingest's schema, by the rule of forget.data.schema (k = `min_subjects` distinct subjects).

    `subject_keys` are the rows' keyed subject ids: subjects are counted in their canonical form,
    so one person's padded and unpadded ids count once. Raises `InputError` (exit 2) when there is
    no feature column, a value cannot be encoded, or fewer than two label classes are held by k
    subjects (`TooFewClassesError`).
    """
    assert choice.subject is not None and choice.label is not None
    reserved = {choice.subject, choice.label, choice.record_id}
    columns: list[FeatureColumn] = []
    numbers = {}
    texts: dict[str, list[str | None]] = {}
    for name in table.column_names:
        if name in reserved:
            continue
        if _is_numeric_type(table.column(name).type):
            column = FeatureColumn(name, ColumnKind.NUMERIC)
            numbers[name] = canonical_numbers(_numbers_in_range(table, column, path))
        else:
            column = FeatureColumn(name, ColumnKind.CATEGORICAL)
            texts[name] = list(_strings(table, name, path, "value"))
        columns.append(column)
    if not columns:
        raise InputError(f"{path} has no feature columns besides the subject, label and id columns")
    template = Schema(
        subject_column=choice.subject,
        label_column=choice.label,
        labels=(),
        features=tuple(columns),
        id_column=choice.record_id,
        input_shape=choice.input_shape or (),
    )
    data = ColumnValues(
        subjects=subject_keys,
        labels=list(_strings(table, choice.label, path, "label")),
        numbers=numbers,
        texts=texts,
    )
    try:
        return derive_schema(template, data, min_subjects)
    except InputError as error:
        raise InputError(f"{path}: the label column {choice.label!r}: {error}") from None


def _numbers_in_range(
    table: pa.Table, column: FeatureColumn, path: Path | str
) -> np.ndarray[Any, np.dtype[np.float64]]:
    values = _numeric(table, column, path)
    beyond = first_out_of_range(values)
    if beyond is not None:
        raise InputError(
            f"{path}: row {beyond + 1}, column {column.name!r}: the value is beyond +-2^64, which forget does not"
            " encode (declare the column's centre and scale in the schema to use other units)"
        )
    return values


def encode(table: pa.Table, schema: Schema, path: Path | str) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The rows' model inputs (float32); a category the schema does not keep goes to "other".

    Raises `InputError` (exit 2) for an empty, non-numeric, non-finite or out-of-range value in a
    feature column (the message gives the row and column, never the value).
    """
    blocks: list[np.ndarray[Any, Any]] = []
    for column in schema.features:
        if column.kind is ColumnKind.NUMERIC:
            values = _numeric(table, column, path) if column.declared else _numbers_in_range(table, column, path)
            blocks.append(encode_numbers(column, values)[:, None])
        else:
            index = {category: i for i, category in enumerate(column.categories)}
            values_ = _strings(table, column.name, path, "value")
            onehot = np.zeros((len(values_), column.width), dtype=np.float32)
            onehot[np.arange(len(values_)), [index.get(v, column.other_slot) for v in values_]] = 1.0
            blocks.append(onehot)
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)


def _row_bytes(features: np.ndarray[Any, np.dtype[np.float32]]) -> list[bytes]:
    """Each row's float32 bytes, as `features[i].tobytes()` gives them, without a view per row."""
    width = features.shape[1] * features.itemsize
    data = np.ascontiguousarray(features, dtype=np.float32).tobytes()
    return [data[start : start + width] for start in range(0, len(data), width)] if width else [b""] * len(features)


def record_contents(row_bytes: list[bytes], labels: list[int]) -> list[bytes]:
    """`forget.data.schema.record_content` of every row, from the rows' bytes (a test holds the two equal)."""
    return [data + index.to_bytes(4, "little") for data, index in zip(row_bytes, labels, strict=True)]


def encode_labels(table: pa.Table, schema: Schema, path: Path | str) -> list[int]:
    """Each row's class index; a label the schema does not keep is `(other)` when the schema has it.

    Raises `InputError` (exit 2) for an empty label or one the schema has no class for.
    """
    labels = _strings(table, schema.label_column, path, "label")
    found = {label: schema.class_of(label) for label in set(labels)}  # a few distinct labels, many rows
    class_of = {label: index for label, index in found.items() if index is not None}
    if len(class_of) < len(found):
        row = next(row for row, label in enumerate(labels, start=1) if label not in class_of)
        raise InputError(
            f"{path}: row {row} has a label in column {schema.label_column!r} that the schema does not know"
            f" ({len(schema.labels)} classes: `forget schema` lists them)"
        )
    return [class_of[label] for label in labels]


def load_schema_file(path: str | os.PathLike[str]) -> Schema:
    """The `[schema]` table of a TOML file (`forget schema` output, or a workspace's forget.toml).

    Raises `InputError` (exit 2) when the file cannot be read, is not TOML, has no `[schema]`, or
    holds a schema that is not well formed.
    """
    path = Path(path)
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
    path: TableSource,
    choice: ColumnChoice | None = None,
    schema_file: str | os.PathLike[str] | None = None,
    allow_erased: bool = False,
) -> IngestResult:
    """Read, check, pseudonymise, encode, place and store the rows of a file or table (see the module's docstring).

    `path` is a CSV/TSV/Parquet file (str or Path), a pyarrow Table or a pandas DataFrame. The
    first ingest needs `choice` (or `schema_file`) to name the subject and label columns; later
    ones take them from the workspace's schema. A subject erased on request is refused unless
    `allow_erased` (data the subject gave anew). The ledger records the file's sha256, or for a
    table the sha256 of its Arrow IPC stream (`table_sha256`).

    Raises `InputError` (exit 2) for rows that cannot be used as given (nothing is written then),
    `WorkspaceError` (exit 3) for a workspace that cannot take them (its keys, its database), and
    lets ledger errors through (`forget.errors.translated()` maps them).

    Python's cyclic garbage collector is off meanwhile: the ingest builds a few objects per row
    (keys, bytes, records), none in a reference cycle, and each full collection would walk all of
    them again; at 10^6 rows that was 13% of the ingest's CPU time. It is back on at the end.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _ingest_file(workspace, path, choice or ColumnChoice(), schema_file, allow_erased)
    finally:
        if collecting:
            gc.enable()


def _ingest_file(
    workspace: Workspace,
    source: TableSource,
    choice: ColumnChoice,
    schema_file: str | os.PathLike[str] | None,
    allow_erased: bool,
) -> IngestResult:
    config = workspace.config
    given = load_schema_file(schema_file) if schema_file is not None else None
    schema, choice = _resolve_schema(config, choice, given)
    assert choice.subject is not None and choice.label is not None
    string_columns = [c for c in (choice.subject, choice.label, choice.record_id) if c]
    table, path = open_source(source, string_columns)
    needed = [*string_columns, *(f.name for f in schema.features)] if schema else string_columns
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        raise InputError(f"{path} has no column {missing[0]!r} (columns: {', '.join(table.column_names)})")
    pseudo = workspace.pseudonymiser
    subject_keys = hash_ids(table, choice.subject, path, "subject id", pseudo.subject)
    inferred = schema is None
    if schema is None:
        schema = infer_schema(table, choice, path, list(subject_keys), config.min_subjects)
    new_schema = config.schema is None

    features = encode(table, schema, path)
    finite = np.isfinite(features)
    if not finite.all():
        # After the cast to the training dtype: a cell of 1e300 is finite in float64 and inf in float32.
        row, position = (int(i) for i in np.argwhere(~finite)[0])
        raise InputError(
            f"{path}: row {row + 1}, column {_feature_at(schema, position)!r}: the value is too large to train on"
            " (it overflows 32-bit floats once scaled)"
        )
    labels = encode_labels(table, schema, path)
    row_bytes = _row_bytes(features)
    record_keys: list[RecordKey]
    if schema.id_column is not None:
        record_keys = hash_ids(table, schema.id_column, path, "record id", pseudo.record)
    else:
        # A row's key counts the earlier rows of its subject with the same content; the count is 0
        # for every row unless a subject repeats a row, which one set of the pairs tells.
        pairs = list(zip(subject_keys, record_contents(row_bytes, labels), strict=True))
        if len(set(pairs)) == len(pairs):
            record_keys = [pseudo.record_from_content(subject_key, content, 0) for subject_key, content in pairs]
        else:
            seen: Counter[tuple[str, bytes]] = Counter()
            record_keys = []
            for pair in pairs:
                record_keys.append(pseudo.record_from_content(*pair, seen[pair]))
                seen[pair] += 1
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

    shard_of, slice_of = place_all(
        record_keys, subject_keys, seed=config.seed, shards=config.shards, slices=config.slices, mode=config.placement
    )
    rows = list(map(StoredRecord, record_keys, subject_keys, shard_of, slice_of, labels, row_bytes))
    digest_name, digest = source_sha256(source, table)
    earliest: dict[int, int] = {}
    for shard, slice_ in zip(shard_of, slice_of, strict=True):
        if slice_ < earliest.get(shard, slice_ + 1):
            earliest[shard] = slice_

    # The records these subjects held before, for the schema rule's counts (forget.data.statistics).
    earlier = (
        []
        if new_schema
        else [k for keys in store.records_of_subjects(sorted(set(subject_keys))).values() for k in keys]
    )
    stale: list[str] = []
    try:
        with store.transaction() as tx:
            record_ingest(
                store,
                tx,
                schema,
                (subject_keys, np.asarray(labels, dtype=np.int64), features),
                first=new_schema,
                earlier=earlier,
            )
            store.insert_records(tx, rows)
            workspace.ledger.append(
                tx,
                [
                    (
                        INGESTED,
                        {
                            digest_name: digest,
                            "records": len(rows),
                            "subjects": len(set(subject_keys)),
                            "schema_sha256": schema.sha256,
                        },
                    ),
                    *slice_manifests(workspace, tx, ((r.shard, r.slice) for r in rows)),
                ],
            )
            # Models trained before these records arrived no longer match the data: rewind them.
            for shard, first in earliest.items():
                stale.extend(store.drop_checkpoints(tx, shard, first))
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
