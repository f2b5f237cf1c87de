"""The schema rule's counts, kept in the data store so that an erasure need not read every record.

The rule of forget.data.schema is a function of a few counts (`RuleCounts`): distinct subjects per
category and label class, rows per magnitude bucket of each numeric column. The data store keeps
them per slot of the current encoding (`StatKey`: part, column, bucket) and every change of the
records changes them in the same transaction:

- an ingest adds the counts of its subjects' records after it, less those of the same subjects'
  records before it (distinct-subject counts are additive over disjoint sets of subjects, so the
  subjects a change touches are all that need reading);
- an erasure does the same for the erased subjects (all of whose records go);
- a schema change re-encodes every record and counts them all again.

`rederive_after_erasure` then derives the schema from the counts (a few hundred rows) instead of
decoding every retained record: at 10^6 records that is milliseconds instead of seconds. The
counts are a cache of the records, never evidence: `forget ledger verify` counts the records
again and refuses (exit 1) when they disagree, a count that would go negative drops them all, and
a workspace without them (older than revision 0006, or dropped) counts the records at the next use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from forget.data.schema import ColumnKind, RuleCounts, Schema, magnitude_buckets
from forget.errors import VerificationFailedError, WorkspaceError

if TYPE_CHECKING:
    from forget.store.interface import Store, StoredRecord, Transaction

StatKey: TypeAlias = tuple[str, str, int]
"""(part, column, bucket): part is one of the five below; bucket a class index, a one-hot slot, a
magnitude bucket (forget.data.schema.magnitude_bucket), or 0 for the record count and for the
row naming (by sha256) the schema whose slots the counts are by."""
LABEL = "label"
CATEGORY = "category"
MAGNITUDE = "magnitude"
RECORDS = "records"
SCHEMA = "schema"
RECORDS_KEY: StatKey = (RECORDS, "", 0)
"""Always present once the counts are kept (0 for an empty store): its absence means "not counted"."""


class StatisticsMismatchError(VerificationFailedError):
    """The kept counts are not those of the stored records (`forget ledger verify`, exit 1)."""


class CountAccumulator:
    """`encoded_counts` over rows given in chunks: memory grows with the distinct (subject, slot)
    pairs of the categorical columns and labels, never with the numeric columns or the features."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.rows = 0
        self._codes: dict[str, int] = {}
        self._pairs: dict[tuple[str, str], list[np.ndarray[Any, Any]]] = {}
        """(part, column) to each chunk's distinct subject-code x slot pairs (as code * width + slot)."""
        self._widths: dict[tuple[str, str], int] = {}
        self._magnitudes: Counter[StatKey] = Counter()

    def _hold(
        self, part: str, column: str, codes: np.ndarray[Any, Any], slots: np.ndarray[Any, Any], width: int
    ) -> None:
        self._widths[(part, column)] = width
        self._pairs.setdefault((part, column), []).append(np.unique(codes * width + slots))

    def add(
        self,
        subjects: Sequence[str],
        labels: np.ndarray[Any, np.dtype[np.int64]],
        features: np.ndarray[Any, np.dtype[np.float32]],
    ) -> None:
        """Count one chunk of rows. Raises `WorkspaceError` (exit 3) when the features are not
        `schema.width` wide."""
        schema = self.schema
        rows = len(subjects)
        if features.shape != (rows, schema.width):
            raise WorkspaceError(
                f"stored records hold {features.shape[-1] if features.ndim == 2 else '?'} features where the schema"
                f" in forget.toml has {schema.width}: the schema is not the one the records were encoded with"
            )
        self.rows += rows
        if rows == 0:
            return
        index = self._codes
        codes = np.fromiter((index.setdefault(s, len(index)) for s in subjects), dtype=np.int64, count=rows)
        classes = np.asarray(labels, dtype=np.int64)
        if classes.min() < 0 or classes.max() >= len(schema.labels):
            raise WorkspaceError("a stored record's class is not one of the schema's labels: the store does not match")
        self._hold(LABEL, schema.label_column, codes, classes, len(schema.labels))
        offset = 0
        for column in schema.features:
            block = features[:, offset : offset + column.width]
            offset += column.width
            if column.declared:
                continue
            if column.kind is ColumnKind.NUMERIC:
                values = block[:, 0].astype(np.float64) * column.scale  # exact: the scale is a power of two
                found, numbers = np.unique(magnitude_buckets(values), return_counts=True)
                for bucket, number in zip(found.tolist(), numbers.tolist(), strict=True):
                    self._magnitudes[(MAGNITUDE, column.name, bucket)] += number
            else:
                self._hold(CATEGORY, column.name, codes, block.argmax(axis=1).astype(np.int64), column.width)

    def counts(self) -> Counter[StatKey]:
        """The counts of every row added so far."""
        counts: Counter[StatKey] = Counter({RECORDS_KEY: self.rows})
        counts.update(self._magnitudes)
        for (part, column), chunks in self._pairs.items():
            width = self._widths[(part, column)]
            pairs = np.unique(np.concatenate(chunks))
            for bucket, holders in enumerate(np.bincount(pairs % width, minlength=width).tolist()):
                if holders:
                    counts[(part, column, bucket)] = holders
        return counts


