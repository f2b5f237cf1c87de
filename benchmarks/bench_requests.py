"""Benchmark: erasure requests carried out as one batch (`forget run`) against one by one (issue 4).

Run it as a script, not a test:

    python benchmarks/bench_requests.py                   # 100 requests, digits, 10 shards x 5 slices
    python benchmarks/bench_requests.py --requests 50 --days 5 --repeats 3

The script

1. writes scikit-learn's digits with `forget.demo.write_digits_csv` (writers w0000..w0598, about
   three images each, every fifth image held out), creates a workspace (10 shards x 5 slices,
   seed 1, 20 epochs, batch 32, lr 3e-3; keys derived from a constant so that placement, and so
   every count below, is the same on every run), ingests the training split and trains every shard;
2. copies the trained workspace folder three times (the SQLite database is inside it), so that
   every run starts from the same state;
3. draws `--requests` seeded random writers from w0000..w0599 (w0599 holds no data: such a request
   is answered "no data held") and
   (a) files them all with `forget.erasure.requests.file_request`, then runs `forget.erasure.job.run_job` once:
       every affected shard rewinds once, to the earliest slice any of its requests touches
       (`batch_s`);
   (b) in a copy, files one request and runs `run_job`, one request at a time (`one_by_one_s`);
   (c) in a copy, files them in `--days` equal batches with one `run_job` each: a daily job over
       a week of requests (`daily_s`);
   it counts shard retrains (`len(summary.shards_retrained)`, summed over runs) and retrained
   checkpoints (the `lineage.checkpoint` ledger entries each run adds), times the part of each
   run spent retraining (`forget.erasure.job.train`) and issuing certificates
   (`forget.erasure.job.issue_certificates`, where the job has it), asserts that every run retrained each
   affected shard exactly once and each of its slices from the rewind slice on exactly once, and
   that all three workspaces end with bit-identical checkpoints;
4. times the fixed cost of one `forget` process: `forget -w WS request --subject-id w0001` then
   `forget -w WS run --device cpu`, each repeat in a fresh copy of the trained workspace
   (`run_one_subject_process_s`, the median of the two together), a second `run` in the same
   copy whose only request holds no data (`run_no_data_process_s`: a run that trains nothing),
   the same erasure without a new process (`run_one_subject_in_process_s`), and
   `forget -w WS status` on the batch workspace with its 100 completed requests
   (`status_process_s`); each is the median of `--repeats`.

Progress goes to stderr; the last line of stdout is one JSON object with the results.
Needs: pip install scikit-learn (the `demo` or `bench` extra).
"""

from __future__ import annotations

import argparse
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
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import forget.erasure.job
from forget.audit.ledger_view import entries
from forget.data.ingest import ColumnChoice, ingest_file
from forget.demo import write_digits_csv
from forget.erasure.job import RunSummary
from forget.erasure.requests import file_request
from forget.erasure.rewind import ERASURE_PLANNED
from forget.training.lineage import CHECKPOINT
from forget.training.train import plan_training, train
from forget.workspace.config import TrainingSettings
from forget.workspace.core import InitOptions, Workspace, init_workspace, open_workspace
from ledger.keys import public_key_pem, write_private_key
from ledger.log import Entry

SHARDS, SLICES, SEED = 10, 5, 1
SETTINGS = TrainingSettings(epochs=20, batch_size=32, lr=3e-3)
WRITERS = 600
"""Writer ids w0000..w0599; the digits' 1,797 images give writers w0000..w0598 (three images each)."""
PROCESS_SUBJECT = "w0001"
NO_DATA_SUBJECT = "w9999"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Phases:
    """Seconds spent inside `forget.erasure.job`'s retraining (`train`) and, where the job issues
    certificates, `issue_certificates`: the rest of `run_job` is its per-run bookkeeping."""

    WRAPPED = ("train", "issue_certificates")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(self.WRAPPED, 0.0)
        for name in self.WRAPPED:
            original = getattr(forget.erasure.job, name, None)
            if original is not None:
                setattr(forget.erasure.job, name, self._timed(name, original))

    def _timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return wrapper

    def take(self) -> dict[str, float]:
        taken = dict(self.seconds)
        self.seconds = dict.fromkeys(self.WRAPPED, 0.0)
        return taken


PHASES = Phases()


def ledger_count(ws: Workspace, kind: str) -> int:
    return sum(1 for _ in entries(ws, kind))


