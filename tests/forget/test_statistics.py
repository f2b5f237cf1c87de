"""The schema rule's kept counts (forget.data.statistics): the same schema as reading every record.

Laws: the scale exponent from bucket counts is the one from the values; after any sequence of
ingests and removals the kept counts are a full count of what is left; through the CLI, the
counts follow ingests, erasures and a schema change, `ledger verify` refuses edited counts, and a
workspace without counts counts its records at the next run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forget.data.rederive import derive_retained_schema
from forget.data.schema import (
    MAX_MAGNITUDE,
    ColumnKind,
    FeatureColumn,
    Schema,
    canonical_numbers,
    encode_numbers,
    exponent_of_buckets,
    magnitude_bucket,
    magnitude_buckets,
    magnitude_counts,
    scale_exponent,
)
from forget.data.statistics import (
    count_store,
    encoded_counts,
    keep_counts,
    kept_counts,
    record_ingest,
    record_removal,
    rule_counts,
)
from forget.store.interface import StoredRecord
from forget.workspace.core import open_workspace
from tests.conftest import write_rows, write_tabular_csv
from tests.fakes import FakeStore
from tests.helpers import cli, init_args

magnitudes = st.one_of(
    st.just(0.0),
    st.floats(min_value=-MAX_MAGNITUDE, max_value=MAX_MAGNITUDE, allow_nan=False, allow_subnormal=False),
    st.floats(min_value=-4.0, max_value=4.0, allow_nan=False),
    st.sampled_from([2.0**e * m for e in range(-70, 70, 7) for m in (0.7071067, 0.7071068, 1.0, 1.4142135, 1.4142136)]),
)


@settings(max_examples=400)
@given(values=st.lists(magnitudes, min_size=0, max_size=60))
def test_the_exponent_from_bucket_counts_is_the_exponent_from_the_values(values: list[float]) -> None:
    canonical = canonical_numbers(np.asarray(values, dtype=np.float64))
    assert exponent_of_buckets(magnitude_counts(canonical)) == scale_exponent(canonical)
    assert magnitude_buckets(canonical).tolist() == [magnitude_bucket(abs(v)) for v in canonical.tolist()]


def test_buckets_order_the_magnitudes() -> None:
    ordered = [0.0, 2.0**-64, 2.0**-61, 0.5, 0.7071067, 0.7071068, 1.0, 1.4142135, 1.4142136, 2.0, 2.0**63]
    buckets = [magnitude_bucket(v) for v in canonical_numbers(np.asarray(ordered)).tolist()]
    assert buckets == sorted(buckets) and buckets[0] < buckets[1]


SCHEMA = Schema(
    subject_column="subject",
    label_column="label",
    labels=("a", "b", "(other)"),
    features=(
        FeatureColumn("x", ColumnKind.NUMERIC, scale=4.0),
        FeatureColumn("colour", ColumnKind.CATEGORICAL, categories=("blue", "red")),
        FeatureColumn("fixed", ColumnKind.NUMERIC, center=1.0, scale=3.0, declared=True),
    ),
)


def rows_of(draw: st.DrawFn, start: int, count: int) -> list[StoredRecord]:
    records = []
    for i in range(start, start + count):
        x = draw(st.sampled_from([0.0, 0.25, 1.0, 3.0, 5.5, -7.0, 100.0, 2.0**-20]))
        slot = draw(st.integers(0, 2))
        features = np.zeros(SCHEMA.width, dtype=np.float32)
        features[0] = encode_numbers(SCHEMA.features[0], np.asarray([x]))[0]
        features[1 + slot] = 1.0
        features[4] = draw(st.floats(-2, 2, width=32))
        subject = f"s{draw(st.integers(0, 9))}"
        records.append(StoredRecord(f"r{i:04d}", subject, 0, 0, draw(st.integers(0, 2)), features.tobytes()))
    return records


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, list[StoredRecord] | list[str]]]:
    steps: list[tuple[str, list[StoredRecord] | list[str]]] = []
    made = 0
    for _ in range(draw(st.integers(1, 6))):
        if made and draw(st.booleans()):
            steps.append(("erase", [f"s{i}" for i in draw(st.sets(st.integers(0, 9), min_size=1, max_size=4))]))
        else:
            count = draw(st.integers(1, 12))
            steps.append(("ingest", rows_of(draw, made, count)))
            made += count
    return steps


def full_count(store: FakeStore) -> Counter[tuple[str, str, int]]:
    """A full count, read in chunks of 3 records: it must be the count of all of them at once."""
    with store.snapshot() as tx:
        chunked = count_store(SCHEMA, store, tx, chunk=3)
        records = list(store.iter_records(tx))
    subjects = [r.subject_key for r in records]
    labels = np.asarray([r.label for r in records], dtype=np.int64)
    features = np.frombuffer(b"".join(r.features for r in records), np.float32).reshape(len(records), SCHEMA.width)
    assert chunked == encoded_counts(SCHEMA, subjects, labels, features)
    return chunked


@settings(max_examples=200, deadline=None)
@given(history=histories())
def test_after_any_ingests_and_erasures_the_kept_counts_are_a_full_count(
    history: list[tuple[str, list[StoredRecord] | list[str]]],
) -> None:
    store = FakeStore()
    first = True
    for step, items in history:
        with store.transaction() as tx:
            if step == "ingest":
                batch = [r for r in items if isinstance(r, StoredRecord)]
                subjects = sorted({r.subject_key for r in batch})
                earlier = [k for keys in store.records_of_subjects(subjects).values() for k in keys]
                features = np.frombuffer(b"".join(r.features for r in batch), np.float32).reshape(len(batch), -1)
                labels = np.asarray([r.label for r in batch], dtype=np.int64)
                arrays = ([r.subject_key for r in batch], labels, features)
                record_ingest(store, tx, SCHEMA, arrays, first=first, earlier=earlier)
                store.insert_records(tx, batch)
                first = False
            else:
                gone = [k for keys in store.records_of_subjects([str(s) for s in items]).values() for k in keys]
                record_removal(store, tx, SCHEMA, gone)
                store.delete_records(tx, gone)
        with store.snapshot() as tx:
            kept = kept_counts(store, tx, SCHEMA)
        assert kept is not None
        assert +kept == +full_count(store)


def test_counts_kept_under_another_schema_are_not_used_and_a_negative_count_drops_them() -> None:
    store = FakeStore()
    other = Schema("subject", "label", ("a", "b"), (FeatureColumn("x", ColumnKind.NUMERIC, scale=1.0),))
    with store.transaction() as tx:
        keep_counts(store, tx, other, {("records", "", 0): 3})
        assert kept_counts(store, tx, SCHEMA) is None
        keep_counts(store, tx, SCHEMA, {("records", "", 0): 0})
        record_removal(store, tx, SCHEMA, [])
        assert kept_counts(store, tx, SCHEMA) is not None
        store.insert_records(tx, [StoredRecord("r", "s", 0, 0, 0, np.zeros(SCHEMA.width, np.float32).tobytes())])
        record_removal(store, tx, SCHEMA, ["r"])  # counts said 0 records: taking one away is impossible
        assert store.schema_statistics(tx) is None


def test_the_rule_reads_the_same_schema_from_counts_as_from_the_records() -> None:
    rng = np.random.default_rng(3)
    rows = 400
    features = np.zeros((rows, SCHEMA.width), dtype=np.float32)
    features[:, 0] = encode_numbers(SCHEMA.features[0], rng.normal(0, 6, rows))
    features[np.arange(rows), 1 + rng.integers(0, 3, rows)] = 1.0
    subjects = [f"s{i}" for i in rng.integers(0, 60, rows)]
    labels = rng.integers(0, 3, rows).astype(np.int64)
    counts = encoded_counts(SCHEMA, subjects, labels, features)
    assert counts[("records", "", 0)] == rows
    assert sum(n for (part, _, _), n in counts.items() if part == "magnitude") == rows
    held = rule_counts(SCHEMA, counts)
    assert held.categories["colour"][None] == len({s for s, f in zip(subjects, features, strict=True) if f[3] == 1})
    assert held.labels[None] == len({s for s, c in zip(subjects, labels.tolist(), strict=True) if c == 2})


# -- through the CLI, on SQLite and PostgreSQL ---------------------------------------------------


COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]


def assert_counted(ws: Path, *, rederived: bool = False) -> None:
    """The kept counts are a full count; after a run, forget.toml's schema is the rule's on the records."""
    workspace = open_workspace(ws)
    store = workspace.datastore
    schema = workspace.config.schema
    assert schema is not None
    with store.snapshot() as tx:
        kept = kept_counts(store, tx, schema)
        full = count_store(schema, store, tx)
    assert kept is not None and +kept == +full
    if rederived:  # (an ingest after the first does not re-derive: only runs do)
        assert schema == derive_retained_schema(workspace)


@pytest.mark.slow
def test_counts_follow_ingests_erasures_and_a_schema_change_and_verify_checks_them(
    tmp_path: Path, database_url: str
) -> None:
    records = write_tabular_csv(tmp_path / "all.csv", rows=160, subjects=40)
    write_rows(tmp_path / "one.csv", records[:100])
    write_rows(tmp_path / "two.csv", records[100:])  # most subjects are in both files
    ws = tmp_path / "ws"
    cli(*init_args(ws, database_url, "--shards", "2", "--slices", "2"))
    cli("-w", ws, "ingest", tmp_path / "one.csv", *COLUMNS)
    assert_counted(ws)
    cli("-w", ws, "ingest", tmp_path / "two.csv")
    assert_counted(ws)
    cli("-w", ws, "train", "--device", "cpu")
    for subject in sorted({r["subject"] for r in records})[:12]:  # enough to change the schema's scale or classes
        cli("-w", ws, "request", "--subject-id", subject)
    out = cli("-w", ws, "run", "--device", "cpu").stdout
    assert "feature schema changed" in out
    assert_counted(ws, rederived=True)
    cli("-w", ws, "ledger", "verify")

    workspace = open_workspace(ws)
    engine = workspace.datastore.engine
    with engine.begin() as connection:  # as someone who can write the database
        connection.exec_driver_sql("UPDATE schema_statistics SET count = count + 1 WHERE part = 'category'")
    refused = cli("-w", ws, "ledger", "verify", expect=1)
    assert "schema statistics do not match its records" in refused.stderr and refused.stderr.count("\n") == 1

    with engine.begin() as connection:  # dropped: a store without counts counts its records at the next run
        connection.exec_driver_sql("DELETE FROM schema_statistics")
    engine.dispose()
    cli("-w", ws, "ledger", "verify")
    cli("-w", ws, "request", "--subject-id", sorted({r["subject"] for r in records})[20])
    cli("-w", ws, "run", "--device", "cpu")
    assert_counted(ws, rederived=True)
    cli("-w", ws, "ledger", "verify")
