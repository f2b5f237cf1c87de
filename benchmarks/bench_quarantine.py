"""Benchmark: the accuracy cost of quarantine on the Purchase-like data (issue 13, item 3).

    nice -n 10 python benchmarks/bench_quarantine.py            # 20 x 10, k = 1, 5, 20 subjects
    python benchmarks/bench_quarantine.py --draws 200 --out quarantine.json

While an erasure request is open, the shards holding the subject's records answer no prediction
(forget.erasure.quarantine): the ensemble answers from the others. This trains the Purchase-like
data (`benchmarks/defaults.py`'s `purchase()`: 24,000 training rows x 600 binary features, 100
classes, 6,000 held-out rows) once at 20 shards x 10 slices with forget's defaults (tanh-256, batch
32, 10 epochs, Adam 1e-3, seed 1, 1 thread; the real placement and trainer through
`forget.evaluation.plan.simulate`), then draws k subjects with open requests (seeded, `--draws`
times each) and scores the ensemble of the shards that are not quarantined against all 20, under
each aggregation. One subject per row, as in the data set; with subject affinity a subject with
many records still quarantines one shard, so k subjects quarantine at most k shards.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from defaults import purchase

from forget.evaluation.plan import place_records, simulate
from sisa.aggregation import Aggregation, aggregate
from sisa.trainer import TrainingConfig

SHARDS, SLICES, SEED = 20, 10, 1
AGGREGATIONS = (Aggregation.GEOMEAN, Aggregation.MEAN, Aggregation.VOTE)


def log(message: str) -> None:
    print(f"[quarantine {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def accuracy(probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], aggregation: Aggregation) -> float:
    return float((aggregate(probabilities, aggregation) == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", default="1,5,20", help="How many subjects have open requests (comma list).")
    parser.add_argument("--draws", type=int, default=100, help="Seeded draws of the subjects per count.")
    parser.add_argument("--out", type=Path, help="Also write the results as JSON here.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = purchase()
    subjects = [f"s{i}" for i in range(data.y_train.size)]
    records = [f"r{i}" for i in range(data.y_train.size)]
    config = TrainingConfig(model="tanh-256", slices=SLICES, epochs=10, batch_size=32, lr=1e-3, seed=SEED)
    log(f"training {SHARDS} x {SLICES} on {data.y_train.size} rows")
    sim = simulate(data.x_train, data.y_train, data.classes, subjects, records, SHARDS, SLICES, config, data.x_test)
    log(f"trained in {sim.train_s:.0f} s")
    placed = place_records(subjects, records, SEED, SHARDS, SLICES)
    p, y = sim.probabilities, data.y_test
    full = {a.value: accuracy(p, y, a) for a in AGGREGATIONS}
    rng = np.random.default_rng(SEED)
    results: list[dict[str, Any]] = []
    for count in (int(c) for c in args.subjects.split(",")):
        quarantined_counts = []
        scores: dict[str, list[float]] = {a.value: [] for a in AGGREGATIONS}
        for _ in range(args.draws):
            chosen = rng.choice(len(subjects), size=count, replace=False)
            out = set(placed.shard[chosen].tolist())
            keep = [s for s in range(SHARDS) if s not in out]
            quarantined_counts.append(len(out))
            for a in AGGREGATIONS:
                scores[a.value].append(accuracy(p[keep], y, a))
        row = {
            "subjects": count,
            "draws": args.draws,
            "shards_quarantined_mean": float(np.mean(quarantined_counts)),
            "shards_quarantined_max": int(np.max(quarantined_counts)),
        }
        for a in AGGREGATIONS:
            values = np.asarray(scores[a.value])
            row[a.value] = {
                "all_shards": full[a.value],
                "quarantined_mean": float(values.mean()),
                "quarantined_worst": float(values.min()),
                "cost_points_mean": 100 * (full[a.value] - float(values.mean())),
                "cost_points_worst": 100 * (full[a.value] - float(values.min())),
            }
        results.append(row)
        log(json.dumps(row))
    report = {
        "layout": [SHARDS, SLICES],
        "train_rows": int(data.y_train.size),
        "test_rows": int(y.size),
        "records_per_shard": list(sim.shard_records),
        "train_s": sim.train_s,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "results": results,
    }
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| subjects with open requests | shards quarantined (mean, max) | geomean: all / quarantined (mean, worst) |"
          " mean: all / quarantined (mean, worst) | vote: all / quarantined (mean, worst) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    for row in results:
        cells = [
            f"{row[a.value]['all_shards']:.3f} / {row[a.value]['quarantined_mean']:.3f},"
            f" {row[a.value]['quarantined_worst']:.3f}"
            for a in AGGREGATIONS
        ]
        print(
            f"| {row['subjects']} | {row['shards_quarantined_mean']:.1f}, {row['shards_quarantined_max']} | "
            + " | ".join(cells)
            + " |"
        )


if __name__ == "__main__":
    main()
