"""The Python API a notebook user meets (issue 14, item 7): str paths, settings as keywords, tables
where files are taken, `train(ws)` without a plan, and a verifier key given as a path, text or object."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from forget.audit.ledger_view import public_keys
from forget.audit.verify import as_verifier_key, read_verifier_key, verify_certificate_file
from forget.data.ingest import ColumnChoice, ingest_file
from forget.errors import InputError
from forget.evaluation.evaluate import evaluate_utility
from forget.training.predict import predict_file
from forget.training.train import train
from forget.workspace.config import TrainingSettings
from forget.workspace.core import (
    InitOptions,
    InitSettings,
    Workspace,
    init_workspace,
    locate_workspace,
    open_workspace,
)
from reports.errors import CertificateError, CertificateFormatError
from reports.verify import VerifierKey, verify_certificate
from tests.conftest import write_tabular_csv

CHOICE = ColumnChoice(subject="subject", label="label", record_id="record")
SMALL: InitSettings = {"shards": 2, "slices": 2, "seed": 5, "epochs": 1.0, "model": "tanh-16", "batch_size": 16}


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_init_takes_a_str_path_and_settings_as_keywords(in_tmp: Path) -> None:
    ws = init_workspace("ws", shards=3, slices=2, seed=7, epochs=2, model="tanh-64", lr=0.01)
    assert ws.root == Path("ws") and (in_tmp / "ws" / "forget.toml").is_file()
    assert (ws.config.shards, ws.config.slices, ws.config.seed) == (3, 2, 7)
    assert (ws.config.training.epochs, ws.config.training.model, ws.config.training.lr) == (2, "tanh-64", 0.01)
    assert open_workspace("ws").config == ws.config
    assert locate_workspace("ws") == (in_tmp / "ws").resolve()

    # Keywords change an InitOptions (and its TrainingSettings) field by name, and win over it.
    options = InitOptions(shards=4, training=TrainingSettings(epochs=5, batch_size=8))
    other = init_workspace(in_tmp / "other", options, epochs=1, keys_from="ws")
    assert (other.config.shards, other.config.slices) == (4, InitOptions().slices)
    assert (other.config.training.epochs, other.config.training.batch_size) == (1, 8)
    assert other.pins.pseudonym_key == ws.pins.pseudonym_key  # keys_from took a str

    with pytest.raises(TypeError, match=r"^unknown workspace setting 'epoch': give a field of InitOptions or"):
        init_workspace("third", epoch=2)  # type: ignore[call-arg]
    with pytest.raises(InputError, match=r"^--epochs must be a finite number"):
        init_workspace("third", epochs=-1)
    assert not (in_tmp / "third" / "forget.toml").exists()


def test_the_keywords_are_exactly_the_settings() -> None:
    """`InitSettings` types `init_workspace`'s keywords: it must name every field, and only those."""
    fields = {f.name for f in dataclasses.fields(InitOptions)} | {f.name for f in dataclasses.fields(TrainingSettings)}
    assert set(InitSettings.__annotations__) == fields


def _stored(ws: Workspace) -> list[object]:
    return [ws.datastore.shard_rows(shard, ws.config.slices) for shard in range(ws.config.shards)]


def test_a_dataframe_or_a_table_ingests_exactly_as_its_file(in_tmp: Path) -> None:
    pd = pytest.importorskip("pandas")
    write_tabular_csv(in_tmp / "people.csv")
    by_file = init_workspace("by-file", **SMALL)
    ingest_file(by_file, "people.csv", CHOICE)
    for name, rows in [
        ("by-frame", pd.read_csv(in_tmp / "people.csv")),
        ("by-table", pacsv.read_csv(in_tmp / "people.csv")),
    ]:
        ws = init_workspace(name, keys_from="by-file", **SMALL)
        result = ingest_file(ws, rows, CHOICE)
        assert (result.rows, result.schema_inferred) == (240, True)
        assert ws.config.schema == by_file.config.schema
        assert _stored(ws) == _stored(by_file)
        with ws.datastore.snapshot() as tx:
            (entry,) = ws.ledger.entries(tx, kind="data.ingested")
        assert "table_sha256" in entry.payload and "file_sha256" not in entry.payload
    with by_file.datastore.snapshot() as tx:
        (entry,) = by_file.ledger.entries(tx, kind="data.ingested")
    assert "file_sha256" in entry.payload and "table_sha256" not in entry.payload

    # Later ingests need no column choice: the schema (here from a file, named by a str) has it.
    ws = init_workspace("by-schema", keys_from="by-file", **SMALL)
    ingest_file(ws, pacsv.read_csv(in_tmp / "people.csv"), schema_file="by-file/forget.toml")
    assert ws.config.schema == by_file.config.schema and _stored(ws) == _stored(by_file)


