"""Benchmark: what slicing costs on top of training, as the ratio of a sharded to a monolithic training.

Run it as a script, not a test:

    nice -n 10 python benchmarks/bench_overhead.py                      # digits, 20 x 10 against 1 x 1
    nice -n 10 python benchmarks/bench_overhead.py --shards 5 --slices 4
    nice -n 10 python benchmarks/bench_overhead.py --dataset purchase   # 120 records a slice, not 8
    nice -n 10 python -m cProfile -s cumulative benchmarks/bench_overhead.py --repeats 1   # where it goes

Both workspaces hold scikit-learn's digits as `bench_sisa.py --dataset digits` ingests them (1,617
training rows, each its own subject, keys derived from the seed) with the same settings (`tanh-256`,
20 epochs, batch 32, Adam at 1e-3, 1 torch thread, the balanced schedule). Every record is then
seen 20 times in either layout (sisa.schedule): the same passes, in S x R checkpointed steps or one.
At 20 x 10 a slice holds about 8 records: the worst case for per-slice costs. `--dataset purchase`
takes issue 12's Purchase-like data instead (24,000 rows, 10 epochs; about 120 records a slice).

Each repeat drops every checkpoint (`restart_shards`) and times `train(ws, plan_training(ws), "cpu")`
in this process, after one untimed warm-up training of each: CPU time (`time.process_time`) and wall
time. `ratio` is median sharded CPU / median monolithic CPU (issue 15's goal: at most 1.5).
`compute_*` trains the same shards with `sisa.trainer.train_shard` on an in-memory store, nothing
recorded: the trainer's share, which no database or file system work can remove. `steps` counts the
optimizer steps of each layout: a shard's step k visits its cumulative data in batches of its own, so
the sharded layout takes more (and smaller) batches for the same passes.

Progress goes to stderr; the last line of stdout is one JSON object.
Needs: pip install scikit-learn (the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sisa import DEFAULTS, build_workspace, log, seeded_keys, write_split

from forget.training.train import ShardPlan, plan_training, restart_shards, shard_task, train, training_config
from forget.workspace.config import TrainingSettings
from forget.workspace.core import Workspace
from sisa.schedule import slice_passes
from sisa.store import MemoryStore
from sisa.trainer import train_shard

SEED = 2026


def timed_training(workspace: Workspace, repeats: int) -> dict[str, Any]:
    """Untimed warm-up, then `repeats` trainings from scratch: medians of CPU and wall seconds."""
    cpu: list[float] = []
    wall: list[float] = []
    for i in range(repeats + 1):
        restart_shards(workspace)
        plans = plan_training(workspace)
        started, cpu_started = time.perf_counter(), time.process_time()
        train(workspace, plans, device="cpu")
        if i:  # the first is the warm-up
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    return {
        "train_cpu_s": round(statistics.median(cpu), 4),
        "train_s": round(statistics.median(wall), 4),
        "train_cpu_s_all": [round(v, 4) for v in cpu],
        "train_s_all": [round(v, 4) for v in wall],
    }


def compute_only(workspace: Workspace, repeats: int) -> dict[str, Any]:
    """The trainer alone: the same shards, checkpoints kept in memory, nothing recorded or fsync'd."""
    import torch

    config = training_config(workspace)
    tasks = [shard_task(workspace, ShardPlan(s, 0)) for s in range(workspace.config.shards)]
    cpu: list[float] = []
    steps = 0
    for _ in range(repeats):
        started = time.process_time()
        for task in tasks:
            train_shard(task, config, MemoryStore(), torch.device("cpu"))
        cpu.append(time.process_time() - started)
    for task in tasks:
        for step in range(config.slices):
            passes = slice_passes(step, config.slices, config.epochs, config.schedule)
            sizes = [len(s) for s in task.slices[: step + 1]]
            visits = sum(int(p) * n + round((p - int(p)) * n) for p, n in zip(passes, sizes, strict=True))
            steps += math.ceil(visits / config.batch_size)
    return {"compute_cpu_s": round(statistics.median(cpu), 4), "steps": steps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["digits", "purchase"], default="digits")
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="forget-bench-overhead-"))
    try:
        split = write_split(args.dataset, scratch)
        defaults = DEFAULTS[args.dataset]
        settings = TrainingSettings(epochs=defaults["epochs"], batch_size=defaults["batch_size"], lr=defaults["lr"])
        keys = seeded_keys(scratch / "keys", SEED)
        sharded, _ = build_workspace(scratch / "sharded", split, args.shards, args.slices, settings, SEED, keys)
        mono, _ = build_workspace(scratch / "mono", split, 1, 1, settings, SEED, keys)
        results: dict[str, Any] = {}
        for name, workspace in (("sharded", sharded), ("monolithic", mono)):
            measured = timed_training(workspace, args.repeats) | compute_only(workspace, args.repeats)
            results |= {f"{name}_{key}": value for key, value in measured.items()}
            log(f"{name}: train {measured['train_cpu_s']:.2f} s CPU, trainer alone {measured['compute_cpu_s']:.2f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "dataset": args.dataset,
        "rows": split.train_rows,
        "shards": args.shards,
        "slices": args.slices,
        "epochs": defaults["epochs"],
        "batch_size": defaults["batch_size"],
        "ratio": round(results["sharded_train_cpu_s"] / results["monolithic_train_cpu_s"], 3),
        "ratio_wall": round(results["sharded_train_s"] / results["monolithic_train_s"], 3),
        "compute_ratio": round(results["sharded_compute_cpu_s"] / results["monolithic_compute_cpu_s"], 3),
        **results,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    log(
        f"{args.shards} x {args.slices} against 1 x 1: {result['ratio']:.2f}x CPU ({result['ratio_wall']:.2f}x wall);"
        f" the trainer alone {result['compute_ratio']:.2f}x (goal 1.5)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
