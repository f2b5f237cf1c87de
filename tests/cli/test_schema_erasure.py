"""Invariant 9 through the CLI: after `forget run`, a fresh workspace built from the retained data
alone (same keys, NO --schema) has the same schema and bit-identical checkpoints, and nothing a
rare value's holder gave is left in any file."""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from forget.data.rederive import SCHEMA_REDERIVED
from forget.data.schema import OTHER_LABEL
from forget.workspace.core import Workspace, open_workspace
from tests.conftest import write_rows, write_tabular_csv
from tests.helpers import cli, cli_json, init_args

RARE = "Reykjavik-Vesturbaer"
ERASED = ["person-0003", "person-0010", "person-0042", "person-0009"]
"""person-0042 alone lives in RARE."""


def columns(id_column: bool) -> list[str]:
    return ["--subject-column", "subject", "--label-column", "label", *(["--id-column", "record"] if id_column else [])]


def build(root: Path, url: str, data: Path, id_column: bool, *init: str) -> Path:
    cli(*init_args(root, url, *init))
    cli("-w", root, "ingest", data, *columns(id_column))
    cli("-w", root, "train", "--device", "cpu")
    return root


def erase(ws: Path, subjects: list[str]) -> str:
    for subject in subjects:
        cli("-w", ws, "request", "--subject-id", subject)
    return str(cli("-w", ws, "run", "--device", "cpu").stdout)


def schema_of(ws: Path) -> dict[str, Any]:
    return dict(tomllib.loads((ws / "forget.toml").read_text())["schema"])


def rederived(ws: Path) -> list[dict[str, Any]]:
    workspace = open_workspace(ws)
    with workspace.datastore.engine.connect() as connection:
        return [dict(e.payload) for e in workspace.ledger.entries(connection, kind=SCHEMA_REDERIVED)]


def files_holding(roots: list[Path], text: str) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def digests(ws: Path) -> dict[tuple[int, int], str]:
    return open_workspace(ws).datastore.checkpoint_map()


@pytest.mark.slow
def test_erasing_the_holder_of_a_rare_category_equals_a_fresh_workspace_without_schema(
    tmp_path: Path, database_url: str, second_database_url: str
) -> None:
    records = write_tabular_csv(tmp_path / "all.csv", rows=203)
    records = [{**r, "colour": RARE} if r["subject"] == "person-0042" else r for r in records]
    write_rows(tmp_path / "all.csv", records)
    a = build(tmp_path / "a", database_url, tmp_path / "all.csv", True)
    assert RARE not in (a / "forget.toml").read_text()

    out = erase(a, ERASED)
    assert "feature schema changed" not in out
    [check] = rederived(a)
    workspace: Workspace = open_workspace(a)
    assert workspace.config.schema is not None
    assert check["changed"] is False and check["schema_sha256"] == check["previous_sha256"]
    assert check["records"] == sum(workspace.datastore.shard_counts().values())

    write_rows(tmp_path / "retained.csv", [r for r in records if r["subject"] not in ERASED])
    b = tmp_path / "b"
    cli(*init_args(b, second_database_url, "--keys-from", a))
    cli("-w", b, "ingest", tmp_path / "retained.csv", *columns(True))  # no --schema
    cli("-w", b, "train", "--device", "cpu")
    assert schema_of(b) == schema_of(a)
    assert digests(b) == digests(a), "the erased workspace differs from a fresh one built without the subjects"
    assert files_holding([a, b], RARE) == []


TEAL = "teal"
K = 6


def exactly_k(records: list[dict[str, str]]) -> tuple[list[dict[str, str]], str]:
    """Give colour `teal` and label `d` to every row of exactly K subjects; return one of them."""
    people = sorted({r["subject"] for r in records})[5 : 5 + K]
    changed = [{**r, "colour": TEAL, "label": "d"} if r["subject"] in people else r for r in records]
    return changed, people[0]


@pytest.mark.slow
@pytest.mark.parametrize("id_column", [True, False], ids=["id-column", "content-keys"])
def test_a_category_and_a_class_held_by_exactly_k_subjects_lose_one_and_every_shard_retrains(
    tmp_path: Path, database_url: str, second_database_url: str, id_column: bool
) -> None:
    records, holder = exactly_k(write_tabular_csv(tmp_path / "all.csv", rows=203))
    write_rows(tmp_path / "all.csv", records)
    a = build(tmp_path / "a", database_url, tmp_path / "all.csv", id_column, "--min-subjects-per-category", str(K))
    before = schema_of(a)
    assert TEAL in next(f for f in before["features"] if f["name"] == "colour")["categories"]
    assert "d" in before["labels"] and OTHER_LABEL not in before["labels"]
    trained = digests(a)

    out = erase(a, [holder])
    assert "the feature schema changed with the retained data" in out
    after = schema_of(a)
    assert TEAL not in next(f for f in after["features"] if f["name"] == "colour")["categories"]
    assert after["labels"] == ["a", "b", "c", OTHER_LABEL] and after["input_shape"] == [before["input_shape"][0] - 1]
    [changed] = rederived(a)
    assert changed["changed"] is True and "labels: 1 removed, 1 added" in changed["changes"]
    assert "column 'colour': categories 1 removed, 0 added" in changed["changes"]
    assert [r["shard"] for r in changed["rewinds"]] == [0, 1, 2, 3]
    assert changed["schema_sha256"] != changed["previous_sha256"] and TEAL not in json.dumps(changed)
    assert set(digests(a).values()).isdisjoint(trained.values()), "every shard retrained on the new encoding"
    assert set(p.name for p in (a / "checkpoints").glob("??/*")) == set(digests(a).values())
    assert not (a / ".schema-pending.toml").exists()
    cli("-w", a, "ledger", "verify")

    write_rows(tmp_path / "retained.csv", [r for r in records if r["subject"] != holder])
    b = tmp_path / "b"
    cli(*init_args(b, second_database_url, "--keys-from", a, "--min-subjects-per-category", str(K)))
    cli("-w", b, "ingest", tmp_path / "retained.csv", *columns(id_column))  # no --schema
    cli("-w", b, "train", "--device", "cpu")
    assert schema_of(b) == after
    assert digests(b) == digests(a)


