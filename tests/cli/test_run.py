"""`forget request`, `status` and `run` end to end: equivalence, crashes, concurrency, completeness."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forget.erasure.job import Step
from forget.workspace.core import open_workspace
from forget.workspace.lock import job_lock
from tests import crashing_job
from tests.conftest import write_rows, write_tabular_csv
from tests.helpers import WorkspaceCache, cli, cli_json, init_args

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]
ERASED = ["person-0003", "person-0010", "person-0042", "person-0009"]


def build(tmp_path: Path, name: str, database_url: str, records: list[dict[str, str]], *extra: object) -> Path:
    ws = tmp_path / name
    write_rows(tmp_path / f"{name}.csv", records)
    cli(*init_args(ws, database_url, *extra))
    cli(
        "-w",
        ws,
        "ingest",
        tmp_path / f"{name}.csv",
        *COLUMNS,
        *(["--schema", extra[-1] / "forget.toml"] if extra else []),
    )
    cli("-w", ws, "train", "--device", "cpu")
    return ws


def trained(built: WorkspaceCache, tmp_path: Path, records: list[dict[str, str]]) -> Path:
    """`build(tmp_path, "ws", "sqlite:///forget.db", records)`: built once per session, copied here."""
    built.copy("run-ws", lambda root: build(root, "ws", "sqlite:///forget.db", records), tmp_path)
    return tmp_path / "ws"


def trained_without_erased(
    built: WorkspaceCache, tmp_path: Path, records: list[dict[str, str]], keys_from: Path
) -> Path:
    """The workspace trained on the records without ERASED, with the keys of `keys_from`, which
    must be a copy of `trained`'s (so the keys, and the cached workspace, are the same)."""
    retained = [r for r in records if r["subject"] not in ERASED]
    built.copy(
        "run-fresh",
        lambda root: build(root, "fresh", "sqlite:///forget.db", retained, "--keys-from", keys_from),
        tmp_path,
    )
    return tmp_path / "fresh"


def digests(ws: Path) -> dict[tuple[int, int], str]:
    return open_workspace(ws).datastore.checkpoint_map()


