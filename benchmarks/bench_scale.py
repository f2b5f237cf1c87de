"""Benchmark: how each cost grows with records, shards and slices (issue 15, part 1).

Run it as a script, not a test:

    python benchmarks/bench_scale.py --out scale.jsonl --records 10000 100000      # 16 points
    python benchmarks/bench_scale.py --out scale.jsonl --quick                      # 10^4 x {1, 5} x {1, 10}
    python benchmarks/bench_scale.py --out scale.jsonl --records 1000000 --database postgresql+psycopg://...
    python benchmarks/bench_scale.py --out scale.jsonl --records 1000000 --executor dask
    python benchmarks/bench_scale.py --out scale.jsonl --plot                       # PNGs into docs/images/
    python benchmarks/bench_scale.py --out scale.jsonl --table                      # Markdown, for docs/scaling.md

A point is (records, shards, slices); `--records`, `--shards` and `--slices` pick the grid (default
10^4, 10^5, 10^6 x 1, 5, 20, 100 x 1, 10). For each point, in a fresh workspace, through the real
`forget` command line (`--device cpu`):

1. `forget init` (seed `--seed`; the pseudonymisation key derives from the seed, so where records
   land is the same on every run), then `forget ingest` of `scale_data.py`'s Fertility-like rows
   (`ingest`: rows/s over the whole process, start-up included);
2. `forget train` (`train`: every shard from scratch);
3. five one-subject erasures in this process, each `file_request` + `forget.erasure.job.run_job`
   (`erase_one_in_process`, the median, torch's first-optimizer import paid beforehand; each
   sample names its shard and rewind slice, and `ideal_speedup` is what training compute alone
   predicts for these subjects, see `retrain_share`);
4. five one-subject erasures as `forget run --json` processes (`erase_one_process`, the median);
5. one `forget run` of a batch of `--batch` subjects (`erase_batch`);
6. `forget ledger verify` and `forget certificate verify` of one certificate (`ledger_verify`,
   `certificate_verify`);
7. the database's size and the checkpoint store's size after training (`database_bytes`,
   `checkpoint_bytes`) and at the end (`*_end`).

Every timing holds wall and CPU seconds and the 1-minute load average when it started; every
process also its peak resident memory (the rusage of that one child, see `run_process`). With
`--executor dask` a LocalCluster of two single-thread worker processes on 127.0.0.1 trains and retrains the
shards, and `workers_cpu_s` adds the workers' CPU time (a `forget` process's CPU time does not
include it). The subjects erased are drawn with `random.Random(seed)`; a subject holds one to
eight records (`scale_data.py`).

Each point is appended to `--out` as one JSON line as soon as it is done, so a long run can stop
and resume: points already in the file (same records, shards, slices, database kind, executor and
epochs) are skipped unless `--again`. `--plot` reads the file and writes log-log PNGs (Agg backend;
CPU time unless `--metric wall`), `--table` prints it as Markdown.
Progress goes to stderr. Needs: pip install 'forget[bench]' (matplotlib, and dask for --executor dask).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch_database import scratch_database

RECORDS = (10_000, 100_000, 1_000_000)
SHARDS = (1, 5, 20, 100)
SLICES = (1, 10)
QUICK = {"records": (10_000,), "shards": (1, 5), "slices": (1, 10)}
REPEATS = 5
BATCH = 100
SEED = 2026
COLUMNS = ("--subject-column", "subject", "--label-column", "morekids", "--id-column", "record")
IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"

TIMING_FIELDS = ("wall_s", "cpu_s", "load_1m")
PROCESS_FIELDS = (*TIMING_FIELDS, "peak_rss_mib")
FIELDS: dict[str, tuple[str, ...]] = {
    "ingest": (*PROCESS_FIELDS, "rows_per_s"),
    "train": PROCESS_FIELDS,
    "erase_one_in_process": (*TIMING_FIELDS, "samples", "ideal_speedup"),
    "erase_one_process": (*PROCESS_FIELDS, "samples"),
    "erase_batch": (*PROCESS_FIELDS, "subjects", "records_erased", "shards_retrained"),
    "ledger_verify": PROCESS_FIELDS,
    "certificate_verify": PROCESS_FIELDS,
}
"""Every JSON line holds these timings, each with these keys (the test checks them all)."""
SCALARS = (
    "records", "subjects", "shards", "slices", "database", "executor", "epochs", "seed", "started",
    "cpus", "python", "database_bytes", "checkpoint_bytes", "checkpoints", "database_bytes_end",
    "checkpoint_bytes_end", "workers_cpu_s", "load_1m_start", "load_1m_end", "seconds",
)  # fmt: skip
"""...and these plain values."""


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_1m() -> float:
    return round(os.getloadavg()[0], 2)


# --- running and timing processes ---------------------------------------------------------------


def forget_command() -> list[str]:
    """The `forget` console script next to this interpreter (a virtualenv's), else `python -m cli`."""
    script = Path(sys.executable).parent / "forget"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


LAUNCHER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as out:
    json.dump([wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss], out)
sys.exit(code)
"""
"""Runs one command and reports its wall, CPU and peak RSS: see `run_process` for why a launcher."""


def run_process(command: list[str], env: dict[str, str]) -> tuple[dict[str, float], str]:
    """Run one child to its end: its wall, CPU (user + system) and peak resident memory, and its stdout.

    A child's peak RSS (`ru_maxrss`) starts at its parent's resident size when it was forked: Linux
    keeps the high-water mark of the memory the child had before `exec`, which fork and vfork alike
    share with the parent. This process holds torch after its first in-process erasure (about
    450 MiB), so every later child would report at least that. A small launcher interpreter
    (`LAUNCHER`, no site packages) forks the command instead and reports its rusage.
    """
    load = load_1m()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "rusage.json"
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(report)]
        code = subprocess.run([*launcher, *command], stdout=out, stderr=err, env=env, check=False).returncode
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        if code != 0:
            shown = " ".join(command[len(forget_command()) :]) or command[-1]
            raise RuntimeError(f"`forget {shown}` exited {code}:\n{stderr[-4000:]}")
        wall, cpu, peak = json.loads(report.read_text())
    return {
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "load_1m": load,
        "peak_rss_mib": round(peak / (2**20 if sys.platform == "darwin" else 1024), 1),  # bytes on macOS, else KiB
    }, stdout


@contextmanager
def timed_here(into: dict[str, float]) -> Iterator[None]:
    """Wall and this process's CPU seconds of the block, and the load average when it started."""
    into["load_1m"] = load_1m()
    started, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        into["wall_s"] = round(time.perf_counter() - started, 4)
        into["cpu_s"] = round(time.process_time() - cpu, 4)


def median_of(samples: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    return {key: round(statistics.median(s[key] for s in samples), 4) for key in keys}


# --- what the numbers are compared with ---------------------------------------------------------


def retrain_share(from_slice: int, shards: int, slices: int) -> float:
    """The share of a full training that retraining one shard from `from_slice` costs.

    Training step k sees slices 0..k, and under either schedule (sisa.schedule) costs k + 1
    slices' worth of passes, so a shard costs R(R+1)/2 of those units and all S shards S times that.
    """
    return sum(k + 1 for k in range(from_slice, slices)) / (slices * (slices + 1) / 2) / shards


def expected_speedup(shards: int, slices: int) -> float:
    """Full training over the expected retraining of one erasure, the rewind slice uniform in 0..R-1.

    The mean of `retrain_share` over the R rewind slices is (2R + 1) / (3RS), so the ideal is
    3RS / (2R + 1): S for one slice, 1.43 S for ten. The SISA paper's R/2 per shard counts slices
    as equal costs; here a later step revisits every earlier slice, so slicing buys less.
    """
    return 3 * slices * shards / (2 * slices + 1)


# --- the workspace of one point -----------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    records: int
    shards: int
    slices: int

    def label(self) -> str:
        return f"{self.records} records, {self.shards} x {self.slices}"


def seeded_keys(root: Path, seed: int, env: dict[str, str]) -> Path:
    """Keys whose pseudonymisation key derives from the seed (benchmarks only, never in use).

    Placement is a keyed hash; with a random key per run the erased subjects would land in other
    slices every time, and the erasure cost with them (bench_sisa.py does the same).
    """
    from forget.workspace.keys import KEYS_DIR, PSEUDONYM_KEY

    if not (root / "forget.toml").exists():
        run_process([*forget_command(), "init", str(root), "--shards", "1", "--slices", "1", "--seed", str(seed)], env)
        key = hashlib.sha256(f"forget-bench/pseudonym/{seed}".encode()).hexdigest()
        (root / KEYS_DIR / PSEUDONYM_KEY).write_text(key + "\n")
    return root


@contextmanager
def fresh_database(server: str | None, root: Path) -> Iterator[str]:
    """SQLite in the workspace, or a new PostgreSQL database on `server` that is dropped afterwards."""
    if server is None:
        yield "sqlite:///forget.db"
        return
    with scratch_database(server, "forget_scale") as url:
        yield url


def database_bytes(root: Path, url: str) -> int:
    """The SQLite file with its journal (a URL relative to the workspace), or PostgreSQL's `pg_database_size`."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(url)
        try:
            with engine.connect() as connection:
                return int(connection.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one())
        finally:
            engine.dispose()
    path = Path(parsed.database or "forget.db")
    path = path if path.is_absolute() else root / path
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def checkpoint_bytes(workspace: Any) -> tuple[int, int]:
    """(bytes, files) of the checkpoint store: the folder's files, or every checkpoint the lineage names."""
    from forget.store.checkpoints import checkpoint_location, checkpoint_store

    location = checkpoint_location(workspace)
    if "://" not in location:
        files = [p for p in Path(location).rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files), len(files)
    store = checkpoint_store(workspace)
    digests = set(workspace.datastore.checkpoint_map().values())
    return sum(len(store.get(d)) for d in digests), len(digests)


class Cluster:
    """A LocalCluster of two single-thread worker processes on 127.0.0.1, and the workers' CPU time."""

    def __init__(self) -> None:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            worker_dashboard_address=None,
        )  # fmt: skip
        self.client = Client(self.cluster)  # type: ignore[no-untyped-call]
        self.address: str = self.cluster.scheduler_address

    def workers_cpu_s(self) -> float:
        def cpu() -> float:
            import resource

            usage = resource.getrusage(resource.RUSAGE_SELF)
            return usage.ru_utime + usage.ru_stime

        return float(sum(self.client.run(cpu).values()))

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]
        self.cluster.close()


