"""C2SP witnesses: the add-checkpoint protocol, a restarted witness, and a workspace that uses them.

Loopback only: each witness listens on 127.0.0.1, port 0, in a thread (and once as a real
`forget witness serve` subprocess). The logs submitted here are built in memory with the pure
Merkle code, so every status code of c2sp.org/tlog-witness is provoked exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from forget.audit.witness import cosigned_note, uncosigned
from forget.workspace.config import WitnessSettings
from forget.workspace.core import open_workspace
from ledger import merkle
from ledger.cosignature import cosignatures, parse_witness_key, verify_cosignatures
from ledger.note import Checkpoint, sign_note, verifier_key
from ledger.witness import (
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    Response,
    Witness,
    WitnessError,
    WitnessUnavailable,
    make_server,
    submit_checkpoint,
)
from reports.errors import CertificateError
from reports.verify import verify_witness_cosignatures
from tests.helpers import cli, init_args
from tests.ledger.test_store import _bypass

ORIGIN = "test.local/witnessed"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"forget test witnessed log").digest())
LOG_VKEY = verifier_key(ORIGIN, LOG_KEY.public_key())
WITNESS_NAME = "witness.test/w1"


def _leaves(history: str, count: int) -> list[bytes]:
    """Leaf hashes of a log whose entries from 7 on depend on `history` (two histories share 0..6)."""
    return [merkle.leaf_hash(f"{history if i >= 7 else 'a'}-{i}".encode()) for i in range(count)]


def _note(leaves: list[bytes], origin: str = ORIGIN, key: Ed25519PrivateKey = LOG_KEY) -> str:
    return sign_note(Checkpoint(origin, len(leaves), merkle.root_hash(leaves)).to_text(), origin, key)


def _request(old: int, leaves: list[bytes], **overrides: object) -> AddCheckpoint:
    proof = tuple(merkle.consistency_proof(old, leaves)) if old else ()
    request = AddCheckpoint(old, proof, _note(leaves))
    return replace(request, **overrides)  # type: ignore[arg-type]


class Running:
    """A witness served from a thread; `stop()` closes the port, `start()` opens the same one again."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = folder
        self.port = port
        self.start()

    def start(self) -> None:
        self.witness = Witness(self.folder)
        self.server = make_server(self.witness, "127.0.0.1", self.port)
        self.port = int(self.server.server_address[1])
        # shutdown() waits for the loop's next poll: 0.5 s by default, at every test's teardown
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, request: AddCheckpoint) -> Response:
        return submit_checkpoint(self.url, request, timeout=5)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "witness"
    Witness.create(path, WITNESS_NAME).add_log(LOG_VKEY)
    return path


@pytest.fixture
def running(folder: Path) -> Iterator[Running]:
    served = Running(folder)
    yield served
    served.stop()


def _cosigned(running: Running, answer: Response, leaves: list[bytes]) -> None:
    assert answer.status == 200, answer.text
    assert answer.text.startswith(f"\u2014 {WITNESS_NAME} ") and answer.text.endswith("\n")
    key = parse_witness_key(running.witness.vkey)
    assert [c.witness for c in cosignatures(_note(leaves) + answer.text, [key])] == [WITNESS_NAME]


# --- the protocol ------------------------------------------------------------------------------


def test_a_fork_attempt_is_refused_with_409_or_422(running: Running) -> None:
    a5, a10, b10, b12 = _leaves("a", 5), _leaves("a", 10), _leaves("b", 10), _leaves("b", 12)
    _cosigned(running, running.add(_request(0, a5)), a5)
    _cosigned(running, running.add(_request(5, a10)), a10)
    # Another history of the same size: equal sizes, other root.
    assert running.add(_request(10, b10)).status == 422
    # Another history, grown, with a proof from that other history.
    refused = running.add(replace(_request(10, b12), proof=tuple(merkle.consistency_proof(10, b12))))
    assert refused.status == 422 and "not consistent with the checkpoint of size 10" in refused.text
    # A client that claims the witness is at 5 is told its real size, as text/x.tlog.size.
    conflict = running.add(_request(5, b12))
    assert (conflict.status, conflict.content_type, conflict.body) == (409, SIZE_CONTENT_TYPE, b"10\n")
    # The same checkpoint again is cosigned again (a client that lost the answer).
    _cosigned(running, running.add(_request(10, a10)), a10)