@pytest.mark.slow
def test_a_run_killed_between_the_commit_and_forget_toml_resumes_to_the_same_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-encoded records commit first; forget.toml follows. Killed in between, the next run
    installs the committed schema from the pending file before it retrains."""
    records, holder = exactly_k(write_tabular_csv(tmp_path / "all.csv", rows=203))
    write_rows(tmp_path / "all.csv", records)
    a = build(tmp_path / "a", "sqlite:///forget.db", tmp_path / "all.csv", False, "--min-subjects-per-category", str(K))
    before = (a / "forget.toml").read_text()

    class Killed(BaseException):
        """Stands in for SIGKILL: no handler of ours catches it, nothing after it runs."""

    def killed(self: Workspace, config: object) -> None:
        raise Killed

    cli("-w", a, "request", "--subject-id", holder)
    saved = Workspace.save_config
    monkeypatch.setattr(Workspace, "save_config", killed)
    with pytest.raises(Killed):
        from cli.main import app

        app(["-w", str(a), "run", "--device", "cpu"], standalone_mode=False)
    monkeypatch.setattr(Workspace, "save_config", saved)
    assert (a / "forget.toml").read_text() == before and (a / ".schema-pending.toml").exists()
    status = json.loads(cli("-w", a, "status", "--json").stdout)
    assert status["requests"][0]["state"] == "running"

    cli("-w", a, "run", "--device", "cpu")
    assert not (a / ".schema-pending.toml").exists()
    assert [e["changed"] for e in rederived(a)] == [True, False], "the resumed run found the installed schema"
    write_rows(tmp_path / "retained.csv", [r for r in records if r["subject"] != holder])
    b = tmp_path / "b"
    cli(*init_args(b, "sqlite:///forget.db", "--keys-from", a, "--min-subjects-per-category", str(K)))
    cli("-w", b, "ingest", tmp_path / "retained.csv", *columns(False))
    cli("-w", b, "train", "--device", "cpu")
    assert schema_of(b) == schema_of(a) and digests(b) == digests(a)


def test_a_schema_edited_by_hand_after_ingest_stops_the_run_before_it_retrains(tmp_path: Path) -> None:
    write_tabular_csv(tmp_path / "all.csv", rows=120)
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))
    cli("-w", ws, "ingest", tmp_path / "all.csv", *columns(True))
    text = (ws / "forget.toml").read_text()
    (ws / "forget.toml").write_text(text.replace("scale = 64.0", "scale = 128.0"))
    cli("-w", ws, "request", "--subject-id", "person-0003")
    stopped = cli("-w", ws, "run", "--device", "cpu", expect=3)
    assert "is not the schema the stored records were encoded with" in stopped.stderr
    assert stopped.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_run_whose_schema_changed_certifies_its_requests(tmp_path: Path) -> None:
    records, _ = exactly_k(write_tabular_csv(tmp_path / "all.csv", rows=203))
    write_rows(tmp_path / "all.csv", records)
    a = build(tmp_path / "a", "sqlite:///forget.db", tmp_path / "all.csv", True, "--min-subjects-per-category", str(K))
    workspace = open_workspace(a)
    holders = sorted({r["subject"] for r in records if r["colour"] == TEAL})
    index = workspace.datastore.records_of_subjects([workspace.pseudonymiser.subject(h) for h in holders])
    places = workspace.datastore.placements_of([key for keys in index.values() for key in keys])
    late = [h for h in holders if min(places[k][1] for k in index[workspace.pseudonymiser.subject(h)]) > 0]
    assert late, "a holder whose shard rewinds above slice 0: the case the certificate check refused"
    erase(a, late[:1])
    (tmp_path / "operator.pub").write_text(cli("-w", a, "keys", "public").stdout)
    [certificate] = (a / "certificates").glob("req_*.json")
    verified = cli_json("certificate", "verify", certificate, "--public-key", tmp_path / "operator.pub")
    assert verified["outcome"] == "erased"
    statement = json.loads(base64.b64decode(json.loads(certificate.read_text())["payload"]))
    [shard] = statement["predicate"]["erasure"]["shards"]
    # The schema change restarted the shard from initialisation, and the certificate says so.
    assert shard["from_slice"] == 0 and shard["restored_checkpoint"] is None


def test_when_the_retained_records_leave_one_class_the_run_stops_before_it_retrains(tmp_path: Path) -> None:
    rows = [
        {"subject": f"p{i}", "record": f"r{i}{j}", "x1": f"{i + j / 10}", "colour": "red", "label": "ab"[i % 2]}
        for i in range(4)
        for j in range(2)
    ]
    write_rows(tmp_path / "tiny.csv", rows)
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db", "--min-subjects-per-category", "2"))
    cli("-w", ws, "ingest", tmp_path / "tiny.csv", *columns(True))
    stopped = erase_expecting(ws, ["p0", "p1"], 3)
    assert "the retained records cannot keep a schema: fewer than two label classes" in stopped
    assert "the erasure itself is done" in stopped and stopped.count("\n") == 1


def erase_expecting(ws: Path, subjects: list[str], code: int) -> str:
    for subject in subjects:
        cli("-w", ws, "request", "--subject-id", subject)
    return str(cli("-w", ws, "run", "--device", "cpu", expect=code).stderr)
