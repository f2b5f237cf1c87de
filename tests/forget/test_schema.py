"""The schema rule (forget.data.schema): what one subject can and cannot change, and the exact encoding."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from forget.data.schema import (
    MAX_EXPONENT,
    OTHER_LABEL,
    QUANTILE,
    ColumnKind,
    FeatureColumn,
    Schema,
    TooFewClassesError,
    canonical_numbers,
    decode_numbers,
    derive_labels,
    encode_numbers,
    kept_values,
    nearest_power_exponent,
    scale_exponent,
)
from forget.errors import InputError
from tests.conftest import write_rows, write_tabular_csv
from tests.helpers import cli, init_args

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]

# -- the exact encoding ------------------------------------------------------------------------

finite = st.floats(min_value=-(2.0**64), max_value=2.0**64, allow_nan=False, allow_subnormal=True)


@given(values=st.lists(finite, min_size=1, max_size=50), exponent=st.integers(-MAX_EXPONENT, MAX_EXPONENT))
def test_a_derived_column_decodes_to_exactly_the_values_the_rule_saw(values: list[float], exponent: int) -> None:
    column = FeatureColumn("x", ColumnKind.NUMERIC, scale=math.ldexp(1.0, exponent))
    raw = np.asarray(values, dtype=np.float64)
    encoded = encode_numbers(column, raw)
    assert encoded.dtype == np.float32 and np.isfinite(encoded).all()
    assert np.array_equal(decode_numbers(column, encoded), canonical_numbers(raw))
    assert np.array_equal(encode_numbers(column, canonical_numbers(raw)), encoded), "re-encoding is idempotent"


def test_the_nearest_power_of_two_is_decided_exactly_at_its_boundaries() -> None:
    below = float(np.float32(math.sqrt(2)))  # the float32 just below sqrt(2)
    above = float(np.nextafter(np.float32(below), np.float32(2)))
    assert (nearest_power_exponent(below), nearest_power_exponent(above)) == (0, 1)
    assert [nearest_power_exponent(v) for v in (0.0, 0.7, 1.0, 1.5, 3.0, 64.0, 2.0**80)] == [0, -1, 0, 1, 2, 6, 60]


# -- what one subject can change: the laws ----------------------------------------------------


@st.composite
def subjects_and_values(draw: st.DrawFn) -> tuple[list[str], list[float], int]:
    """Rows of subjects holding at most m records each, values drawn mostly from a narrow band."""
    m = draw(st.integers(1, 4))
    counts = draw(st.lists(st.integers(1, m), min_size=2, max_size=60))
    band = st.floats(0.9, 1.3) | st.floats(-100, 100, allow_nan=False)
    subjects = [f"s{i}" for i, count in enumerate(counts) for _ in range(count)]
    values = [draw(band) for _ in subjects]
    return subjects, values, m


@settings(max_examples=300)
@given(data=subjects_and_values())
def test_erasing_one_subject_moves_the_scale_only_across_a_boundary_next_to_the_quantile(
    data: tuple[list[str], list[float], int],
) -> None:
    """After erasing any subject (at most m records), the scale's exponent is that of one of the sorted
    |values| at positions i - m .. i + m, i the quantile's index; so if they all give one exponent,
    no single subject can change it."""
    subjects, values, m = data
    canonical = canonical_numbers(np.asarray(values))
    ordered = np.sort(np.abs(canonical))
    index = (QUANTILE[0] * (len(ordered) - 1)) // QUANTILE[1]
    window = {nearest_power_exponent(float(v)) for v in ordered[max(0, index - m) : index + m + 1]}
    before = scale_exponent(canonical)
    for gone in set(subjects):
        kept = canonical[[s != gone for s in subjects]]
        assume(len(kept) > 0)
        assert scale_exponent(kept) in window
        if len(window) == 1:
            assert scale_exponent(kept) == before


@st.composite
def holders(draw: st.DrawFn) -> tuple[list[str | None], list[str]]:
    values = draw(st.lists(st.sampled_from(["red", "teal", "ochre", None]), min_size=1, max_size=80))
    subjects = draw(st.lists(st.sampled_from([f"s{i}" for i in range(12)]), min_size=len(values), max_size=len(values)))
    return values, subjects


@settings(max_examples=300)
@given(data=holders(), k=st.integers(2, 5))
def test_erasing_one_subject_drops_exactly_the_values_it_held_with_k_holders(
    data: tuple[list[str | None], list[str]], k: int
) -> None:
    values, subjects = data
    counts = {v: len({s for x, s in zip(values, subjects, strict=True) if x == v}) for v in set(values) if v}
    kept = kept_values(values, subjects, k)
    assert kept == tuple(sorted(v for v, n in counts.items() if n >= k))
    for gone in set(subjects):
        rows = [(v, s) for v, s in zip(values, subjects, strict=True) if s != gone]
        after = kept_values([v for v, _ in rows], [s for _, s in rows], k)
        lost = {v for v, s in zip(values, subjects, strict=True) if s == gone and v and counts[v] == k}
        assert set(after) == set(kept) - lost, "only a value held by exactly k subjects, one of them erased, goes"


def test_a_category_counts_subjects_not_rows() -> None:
    assert kept_values(["teal"] * 9 + ["red"] * 3, ["s1"] * 9 + ["s1", "s2", "s3"], 3) == ("red",)


def test_rare_labels_share_the_class_other_and_one_class_is_refused() -> None:
    subjects = [f"s{i}" for i in range(12)]
    labels: list[str | None] = [*["a"] * 5, *["b"] * 5, "zebra", OTHER_LABEL]
    assert derive_labels(labels, subjects, 5) == ("a", "b", OTHER_LABEL)
    assert derive_labels(labels[:10], subjects[:10], 5) == ("a", "b")
    with pytest.raises(TooFewClassesError, match=r"fewer than two label classes are held by at least 6 subjects"):
        derive_labels(labels, subjects, 6)


# -- the schema as a file ---------------------------------------------------------------------


def test_a_schema_round_trips_and_marks_what_the_rule_cannot_make_as_declared() -> None:
    data = {
        "subject_column": "subject",
        "label_column": "label",
        "labels": ["a", "b", OTHER_LABEL],
        "features": [
            {"name": "x", "kind": "numeric", "center": 0.0, "scale": 4.0},
            {"name": "year", "kind": "numeric", "center": 2000.0, "scale": 10.0},
            {"name": "colour", "kind": "categorical", "categories": ["red", "blue"]},
        ],
    }
    schema = Schema.from_dict(data)
    assert [f.declared for f in schema.features] == [False, True, False]
    assert schema.features[2].categories == ("blue", "red") and schema.width == 5
    assert Schema.from_dict(schema.to_dict()).to_dict() == schema.to_dict()
    assert schema.class_of("zebra") == 2 and schema.class_of("b") == 1
    with pytest.raises(InputError, match="the schema follows rule 'forget/schema/v9'"):
        Schema.from_dict({**data, "rule": "forget/schema/v9"})
    with pytest.raises(InputError, match="schema column 'colour' lists a category twice"):
        Schema.from_dict({**data, "features": [{"name": "colour", "kind": "categorical", "categories": ["a", "a"]}]})


# -- through ingest --------------------------------------------------------------------------


def rows_with(records: list[dict[str, str]], colour: dict[str, str], label: dict[str, str]) -> list[dict[str, str]]:
    """The records, with the colour (label) of every row of the named subjects replaced."""
    return [
        {**r, "colour": colour.get(r["subject"], r["colour"]), "label": label.get(r["subject"], r["label"])}
        for r in records
    ]


def test_rare_values_become_other_and_their_text_is_written_nowhere(tmp_path: Path) -> None:
    records = write_tabular_csv(tmp_path / "d.csv", rows=120)
    people = sorted({r["subject"] for r in records})
    rare = {people[0]: "Reykjavik-Vesturbaer"}
    labels = {people[1]: "zebra", people[2]: "zebra"}
    write_rows(tmp_path / "d.csv", rows_with(records, rare, labels))
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS)
    schema = tomllib.loads((ws / "forget.toml").read_text())["schema"]
    colour = next(f for f in schema["features"] if f["name"] == "colour")
    assert colour["categories"] == ["blue", "green", "red"] and schema["input_shape"] == [7]
    assert schema["labels"] == ["a", "b", "c", OTHER_LABEL]
    for path in ws.rglob("*"):
        if path.is_file():
            assert b"Reykjavik" not in path.read_bytes() and b"zebra" not in path.read_bytes(), path

    # Later files: an unknown category joins "other", an unknown label the class (other).
    later = [{**r, "record": r["record"] + "-2", "colour": "mauve", "label": "yak"} for r in records[:5]]
    write_rows(tmp_path / "later.csv", later)
    assert "ingested 5 records" in cli("-w", ws, "ingest", tmp_path / "later.csv").stdout


def test_a_label_the_schema_cannot_place_is_refused_without_its_value(tmp_path: Path) -> None:
    records = write_tabular_csv(tmp_path / "d.csv", rows=120)
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS)
    write_rows(tmp_path / "later.csv", [{**r, "record": r["record"] + "-2", "label": "yak"} for r in records[:3]])
    refused = cli("-w", ws, "ingest", tmp_path / "later.csv", expect=2)
    assert "row 1 has a label in column 'label' that the schema does not know" in refused.stderr
    assert "yak" not in refused.stderr


def test_k_is_set_at_init_and_refused_below_two(tmp_path: Path) -> None:
    refused = cli(*init_args(tmp_path / "bad", "sqlite:///forget.db", "--min-subjects-per-category", "1"), expect=2)
    assert refused.stderr.startswith("error: --min-subjects-per-category must be between 2 and")
    assert not (tmp_path / "bad" / "forget.toml").exists()
    cli(*init_args(tmp_path / "ws", "sqlite:///forget.db", "--min-subjects-per-category", "40"))
    assert tomllib.loads((tmp_path / "ws" / "forget.toml").read_text())["workspace"]["min_subjects_per_category"] == 40
    write_tabular_csv(tmp_path / "d.csv", rows=120)
    result = cli("-w", tmp_path / "ws", "ingest", tmp_path / "d.csv", *COLUMNS, expect=2)
    assert "fewer than two label classes are held by at least 40 subjects each" in result.stderr


def test_values_beyond_two_to_the_64_are_refused_by_row_and_column(tmp_path: Path) -> None:
    records = write_tabular_csv(tmp_path / "d.csv", rows=60)
    write_rows(tmp_path / "d.csv", [{**r, "x3": "1e30"} if i == 4 else r for i, r in enumerate(records)])
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    refused = cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS, expect=2)
    assert "row 5, column 'x3': the value is beyond +-2^64" in refused.stderr and "1e30" not in refused.stderr