def test_the_other_status_codes_of_add_checkpoint(running: Running, folder: Path) -> None:
    a5 = _leaves("a", 5)
    stranger = Ed25519PrivateKey.generate()
    assert running.add(replace(_request(0, a5), note=_note(a5, origin="test.local/unknown"))).status == 404
    forged = running.add(replace(_request(0, a5), note=_note(a5, key=stranger)))
    assert (forged.status, forged.text) == (403, "no signature by a key this witness trusts for the log\n")
    # A line with the trusted key's name and id but a bad signature fails the note (403), even
    # next to a good one.
    good = _note(a5)
    line = good.rpartition("\n\n")[2]
    blob = bytearray(base64.b64decode(line.split(" ")[-1]))
    blob[-1] ^= 1
    bad_line = f"\u2014 {ORIGIN} {base64.b64encode(bytes(blob)).decode()}\n"
    assert running.add(replace(_request(0, a5), note=good + bad_line)).status == 403
    assert running.add(_request(0, a5, old_size=6)).status == 400  # old size above the checkpoint's
    assert running.add(replace(_request(0, a5), proof=(b"\x00" * 32,))).status == 422  # a proof from size 0
    empty = sign_note(Checkpoint(ORIGIN, 0, b"\x01" * 32).to_text(), ORIGIN, LOG_KEY)
    assert running.add(AddCheckpoint(0, (), empty)).status == 422
    for body in (b"old 01\n\n" + good.encode(), b"old 0\n" + good.encode(), b"\xff\n\n", b"old 0\nnot base64!\n\n"):
        assert _raw_status(running.url + "/add-checkpoint", body) == 400  # bodies the client cannot send
    too_many = AddCheckpoint(5, tuple(b"\x00" * 32 for _ in range(64)), good)
    assert running.add(too_many).status == 400
    assert _raw_status(running.url + "/nowhere", b"") == 404
    assert json.loads((folder / "state.json").read_text())["logs"] == {}  # nothing was cosigned


def _raw_status(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_restarted_witness_keeps_its_state(running: Running, folder: Path) -> None:
    a10, b10 = _leaves("a", 10), _leaves("b", 10)
    _cosigned(running, running.add(_request(0, a10)), a10)
    running.stop()
    with pytest.raises(WitnessUnavailable, match=r"^the witness at http://127\.0\.0\.1:\d+ is unreachable"):
        running.add(_request(10, b10))
    running.start()  # a new process's worth of state: read back from disk
    assert running.add(_request(10, b10)).status == 422
    conflict = running.add(_request(0, b10))
    assert (conflict.status, conflict.body) == (409, b"10\n")
    origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        f"{running.url}/{origin_hash}/checkpoint", timeout=5
    ) as answer:
        latest = answer.read().decode()
    assert latest.startswith(_note(a10)) and cosignatures(latest, [parse_witness_key(running.witness.vkey)])


def test_a_witness_listens_on_loopback_only_unless_allowed(folder: Path) -> None:
    with pytest.raises(WitnessError, match=r"^refusing to listen on 0\.0\.0\.0: a witness serves loopback"):
        make_server(Witness(folder), "0.0.0.0", 0)
    with pytest.raises(WitnessError, match="already holds a witness"):
        Witness.create(folder, WITNESS_NAME)


