"""The ingest's fast loops give what the per-row code gave: the same bytes, keys and errors."""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forget.data.ingest import (
    ColumnChoice,
    _row_bytes,
    encode,
    encode_labels,
    hash_ids,
    ingest_file,
    read_table,
    record_contents,
)
from forget.data.schema import ColumnKind, FeatureColumn, Schema, record_content
from forget.errors import InputError
from forget.subjects.pseudonym import Pseudonymiser
from forget.workspace.core import InitOptions, init_workspace

PATH = Path("data.csv")
PSEUDO = Pseudonymiser(bytes(range(32)))


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(0, 20), width=st.integers(1, 7), seed=st.integers(0, 2**32 - 1))
def test_row_bytes_and_contents_are_the_per_row_encodings(rows: int, width: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, width)).astype(np.float32)
    labels = [int(v) for v in rng.integers(0, 300, size=rows)]
    row_bytes = _row_bytes(features)
    assert row_bytes == [features[i].tobytes() for i in range(rows)]
    assert record_contents(row_bytes, labels) == [record_content(features[i], labels[i]) for i in range(rows)]


@pytest.mark.parametrize(
    "values",
    [
        ["alice", "bob", "alice", " Alice ", "carol", "bob"],
        [3, 1, 3, 2**40, 1],
        [1.0, -0.0, 0.0, 2.0, 1.0, 0.0],
    ],
    ids=["text", "integers", "floats"],
)
def test_hashing_each_distinct_id_once_gives_every_rows_key(values: list[object]) -> None:
    table = pa.table({"subject": values})
    assert hash_ids(table, "subject", PATH, "subject id", PSEUDO.subject) == [PSEUDO.subject(v) for v in values]  # type: ignore[arg-type]


def test_a_bad_id_is_reported_at_its_first_row_even_when_it_repeats() -> None:
    table = pa.table({"subject": ["a", "b", "a", "x\ty", "b", "x\ty"]})
    with pytest.raises(InputError, match=r"row 4, column 'subject': the subject id is malformed"):
        hash_ids(table, "subject", PATH, "subject id", PSEUDO.subject)


def test_labels_map_per_row_and_an_unknown_one_names_its_first_row() -> None:
    schema = Schema(
        subject_column="s", label_column="y", labels=("no", "yes"), features=(FeatureColumn("x", ColumnKind.NUMERIC),)
    )
    assert encode_labels(pa.table({"y": ["yes", "no", "no", "yes"]}), schema, PATH) == [1, 0, 0, 1]
    with pytest.raises(InputError, match="row 3 has a label in column 'y' that the schema does not know"):
        encode_labels(pa.table({"y": ["yes", "no", "maybe", "maybe"]}), schema, PATH)
    with pytest.raises(InputError, match=r"row 2 has an empty label \('y'\)"):
        encode_labels(pa.table({"y": ["yes", "  ", "maybe"]}), schema, PATH)


def test_repeated_rows_of_a_subject_get_distinct_keys_in_order(tmp_path: Path) -> None:
    """Without an id column, a subject's identical rows are told apart by their occurrence count."""
    ws = init_workspace(tmp_path / "ws", InitOptions(shards=3, slices=2, seed=4))
    lines = ["subject,x,y", *(f"s{i % 7},{i % 3},{'ab'[i % 2]}" for i in range(60)), "s1,1,b", "s1,1,b"]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    ingest_file(ws, tmp_path / "d.csv", ColumnChoice(subject="subject", label="y"))
    schema = ws.config.schema
    assert schema is not None
    # The per-row loop the ingest used before, on the same encoding.
    table = read_table(tmp_path / "d.csv", ["subject", "y"])
    features, labels = encode(table, schema, PATH), encode_labels(table, schema, PATH)
    pseudo = ws.pseudonymiser
    seen: Counter[tuple[str, bytes]] = Counter()
    expected = []
    for subject, row, label in zip(table.column("subject").to_pylist(), features, labels, strict=True):
        key, content = pseudo.subject(subject), record_content(row, label)
        expected.append(pseudo.record_from_content(key, content, seen[(key, content)]))
        seen[(key, content)] += 1
    assert max(seen.values()) > 1 and len(set(expected)) == len(expected) == 62
    stored = ws.datastore.records_of_subjects([pseudo.subject(f"s{i}") for i in range(7)])
    assert {key for keys in stored.values() for key in keys} == set(expected)


def test_the_garbage_collector_is_back_on_after_an_ingest_fails_or_succeeds(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws", InitOptions(shards=2, slices=2, seed=4))
    (tmp_path / "bad.csv").write_text("subject,x,y\ns1,1,a\n ,2,b\n")
    with pytest.raises(InputError, match=r"row 2, column .subject.: the subject id is malformed: the id is empty"):
        ingest_file(ws, tmp_path / "bad.csv", ColumnChoice(subject="subject", label="y"))
    assert gc.isenabled()
    lines = ["subject,x,y", *(f"s{i},{i % 3},{'ab'[i % 2]}" for i in range(30))]
    (tmp_path / "good.csv").write_text("\n".join(lines) + "\n")
    assert ingest_file(ws, tmp_path / "good.csv", ColumnChoice(subject="subject", label="y")).rows == 30
    assert gc.isenabled()
