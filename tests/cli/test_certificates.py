"""Certificates from a real workspace: offline verification, tampering, later checkpoints, replay."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_tabular_csv
from tests.helpers import cli, cli_json, init_args

PRESENT = "person-0046"  # the first subject of the generated data (rows=150, seed 7)
COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]


def make_workspace(root: Path, name: str) -> Path:
    write_tabular_csv(root / f"{name}.csv", rows=150)
    ws = root / name
    cli(*init_args(ws, "sqlite:///forget.db"))
    cli("-w", ws, "ingest", root / f"{name}.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")
    return ws


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("certs")
    ws = make_workspace(root, "ws")
    erased = cli_json("-w", ws, "request", "--subject-id", PRESENT)["request_id"]
    nodata = cli_json("-w", ws, "request", "--subject-id", "nobody-at-all")["request_id"]
    summary = cli_json("-w", ws, "run", "--device", "cpu")
    assert len(summary["certificates"]) == 2
    (root / "key.pem").write_text(cli("-w", ws, "keys", "public").stdout.split("-----END PUBLIC KEY-----")[0]
                                  + "-----END PUBLIC KEY-----\n")  # fmt: skip
    other = make_workspace(root, "other")
    return {
        "root": root,
        "ws": ws,
        "erased": ws / "certificates" / f"{erased}.json",
        "nodata": ws / "certificates" / f"{nodata}.json",
        "key": root / "key.pem",
        "other": other,
    }


def verify(cert: Path, key: Path, *extra: object, expect: int = 0) -> Any:
    return cli("certificate", "verify", cert, "--public-key", key, *extra, expect=expect)


def test_a_fresh_process_in_an_empty_folder_verifies_with_certificate_and_key_only(
    issued: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copy(issued["erased"], tmp_path / "certificate.json")
    shutil.copy(issued["key"], tmp_path / "key.pem")
    script = (
        "import sys\n"
        "from cli.main import run\n"
        "sys.argv = ['forget', 'certificate', 'verify', 'certificate.json', '--public-key', 'key.pem']\n"
        "try:\n    run()\nexcept SystemExit as exit:\n    code = exit.code or 0\nelse:\n    code = 0\n"
        "loaded = [m for m in ('torch', 'sqlalchemy', 'numpy') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("valid: request req_") and "(erased, " in done.stdout


def test_no_data_held_gets_its_own_certificate(issued: dict[str, Path]) -> None:
    result = json.loads(verify(issued["nodata"], issued["key"], "--json").stdout)
    assert result["valid"] and result["outcome"] == "no_data" and result["records_erased"] == 0


def _resign_free(mutate: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Change the statement inside the envelope without re-signing it."""

    def apply(envelope: dict[str, Any]) -> None:
        statement = json.loads(base64.b64decode(envelope["payload"]))
        mutate(statement)
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()

    return apply


def _flip_hex(value: str) -> str:
    return ("0" if value[0] != "0" else "1") + value[1:]


def _entry(statement: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in statement["predicate"]["log"]["entries"] if e["kind"] == kind)
    return found


def _edit_canonical(statement: dict[str, Any]) -> None:
    entry = _entry(statement, "request.received")
    entry["canonical"] = base64.b64encode(base64.b64decode(entry["canonical"]).replace(b"request", b"REQUEST")).decode()