def test_witness_serve_runs_as_a_subprocess(tmp_path: Path) -> None:
    state = tmp_path / "w"
    vkey = cli("witness", "init", "--state", state, "--name", WITNESS_NAME).stdout.strip()
    assert parse_witness_key(vkey).name == WITNESS_NAME
    assert cli("witness", "add-log", "--state", state, "--key", LOG_VKEY).stdout == f"witnessing {ORIGIN}\n"
    refused = cli("witness", "serve", "--state", state, "--host", "192.0.2.1", expect=3)
    assert refused.stderr.startswith("error: refusing to listen on 192.0.2.1")
    command = [sys.executable, "-m", "cli", "witness", "serve", "--state", str(state), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"witness {WITNESS_NAME} listening on http://127.0.0.1:")
        url = first.rsplit(" ", 1)[-1].strip()
        assert process.stdout.readline() == f"verifier key: {vkey}\n"
        a3 = _leaves("a", 3)
        answer = submit_checkpoint(url, _request(0, a3), timeout=5)
        assert answer.status == 200
        verify_cosignatures(_note(a3) + answer.text, [vkey])
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- a workspace with witnesses ---------------------------------------------------------------


def _workspace(tmp_path: Path, database_url: str, running: Running) -> Path:
    ws = tmp_path / "ws"
    cli(*init_args(ws, database_url))
    workspace = open_workspace(ws)
    log_vkey = cli("-w", ws, "keys", "public").stdout.strip().splitlines()[-1]
    running.witness.add_log(log_vkey)
    workspace.save_config(
        replace(workspace.config, witnesses=(WitnessSettings(running.url, running.witness.vkey),), witness_timeout=2)
    )
    return ws


def _head_size(ws: Path) -> int:
    return int(cli("-w", ws, "ledger", "head").stdout.splitlines()[1])


def test_signing_collects_cosignatures_and_certificates_can_require_them(
    tmp_path: Path, database_url: str, running: Running
) -> None:
    ws = _workspace(tmp_path, database_url, running)
    cli("-w", ws, "request", "--subject-id", "person-0001")
    size = _head_size(ws)
    note = cosigned_note(open_workspace(ws), size)
    vkey = running.witness.vkey
    verify_witness_cosignatures(note, [vkey])
    assert uncosigned(open_workspace(ws)) == {WITNESS_NAME: []}  # the head signed at init too, in order
    other = Ed25519PrivateKey.generate()
    from ledger.cosignature import witness_verifier_key

    with pytest.raises(CertificateError, match=r"^witnesses: the checkpoint is cosigned by 1 of the 2 witnesses"):
        verify_witness_cosignatures(note, [vkey, witness_verifier_key("witness.test/w2", other.public_key())])
    assert cli("-w", ws, "ledger", "cosign").stdout == "witness.test/w1: cosigned now none; every head cosigned\n"
    # The anchor holds the cosignature; the database's heads table is untouched.
    anchor = (ws / "ledger-anchor.jsonl").read_text()
    assert '"type":"cosignature"' in anchor and anchor.count('"type":"head"') == 2


def test_an_unreachable_witness_never_blocks_signing_and_is_collected_later(
    tmp_path: Path, database_url: str, running: Running
) -> None:
    ws = _workspace(tmp_path, database_url, running)
    cli("-w", ws, "request", "--subject-id", "person-0001")
    first = _head_size(ws)
    running.stop()
    result = cli("-w", ws, "request", "--subject-id", "person-0002")  # signs; the witness is down
    assert result.stderr.startswith("warning: witness witness.test/w1: the witness at http://127.0.0.1:")
    assert "is unreachable" in result.stderr and "run `forget ledger cosign` later" in result.stderr
    second = _head_size(ws)
    assert second > first
    cli("-w", ws, "request", "--subject-id", "person-0003")
    last = _head_size(ws)
    assert uncosigned(open_workspace(ws)) == {WITNESS_NAME: [second, last]}  # marked: no cosignature
    down = cli("-w", ws, "ledger", "cosign", expect=3)
    assert down.stdout.startswith("witness.test/w1: cosigned now none; 2 heads uncosigned; the witness at")
    running.start()  # back on the same port
    done = cli("-w", ws, "ledger", "cosign")
    assert done.stdout == f"witness.test/w1: cosigned now {second}, {last}; every head cosigned\n"
    verify_cosignatures(cosigned_note(open_workspace(ws), last), [running.witness.vkey])
    verify_cosignatures(cosigned_note(open_workspace(ws), second), [running.witness.vkey])