def erase_in_process(root: Path, subjects: list[str], point: Point, cluster: Cluster | None) -> dict[str, Any]:
    """`repeats` one-subject erasures, each `file_request` + `run_job`, in this process (the API)."""
    from forget.erasure.job import run_job
    from forget.erasure.requests import file_request
    from forget.erasure.rewind import plan_erasure, subject_records
    from forget.workspace.core import open_workspace

    executor = None
    if cluster is not None:
        from sisa.dask_executor import DaskExecutor

        executor = DaskExecutor(cluster.address)
    _warm_up()
    workspace = open_workspace(root)
    samples: list[dict[str, Any]] = []
    try:
        for subject in subjects:
            plan = plan_erasure(workspace, subject_records(workspace, [subject]))
            file_request(workspace, subject)
            sample: dict[str, Any] = {}
            with timed_here(sample):
                summary = run_job(workspace, device="cpu", executor=executor)
            rewind = plan.rewinds[0]
            share = retrain_share(rewind.from_slice, point.shards, point.slices)
            sample |= {
                "shard": rewind.shard,
                "from_slice": rewind.from_slice,
                "retrain_share": round(share, 5),
                "records_erased": summary.records_erased,
                "shards_retrained": len(summary.shards_retrained),
            }
            samples.append(sample)
            log(f"  in process: shard {rewind.shard} from slice {rewind.from_slice}, {sample['wall_s']:.2f} s")
    finally:
        workspace.datastore.close()
    return median_of(samples, TIMING_FIELDS) | {
        "samples": samples,
        "ideal_speedup": round(1 / statistics.median(s["retrain_share"] for s in samples), 3),
    }