def forget_process(ws: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "-w", str(ws), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def records(tmp_path: Path) -> list[dict[str, str]]:
    return write_tabular_csv(tmp_path / "all.csv", rows=203)


@pytest.fixture
def reference(
    tmp_path: Path, records: list[dict[str, str]], built: WorkspaceCache
) -> tuple[Path, dict[tuple[int, int], str]]:
    """The workspace that erasure must reproduce: trained without the subjects, same keys and schema."""
    source = trained(built, tmp_path, records)
    return source, digests(trained_without_erased(built, tmp_path, records, source))


def test_request_status_run_status_equals_training_without_them(
    tmp_path: Path, database_url: str, records: list[dict[str, str]], built: WorkspaceCache
) -> None:
    on_sqlite = database_url.startswith("sqlite")
    ws = trained(built, tmp_path, records) if on_sqlite else build(tmp_path, "ws", database_url, records)
    for subject in ERASED:
        cli("-w", ws, "request", "--subject-id", subject)
    cli("-w", ws, "request", "--subject-id", "person-never-seen", "--received-at", "2026-01-05T10:00:00Z")
    status = cli("-w", ws, "status", "--json", expect=4)  # the January request is overdue
    assert json.loads(status.stdout)["overdue"] == 1
    before = digests(ws)
    dry = cli_json("-w", ws, "run", "--dry-run")
    assert len(dry["due"]) == 5 and dry["records"] > 0
    assert digests(ws) == before
    assert {r["state"] for r in json.loads(cli("-w", ws, "status", "--json", expect=4).stdout)["requests"]} == {
        "pending"
    }
    summary = cli_json("-w", ws, "run", "--device", "cpu")
    assert len(summary["completed"]) == 4 and len(summary["no_data"]) == 1
    assert summary["completed_late"] and len(summary["shards_retrained"]) == len(set(summary["shards_retrained"]))
    after = cli_json("-w", ws, "status")
    assert after["overdue"] == 0 and {r["state"] for r in after["requests"]} == {"completed"}
    assert cli_json("-w", ws, "run")["run_id"] is None  # nothing left: idempotent

    if on_sqlite:
        fresh = trained_without_erased(built, tmp_path, records, ws)
    else:  # keys of its own: train anew
        retained = [r for r in records if r["subject"] not in ERASED]
        fresh = build(tmp_path, "fresh", "sqlite:///forget.db", retained, "--keys-from", ws)
    assert digests(ws) == digests(fresh)
    cli("-w", ws, "ledger", "verify")
    kinds = [json.loads(line)["kind"] for line in cli("-w", ws, "ledger", "show", "--json").stdout.splitlines()]
    assert kinds.count("request.received") == 5 and kinds.count("request.completed") == 5
    assert kinds.index("erasure.planned") < kinds.index("erasure.checkpoints_purged") < kinds.index("request.completed")


def check_resumed(ws: Path, expected: dict[tuple[int, int], str], tmp_path: Path) -> None:
    """The same models as training without the subjects, nothing stale left, and every request
    completed with a certificate that verifies offline with the operator's verifier key alone."""
    assert digests(ws) == expected
    store_files = {p.name for p in (ws / "checkpoints").glob("??/*")}
    assert store_files == set(expected.values()), "a stale or unrecorded checkpoint survived the resume"
    requests = cli_json("-w", ws, "status")["requests"]
    assert {r["state"] for r in requests} == {"completed"}
    assert sum(r["outcome"] == "erased" for r in requests) == len(ERASED)
    cli("-w", ws, "ledger", "verify")
    key = tmp_path / "operator.pub"
    key.write_text(cli("-w", ws, "keys", "public").stdout)
    for request in requests:
        certificate = ws / "certificates" / f"{request['request_id']}.json"
        result = json.loads(cli("certificate", "verify", certificate, "--public-key", key, "--json").stdout)
        assert result["valid"] and result["outcome"] == request["outcome"]
        again = tmp_path / f"{request['request_id']}.json"
        cli("-w", ws, "certificate", "issue", request["request_id"], "-o", again)
        cli("certificate", "verify", again, "--public-key", key)


@pytest.mark.slow
@pytest.mark.parametrize("step", [s.value for s in Step])
def test_a_job_killed_at_any_step_resumes_to_the_same_models(
    tmp_path: Path, reference: tuple[Path, dict[tuple[int, int], str]], step: str
) -> None:
    """Killed at a step, then resumed with one more request filed in between: the killed run
    finishes under its own run id, the new request in a run of its own, and every certificate holds."""
    source, expected = reference
    ws = tmp_path / "crash"
    shutil.copytree(source, ws)
    for subject in ERASED[:-1]:
        cli("-w", ws, "request", "--subject-id", subject)
    killed = crashing_job.start(ws, step)
    _, killed_err = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed_err
    cli("-w", ws, "request", "--subject-id", ERASED[-1])
    resumed = forget_process(ws, "run", "--device", "cpu", "--json")
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    runs = json.loads(out)["runs"]
    assert len(runs) == (1 if step == "completed" else 2) and len(set(runs)) == len(runs)
    check_resumed(ws, expected, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_job_killed_at_random_moments_resumes_to_the_same_models(
    tmp_path: Path, reference: tuple[Path, dict[tuple[int, int], str]], seed: int
) -> None:
    """SIGKILL `forget run` after seeded random delays, up to three times, then let it finish."""
    rng = random.Random(seed)
    source, expected = reference
    ws = tmp_path / "crash"
    shutil.copytree(source, ws)
    for subject in ERASED:
        cli("-w", ws, "request", "--subject-id", subject)
    kills = 0
    for _ in range(3):
        process = forget_process(ws, "run", "--device", "cpu")
        try:
            process.communicate(timeout=rng.uniform(0.3, 1.8))  # a whole run takes about 2 s here
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            kills += 1
        if process.returncode == 0:
            break
        assert process.returncode == -signal.SIGKILL, process.returncode
    resumed = forget_process(ws, "run", "--device", "cpu", "--json")
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    check_resumed(ws, expected, tmp_path)
    if not kills:
        pytest.skip("every run finished before its kill: this machine is faster than the delays assume")


@pytest.mark.slow
def test_forget_run_reads_no_fault_from_the_environment(
    tmp_path: Path, records: list[dict[str, str]], built: WorkspaceCache
) -> None:
    """Faults are a seam the crash tests pass to `run_job` (tests/crashing_job.py): the variables
    the job once obeyed do nothing to a production `forget run`."""
    ws = trained(built, tmp_path, records)
    cli("-w", ws, "request", "--subject-id", ERASED[0])
    faults = {"FORGET_CRASH_AT": "started", "FORGET_PAUSE_AT": f"started:{tmp_path / 'never'}"}
    started = time.monotonic()
    done = forget_process(ws, "run", "--device", "cpu", "--json", env=faults)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert len(json.loads(out)["completed"]) == 1 and time.monotonic() - started < 50


def test_what_a_killed_training_wrote_but_never_recorded_is_removed_by_the_next_train(
    tmp_path: Path, records: list[dict[str, str]], built: WorkspaceCache
) -> None:
    ws = trained(built, tmp_path, records)
    expected = digests(ws)
    folder = ws / "checkpoints" / "ab"
    folder.mkdir(exist_ok=True)
    (folder / ".tmp-k1ll3d").write_bytes(b"half a checkpoint")  # a write cut by SIGKILL
    (folder / ("ab" + "0" * 62)).write_bytes(b"stored, never recorded")
    cli("-w", ws, "train", "--device", "cpu")
    assert digests(ws) == expected
    assert {p.name for p in (ws / "checkpoints").glob("??/*")} == set(expected.values())


def test_a_job_is_refused_while_another_holds_the_lock(
    tmp_path: Path, records: list[dict[str, str]], built: WorkspaceCache
) -> None:
    ws = trained(built, tmp_path, records)
    cli("-w", ws, "request", "--subject-id", ERASED[0])
    # A job holding the lock, in this process: a second job must leave everything as it is.
    with job_lock(open_workspace(ws)):
        blocked = cli("-w", ws, "run", expect=5)
    assert "another `forget run`, `train` or `ingest` is working on this workspace" in blocked.stderr
    assert cli_json("-w", ws, "status")["requests"][0]["state"] == "pending"


@pytest.mark.slow
def test_two_jobs_at_once_exactly_one_works(
    tmp_path: Path, records: list[dict[str, str]], built: WorkspaceCache
) -> None:
    """Two real processes: the first pauses inside the job; the second starts and is refused."""
    ws = trained(built, tmp_path, records)
    cli("-w", ws, "request", "--subject-id", ERASED[0])
    release = tmp_path / "release"
    first = crashing_job.start(ws, "started", pause_until=release)
    deadline = time.monotonic() + 60
    while cli_json("-w", ws, "status")["requests"][0]["state"] != "running":
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.1)
    second = forget_process(ws, "run", "--device", "cpu")
    _, second_err = second.communicate(timeout=60)
    release.touch()
    _, first_err = first.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 5), (first_err, second_err)
    assert cli_json("-w", ws, "status")["requests"][0]["state"] == "completed"


