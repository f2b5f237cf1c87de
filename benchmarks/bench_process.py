"""Benchmark: the fixed cost of a `forget run` process that trains, as a ratio to `import torch`.

Run it as a script, not a test:

    nice -n 10 python benchmarks/bench_process.py                   # Purchase-like, 20 x 10, 5 repeats
    nice -n 10 python benchmarks/bench_process.py --cache /tmp/bp   # keep the trained workspace for reruns

It builds issue 12's Purchase-like workspace once (24,000 training rows, 600 binary features, 100
classes, 20 shards x 10 slices, forget's defaults; `bench_sisa.py --dataset purchase`'s data, keys
and settings), then, `--repeats` times, in a fresh copy of it:

1. `forget request --subject-id S` (not timed), for the subject `bench_sisa.py` times its process on;
2. `python -c "import torch"` (`import_torch_cpu_s`) and `python -c pass` (`python_cpu_s`);
3. `python -m cli run --device cpu --json` (the `forget` script's code), which erases S, retrains
   its shard from S's slice, certifies and exits (`run_cpu_s`).

CPU time is the children's user + system time (`getrusage`), which other work on a shared machine
disturbs far less than wall time; wall times are reported beside it. The three commands alternate
within each repeat, so they see the same load. `ratio` is median(run_cpu_s) / median(import_torch_cpu_s)
(issue 15's goal: 1.4). Every repeat must leave the same checkpoint digests for the retrained shard
(`digests`, checked here), which is the bit-identity evidence across code changes: compare it with
a run of the old code.

Progress goes to stderr; the last line of stdout is one JSON object.
Needs: pip install scikit-learn (the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sisa import DEFAULTS, build_workspace, log, seeded_keys, write_split

from forget.workspace.config import TrainingSettings
from forget.workspace.core import open_workspace

SEED = 2026
ERASURES = 5
"""`bench_sisa.py` erases 5 seeded subjects and times its `forget run` process on a sixth: that one."""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_process(command: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall s, CPU s, the finished process) of one child process."""
    cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    return time.perf_counter() - started, children_cpu() - cpu, done


def trained_workspace(cache: Path) -> tuple[Path, str]:
    """The Purchase-like workspace (built on first use) and the subject to erase."""
    marker = cache / "ready.json"
    if marker.exists():
        ready = json.loads(marker.read_text())
        return Path(ready["workspace"]), str(ready["subject"])
    cache.mkdir(parents=True, exist_ok=True)
    data = cache / "data"
    data.mkdir(exist_ok=True)
    split = write_split("purchase", data)
    defaults = DEFAULTS["purchase"]
    settings = TrainingSettings(epochs=defaults["epochs"], batch_size=defaults["batch_size"], lr=defaults["lr"])
    keys = seeded_keys(cache / "keys", SEED)
    workspace, times = build_workspace(
        cache / "sisa", split, defaults["shards"], defaults["slices"], settings, SEED, keys
    )
    workspace.datastore.engine.dispose()
    subject = random.Random(SEED).sample(split.train_subjects, ERASURES + 1)[-1]
    marker.write_text(json.dumps({"workspace": str(workspace.root), "subject": subject, **times}))
    return workspace.root, subject


def shard_digests(root: Path, shard: int) -> list[str]:
    workspace = open_workspace(root)
    try:
        existing = workspace.datastore.checkpoint_map()
        return [existing[(shard, s)] for s in range(workspace.config.slices)]
    finally:
        workspace.datastore.engine.dispose()


def measure(root: Path, subject: str, repeats: int, scratch: Path) -> dict[str, Any]:
    env = {**os.environ, "COLUMNS": "160"}
    forget = [sys.executable, "-m", "cli"]  # cli/__main__.py: the `forget` console script's code path
    samples: dict[str, list[float]] = {
        name: [] for name in ("python_s", "python_cpu_s", "import_torch_s", "import_torch_cpu_s", "run_s", "run_cpu_s")
    }
    digests: list[list[str]] = []
    shards: set[int] = set()
    for i in range(repeats):
        copy = scratch / f"run-{i}"
        shutil.copytree(root, copy)
        subprocess.run([*forget, "-w", str(copy), "request", "--subject-id", subject], check=True,
                       capture_output=True, env=env)  # fmt: skip
        for name, command in (
            ("python", [sys.executable, "-c", "pass"]),
            ("import_torch", [sys.executable, "-c", "import torch"]),
            ("run", [*forget, "-w", str(copy), "run", "--device", "cpu", "--json"]),
        ):
            wall, cpu, done = timed_process(command, env)
            if done.returncode != 0:
                raise RuntimeError(f"{command[-1]} failed ({done.returncode}):\n{done.stderr}")
            samples[f"{name}_s"].append(wall)
            samples[f"{name}_cpu_s"].append(cpu)
        summary = json.loads(done.stdout)
        if len(summary["shards_retrained"]) != 1:
            raise RuntimeError(f"expected one shard retrained, got {summary['shards_retrained']}")
        shard = int(summary["shards_retrained"][0])
        shards.add(shard)
        digests.append(shard_digests(copy, shard))
        shutil.rmtree(copy)
        log(
            f"repeat {i + 1}/{repeats}: run {samples['run_cpu_s'][-1]:.2f} s CPU"
            f" ({samples['run_s'][-1]:.2f} s wall), import torch {samples['import_torch_cpu_s'][-1]:.2f} s CPU"
        )
    if any(d != digests[0] for d in digests):
        raise RuntimeError("the repeats left different checkpoints: training is not deterministic")
    medians = {name: round(statistics.median(values), 4) for name, values in samples.items()}
    return medians | {
        "ratio": round(medians["run_cpu_s"] / medians["import_torch_cpu_s"], 3),
        "ratio_wall": round(medians["run_s"] / medians["import_torch_s"], 3),
        "all": {name: [round(v, 4) for v in values] for name, values in samples.items()},
        "shard": shards.pop(),
        "digests": digests[0],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None, help="keep the trained workspace here between runs")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="forget-bench-process-"))
    try:
        root, subject = trained_workspace(args.cache or scratch / "cache")
        result = measure(root, subject, args.repeats, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result |= {
        "dataset": "purchase",
        "repeats": args.repeats,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    log(
        f"forget run {result['run_cpu_s']:.2f} s CPU, import torch {result['import_torch_cpu_s']:.2f} s CPU:"
        f" ratio {result['ratio']:.2f} (goal 1.4)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