def fixed_keys(directory: Path) -> Path:
    """Keys derived from a constant, for `--keys-from`: placement hashes the keyed ids, so with random
    keys every run would place the writers (and so the rewinds) differently."""
    keys = directory / "keys"
    keys.mkdir(parents=True)
    (keys / "pseudonym.key").write_text(hashlib.sha256(b"bench_requests/pseudonym").hexdigest() + "\n")
    signing = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench_requests/signing").digest())
    write_private_key(keys / "signing.pem", signing)
    (keys / "signing.pub.pem").write_bytes(public_key_pem(signing.public_key()))
    return directory


def build(root: Path, data: Path) -> tuple[Path, dict[str, float]]:
    train_csv, test_csv = data / "digits-train.csv", data / "digits-test.csv"
    write_digits_csv(train_csv, test_csv)
    times: dict[str, float] = {}
    options = InitOptions(
        shards=SHARDS, slices=SLICES, seed=SEED, training=SETTINGS, keys_from=fixed_keys(data / "keys-source")
    )
    ws = init_workspace(root, options)
    result = ingest_file(ws, train_csv, ColumnChoice(subject="writer", label="digit"))
    log(f"ingested {result.rows} records of {result.subjects} writers")
    started = time.perf_counter()
    train(ws, plan_training(ws), "cpu")
    times["full_train_s"] = time.perf_counter() - started
    log(f"trained {SHARDS} shards x {SLICES} slices in {times['full_train_s']:.1f} s")
    return root, times


def check_run(ws: Workspace, summary: RunSummary, new_checkpoints: list[Entry]) -> dict[int, int]:
    """Each affected shard retrained exactly once, each of its slices from the rewind slice on once."""
    planned = [e for e in entries(ws, ERASURE_PLANNED) if e.payload["run_id"] == summary.run_id]
    assert len(planned) <= 1, planned
    rewinds = {int(r["shard"]): int(r["from_slice"]) for r in planned[0].payload["rewinds"]} if planned else {}
    retrained = Counter(summary.shards_retrained)
    assert set(retrained) == set(rewinds), (retrained, rewinds)
    assert all(count == 1 for count in retrained.values()), retrained
    trained_slices = Counter((int(e.payload["shard"]), int(e.payload["slice"])) for e in new_checkpoints)
    expected = Counter({(shard, s): 1 for shard, first in rewinds.items() for s in range(first, SLICES)})
    assert trained_slices == expected, (trained_slices, expected)
    return rewinds


def run_in_batches(ws: Workspace, subjects: list[str], size: int, label: str) -> dict[str, Any]:
    """File `size` requests, run `forget.erasure.job.run_job` once, repeat until every subject is done."""
    filing = running = cpu = 0.0
    per_run: list[float] = []
    summaries: list[RunSummary] = []
    rewinds: list[dict[int, int]] = []
    checkpoints = 0
    PHASES.take()
    for start in range(0, len(subjects), size):
        started = time.perf_counter()
        for subject in subjects[start : start + size]:
            file_request(ws, subject)
        filed = time.perf_counter()
        before = ledger_count(ws, CHECKPOINT)
        cpu_started = time.process_time()
        summary = forget.erasure.job.run_job(ws, device="cpu")
        cpu += time.process_time() - cpu_started
        done = time.perf_counter()
        filing += filed - started
        running += done - filed
        per_run.append(done - filed)
        summaries.append(summary)
        new_checkpoints = list(entries(ws, CHECKPOINT))[before:]
        checkpoints += len(new_checkpoints)
        rewinds.append(check_run(ws, summary, new_checkpoints))
        runs = len(summaries)
        if size > 1 or runs % 20 == 0:
            log(f"{label}: {start + size if start + size < len(subjects) else len(subjects)} requests,"
                f" {runs} runs, {running:.1f} s so far")  # fmt: skip
    phases = PHASES.take()
    return {
        "runs": len(summaries),
        "filing_s": filing,
        "seconds": running,
        "cpu_s": cpu,
        "retrain_s": phases["train"],
        "certificates_s": phases["issue_certificates"],
        "per_run_median_s": statistics.median(per_run),
        "summaries": summaries,
        "rewinds": rewinds,
        "erased": sum(len(s.completed) for s in summaries),
        "no_data": sum(len(s.no_data) for s in summaries),
        "shard_retrains": sum(len(s.shards_retrained) for s in summaries),
        "checkpoints_retrained": checkpoints,
    }


