"""Benchmark: `forget serve` on the Purchase-like data, through real HTTP on loopback (issue 13, item 5).

    python benchmarks/bench_service.py                        # all three parts, about 3 min on 2 cores
    python benchmarks/bench_service.py --cache /tmp/bsvc      # keep the trained workspace between runs
    python benchmarks/bench_service.py --parts predict --predict-seconds 20

It builds issue 12's Purchase-like workspace once (`bench_process.py`'s: 24,000 training rows x 600
binary features, 100 classes, 20 shards x 10 slices, forget's defaults, seeded keys), copies it, creates
tokens with `forget token create --json`, and starts a real `forget serve --port 0 --device cpu` process
(it reads the address from the server's first stdout line; the access log goes to a file). Then:

1. `erasure`: one subject at a time (`--subjects`, seeded), `POST /v1/requests` -> 201 (`post`: the
   201 comes after the commit that records the request and its quarantine in one transaction), at
   once a `POST /v1/predict` (`quarantine_visible`: from the POST's start to the first answer without
   the subject's shard, checked against the ledger's `request.quarantined` entry), then
   `GET /v1/certificates/{id}` every `--poll` seconds until the certificate is there and the request
   `completed` (`certified`, from the POST's start; `certificate_written`: the certificate file's
   modification time, which the poll's interval does not blur). The server runs the erasure in
   process right after the request (`--run-after-request`, the default); `steps_ms_median` splits it
   by the ledger's entry times (each step's entry is written when the step is done).
2. `predict`: `--clients` concurrent keep-alive connections (a lean asyncio HTTP/1.1 client, so the
   client's own CPU disturbs the 2-core machine little), each posting one row to `POST /v1/predict`:
   back to back for `--predict-seconds` (closed loop: throughput at saturation, latency p50/p99),
   then at a fixed total rate (`--open-rate`, open loop: latency at a sustainable load), once with no
   erasure and once, like the closed loop, while a second thread files a request whenever the
   previous one is certified, so an erasure runs all the time. Latency is client-side, from the
   first byte sent to the last byte received.
3. `intake`: a fresh copy, `forget serve --no-run-after-request` with the rate limit lifted;
   `--intake` requests (seeded training subjects: each quarantines its shard) from
   `--intake-clients` concurrent clients, SIGKILL of the server once half are acknowledged; every
   201-acknowledged request must be in `forget status --json`, no request or subject twice; a
   restarted server then takes all of them again (200 for those present, 201 for the rest) and ends
   with exactly `--intake` open requests, one per subject; `forget ledger verify` passes.

Every number comes with the load average at its start and end, and the server's CPU seconds
(/proc/PID/stat). Only 127.0.0.1, bounded in count and time. Progress goes to stderr; the last line
of stdout is one JSON object. Needs the `bench` and `serve` extras (scikit-learn, httpx, uvicorn).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_process import trained_workspace

FORGET = [sys.executable, "-m", "cli"]  # cli/__main__.py: the `forget` console script's code path
SEED = 2026
TICK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[service {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def quantiles(values: list[float]) -> dict[str, float]:
    """Median, p95, p99 and max in milliseconds (nearest rank)."""
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(rank(0.95), 2),
        "p99_ms": round(rank(0.99), 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


# -- the server --------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process so far."""
        return _cpu_s(self.process.pid)

    def children_cpu_s(self) -> float:
        """User + system CPU seconds of the server's live child processes (its erasure worker) so far."""
        total = 0.0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                with suppress(FileNotFoundError):
                    total += _cpu_s(int(child))
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start_server(ws: Path, log_path: Path, *args: str) -> Server:
    """A real `forget serve` on a free loopback port, ready (its models loaded: /readyz is 200, and its
    erasure worker warmed up, so that the first erasure measured does not wait for the worker's start)."""
    readies = log_path.read_text().count(WORKER_READY) if log_path.exists() else 0
    with log_path.open("a") as stderr:
        process = subprocess.Popen(
            [*FORGET, "-w", str(ws), "serve", "--host", "127.0.0.1", "--port", "0", "--device", "cpu", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
    if found is None:
        process.kill()
        raise RuntimeError(f"no address from forget serve: {line!r}; see {log_path}")
    server = Server(process, found.group(1), log_path)
    deadline = time.monotonic() + 120
    while httpx.get(server.url + "/readyz", timeout=60).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("forget serve never became ready")
        time.sleep(0.2)
    while "--no-run-after-request" not in args and log_path.read_text().count(WORKER_READY) == readies:
        if time.monotonic() > deadline:
            raise RuntimeError("the erasure worker never became ready")
        time.sleep(0.2)
    return server


WORKER_READY = "forget.service erasure worker (pid"


@contextmanager
def serving(ws: Path, log_path: Path, *args: str) -> Iterator[Server]:
    server = start_server(ws, log_path, *args)
    try:
        yield server
    finally:
        server.stop()


def create_tokens(ws: Path) -> dict[str, str]:
    tokens = {}
    for name, scope in [("portal", "requests:write"), ("model", "predict"), ("ops", "admin")]:
        done = subprocess.run(
            [*FORGET, "-w", str(ws), "token", "create", "--name", name, "--scope", scope, "--json"],
            check=True,
            capture_output=True,
            text=True,
        )
        tokens[name] = json.loads(done.stdout)["token"]
    return tokens


def forget_json(ws: Path, *args: str) -> Any:
    done = subprocess.run([*FORGET, "-w", str(ws), *args], check=False, capture_output=True, text=True)
    if done.returncode not in (0, 4):
        raise RuntimeError(f"forget {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return json.loads(done.stdout)


def quarantine_entries(ws: Path) -> dict[str, list[int]]:
    """request id -> the shards its `request.quarantined` entry names."""
    done = subprocess.run(
        [*FORGET, "-w", str(ws), "ledger", "show", "--kind", "request.quarantined", "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    entries = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {e["payload"]["request_id"]: list(e["payload"]["shards"]) for e in entries}


STEPS = [
    ("filed", "request.quarantined"),
    ("started", "request.started"),
    ("erased_and_purged", "erasure.checkpoints_purged"),
    ("schema_rederived", "schema.rederived"),
    ("retrained", "lineage.checkpoint"),
    ("completed", "request.completed"),
    ("certified", "request.certified"),
]


def step_breakdown(ws: Path, request_ids: list[str]) -> dict[str, float]:
    """Median milliseconds of each step of one subject's erasure, from the ledger's entry times.

    The server writes each step's entry when the step is done (forget.erasure.job), so the time
    between two entries is the step's: no profiler in the way. `retrained` ends at the last
    `lineage.checkpoint` before `request.completed`.
    """
    done = subprocess.run(
        [*FORGET, "-w", str(ws), "ledger", "show", "--json"], check=True, capture_output=True, text=True
    )
    entries = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    at: dict[str, list[float]] = {name: [] for name, _ in STEPS[1:]}
    for request_id in request_ids:
        start = next(i for i, e in enumerate(entries) if e["kind"] == "request.quarantined"
                     and e["payload"]["request_id"] == request_id)  # fmt: skip
        times: dict[str, float] = {}
        for entry in entries[start:]:
            stamp = datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()
            for name, kind in STEPS:
                if entry["kind"] == kind and (name == "retrained" or name not in times):
                    times[name] = stamp
            if entry["kind"] == "request.certified" and entry["payload"]["request_id"] == request_id:
                break
        previous = "filed"
        for name, _ in STEPS[1:]:
            at[name].append(times[name] - times[previous])
            previous = name
    return {name: round(1000 * statistics.median(values), 1) for name, values in at.items()}


def erasure_seconds(log_path: Path) -> list[float]:
    """The `seconds` of every in-process run the server logged (run_job's own measure)."""
    return [float(s) for s in re.findall(r"in-process erasure run: .* ([0-9.]+) s$", log_path.read_text(), re.M)]


# -- the workspace on PostgreSQL ---------------------------------------------------------------------

CACHE_DATABASE = "forget_bench_service_cache"


def _admin(server: str) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(server, isolation_level="AUTOCOMMIT")


def _database_url(server: str, name: str) -> str:
    import sqlalchemy as sa

    return str(sa.make_url(server).set(database=name).render_as_string(hide_password=False))


def postgres_workspace(cache: Path, server: str) -> Path:
    """The Purchase-like workspace with its data store in PostgreSQL (built on first use), as the
    SQLite one: the same split, seeded keys and settings (`bench_process.trained_workspace`)."""
    import sqlalchemy as sa
    from bench_process import SEED as KEY_SEED
    from bench_sisa import DEFAULTS, seeded_keys, write_split

    from forget.data.ingest import ColumnChoice, ingest_file
    from forget.training.train import plan_training, train
    from forget.workspace.config import TrainingSettings
    from forget.workspace.core import InitOptions, init_workspace

    root = cache / "postgres"
    if (root / "ready").exists():
        return root
    shutil.rmtree(cache / "data-pg", ignore_errors=True)
    split = write_split("purchase", _mkdir(cache / "data-pg"))
    defaults = DEFAULTS["purchase"]
    settings = TrainingSettings(epochs=defaults["epochs"], batch_size=defaults["batch_size"], lr=defaults["lr"])
    admin = _admin(server)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{CACHE_DATABASE}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{CACHE_DATABASE}"'))
    admin.dispose()
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(cache / "keys-pg", ignore_errors=True)
    keys = seeded_keys(cache / "keys-pg", KEY_SEED)
    options = InitOptions(
        shards=defaults["shards"], slices=defaults["slices"], seed=KEY_SEED, training=settings, keys_from=keys,
        database=_database_url(server, CACHE_DATABASE),
    )  # fmt: skip
    workspace = init_workspace(root, options)
    ingest_file(workspace, split.train_csv, ColumnChoice(subject="subject", label=split.label))
    log("postgres: training 20 x 10")
    train(workspace, plan_training(workspace), device="cpu")
    workspace.datastore.engine.dispose()  # type: ignore[attr-defined]
    (root / "ready").write_text("ready\n")
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def copy_workspace(root: Path, dest: Path, server: str | None) -> None:
    """A fresh copy of the trained workspace: the folder, and on PostgreSQL its database (a template copy)."""
    shutil.copytree(root, dest)
    if server is None:
        return
    import sqlalchemy as sa

    name = f"forget_bench_service_{dest.name}"
    admin = _admin(server)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{CACHE_DATABASE}"'))
    admin.dispose()
    config = dest / "forget.toml"
    text = config.read_text()
    old = _database_url(server, CACHE_DATABASE)
    if f'database = "{old}"' not in text:
        raise RuntimeError("the cached workspace's forget.toml does not name its database")
    config.write_text(text.replace(f'database = "{old}"', f'database = "{_database_url(server, name)}"'))


def drop_copies(server: str) -> None:
    """Drop the parts' databases (the cached one stays, beside its folder)."""
    import sqlalchemy as sa

    admin = _admin(server)
    with admin.connect() as connection:
        for part in ("erasure", "predict", "intake"):
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "forget_bench_service_{part}" WITH (FORCE)'))
    admin.dispose()


# -- the data ----------------------------------------------------------------------------------------


def all_subjects(cache: Path) -> list[str]:
    with (cache / "data" / "purchase-train.csv").open() as handle:
        return [row["subject"] for row in csv.DictReader(handle)]


def sample_rows(cache: Path, count: int, seed: int) -> tuple[list[str], list[dict[str, float]]]:
    """Seeded training subjects (to erase) and held-out rows (to predict), from the cached split."""
    subjects = all_subjects(cache)
    with (cache / "data" / "purchase-test.csv").open() as handle:
        rows = [
            {k: float(v) for k, v in row.items() if k not in ("subject", "class")}
            for _, row in zip(range(200), csv.DictReader(handle), strict=False)
        ]
    return random.Random(seed).sample(subjects, count), rows


# -- 1. erasure latency ------------------------------------------------------------------------------


def measure_erasures(
    ws: Path, work: Path, subjects: list[str], rows: list[dict[str, float]], poll: float
) -> dict[str, Any]:
    log_path = work / "erasure-server.log"
    tokens = create_tokens(ws)
    portal = {"Authorization": f"Bearer {tokens['portal']}"}
    model = {"Authorization": f"Bearer {tokens['model']}"}
    ops = {"Authorization": f"Bearer {tokens['ops']}"}
    row = {"rows": rows[:1]}
    samples: list[dict[str, Any]] = []
    with serving(ws, log_path) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        cpu_start, worker_start, load_start = server.cpu_s(), server.children_cpu_s(), load()
        for i, subject in enumerate(subjects):
            before = client.post("/v1/predict", json=row, headers=model).json()["shards"]
            if len(before) != 20:
                raise RuntimeError(f"expected every shard to answer before request {i}, got {before}")
            started, started_wall = time.perf_counter(), time.time()
            filed = client.post("/v1/requests", json={"subject_id": subject, "note": f"bench-{i}"}, headers=portal)
            posted = time.perf_counter()
            if filed.status_code != 201:
                raise RuntimeError(f"POST /v1/requests: {filed.status_code} {filed.text}")
            request_id = filed.json()["request_id"]
            answer = client.post("/v1/predict", json=row, headers=model)
            visible = time.perf_counter()
            missing = sorted(set(before) - set(answer.json()["shards"]))
            while True:
                certificate = client.get(f"/v1/certificates/{request_id}", headers=ops)
                if certificate.status_code == 200:
                    break
                if certificate.status_code != 404 or time.perf_counter() - started > 120:
                    raise RuntimeError(f"no certificate for {request_id}: {certificate.status_code}")
                time.sleep(poll)
            certified = time.perf_counter()
            # When the server wrote it (the job's last step): the poll's interval does not blur this one.
            written = (ws / "certificates" / f"{request_id}.json").stat().st_mtime - started_wall
            state = client.get(f"/v1/requests/{request_id}", headers=ops).json()["state"]
            if state != "completed" or certificate.json().get("payloadType") != "application/vnd.in-toto+json":
                raise RuntimeError(f"{request_id}: certified but {state}")
            samples.append(
                {
                    "request_id": request_id,
                    "post_s": posted - started,
                    "quarantine_visible_s": visible - started,
                    "missing_shards": missing,
                    "certified_s": certified - started,
                    "written_s": written,
                }
            )
            log(
                f"erasure {i + 1}/{len(subjects)}: 201 in {1000 * (posted - started):.1f} ms, shard {missing} out"
                f" after {1000 * (visible - started):.1f} ms, certificate written after {written:.3f} s (seen after"
                f" {certified - started:.3f} s)"
            )
        cpu, worker_cpu, load_end = server.cpu_s() - cpu_start, server.children_cpu_s() - worker_start, load()
    quarantined = quarantine_entries(ws)
    steps = step_breakdown(ws, [s["request_id"] for s in samples])
    for sample in samples:
        if sample["missing_shards"] != quarantined[sample["request_id"]]:
            raise RuntimeError(f"{sample['request_id']}: predict left out {sample['missing_shards']}")
    runs = erasure_seconds(log_path)
    return {
        "subjects": len(samples),
        "certified": quantiles([s["certified_s"] for s in samples]),
        "certificate_written": quantiles([s["written_s"] for s in samples]),
        "post": quantiles([s["post_s"] for s in samples]),
        "quarantine_visible": quantiles([s["quarantine_visible_s"] for s in samples]),
        "steps_ms_median": steps,
        "run_job_s": {"median": round(statistics.median(runs), 3), "runs": len(runs)} if runs else None,
        "poll_s": poll,
        "server_cpu_s": round(cpu, 2),
        "worker_cpu_s": round(worker_cpu, 2),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
    }


# -- 2. predictions under load -----------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that posts a prepared request and reads the answer.

    Lean on purpose: on a 2-core machine a heavy client would take the CPU the server is measured on.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def predict_request(port: int, token: str, row: dict[str, float]) -> bytes:
    body = json.dumps({"rows": [row]}).encode()
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def predict_load(
    port: int, request: bytes, clients: int, seconds: float, rate: float | None
) -> tuple[list[float], dict[int, int], int, set[int]]:
    """Latencies, status counts, connection errors and the shard counts seen (closed loop, or `rate` per s)."""
    connections = [await Connection.open(port) for _ in range(clients)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    shard_counts: set[int] = set()
    errors = 0
    end = time.perf_counter() + seconds
    interval = clients / rate if rate else 0.0

    async def client(index: int, connection: Connection) -> None:
        nonlocal errors
        next_at = time.perf_counter() + interval * index / clients
        while True:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
            started = time.perf_counter()
            if started >= end:
                return
            try:
                status, body = await connection.call(request)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                return
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200 and len(latencies) % 25 == 0:
                shard_counts.add(len(json.loads(body)["shards"]))

    await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
    for connection in connections:
        connection.close()
    return latencies, statuses, errors, shard_counts


class Eraser(threading.Thread):
    """Files a request whenever the previous one is certified, so an erasure runs all the time."""

    def __init__(self, url: str, tokens: dict[str, str], subjects: list[str]) -> None:
        super().__init__(daemon=True)
        self.url, self.tokens, self.subjects = url, tokens, list(subjects)
        self.stop = threading.Event()
        self.completed = 0
        self.failures: list[str] = []

    def run(self) -> None:
        portal = {"Authorization": f"Bearer {self.tokens['portal']}"}
        ops = {"Authorization": f"Bearer {self.tokens['ops']}"}
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while self.subjects and not self.stop.is_set():
                filed = client.post("/v1/requests", json={"subject_id": self.subjects.pop()}, headers=portal)
                if filed.status_code != 201:
                    self.failures.append(f"{filed.status_code} {filed.text}")
                    return
                request_id = filed.json()["request_id"]
                while not self.stop.is_set():
                    if client.get(f"/v1/certificates/{request_id}", headers=ops).status_code == 200:
                        self.completed += 1
                        break
                    time.sleep(0.05)


def measure_predictions(
    ws: Path, work: Path, subjects: list[str], rows: list[dict[str, float]], clients: int, seconds: float,
    open_rate: float,
) -> dict[str, Any]:  # fmt: skip
    tokens = create_tokens(ws)
    results: dict[str, Any] = {"clients": clients, "seconds": seconds}
    with serving(ws, work / "predict-server.log") as server:
        port = int(server.url.rsplit(":", 1)[1])
        request = predict_request(port, tokens["model"], rows[0])
        asyncio.run(predict_load(port, request, clients, 2.0, None))  # warm-up: connections, thread pool
        plans = [
            ("closed_loop", None, True),
            ("open_loop_no_erasure", open_rate, False),
            ("open_loop", open_rate, True),
        ]
        for n, (mode, rate, erasing) in enumerate(plans):
            eraser = Eraser(server.url, tokens, subjects[n::3] if erasing else [])
            eraser.start()
            time.sleep(0.3)  # the first erasure is under way
            load_start, cpu_start, worker_start = load(), server.cpu_s(), server.children_cpu_s()
            client_cpu = time.process_time()
            started = time.perf_counter()
            latencies, statuses, errors, shard_counts = asyncio.run(predict_load(port, request, clients, seconds, rate))
            wall = time.perf_counter() - started
            client_cpu = time.process_time() - client_cpu
            server_cpu = server.cpu_s() - cpu_start
            worker_cpu = server.children_cpu_s() - worker_start
            eraser.stop.set()
            eraser.join(timeout=120)
            if eraser.failures:
                raise RuntimeError(f"filing during the load failed: {eraser.failures[0]}")
            results[mode] = {
                "target_rate": rate,
                "while_erasing": erasing,
                "calls": len(latencies),
                "throughput_per_s": round(len(latencies) / wall, 1),
                "latency": quantiles(latencies),
                "statuses": {str(k): v for k, v in sorted(statuses.items())},
                "connection_errors": errors,
                "shards_answering_seen": sorted(shard_counts),
                "erasures_certified_during": eraser.completed,
                "server_cpu_s": round(server_cpu, 2),
                "server_cpu_share": round(server_cpu / wall, 2),
                "worker_cpu_s": round(worker_cpu, 2),
                "client_cpu_s": round(client_cpu, 2),
                "loadavg_start": load_start,
                "loadavg_end": load(),
            }
            log(f"predict {mode}: {json.dumps(results[mode])}")
            # Let the last erasure finish, so the next mode starts from the same state.
            time.sleep(1.0)
    return results


# -- 3. intake under load, then SIGKILL ---------------------------------------------------------------


def measure_intake(ws: Path, work: Path, subjects: list[str], clients: int) -> dict[str, Any]:
    token = create_tokens(ws)["portal"]
    headers = {"Authorization": f"Bearer {token}"}
    count = len(subjects)
    limits = ("--no-run-after-request", "--request-rate", "100000", "--request-burst", "100000")
    log_path = work / "intake-server.log"
    server = start_server(ws, log_path, *limits)
    acknowledged: dict[str, str] = {}  # subject -> request id, from a 201
    sent: set[str] = set()
    lock = threading.Lock()
    killed = threading.Event()
    latencies: list[float] = []
    cpu: list[float] = []
    queue = list(reversed(subjects))

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not killed.is_set():
                with lock:
                    if not queue:
                        return
                    subject = queue.pop()
                    sent.add(subject)
                started = time.perf_counter()
                try:
                    response = http.post("/v1/requests", json={"subject_id": subject}, headers=headers)
                except httpx.TransportError:
                    return  # the server is gone: this one was never acknowledged
                if response.status_code != 201:
                    raise RuntimeError(f"POST /v1/requests: {response.status_code} {response.text}")
                with lock:
                    acknowledged[subject] = response.json()["request_id"]
                    latencies.append(time.perf_counter() - started)
                    if len(acknowledged) >= count // 2 and not killed.is_set():
                        cpu.append(server.cpu_s() - cpu_start)
                        server.process.kill()  # SIGKILL, mid-stream: other clients' calls are in flight
                        killed.set()

    load_start, cpu_start = load(), server.cpu_s()
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    wall = time.perf_counter() - started
    server.process.wait(timeout=30)
    if not killed.is_set():
        raise RuntimeError("every request was acknowledged before the kill")
    stored = forget_json(ws, "status", "--json")["requests"]
    stored_ids = [r["request_id"] for r in stored]
    keys = [r["subject_key"] for r in stored]
    lost = len(set(acknowledged.values()) - set(stored_ids))
    twice = (len(stored_ids) - len(set(stored_ids))) + (len(keys) - len(set(keys)))
    if lost or twice:
        raise RuntimeError(f"after the kill: {lost} acknowledged request(s) lost, {twice} stored twice")
    unacknowledged_stored = len(stored) - len(acknowledged)
    if not 0 <= unacknowledged_stored <= len(sent) - len(acknowledged):
        raise RuntimeError("more requests stored than were sent")
    # A restarted server takes them all again: the acknowledged ones answer 200 with their id.
    with serving(ws, log_path, *limits) as again, httpx.Client(base_url=again.url, timeout=30) as http:
        statuses: dict[int, int] = {}
        for subject in subjects:
            response = http.post("/v1/requests", json={"subject_id": subject}, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if subject in acknowledged and response.json()["request_id"] != acknowledged[subject]:
                raise RuntimeError("a restarted server gave an acknowledged subject a new request")
    final = forget_json(ws, "status", "--json")["requests"]
    if len(final) != count or len({r["subject_key"] for r in final}) != count:
        raise RuntimeError(f"{len(final)} requests after the refiling, expected {count}, one per subject")
    subprocess.run([*FORGET, "-w", str(ws), "ledger", "verify"], check=True, capture_output=True)
    return {
        "requests": count,
        "clients": clients,
        "acknowledged_before_kill": len(acknowledged),
        "sent_before_kill": len(sent),
        "stored_after_kill": len(stored),
        "lost": lost,
        "stored_twice": twice,
        "unacknowledged_but_stored": unacknowledged_stored,
        "refiled_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "intake_per_s": round(len(acknowledged) / wall, 1),
        "post_latency": quantiles(latencies),
        "server_cpu_s_before_kill": round(cpu[0], 2),
        "loadavg_start": load_start,
        "loadavg_end": load(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="keep the trained workspace here between runs")
    parser.add_argument("--parts", default="erasure,predict,intake", help="which measurements (comma list)")
    parser.add_argument("--subjects", type=int, default=20, help="subjects erased one at a time (part 1)")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between certificate polls (part 1)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent predict clients (part 2)")
    parser.add_argument("--predict-seconds", type=float, default=15.0, help="length of each predict load (part 2)")
    parser.add_argument("--open-rate", type=float, default=50.0, help="open-loop predictions per s (part 2)")
    parser.add_argument("--intake", type=int, default=1000, help="requests filed in part 3")
    parser.add_argument("--intake-clients", type=int, default=20, help="concurrent filing clients (part 3)")
    parser.add_argument(
        "--postgres", metavar="SERVER_URL", help="keep the data store in PostgreSQL (a server URL; databases are made)"
    )
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="forget-bench-service-"))
    result: dict[str, Any] = {
        "dataset": "purchase",
        "layout": [20, 10],
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": load(),
    }
    try:
        cache = args.cache or scratch / "cache"
        root, _ = trained_workspace(cache)
        if args.postgres:
            root = postgres_workspace(cache, args.postgres)
            result["database"] = "postgresql"
        else:
            result["database"] = "sqlite"
        subjects, rows = sample_rows(cache, args.subjects + 200, SEED)
        if "erasure" in parts:
            copy_workspace(root, scratch / "erasure", args.postgres)
            result["erasure"] = measure_erasures(
                scratch / "erasure", scratch, subjects[: args.subjects], rows, args.poll
            )
            log(f"erasure: {json.dumps(result['erasure'])}")
        if "predict" in parts:
            copy_workspace(root, scratch / "predict", args.postgres)
            result["predict"] = measure_predictions(
                scratch / "predict", scratch, subjects[args.subjects :], rows, args.clients, args.predict_seconds,
                args.open_rate,
            )  # fmt: skip
        if "intake" in parts:
            copy_workspace(root, scratch / "intake", args.postgres)
            intake = random.Random(SEED + 1).sample(all_subjects(cache), args.intake)
            result["intake"] = measure_intake(scratch / "intake", scratch, intake, args.intake_clients)
            log(f"intake: {json.dumps(result['intake'])}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if args.postgres:
            drop_copies(args.postgres)
    result["loadavg_end"] = load()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