def encoded_counts(
    schema: Schema,
    subjects: Sequence[str],
    labels: np.ndarray[Any, np.dtype[np.int64]],
    features: np.ndarray[Any, np.dtype[np.float32]],
) -> Counter[StatKey]:
    """The counts of rows encoded by `schema`: each row's subject key, class index and features.

    Raises `WorkspaceError` (exit 3) when the features are not `schema.width` wide.
    """
    accumulator = CountAccumulator(schema)
    accumulator.add(subjects, labels, features)
    return accumulator.counts()


def record_arrays(
    schema: Schema, records: Sequence[StoredRecord]
) -> tuple[list[str], np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.float32]]]:
    """Stored records as (subject keys, class indices, features); raises `WorkspaceError` for a
    record whose features are not the schema's width."""
    width = schema.width
    if any(len(r.features) != 4 * width for r in records):
        raise WorkspaceError(
            f"a stored record does not hold the {width} features of the schema in forget.toml: the schema is not"
            " the one the records were encoded with"
        )
    features = np.frombuffer(b"".join(r.features for r in records), dtype=np.float32).reshape(len(records), width)
    labels = np.fromiter((r.label for r in records), dtype=np.int64, count=len(records))
    return [r.subject_key for r in records], labels, features


def counts_of_records(schema: Schema, records: Sequence[StoredRecord]) -> Counter[StatKey]:
    """`encoded_counts` of stored records."""
    return encoded_counts(schema, *record_arrays(schema, records))


def rule_counts(schema: Schema, counts: Mapping[StatKey, int]) -> RuleCounts:
    """The kept counts as the rule reads them: slots and classes by name ("other" as None)."""
    other = schema.other_label
    labels: dict[str | None, int] = {}
    categories: dict[str, dict[str | None, int]] = {}
    magnitudes: dict[str, dict[int, int]] = {}
    for column in schema.features:
        if column.declared:
            continue
        if column.kind is ColumnKind.NUMERIC:
            magnitudes[column.name] = {}
        else:
            categories[column.name] = {}
    for (part, name, bucket), count in counts.items():
        if count <= 0:
            continue
        if part == LABEL:
            labels[None if bucket == other else schema.labels[bucket]] = count
        elif part == CATEGORY:
            column = next(c for c in schema.features if c.name == name)
            categories[name][None if bucket == column.other_slot else column.categories[bucket]] = count
        elif part == MAGNITUDE:
            magnitudes[name][bucket] = count
    return RuleCounts(labels=labels, categories=categories, magnitudes=magnitudes)


def change_of(before: Counter[StatKey], after: Counter[StatKey]) -> dict[StatKey, int]:
    """after - before, key by key, zeros left out (negative where counts fall)."""
    return {key: after[key] - before[key] for key in before.keys() | after.keys() if after[key] != before[key]}


def _marker(schema: Schema) -> StatKey:
    """The row naming the schema the counts are by slot of: counts kept under another are not used."""
    return (SCHEMA, schema.sha256, 0)


def _under(schema: Schema, rows: dict[StatKey, int]) -> Counter[StatKey] | None:
    """The rows as counts if they were counted under `schema` (its marker, and no other); else None."""
    if rows.pop(_marker(schema), None) is None or any(part == SCHEMA for part, _, _ in rows):
        return None
    return Counter(rows)


def kept_counts(store: Store, tx: Transaction, schema: Schema) -> Counter[StatKey] | None:
    """The kept counts if they were counted under `schema`; None when none are kept, or under another."""
    rows = store.schema_statistics(tx)
    return None if rows is None else _under(schema, rows)


def keep_counts(store: Store, tx: Transaction, schema: Schema, counts: Mapping[StatKey, int]) -> None:
    """Replace the kept counts with `counts` of records encoded by `schema`, in `tx`."""
    rows = {key: count for key, count in counts.items() if count or key == RECORDS_KEY}
    rows.setdefault(RECORDS_KEY, 0)
    rows[_marker(schema)] = 0
    store.write_schema_statistics(tx, rows)


def _kept_for_change(store: Store, tx: Transaction, schema: Schema) -> Counter[StatKey] | None:
    """The counts a change under `schema` may add to; counts kept under another schema are dropped
    (they no longer name the records' slots), and None is returned for them as for none kept."""
    rows = store.schema_statistics(tx)
    if rows is None:
        return None
    kept = _under(schema, rows)
    if kept is None:
        store.write_schema_statistics(tx, None)
    return kept