def test_table_messages_name_the_table(in_tmp: Path) -> None:
    pd = pytest.importorskip("pandas")
    ws = init_workspace("ws", **SMALL)
    frame = pd.DataFrame(
        {"subject": ["alice@example.org", None], "record": ["r1", "r2"], "x": [1.0, 2.0], "label": ["a", "b"]}
    )
    mixed = pd.DataFrame({"subject": ["s", "t"], "x": [1, "alice@example.org"], "label": ["a", "b"]})
    twice = pa.table({"subject": ["s"], "x": [1.0], "y": [2.0], "label": ["a"]})
    cases: list[tuple[object, str]] = [
        (frame, r"^the table: row 2 has an empty subject id \('subject'\)$"),
        (frame.drop(columns=["label"]), r"^the table has no column 'label' \(columns: subject, record, x\)$"),
        (frame.iloc[:0], r"^the table has no rows$"),
        (mixed, r"^the table cannot be converted to Arrow: its column 'x' \(object\) holds values of more than one"),
        (twice.rename_columns(["subject", "x", "x", "label"]), r"^the table has more than one column named 'x'$"),
        ([{"subject": "s"}], r"^cannot read rows from a list: give a CSV or Parquet file's path, a pyarrow Table"),
        ("missing.csv", r"^missing.csv does not exist or is not a file$"),  # a str is a path, as before
    ]
    for rows, pattern in cases:
        with pytest.raises(InputError, match=pattern) as raised:
            ingest_file(ws, rows, CHOICE)
        assert "alice" not in str(raised.value)  # no cell is ever quoted
    assert sum(ws.datastore.shard_counts().values()) == 0 and ws.config.schema is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path, str]:
    """A small trained workspace (from a pyarrow Table, without plan_training), one erasure certified."""
    root = tmp_path_factory.mktemp("notebook")
    csv = root / "people.csv"
    write_tabular_csv(csv)
    ws = init_workspace(str(root / "ws"), **SMALL)
    ingest_file(ws, pacsv.read_csv(csv), CHOICE)
    trained = train(ws, device="cpu")
    assert sorted(trained) == [0, 1] and train(ws, device="cpu") == {}  # nothing left to train
    from forget.erasure.job import run_job
    from forget.erasure.requests import file_request

    file_request(ws, "person-0001")
    summary = run_job(ws, device="cpu")
    return ws, csv, summary.certificates[0]


def test_predict_and_evaluate_take_a_path_a_table_or_a_dataframe(trained: tuple[Workspace, Path, str]) -> None:
    pd = pytest.importorskip("pandas")
    ws, csv, _ = trained
    by_path = predict_file(ws, str(csv))
    for rows in (pd.read_csv(csv), pacsv.read_csv(csv), csv):
        again = predict_file(ws, rows)
        assert again.labels == by_path.labels and (again.predicted == by_path.predicted).all()
    frame = pd.read_csv(csv)
    assert evaluate_utility(ws, frame).accuracy == evaluate_utility(ws, str(csv)).accuracy
    with pytest.raises(InputError, match=r"^the table has no column 'x1', which the schema needs$"):
        predict_file(ws, frame.drop(columns=["x1"]))
    with pytest.raises(InputError, match=r"^the table has no label column 'label' to evaluate against$"):
        evaluate_utility(ws, frame.drop(columns=["label"]))


def test_a_certificate_verifies_with_the_key_as_a_path_text_or_object(
    trained: tuple[Workspace, Path, str], tmp_path: Path
) -> None:
    ws, _, certificate = trained
    pem, line = public_keys(ws)
    key_file = tmp_path / "operator.pub"
    key_file.write_text(pem + line + "\n")
    key = read_verifier_key(key_file)
    for given in (key_file, str(key_file), pem + line, line, (pem + line).encode(), key):
        result = verify_certificate_file(certificate, public_key=given)
        assert result.predicate["request"]["outcome"] == "erased"
    assert as_verifier_key(pem, origin=ws.config.origin) == key  # a bare PEM key names its log explicitly
    with pytest.raises(CertificateFormatError, match="bare PEM key, which names no log"):
        verify_certificate_file(certificate, public_key=pem)
    with pytest.raises(CertificateFormatError, match=r"^--origin 'elsewhere' is not the verifier key's name"):
        verify_certificate_file(certificate, public_key=key, origin="elsewhere")
    with pytest.raises(CertificateError, match="the certificate is from log"):
        verify_certificate_file(certificate, public_key=VerifierKey("forget.local/other", key.public_key))
    # The library's contract is unchanged: a VerifierKey, never a bare key.
    with pytest.raises(TypeError, match="a bare key pins no log"):
        verify_certificate(Path(certificate).read_bytes(), key.public_key)