def _warm_up() -> None:
    """Pay the first `torch.optim` optimizer's `torch._dynamo` import (about a second) before the clock.

    Otherwise the first in-process erasure alone carries it; a `forget run` process pays it every
    time, and `erase_one_process` measures that.
    """
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def file_requests(root: Path, subjects: list[str]) -> None:
    """File requests in this process: not timed, and one process per request would dominate the run."""
    from forget.erasure.requests import file_request
    from forget.workspace.core import open_workspace

    workspace = open_workspace(root)
    try:
        for subject in subjects:
            file_request(workspace, subject)
    finally:
        workspace.datastore.close()


def measure_point(
    point: Point, args: argparse.Namespace, data: Path, keys: Path, scratch: Path, cluster: Cluster | None
) -> dict[str, Any]:
    from forget.workspace.core import open_workspace

    env = {**os.environ, "COLUMNS": "160"}
    forget = forget_command()
    dask = ["--executor", "dask", "--scheduler", cluster.address] if cluster else []
    root = scratch / f"ws-{point.records}-{point.shards}x{point.slices}"
    shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {
        "records": point.records, "shards": point.shards, "slices": point.slices,
        "database": "postgresql" if args.database else "sqlite", "executor": args.executor, "epochs": args.epochs,
        "seed": args.seed, "started": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
        "python": platform.python_version(), "load_1m_start": load_1m(),
    }  # fmt: skip
    started = time.perf_counter()
    workers_cpu = cluster.workers_cpu_s() if cluster else 0.0
    with fresh_database(args.database, root) as url:
        init = [*forget, "init", str(root), "--shards", str(point.shards), "--slices", str(point.slices)]
        init += ["--seed", str(args.seed), "--keys-from", str(keys), "--db", url, "--epochs", str(args.epochs)]
        run_process(init, env)
        ws = [*forget, "-w", str(root)]
        timing, out = run_process([*ws, "ingest", str(data), *COLUMNS, "--json"], env)
        ingested = json.loads(out)
        result["subjects"] = ingested.get("subjects")
        result["ingest"] = timing | {"rows_per_s": round(point.records / timing["wall_s"])}
        log(f"{point.label()}: ingested in {timing['wall_s']:.1f} s ({result['ingest']['rows_per_s']} rows/s)")
        result["train"], _ = run_process([*ws, "train", "--device", "cpu", "--json", *dask], env)
        log(f"{point.label()}: trained in {result['train']['wall_s']:.1f} s")
        workspace = open_workspace(root)
        try:
            result["database_bytes"] = database_bytes(root, url)
            result["checkpoint_bytes"], result["checkpoints"] = checkpoint_bytes(workspace)
        finally:
            workspace.datastore.close()

        subjects = subjects_of(data, point.records)
        chosen = random.Random(args.seed).sample(subjects, 2 * args.repeats + args.batch)
        in_process, by_process, batch = (
            chosen[: args.repeats], chosen[args.repeats : 2 * args.repeats], chosen[2 * args.repeats :],
        )  # fmt: skip
        result["erase_one_in_process"] = erase_in_process(root, in_process, point, cluster)
        samples: list[dict[str, Any]] = []
        for subject in by_process:
            file_requests(root, [subject])
            timing, out = run_process([*ws, "run", "--device", "cpu", "--json", *dask], env)
            summary = json.loads(out)
            samples.append(timing | {"shards_retrained": len(summary["shards_retrained"])})
            log(f"  forget run: {timing['wall_s']:.2f} s, {timing['peak_rss_mib']:.0f} MiB")
        result["erase_one_process"] = median_of(samples, PROCESS_FIELDS) | {"samples": samples}
        file_requests(root, batch)
        timing, out = run_process([*ws, "run", "--device", "cpu", "--json", *dask], env)
        summary = json.loads(out)
        result["erase_batch"] = timing | {
            "subjects": len(batch),
            "records_erased": summary["records_erased"],
            "shards_retrained": len(summary["shards_retrained"]),
        }
        log(f"{point.label()}: batch of {len(batch)} in {timing['wall_s']:.1f} s")
        result["ledger_verify"], _ = run_process([*ws, "ledger", "verify"], env)
        _, public = run_process([*ws, "keys", "public"], env)
        (scratch / "operator.pub").write_text(public)
        certificate = summary["certificates"][0]
        result["certificate_verify"], _ = run_process(
            [*forget, "certificate", "verify", certificate, "--public-key", str(scratch / "operator.pub"), "--json"],
            env,
        )
        workspace = open_workspace(root)
        try:
            result["database_bytes_end"] = database_bytes(root, url)
            result["checkpoint_bytes_end"], _ = checkpoint_bytes(workspace)
        finally:
            workspace.datastore.close()
    result["workers_cpu_s"] = round(cluster.workers_cpu_s() - workers_cpu, 3) if cluster else None
    result["load_1m_end"] = load_1m()
    result["seconds"] = round(time.perf_counter() - started, 1)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return result