def _add(store: Store, tx: Transaction, schema: Schema, kept: Counter[StatKey], change: Mapping[StatKey, int]) -> None:
    """Keep `kept` + `change` in `tx`. A count that would fall below 0 shows the counts were not the
    records' (edited, or kept by an older forget): they are dropped, and the next use counts again."""
    for key, delta in change.items():
        kept[key] += delta
    if any(count < 0 for count in kept.values()):
        store.write_schema_statistics(tx, None)
        return
    keep_counts(store, tx, schema, kept)


def count_store(schema: Schema, store: Store, tx: Transaction, chunk: int = 50_000) -> Counter[StatKey]:
    """The counts of every stored record, read in `tx` in chunks (a full scan: what the kept counts spare).

    Raises `WorkspaceError` (exit 3) for a record that does not fit the schema.
    """
    accumulator = CountAccumulator(schema)
    width = schema.width
    for batch in store.record_batches(tx, chunk):
        if any(len(features) != 4 * width for _, _, features in batch):
            raise WorkspaceError(
                f"a stored record does not hold the {width} features of the schema in forget.toml: the schema is"
                " not the one the records were encoded with"
            )
        subjects = [subject for subject, _, _ in batch]
        labels = np.fromiter((label for _, label, _ in batch), dtype=np.int64, count=len(batch))
        features = np.frombuffer(b"".join(f for _, _, f in batch), dtype=np.float32).reshape(len(batch), width)
        accumulator.add(subjects, labels, features)
    return accumulator.counts()


def verify_statistics(schema: Schema, store: Store, tx: Transaction) -> None:
    """Raise `StatisticsMismatchError` when kept counts are not those of the stored records.

    Counts kept under another schema are never used, so they are not checked.
    """
    kept = kept_counts(store, tx, schema)
    if kept is None:
        return
    actual = count_store(schema, store, tx)
    differ = sorted(change_of(kept, actual))
    if differ:
        part, column, bucket = differ[0]
        raise StatisticsMismatchError(
            f"the data store's schema statistics do not match its records ({len(differ)} counts differ, the first"
            f" {part} {column!r} bucket {bucket}): they were edited outside forget; drop them"
            " (DELETE FROM schema_statistics) and the next `forget run` counts the records again"
        )


def _concat(
    first: tuple[list[str], np.ndarray[Any, Any], np.ndarray[Any, Any]],
    second: tuple[Sequence[str], np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> tuple[list[str], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return [*first[0], *second[0]], np.concatenate([first[1], second[1]]), np.concatenate([first[2], second[2]])


def record_ingest(
    store: Store,
    tx: Transaction,
    schema: Schema,
    rows: tuple[Sequence[str], np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.float32]]],
    *,
    first: bool,
    earlier: Sequence[str] = (),
) -> None:
    """Count an ingest's rows (subject keys, class indices, features) in `tx`.

    The first ingest's counts replace any; a later one adds what its rows change, given `earlier`,
    the record keys the same subjects held before it (read outside `tx`: ingests hold the
    workspace's lock, so no other writer changes them meanwhile).
    """
    if first:
        keep_counts(store, tx, schema, encoded_counts(schema, *rows))
        return
    kept = _kept_for_change(store, tx, schema)
    if kept is None:
        return
    before = record_arrays(schema, store.read_records(tx, earlier))
    after = _concat(before, rows)
    _add(store, tx, schema, kept, change_of(encoded_counts(schema, *before), encoded_counts(schema, *after)))


def record_removal(store: Store, tx: Transaction, schema: Schema, removed: Sequence[str]) -> None:
    """Count the removal of the records `removed` in `tx`, before they are deleted.

    Reads the removed records and the other records of their subjects (none, when whole subjects
    go, as an erasure's do). Records that do not fit the schema drop the counts instead of failing
    the erasure: the next use counts what is left.
    """
    kept = _kept_for_change(store, tx, schema)
    if kept is None:
        return
    gone = store.read_records(tx, removed)
    subjects = sorted({record.subject_key for record in gone})
    leaving = {record.record_key for record in gone}
    others = [k for keys in store.records_of_subjects(subjects, tx).values() for k in keys if k not in leaving]
    staying = store.read_records(tx, others)
    try:
        before = encoded_counts(schema, *record_arrays(schema, [*gone, *staying]))
        after = encoded_counts(schema, *record_arrays(schema, staying))
    except WorkspaceError:
        store.write_schema_statistics(tx, None)
        return
    _add(store, tx, schema, kept, change_of(before, after))
