"""Benchmark: issuing a request's certificate in a workspace whose ledger holds many requests (issue 14, item 3).

Run it as a script, not a test (no torch: the runs are synthetic, written with the same evidence
types and the same `Ledger.append` as `forget run`):

    python benchmarks/bench_certificate_issue.py                          # 2,000 requests in 20 runs, SQLite
    python benchmarks/bench_certificate_issue.py --requests 2000 --runs 20 --database postgresql+psycopg://...

1. A fresh workspace (SQLite file inside it, or `--database`); `--runs` runs of `--requests / --runs`
   requests each, over 10 shards of 5 slices: per run, the receipts, then the starts, the plans, the
   new slice manifests, the purge, the retrained checkpoints of every rewound shard and the
   completions, each phase one transaction, as `forget run` writes them; the request rows are
   completed in the same transactions. A head is signed (and anchored) at the end.
2. `build_certificate` (gather the entries, read their proofs, sign, verify) for `--sample` requests
   spread over the runs, oldest to newest: the median and the slowest, in milliseconds.
3. `issue_certificates` for every request of the last run (written, logged, one head signed): seconds.

Progress goes to stderr; the last line of stdout is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from synthetic_batch import Lineage, Times, log, subject_key, synthetic_batch

from forget.erasure.certify import build_certificate, issue_certificates
from forget.store.datastore import RequestRow
from forget.training.lineage import sign_head
from forget.workspace.core import InitOptions, Workspace, init_workspace

SHARDS, SLICES = 10, 5


def stamp(day: int, hour: int = 8) -> str:
    return f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T{hour:02d}:00:00Z"


def deadline(day: int) -> str:
    return f"2026-{2 + day // 28:02d}-{1 + day % 28:02d}T08:00:00Z"


def write_run(workspace: Workspace, run: int, size: int, rng: random.Random, lineage: Lineage) -> None:
    """One run's entries and rows, phase by phase, each phase one transaction."""
    store, ledger = workspace.datastore, workspace.ledger
    ids = [f"req_{run * 100_000 + i:016x}" for i in range(size)]
    times = Times(stamp(run), deadline(run), stamp(run, 20))
    batch = synthetic_batch(ids, f"run_{run:016x}", rng, lineage, times, most_slices=2)
    with store.transaction() as tx:
        for rid in ids:
            store.add_request(tx, RequestRow(rid, subject_key(rid), "pending", times.received, times.deadline, 0,
                                             None, None, None, None, None, None))  # fmt: skip
        ledger.append(tx, batch.received)
    with store.transaction() as tx:
        for rid in ids:
            store.update_request(tx, rid, state="running", run_id=batch.run_id)
        ledger.append(tx, batch.started)
    for phase in (batch.planned, batch.purged, batch.retrained):
        with store.transaction() as tx:
            ledger.append(tx, phase)
    with store.transaction() as tx:
        for rid in ids:
            shard, slices = batch.placed[rid]
            store.update_request(tx, rid, state="completed", outcome="erased", records_erased=len(slices),
                                 completed_at=times.completed, shards=json.dumps([shard]))  # fmt: skip
        ledger.append(tx, batch.completed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--database", default="sqlite:///forget.db")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-certificate-issue-")) / "ws"
    workspace = init_workspace(root, InitOptions(shards=SHARDS, slices=SLICES, seed=1, database=options.database))
    rng = random.Random(2026)
    lineage = Lineage(SHARDS, SLICES)
    per_run = options.requests // options.runs
    started = time.perf_counter()
    for run in range(options.runs):
        write_run(workspace, run, per_run, rng, lineage)
    sign_head(workspace)
    with workspace.datastore.snapshot() as tx:
        size = sum(1 for _ in workspace.ledger.entries(tx))
    seconds = time.perf_counter() - started
    log(f"{options.runs} runs, {per_run * options.runs} requests, {size} entries in {seconds:.1f} s")
    step = max(1, options.runs // options.sample)
    sample = [f"req_{run * 100_000 + (run * 37) % per_run:016x}" for run in range(0, options.runs, step)][
        : options.sample
    ]
    times = []
    for request_id in sample:
        begin = time.perf_counter()
        build_certificate(workspace, request_id)
        times.append(time.perf_counter() - begin)
    last = [f"req_{(options.runs - 1) * 100_000 + i:016x}" for i in range(per_run)]
    begin = time.perf_counter()
    issue_certificates(workspace, last)
    batch_s = time.perf_counter() - begin
    print(json.dumps({
        "database": options.database.split(":")[0],
        "requests": per_run * options.runs,
        "runs": options.runs,
        "entries": size,
        "build_certificate_median_ms": round(statistics.median(times) * 1000, 1),
        "build_certificate_max_ms": round(max(times) * 1000, 1),
        "build_certificate_oldest_ms": round(times[0] * 1000, 1),
        "build_certificate_newest_ms": round(times[-1] * 1000, 1),
        "issue_last_run_s": round(batch_s, 2),
        "issued": len(last),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