_SUBJECTS: dict[int, list[str]] = {}


def subjects_of(data: Path, records: int) -> list[str]:
    """The distinct raw subject ids of the data file, sorted (so the draw is the same on every run)."""
    if records not in _SUBJECTS:
        import pyarrow.parquet as pq

        _SUBJECTS[records] = sorted(set(pq.read_table(data, columns=["subject"]).column(0).to_pylist()))
    return _SUBJECTS[records]


# --- resuming -----------------------------------------------------------------------------------


def point_key(line: dict[str, Any]) -> tuple[Any, ...]:
    return (line["records"], line["shards"], line["slices"], line["database"], line["executor"], line["epochs"])


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(args: argparse.Namespace) -> None:
    from scale_data import write

    done = {point_key(line) for line in read_lines(args.out)}
    database = "postgresql" if args.database else "sqlite"
    points = [Point(n, s, r) for n in args.records for s in args.shards for r in args.slices]
    todo = [p for p in points if args.again or (p.records, p.shards, p.slices, database, args.executor,
                                                 args.epochs) not in done]  # fmt: skip
    log(f"{len(todo)} of {len(points)} points to measure ({len(points) - len(todo)} already in {args.out})")
    if not todo:
        return
    scratch = Path(tempfile.mkdtemp(prefix="forget-bench-scale-", dir=args.workdir))
    cluster = Cluster() if args.executor == "dask" else None
    try:
        env = {**os.environ, "COLUMNS": "160"}
        keys = seeded_keys(scratch / "keys", args.seed, env)
        for point in todo:
            data = scratch / f"fertility-{point.records}.parquet"
            if not data.exists():
                write(data, point.records, args.seed)
            line = measure_point(point, args, data, keys, scratch, cluster)
            with args.out.open("a") as out:
                out.write(json.dumps(line) + "\n")
            log(
                f"{point.label()}: train {line['train']['wall_s']:.1f} s, erase one"
                f" {line['erase_one_in_process']['wall_s']:.2f} s in process /"
                f" {line['erase_one_process']['wall_s']:.2f} s as forget run (load {line['load_1m_end']})"
            )
    finally:
        if cluster is not None:
            cluster.close()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log(f"kept {scratch}")