def forget_command() -> list[str]:
    script = Path(sys.executable).parent / "forget"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_process(*args: object, expect: int = 0) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one `forget` process."""
    cpu = children_cpu()
    started = time.perf_counter()
    result = subprocess.run(
        [*forget_command(), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "160"},
        check=False,
    )
    seconds = time.perf_counter() - started
    cpu = children_cpu() - cpu
    if result.returncode != expect:
        raise SystemExit(
            f"forget {' '.join(map(str, args))} exited {result.returncode}, expected {expect}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return seconds, cpu


def process_costs(base: Path, scratch: Path, status_ws: Path, repeats: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {
        name: []
        for name in (
            "request_s", "run_s", "together_s", "run_no_data_s", "run_in_process_s", "status_s",
            "together_cpu_s", "run_no_data_cpu_s", "run_in_process_cpu_s", "status_cpu_s",
        )
    }  # fmt: skip
    for i in range(repeats):
        ws = scratch / f"process-{i}"
        shutil.copytree(base, ws)
        request, request_cpu = timed_process("-w", ws, "request", "--subject-id", PROCESS_SUBJECT)
        run, run_cpu = timed_process("-w", ws, "run", "--device", "cpu")
        samples["request_s"].append(request)
        samples["run_s"].append(run)
        samples["together_s"].append(request + run)
        samples["together_cpu_s"].append(request_cpu + run_cpu)
        # The same workspace again: a request for a subject with no records trains nothing.
        timed_process("-w", ws, "request", "--subject-id", NO_DATA_SUBJECT)
        no_data, no_data_cpu = timed_process("-w", ws, "run", "--device", "cpu")
        samples["run_no_data_s"].append(no_data)
        samples["run_no_data_cpu_s"].append(no_data_cpu)
        shutil.rmtree(ws)

        # The same erasure without a new process: what the process adds is the difference.
        shutil.copytree(base, ws)
        opened = open_workspace(ws)
        file_request(opened, PROCESS_SUBJECT)
        started, started_cpu = time.perf_counter(), time.process_time()
        summary = forget.erasure.job.run_job(opened, device="cpu")
        samples["run_in_process_s"].append(time.perf_counter() - started)
        samples["run_in_process_cpu_s"].append(time.process_time() - started_cpu)
        assert len(summary.shards_retrained) == 1, summary
        opened.datastore.engine.dispose()
        shutil.rmtree(ws)

        status, status_cpu = timed_process("-w", status_ws, "status")
        samples["status_s"].append(status)
        samples["status_cpu_s"].append(status_cpu)
        log(
            f"process repeat {i + 1}/{repeats}: request {request:.2f} s, run {run:.2f} s,"
            f" run (no data) {no_data:.2f} s, in-process run {samples['run_in_process_s'][-1]:.2f} s,"
            f" status {status:.2f} s"
        )
    median = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "request_process_s": median["request_s"],
        "run_process_s": median["run_s"],
        "run_one_subject_process_s": median["together_s"],
        "run_one_subject_process_cpu_s": median["together_cpu_s"],
        "run_no_data_process_s": median["run_no_data_s"],
        "run_no_data_process_cpu_s": median["run_no_data_cpu_s"],
        "run_one_subject_in_process_s": median["run_in_process_s"],
        "run_one_subject_in_process_cpu_s": median["run_in_process_cpu_s"],
        "status_process_s": median["status_s"],
        "status_process_cpu_s": median["status_cpu_s"],
        "process_samples": {name: [round(x, 3) for x in values] for name, values in samples.items()},
    }


COLUMNS = ("runs", "run_job s", "cpu s", "retrain s", "certs s", "shard retrains", "checkpoints")


def row(name: str, result: dict[str, Any]) -> str:
    cells = [
        f"{result['runs']}",
        f"{result['seconds']:.1f}",
        f"{result['cpu_s']:.1f}",
        f"{result['retrain_s']:.1f}",
        f"{result['certificates_s']:.1f}",
        f"{result['shard_retrains']}",
        f"{result['checkpoints_retrained']}",
    ]
    return f"{name:<12}" + "".join(f" {cell:>{len(title)}}" for cell, title in zip(cells, COLUMNS, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026, help="Seed of the writers drawn.")
    parser.add_argument("--days", type=int, default=7, help="Also run the requests in this many daily batches.")
    parser.add_argument("--repeats", type=int, default=5, help="Repeats of each process timing.")
    parser.add_argument("--keep", type=Path, help="Build here and keep the workspaces (default: a temp dir).")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="forget-bench-requests-"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    try:
        base, times = build(root / "base", root / "data")
        for name in ("batch", "one-by-one", "daily"):
            shutil.copytree(base, root / name)
        subjects = [f"w{i:04d}" for i in random.Random(args.seed).sample(range(WRITERS), args.requests)]
        daily_size = -(-args.requests // args.days)

        log(f"batch: {args.requests} requests, one run")
        batch = run_in_batches(open_workspace(root / "batch"), subjects, args.requests, "batch")
        log(f"one by one: {args.requests} requests, {args.requests} runs")
        single = run_in_batches(open_workspace(root / "one-by-one"), subjects, 1, "one by one")
        log(f"daily: {args.requests} requests in batches of {daily_size}")
        daily = run_in_batches(open_workspace(root / "daily"), subjects, daily_size, "daily")

        final = {
            name: open_workspace(root / name).datastore.checkpoint_map() for name in ("batch", "one-by-one", "daily")
        }
        same_models = final["batch"] == final["one-by-one"] == final["daily"]
        assert same_models, "batched and one-by-one erasure ended with different checkpoints"

        log(f"process costs: {args.repeats} repeats")
        costs = process_costs(base, root, root / "batch", args.repeats)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    rewinds = batch["rewinds"][0]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    print(f"machine: {machine}, Python {platform.python_version()}")
    full = times["full_train_s"]
    print(f"workspace: digits, {SHARDS} shards x {SLICES} slices, 20 epochs; full training {full:.1f} s")
    print(f"requests: {args.requests} ({batch['erased']} with data, {batch['no_data']} no data held)")
    print(f"batch rewinds (shard: from slice): {dict(sorted(rewinds.items()))}")
    print(f"{'':<12} {' '.join(COLUMNS)}")
    print(row("batch", batch) + "  (each affected shard exactly once)")
    print(row(f"daily x{args.days}", daily))
    print(row("one by one", single) + f"  (median run {single['per_run_median_s']:.2f} s)")
    filing = f"{batch['filing_s']:.2f} s (batch), {single['filing_s']:.2f} s (one by one)"
    print(f"filing {args.requests} requests: {filing}")
    print(f"same checkpoints after all three: {same_models}")
    print(
        f"one process, one subject: request {costs['request_process_s']:.2f} s"
        f" + run {costs['run_process_s']:.2f} s; run with no data {costs['run_no_data_process_s']:.2f} s;"
        f" in-process run {costs['run_one_subject_in_process_s']:.2f} s;"
        f" status {costs['status_process_s']:.2f} s"
    )
    print(f"process samples: {json.dumps(costs['process_samples'])}")
    result = {
        "requests": args.requests,
        "shards": SHARDS,
        "slices": SLICES,
        "requests_with_data": batch["erased"],
        "requests_no_data": batch["no_data"],
        "full_train_s": round(full, 3),
        "batch_s": round(batch["seconds"], 3),
        "one_by_one_s": round(single["seconds"], 3),
        "batch_shard_retrains": batch["shard_retrains"],
        "one_by_one_shard_retrains": single["shard_retrains"],
        "speedup": round(single["seconds"] / batch["seconds"], 2),
        "batch_checkpoints_retrained": batch["checkpoints_retrained"],
        "one_by_one_checkpoints_retrained": single["checkpoints_retrained"],
        "batch_cpu_s": round(batch["cpu_s"], 3),
        "one_by_one_cpu_s": round(single["cpu_s"], 3),
        "daily_cpu_s": round(daily["cpu_s"], 3),
        "batch_retrain_s": round(batch["retrain_s"], 3),
        "one_by_one_retrain_s": round(single["retrain_s"], 3),
        "batch_certificates_s": round(batch["certificates_s"], 3),
        "one_by_one_certificates_s": round(single["certificates_s"], 3),
        "one_by_one_run_median_s": round(single["per_run_median_s"], 3),
        "daily_batches": daily["runs"],
        "daily_s": round(daily["seconds"], 3),
        "daily_shard_retrains": daily["shard_retrains"],
        "daily_checkpoints_retrained": daily["checkpoints_retrained"],
        "daily_retrain_s": round(daily["retrain_s"], 3),
        "same_checkpoints": same_models,
        "run_one_subject_process_s": round(costs["run_one_subject_process_s"], 3),
        "request_process_s": round(costs["request_process_s"], 3),
        "run_process_s": round(costs["run_process_s"], 3),
        "run_no_data_process_s": round(costs["run_no_data_process_s"], 3),
        "run_one_subject_in_process_s": round(costs["run_one_subject_in_process_s"], 3),
        "status_process_s": round(costs["status_process_s"], 3),
        "run_one_subject_process_cpu_s": round(costs["run_one_subject_process_cpu_s"], 3),
        "run_no_data_process_cpu_s": round(costs["run_no_data_process_cpu_s"], 3),
        "run_one_subject_in_process_cpu_s": round(costs["run_one_subject_in_process_cpu_s"], 3),
        "status_process_cpu_s": round(costs["status_process_cpu_s"], 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