def test_a_witness_catches_a_rollback_that_the_anchor_missed(
    tmp_path: Path, database_url: str, running: Running
) -> None:
    """A writer who can reach the database and the anchor both rolls them back and regrows the log:
    only a witness, which cosigned the lost heads, still notices."""
    from forget.store.datastore import create_engine, resolve_url

    ws = _workspace(tmp_path, database_url, running)
    cli("-w", ws, "request", "--subject-id", "person-0001")
    kept = _head_size(ws)
    shutil.copy(ws / "ledger-anchor.jsonl", tmp_path / "anchor-copy.jsonl")
    cli("-w", ws, "request", "--subject-id", "person-0002")
    lost = _head_size(ws)
    shutil.copy(tmp_path / "anchor-copy.jsonl", ws / "ledger-anchor.jsonl")
    engine = create_engine(resolve_url(database_url, ws), must_exist=True)
    try:
        with engine.begin() as connection:
            _bypass(
                connection,
                [
                    (f"DELETE FROM ledger_entries WHERE seq >= {kept}", {}),
                    (f"DELETE FROM ledger_nodes WHERE ((idx + 1) << level) > {kept}", {}),
                    (f"DELETE FROM ledger_heads WHERE size > {kept}", {}),
                    ("DELETE FROM requests", {}),
                ],
            )
    finally:
        engine.dispose()
    signed = cli("-w", ws, "request", "--subject-id", "person-0003")  # the rolled-back anchor lets it sign
    assert _head_size(ws) == lost and "witness witness.test/w1" in signed.stderr
    refused = cli("-w", ws, "ledger", "cosign", expect=1)
    assert refused.stdout == (
        f"witness.test/w1: cosigned now none; 1 heads uncosigned; it refused the head of size {lost} as inconsistent"
        " with what it cosigned before: this log was rolled back or forked\n"
    )


@pytest.mark.slow
def test_certificate_verify_requires_the_given_witnesses(tmp_path: Path) -> None:
    from ledger.cosignature import witness_verifier_key
    from reports.verify import VerifierKey, verify_certificate
    from tests.conftest import write_tabular_csv

    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db", "--shards", "2", "--slices", "2"))
    rows = write_tabular_csv(tmp_path / "people.csv", rows=40, seed=3)
    cli("-w", ws, "ingest", tmp_path / "people.csv", "--subject-column", "subject", "--label-column", "label")
    cli("-w", ws, "train", "--device", "cpu")
    cli("-w", ws, "request", "--subject-id", rows[0]["subject"])
    cli("-w", ws, "run", "--device", "cpu")
    (certificate,) = (ws / "certificates").glob("*.json")
    public = tmp_path / "public.txt"
    public.write_text(cli("-w", ws, "keys", "public").stdout)
    absent = tmp_path / "w2.vkey"
    absent.write_text(witness_verifier_key("witness.test/w2", Ed25519PrivateKey.generate().public_key()) + "\n")
    cli("certificate", "verify", certificate, "--public-key", public)
    refused = cli("certificate", "verify", certificate, "--public-key", public, "--witness-key", absent, expect=1)
    assert refused.stderr == (
        "error: witnesses: the checkpoint is cosigned by 0 of the 1 witnesses given, fewer than the 1 required"
        " (missing: witness.test/w2)\n"
    )
    bad = cli("certificate", "verify", certificate, "--public-key", public, "--witness-key", absent,
              "--witness-threshold", "2", expect=2)  # fmt: skip
    assert "--witness-threshold" in bad.stderr
    vkey = public.read_text().strip().splitlines()[-1]
    with pytest.raises(CertificateError, match="cosigned by 0 of the 1 witnesses"):
        verify_certificate(certificate.read_bytes(), VerifierKey.parse(vkey), witness_keys=[absent.read_text()])
