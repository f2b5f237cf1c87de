"""Certificates from a real workspace: offline verification, origin pinning, one person per
certificate, later checkpoints, issue, render and replay.

The verifier's behaviour on malformed and tampered certificates (another key, another log,
another origin, a bad later checkpoint, a changed statement, an unreadable file) is tested on a
synthetic certificate in tests/reports/test_verify.py; here, what needs a trained workspace, and
each of those kinds once end to end through the CLI, for its exit code and message. The issued
workspace is built once per session (the `built` cache) and shared by this module's tests.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from forget.workspace.core import open_workspace
from tests.conftest import write_tabular_csv
from tests.helpers import WorkspaceCache, cli, cli_json, init_args

PRESENT = "person-0046"  # the first subject of the generated data (rows=150, seed 7)
COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]


def make_workspace(root: Path, name: str, *extra: object) -> Path:
    write_tabular_csv(root / f"{name}.csv", rows=150)
    ws = root / name
    cli(*init_args(ws, "sqlite:///forget.db", *extra))
    cli("-w", ws, "ingest", root / f"{name}.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")
    return ws


def batch_mates(ws: Path) -> list[str]:
    """PRESENT and two more held subjects, one of which shares PRESENT's shard."""
    workspace = open_workspace(ws)
    store = workspace.datastore
    subjects = sorted({row["subject"] for row in _rows(ws.parent / "ws.csv")})

    def shards(subject: str) -> set[int]:
        records = store.records_of_subjects([workspace.pseudonymiser.subject(subject)])
        keys = [k for found in records.values() for k in found]
        return {shard for shard, _ in store.placements_of(keys).values()}

    mine = shards(PRESENT)
    same = next(s for s in subjects if s != PRESENT and shards(s) == mine)
    other = next(s for s in subjects if s not in (PRESENT, same) and shards(s) and not shards(s) & mine)
    return [PRESENT, same, other]


def _rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as handle:
        return list(csv.DictReader(handle))


def issue(root: Path) -> dict[str, Any]:
    """A workspace in root/ws that erased three batch mates and found no data for a fourth request."""
    ws = make_workspace(root, "ws")
    subjects = batch_mates(ws)
    requests = [cli_json("-w", ws, "request", "--subject-id", s)["request_id"] for s in subjects]
    nodata = cli_json("-w", ws, "request", "--subject-id", "nobody-at-all")["request_id"]
    summary = cli_json("-w", ws, "run", "--device", "cpu")
    assert len(summary["certificates"]) == 4 and len(summary["completed"]) == 3
    (root / "operator.pub").write_text(cli("-w", ws, "keys", "public").stdout)  # PEM, then the verifier key
    pem, _, _ = (root / "operator.pub").read_text().partition("-----END PUBLIC KEY-----")
    (root / "key.pem").write_text(pem + "-----END PUBLIC KEY-----\n")
    workspace = open_workspace(ws)
    return {
        "requests": requests,
        "nodata": nodata,
        "subject_keys": [workspace.pseudonymiser.subject(s) for s in subjects],
        "origin": workspace.config.origin,
    }


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory, built: WorkspaceCache) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("certs")
    made = built.copy("certificates-issued", issue, root)
    ws = root / "ws"
    return {
        **made,
        "root": root,
        "ws": ws,
        "erased": ws / "certificates" / f"{made['requests'][0]}.json",
        "nodata": ws / "certificates" / f"{made['nodata']}.json",
        "key": root / "operator.pub",
        "pem": root / "key.pem",
    }


def verify(cert: Path, key: Path, *extra: object, expect: int = 0) -> Any:
    return cli("certificate", "verify", cert, "--public-key", key, *extra, expect=expect)