def test_erasure_leaves_no_trace_in_any_file(
    tmp_path: Path, records: list[dict[str, str]], built: WorkspaceCache
) -> None:
    ws = trained(built, tmp_path, records)
    store = open_workspace(ws).datastore
    subject_key = open_workspace(ws).pseudonymiser.subject(ERASED[1])
    import sqlalchemy as sa

    with store.engine.connect() as connection:
        blobs = [
            bytes(row[0])
            for row in connection.execute(
                sa.text("SELECT features FROM records WHERE subject_key = :k"), {"k": subject_key}
            )
        ]
    assert blobs
    cli("-w", ws, "request", "--subject-id", ERASED[1])
    cli("-w", ws, "run", "--device", "cpu")
    store.engine.dispose()
    needles = [ERASED[1].encode(), *blobs]
    for path in ws.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"{path.relative_to(ws)} still holds erased bytes"


def test_bad_requests_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cli(*init_args(ws, "sqlite:///forget.db"))

    def ledger_size() -> int:
        return len(cli("-w", ws, "ledger", "show", "--json").stdout.splitlines())

    cases: list[tuple[list[str], int, str]] = [
        (["request", "--subject-id", "   "], 2, "error: the subject id is malformed: the id is empty\n"),
        (["request", "--subject-id", "bad\nid"], 2, "error: the subject id is malformed"),
        (["request", "--subject-id", "x", "--received-at", "last week"], 2, "is not an ISO 8601"),
        (
            ["request", "extend", "req_nope", "--months", "1", "--reason", "r"],
            2,
            "no erasure request with that id in this workspace",
        ),
        (["status", "--request-id", "req_nope"], 2, "no erasure request with that id in this workspace"),
        (["run", "--due-within", "soon"], 2, "is not a duration"),
    ]
    before = ledger_size()  # the workspace's own first entries
    for args, code, message in cases:
        result = cli("-w", ws, *args, expect=code)
        assert message in result.stderr and result.stderr.count("\n") == 1, args
    assert ledger_size() == before
    (ws / "forget.db").unlink()
    result = cli("-w", ws, "request", "--subject-id", "alice", expect=3)
    assert "database" in result.stderr and "is missing" in result.stderr
    assert not (ws / "forget.db").exists()


def test_a_device_that_is_not_there_stops_the_job_before_it_erases(
    tmp_path: Path, records: list[dict[str, str]], built: WorkspaceCache
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    ws = trained(built, tmp_path, records)
    cli("-w", ws, "request", "--subject-id", ERASED[0])
    before = digests(ws)
    assert "sees no CUDA device" in cli("-w", ws, "run", "--device", "cuda", expect=3).stderr
    assert cli("-w", ws, "run", "--device", "gpu", expect=2).exit_code == 2
    assert digests(ws) == before
    assert cli_json("-w", ws, "status")["requests"][0]["state"] == "pending"