def _flip_signature(envelope: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


TAMPERING: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "outcome": (_resign_free(lambda s: s["predicate"]["request"].update(outcome="no_data")),
                "the statement's request.outcome differs from the logged completion"),
    "records": (_resign_free(lambda s: s["predicate"]["request"].update(records_erased=99)),
                "the statement's request.records_erased differs from the logged completion"),
    "deadline_met": (_resign_free(lambda s: s["predicate"]["request"].update(deadline_met=False)),
                     "the statement's request.deadline_met differs"),
    "checkpoint_after": (_resign_free(lambda s: s["predicate"]["erasure"]["shards"][0].update(
                             checkpoint_after="0" * 64)), "checkpoint_after differs from the log"),
    "from_slice": (_resign_free(lambda s: s["predicate"]["erasure"]["shards"][0].update(from_slice=7)),
                   "from_slice differs from the logged plan"),
    "proof byte": (_resign_free(lambda s: _entry(s, "request.completed")["inclusion_proof"].__setitem__(
                       0, _flip_hex(_entry(s, "request.completed")["inclusion_proof"][0]))),
                   "the inclusion proof fails"),
    "entry bytes": (_resign_free(_edit_canonical), "its leaf hash does not match its bytes"),
    "checkpoint note": (_resign_free(lambda s: s["predicate"]["log"].update(
                            checkpoint=s["predicate"]["log"]["checkpoint"].replace("\n", "\n1", 1))),
                        "the signed checkpoint"),
    "subject": (_resign_free(lambda s: s["subject"][0]["digest"].update(sha256="0" * 64)),
                "the statement's subjects do not match"),
    "issued_at": (_resign_free(lambda s: s["predicate"].update(issued_at="2020-01-01T00:00:00Z")),
                  "envelope signature does not verify"),
    "signature byte": (_flip_signature, "envelope signature does not verify"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TAMPERING))
def test_each_kind_of_tampering_fails_with_its_own_message(issued: dict[str, Path], tmp_path: Path, case: str) -> None:
    mutate, message = TAMPERING[case]
    envelope = json.loads(issued["erased"].read_text())
    mutate(envelope)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(envelope))
    result = verify(forged, issued["key"], expect=1)
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_wrong_key_other_log_and_garbage(issued: dict[str, Path], tmp_path: Path) -> None:
    other_key = issued["other"] / "keys" / "signing.pub.pem"
    assert "not signed by the given public key" in verify(issued["erased"], other_key, expect=1).stderr
    other_head = tmp_path / "other-head.json"
    other_head.write_text(cli("-w", issued["other"], "ledger", "head", "--consistency-from", "1").stdout)
    result = verify(issued["erased"], issued["key"], "--checkpoint", other_head, expect=1)
    assert "the later checkpoint does not verify" in result.stderr
    (tmp_path / "junk.json").write_text("{not json")
    assert "not a certificate" in verify(tmp_path / "junk.json", issued["key"], expect=2).stderr
    assert "cannot read the certificate" in verify(tmp_path / "missing.json", issued["key"], expect=2).stderr


def test_a_later_checkpoint_proves_the_log_only_grew(issued: dict[str, Path], tmp_path: Path) -> None:
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
    bundle["consistency_proof"][0] = _flip_hex(bundle["consistency_proof"][0])
    later.write_text(json.dumps(bundle))
    assert "the log did not only grow" in verify(issued["erased"], issued["key"], "--checkpoint", later,
                                                 expect=1).stderr  # fmt: skip


def test_certificate_issue_and_render(issued: dict[str, Path], tmp_path: Path) -> None:
    request_id = issued["erased"].stem
    cli("-w", issued["ws"], "certificate", "issue", request_id, "-o", tmp_path / "again.json")
    verify(tmp_path / "again.json", issued["key"])
    cli("certificate", "render", issued["erased"], "--html", tmp_path / "c.html")
    html = (tmp_path / "c.html").read_text()
    assert request_id in html and "forget certificate verify" in html
    pending = cli_json("-w", issued["ws"], "request", "--subject-id", "still-pending")["request_id"]
    result = cli("-w", issued["ws"], "certificate", "issue", pending, "-o", tmp_path / "x.json", expect=2)
    assert "not completed" in result.stderr


def test_audit_replay_reproduces_and_catches_an_altered_checkpoint(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, "ws")
    request_id = cli_json("-w", ws, "request", "--subject-id", PRESENT)["request_id"]
    cli("-w", ws, "run", "--device", "cpu")
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