def test_a_fresh_process_in_an_empty_folder_verifies_with_certificate_and_key_only(
    issued: dict[str, Any], tmp_path: Path
) -> None:
    shutil.copy(issued["erased"], tmp_path / "certificate.json")
    shutil.copy(issued["key"], tmp_path / "operator.pub")
    script = (
        "import sys\n"
        "from cli.main import run\n"
        "sys.argv = ['forget', 'certificate', 'verify', 'certificate.json', '--public-key', 'operator.pub']\n"
        "try:\n    run()\nexcept SystemExit as exit:\n    code = exit.code or 0\nelse:\n    code = 0\n"
        "loaded = [m for m in ('torch', 'sqlalchemy', 'numpy') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("valid: request req_") and "(erased, " in done.stdout


def test_every_certificate_of_the_batch_verifies_and_no_data_gets_its_own(issued: dict[str, Any]) -> None:
    for request_id in issued["requests"]:
        result = json.loads(
            verify(issued["ws"] / "certificates" / f"{request_id}.json", issued["key"], "--json").stdout
        )
        assert result["valid"] and result["outcome"] == "erased" and result["origin"] == issued["origin"]
    result = json.loads(verify(issued["nodata"], issued["key"], "--json").stdout)
    assert result["valid"] and result["outcome"] == "no_data" and result["records_erased"] == 0


def _everything_in(path: Path) -> str:
    """The certificate file, its statement, and every carried entry's bytes, as one text."""
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    text = path.read_text() + json.dumps(statement)
    for item in statement["predicate"]["log"]["entries"]:
        text += base64.b64decode(item["canonical"]).decode()
    return text


def text_of(request_id: str, issued: dict[str, Any]) -> str:
    return str((issued["ws"] / "certificates" / f"{request_id}.json").read_text())


def test_one_certificate_one_person(issued: dict[str, Any]) -> None:
    """Three requests in one batch, two sharing a shard: each certificate names its own request only."""
    requests, keys = issued["requests"], issued["subject_keys"]
    for i, request_id in enumerate(requests):
        text = _everything_in(issued["ws"] / "certificates" / f"{request_id}.json")
        assert request_id in text and keys[i] in text
        for j in range(len(requests)):
            if j != i:
                assert requests[j] not in text, f"the certificate of {request_id} names {requests[j]}"
                assert keys[j] not in text, f"the certificate of {request_id} holds another subject key"
        statement = json.loads(base64.b64decode(json.loads(text_of(requests[i], issued))["payload"]))
        planned = [
            json.loads(base64.b64decode(e["canonical"]))["payload"]
            for e in statement["predicate"]["log"]["entries"]
            if e["kind"] == "erasure.planned"
        ]
        assert len(planned) == 1 and planned[0]["request_id"] == request_id


def test_a_shadow_workspace_with_the_same_key_is_refused(issued: dict[str, Any], tmp_path: Path) -> None:
    """`init --keys-from prod` signs with production's key under another origin: pinned, it fails."""
    shadow = make_workspace(tmp_path, "shadow", "--keys-from", issued["ws"])
    request_id = cli_json("-w", shadow, "request", "--subject-id", PRESENT)["request_id"]
    cli("-w", shadow, "run", "--device", "cpu")
    forged = shadow / "certificates" / f"{request_id}.json"
    result = verify(forged, issued["key"], expect=1)
    assert "the certificate is from log 'forget.local/" in result.stderr
    assert f"the verifier key is for '{issued['origin']}'" in result.stderr
    assert "bare PEM key, which names no log" in verify(forged, issued["pem"], expect=2).stderr
    assert verify(forged, issued["pem"], "--origin", issued["origin"], expect=1).exit_code == 1
    verify(issued["erased"], issued["pem"], "--origin", issued["origin"])


def test_wrong_key_other_log_and_garbage(issued: dict[str, Any], tmp_path: Path) -> None:
    """Through the CLI, end to end; the verifier's side of each is in tests/reports/test_verify.py."""
    other = tmp_path / "other"  # another operator's workspace: its keys and its log's first head
    cli(*init_args(other, "sqlite:///forget.db"))
    other_key = tmp_path / "other.pub"
    other_key.write_text(cli("-w", other, "keys", "public").stdout)
    assert "not signed by the given public key" in verify(issued["erased"], other_key, expect=1).stderr
    other_head = tmp_path / "other-head.json"
    other_head.write_text(cli("-w", other, "ledger", "head", "--consistency-from", "1").stdout)
    result = verify(issued["erased"], issued["key"], "--checkpoint", other_head, expect=1)
    assert "the later checkpoint does not verify" in result.stderr
    (tmp_path / "junk.json").write_text("{not json")
    assert "not a certificate" in verify(tmp_path / "junk.json", issued["key"], expect=2).stderr
    assert "cannot read the certificate" in verify(tmp_path / "missing.json", issued["key"], expect=2).stderr


def test_a_later_checkpoint_proves_the_log_only_grew(issued: dict[str, Any], tmp_path: Path) -> None:
    ws = issued["ws"]
    statement = json.loads(base64.b64decode(json.loads(issued["erased"].read_text())["payload"]))
    size = int(statement["predicate"]["log"]["checkpoint"].split("\n")[1])
    cli("-w", ws, "request", "--subject-id", "later-person")
    cli("-w", ws, "run", "--device", "cpu")
    later = tmp_path / "later.json"
    later.write_text(cli("-w", ws, "ledger", "head", "--consistency-from", size).stdout)
    result = json.loads(verify(issued["erased"], issued["key"], "--checkpoint", later, "--json").stdout)
    assert result["later_tree_size"] > size
    bundle = json.loads(later.read_text())
    bundle["consistency_proof"][0] = ("0" if bundle["consistency_proof"][0][0] != "0" else "1") + bundle[
        "consistency_proof"
    ][0][1:]
    later.write_text(json.dumps(bundle))
    assert "the log did not only grow" in verify(issued["erased"], issued["key"], "--checkpoint", later,
                                                 expect=1).stderr  # fmt: skip


def test_certificate_issue_and_render(issued: dict[str, Any], tmp_path: Path) -> None:
    request_id = issued["erased"].stem
    cli("-w", issued["ws"], "certificate", "issue", request_id, "-o", tmp_path / "again.json")
    verify(tmp_path / "again.json", issued["key"])
    cli("certificate", "render", issued["erased"], "--public-key", issued["key"], "--html", tmp_path / "c.html")
    html = (tmp_path / "c.html").read_text()
    assert request_id in html and "forget certificate verify" in html
    forged = json.loads(issued["erased"].read_text())
    forged["payload"] = base64.b64encode(base64.b64decode(forged["payload"]).replace(b"erased", b"no_data")).decode()
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    refused = cli("certificate", "render", tmp_path / "forged.json", "--public-key", issued["key"],
                  "--html", tmp_path / "forged.html", expect=1)  # fmt: skip
    assert "envelope signature does not verify" in refused.stderr and not (tmp_path / "forged.html").exists()
    pending = cli_json("-w", issued["ws"], "request", "--subject-id", "still-pending")["request_id"]
    result = cli("-w", issued["ws"], "certificate", "issue", pending, "-o", tmp_path / "x.json", expect=2)
    assert "not completed" in result.stderr


def test_audit_replay_reproduces_and_catches_an_altered_checkpoint(tmp_path: Path, built: WorkspaceCache) -> None:
    request_id = built.copy("certificates-issued", issue, tmp_path)["requests"][0]  # a copy of its own
    ws = tmp_path / "ws"
    replay = cli_json("-w", ws, "audit", "replay", request_id)
    assert replay["reproduced"] and replay["compared"] >= 1
    shard = replay["shards"][0]
    digest = next(s for s in cli_json("-w", ws, "shards") if s["shard"] == shard)["latest_checkpoint"]
    path = ws / "checkpoints" / digest[:2] / digest
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    result = cli("-w", ws, "audit", "replay", request_id, expect=1)
    assert "MISMATCH" in result.stdout and "is corrupt" in result.stdout
