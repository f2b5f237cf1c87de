"""Ingestion: bad input gives one line, a non-zero exit, and writes nothing."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forget.workspace.core import open_workspace
from tests.conftest import write_rows, write_tabular_csv
from tests.helpers import cli, cli_json, init_args

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]


@pytest.fixture
def workspace(tmp_path: Path, database_url: str) -> Path:
    cli(*init_args(tmp_path / "ws", database_url))
    return tmp_path / "ws"


def snapshot(workspace: Path) -> tuple[int, str]:
    ws = open_workspace(workspace)
    return sum(ws.datastore.shard_counts().values()), hashlib.sha256(
        (workspace / "forget.toml").read_bytes()
    ).hexdigest()


def test_first_ingest_infers_a_reviewable_schema(workspace: Path, tmp_path: Path) -> None:
    records = write_tabular_csv(tmp_path / "d.csv", rows=60)
    result = cli_json("-w", workspace, "ingest", tmp_path / "d.csv", *COLUMNS)
    assert result["rows"] == 60 and result["schema_inferred"] is True
    schema = tomllib.loads((workspace / "forget.toml").read_text())["schema"]
    assert schema["labels"] == ["a", "b", "c"]
    kinds = {f["name"]: f["kind"] for f in schema["features"]}
    assert kinds == {"x1": "numeric", "x2": "numeric", "x3": "numeric", "colour": "categorical"}
    assert schema["input_shape"] == [7]  # three numbers, three colours and the "other" slot
    # No raw identifier reaches the database or the config.
    db = (workspace / "forget.db").read_bytes() if (workspace / "forget.db").exists() else b""
    assert records[0]["subject"].encode() not in db and records[0]["record"].encode() not in db
    assert "person-" not in (workspace / "forget.toml").read_text()


def test_parquet_and_later_ingests_use_the_stored_schema(workspace: Path, tmp_path: Path) -> None:
    records = write_tabular_csv(tmp_path / "d.csv", rows=40)
    cli("-w", workspace, "ingest", tmp_path / "d.csv", *COLUMNS)
    more = [{**r, "record": r["record"] + "-b"} for r in records[:10]]
    table = pa.table({k: [r[k] for r in more] for k in more[0]})
    table = table.set_column(2, "x1", pa.array([float(r["x1"]) for r in more]))
    pq.write_table(table, tmp_path / "more.parquet")
    assert cli_json("-w", workspace, "ingest", tmp_path / "more.parquet")["rows"] == 10
    assert snapshot(workspace)[0] == 50


BAD_CASES = {
    "missing column": (lambda rows: [{k: v for k, v in r.items() if k != "label"} for r in rows],
                       "has no column 'label'"),
    "unknown label": (lambda rows: [{**r, "label": "zebra"} if i == 3 else r for i, r in enumerate(rows)],
                      "row 4 has a label in column 'label' that the schema does not know"),
    "non-numeric": (lambda rows: [{**r, "x2": "abc"} if i == 1 else r for i, r in enumerate(rows)],
                    "column 'x2' is numeric, but row 2 holds a non-numeric value"),
    # An unknown category is no error: it joins the column's "other" slot (tests/forget/test_schema.py).
    "empty subject": (lambda rows: [{**r, "subject": ""} if i == 2 else r for i, r in enumerate(rows)],
                      "row 3, column 'subject': the subject id is malformed: the id is empty"),
    "duplicate id": (lambda rows: [*rows, rows[0]], "repeats a record id"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workspace: Path, tmp_path: Path, case: str) -> None:
    records = write_tabular_csv(tmp_path / "good.csv", rows=30)
    cli("-w", workspace, "ingest", tmp_path / "good.csv", *COLUMNS)
    before = snapshot(workspace)
    fresh = [{**r, "record": r["record"] + "-new"} for r in records]
    mutate, message = BAD_CASES[case]
    write_rows(tmp_path / "bad.csv", mutate(fresh))
    result = cli("-w", workspace, "ingest", tmp_path / "bad.csv", expect=2)
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert snapshot(workspace) == before


def test_empty_files_and_reingestion(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    assert "is empty" in cli("-w", workspace, "ingest", tmp_path / "empty.csv", *COLUMNS, expect=2).stderr
    (tmp_path / "header.csv").write_text("subject,record,x1,label\n")
    assert "no rows" in cli("-w", workspace, "ingest", tmp_path / "header.csv", *COLUMNS, expect=2).stderr
    assert "does not exist" in cli("-w", workspace, "ingest", tmp_path / "nope.csv", *COLUMNS, expect=2).stderr
    write_tabular_csv(tmp_path / "d.csv", rows=20)
    cli("-w", workspace, "ingest", tmp_path / "d.csv", *COLUMNS)
    before = snapshot(workspace)
    again = cli("-w", workspace, "ingest", tmp_path / "d.csv", expect=2)
    assert "20 records are already in the workspace" in again.stderr
    assert snapshot(workspace) == before


def test_first_ingest_needs_the_columns(workspace: Path, tmp_path: Path) -> None:
    write_tabular_csv(tmp_path / "d.csv", rows=20)
    result = cli("-w", workspace, "ingest", tmp_path / "d.csv", expect=2)
    assert "needs --subject-column and --label-column" in result.stderr
    assert "schema" not in (workspace / "forget.toml").read_text().split("\n", 1)[1]


def test_new_records_rewind_the_shards_they_land_in(workspace: Path, tmp_path: Path) -> None:
    records = write_tabular_csv(tmp_path / "d.csv", rows=60)
    write_rows(tmp_path / "first.csv", records[:50])
    write_rows(tmp_path / "second.csv", records[50:])
    cli("-w", workspace, "ingest", tmp_path / "first.csv", *COLUMNS)
    cli("-w", workspace, "train", "--device", "cpu")
    cli("-w", workspace, "ingest", tmp_path / "second.csv")
    shards = cli_json("-w", workspace, "shards")
    assert any(s["latest_checkpoint"] is None for s in shards)
    cli("-w", workspace, "train", "--device", "cpu")
    assert all(s["latest_checkpoint"] for s in cli_json("-w", workspace, "shards"))


def test_an_erased_subject_is_not_readmitted_by_accident(workspace: Path, tmp_path: Path) -> None:
    records = write_tabular_csv(tmp_path / "d.csv", rows=40)
    cli("-w", workspace, "ingest", tmp_path / "d.csv", *COLUMNS)
    cli("-w", workspace, "train", "--device", "cpu")
    subject = records[0]["subject"]
    cli("-w", workspace, "request", "--subject-id", subject)
    cli("-w", workspace, "run", "--device", "cpu")
    again = [{**r, "record": r["record"] + "-again"} for r in records if r["subject"] == subject]
    write_rows(tmp_path / "again.csv", again)
    before = snapshot(workspace)
    refused = cli("-w", workspace, "ingest", tmp_path / "again.csv", expect=2)
    assert "belongs to a subject whose data was erased on request" in refused.stderr
    assert snapshot(workspace) == before
    cli("-w", workspace, "ingest", tmp_path / "again.csv", "--allow-erased")
    assert snapshot(workspace)[0] == before[0] + len(again)