# --- plots --------------------------------------------------------------------------------------

COSTS = (
    ("train", "time", "full training (`forget train`)"),
    ("erase_one_in_process", "time", "erase one subject, in process (median of 5)"),
    ("erase_one_process", "time", "erase one subject, `forget run` (median of 5)"),
    ("erase_batch", "time", "erase 100 subjects, one `forget run`"),
    ("ingest", "time", "`forget ingest`"),
    ("ledger_verify", "time", "`forget ledger verify`"),
    ("certificate_verify", "time", "`forget certificate verify`"),
    ("train", "peak_rss_mib", "peak memory of `forget train`"),
)


def latest(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last line of every point: a point measured again replaces the earlier one."""
    return list({point_key(line): line for line in lines}.values())


METRICS = {"cpu": ("cpu_s", "CPU time (s)"), "wall": ("wall_s", "wall time (s)")}
"""`--metric`: CPU time (user + system) moves far less with other work on a shared machine than wall time."""


def plot(lines: list[dict[str, Any]], images: Path, metric: str = "cpu") -> list[Path]:
    """Log-log PNGs per (database, executor): each cost against records and against shards, and the
    erasure speed-up against shards beside the ideal; times are `metric` ("cpu" or "wall")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images.mkdir(parents=True, exist_ok=True)
    lines = latest(lines)
    setups = sorted({(line["database"], line["executor"]) for line in lines})
    written: list[Path] = []
    for database, executor in setups:
        chosen = [line for line in lines if (line["database"], line["executor"]) == (database, executor)]
        suffix = "" if (database, executor) == ("sqlite", "local") else f"-{database}-{executor}"
        loads = [line["load_1m_start"] for line in chosen]
        where = (
            f"{database}, {executor} executor, {chosen[0]['cpus']} CPUs,"
            f" 1-min load average {min(loads):.1f} to {max(loads):.1f}"
        )
        for x, per in (("records", "shards"), ("shards", "records")):
            written.append(_against(plt, chosen, x, per, images / f"scale-time-vs-{x}{suffix}.png", where, metric))
        written.append(_speedup(plt, chosen, images / f"scale-erasure-speedup{suffix}.png", where, metric))
    return written


def _plain_log_axes(ax: Any, xs: list[int]) -> None:
    """Log axes labelled in plain numbers: x at the measured values, y at 1-2-5 steps."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    low, high = ax.get_ylim()
    shown = "123456789" if high / low < 4 else "25"  # within a decade no major tick is labelled: label the minor
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in shown else ""))
    ax.grid(True, which="both", alpha=0.3)


def _against(plt: Any, lines: list[dict[str, Any]], x: str, per: str, path: Path, where: str, metric: str) -> Path:
    """One panel per cost against `x`, a line per value of `per` (solid: 10 slices, dashed: 1)."""
    figure, axes = plt.subplots(2, 4, figsize=(20, 10), constrained_layout=True)
    pers = sorted({line[per] for line in lines})
    colours = [plt.get_cmap("tab10")(i % 10) for i in range(len(pers))]
    slices = sorted({line["slices"] for line in lines}, reverse=True)
    styles = dict(zip(slices, ("-", "--", ":", "-."), strict=False))
    xs = sorted({line[x] for line in lines})
    for ax, (cost, what, title) in zip(axes.flat, COSTS, strict=True):
        key, unit = METRICS[metric] if what == "time" else (what, "peak resident memory (MiB)")
        for colour, value in zip(colours, pers, strict=True):
            for count in slices:
                series = sorted((line[x], line[cost][key]) for line in lines
                                if line[per] == value and line["slices"] == count)  # fmt: skip
                if series:
                    name = f"{value:,} records" if per == "records" else f"{value} shards"
                    ax.plot(*zip(*series, strict=True), styles.get(count, "-"), marker="o", color=colour,
                            label=f"{name}, {count} slice{'s' * (count != 1)}")  # fmt: skip
        _plain_log_axes(ax, xs)
        ax.set_title(title)
        ax.set_xlabel("records" if x == "records" else "shards S")
        ax.set_ylabel(unit)
    axes.flat[0].legend(fontsize=9, ncol=1 + (len(pers) > 2))
    figure.suptitle(f"forget: cost against {x}, log-log, times in {METRICS[metric][1][:-4]} ({where})", fontsize=14)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def _speedup(plt: Any, lines: list[dict[str, Any]], path: Path, where: str, metric: str) -> Path:
    """Erasing one subject at S x R against 1 x 1 (which retrains everything), beside the ideal."""
    records = sorted({line["records"] for line in lines})
    key, unit = METRICS[metric]
    figure, axes = plt.subplots(1, len(records), figsize=(max(10, 7 * len(records)), 6.5), constrained_layout=True,
                                squeeze=False, sharey=True)  # fmt: skip
    for ax, count in zip(axes.flat, records, strict=True):
        here = [line for line in lines if line["records"] == count]
        base = next((line for line in here if (line["shards"], line["slices"]) == (1, 1)), None)
        colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
        for slices, colour in zip(sorted({line["slices"] for line in here}), colours, strict=False):
            shards = sorted(line["shards"] for line in here if line["slices"] == slices)
            if not shards:
                continue
            ideal = [expected_speedup(s, slices) for s in shards]
            ax.plot(shards, ideal, ":", color=colour, linewidth=2, label=f"ideal, expected 3RS/(2R+1), R={slices}")
            drawn = [line["erase_one_in_process"]["ideal_speedup"] for s in shards for line in here
                     if (line["shards"], line["slices"]) == (s, slices)]  # fmt: skip
            ax.plot(shards, drawn, "x", color=colour, markersize=9, label=f"ideal for the 5 subjects drawn, R={slices}")
            by_shards = {line["shards"]: line for line in here if line["slices"] == slices}
            if base is None:
                # No 1 x 1 point (at 10^6 each of its erasures retrains everything: minutes): a 1 x 1
                # erasure costs one full training, so take the cheapest training measured here.
                full = min(line["train"][key] for line in here)
                measured = [full / by_shards[s]["erase_one_in_process"][key] for s in shards]
                label = f"measured, in process, against a full training, R={slices}"
                ax.plot(shards, measured, "-o", color=colour, label=label)
                continue
            for cost, style, name in (("erase_one_in_process", "-o", "in process"),
                                      ("erase_one_process", "--s", "`forget run` process")):  # fmt: skip
                measured = [base[cost][key] / by_shards[s][cost][key] for s in shards]
                ax.plot(shards, measured, style, color=colour, label=f"measured, {name}, R={slices}")
        _plain_log_axes(ax, sorted({line["shards"] for line in here}))
        ax.set_title(f"{count:,} records")
        ax.set_xlabel("shards S")
        ax.set_ylabel("speed-up of one erasure over 1 shard x 1 slice (x)")
        ax.legend(fontsize=9)
    figure.suptitle(
        f"forget: erasing one subject, speed-up against shards ({unit.split(' (')[0]}, median of 5)\n{where}",
        fontsize=13,
    )
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def table(lines: list[dict[str, Any]]) -> str:
    """The points as a Markdown table (wall s / CPU s), the latest measurement of each, for docs/scaling.md."""
    header = (
        "| setup | records | S x R | load | ingest rows/s | train | erase one, in process | erase one, `forget run` |"
        " erase 100 | ledger verify | cert. verify | database | checkpoints | peak RSS ingest / train / run |"
        " speed-up, CPU (ideal: these subjects, expected) |"
    )
    rows = [header, "|" + " --- |" * header.count(" |")]
    lines = sorted(latest(lines), key=lambda line: (line["database"], line["executor"], *point_key(line)[:3]))
    bases = {line["records"]: line for line in lines if (line["shards"], line["slices"]) == (1, 1)}

    def pair(timing: dict[str, Any]) -> str:
        return f"{timing['wall_s']:.2f} / {timing['cpu_s']:.2f}"

    for line in lines:
        one = line["erase_one_in_process"]
        base = bases.get(line["records"])
        speedup = f"{base['erase_one_in_process']['cpu_s'] / one['cpu_s']:.1f}" if base else "-"
        rows.append(
            f"| {line['database']}, {line['executor']} | {line['records']:,} | {line['shards']} x {line['slices']} |"
            f" {line['load_1m_start']:.1f} |"
            f" {line['ingest']['rows_per_s']:,} | {pair(line['train'])} | {pair(one)} |"
            f" {pair(line['erase_one_process'])} | {pair(line['erase_batch'])} | {pair(line['ledger_verify'])} |"
            f" {pair(line['certificate_verify'])} | {line['database_bytes'] / 2**20:.1f} MiB |"
            f" {line['checkpoint_bytes'] / 2**20:.1f} MiB |"
            f" {line['ingest']['peak_rss_mib']:.0f} / {line['train']['peak_rss_mib']:.0f} /"
            f" {line['erase_one_process']['peak_rss_mib']:.0f} MiB |"
            f" {speedup} ({one['ideal_speedup']:.1f}, {expected_speedup(line['shards'], line['slices']):.1f}) |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON lines: appended to, read by --plot")
    parser.add_argument("--records", type=int, nargs="+", default=list(RECORDS))
    parser.add_argument("--shards", type=int, nargs="+", default=list(SHARDS))
    parser.add_argument("--slices", type=int, nargs="+", default=list(SLICES))
    parser.add_argument("--quick", action="store_true", help="10^4 records x 1, 5 shards x 1, 10 slices")
    parser.add_argument("--database", default=None, help="a PostgreSQL server URL (default: SQLite per workspace)")
    parser.add_argument("--executor", choices=("local", "dask"), default="local")
    parser.add_argument("--epochs", type=float, default=10.0, help="forget init --epochs (forget's default 10)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="one-subject erasures of each kind")
    parser.add_argument("--batch", type=int, default=BATCH, help="subjects in the batch erasure")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--again", action="store_true", help="measure points already in --out again")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces")
    parser.add_argument("--workdir", type=Path, default=None, help="where the workspaces go (default: $TMPDIR)")
    parser.add_argument("--plot", action="store_true", help="only plot --out's points into --images")
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--metric", choices=tuple(METRICS), default="cpu", help="the time --plot draws")
    parser.add_argument("--table", action="store_true", help="only print --out's points as a Markdown table")
    args = parser.parse_args(argv)
    if args.table:
        print(table(read_lines(args.out)))
        return
    if args.plot:
        for path in plot(read_lines(args.out), args.images, args.metric):
            log(f"wrote {path}")
        return
    if args.quick:
        args.records, args.shards, args.slices = (list(v) for v in QUICK.values())
    measure(args)


if __name__ == "__main__":
    main()
