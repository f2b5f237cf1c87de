"""`forget demo`: the whole flow on scikit-learn's bundled digits, in a fresh workspace.

The digits (1,797 8x8 images) ship inside scikit-learn, so nothing is downloaded. Each image is
given to a synthetic "writer" (about three images each) who plays the data subject.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from forget.config import TrainingSettings
from forget.erasure import erase, plan_erasure, subject_records
from forget.errors import ForgetError
from forget.ingest import ColumnChoice, ingest_file
from forget.serving import evaluate_file
from forget.training import plan_training, shard_summaries, train
from forget.workspace import InitOptions, init_workspace
from sisa.aggregation import Aggregation


def write_digits_csv(train_path: Path, test_path: Path, test_every: int = 5) -> None:
    """Every fifth image is held out; the rest are training records of writers w0000, w0001, ..."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ForgetError("the demo needs scikit-learn's bundled data: pip install 'forget[demo]'") from error
    digits = load_digits()
    header = ["writer", *(f"px{i}" for i in range(64)), "digit"]
    with train_path.open("w", newline="") as train_file, test_path.open("w", newline="") as test_file:
        train_writer, test_writer = csv.writer(train_file), csv.writer(test_file)
        train_writer.writerow(header)
        test_writer.writerow(header)
        for i, (pixels, target) in enumerate(zip(digits.data, digits.target, strict=True)):
            row = [f"w{i // 3:04d}", *(int(p) for p in pixels), int(target)]
            (test_writer if i % test_every == 0 else train_writer).writerow(row)


def run_demo(directory: Path | None, device: str, say: Callable[[str], None]) -> Path:
    root = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="forget-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir(exist_ok=True)
    train_csv, test_csv = data / "digits-train.csv", data / "digits-test.csv"
    write_digits_csv(train_csv, test_csv)
    say(f"data: scikit-learn digits, written to {train_csv} and {test_csv}")

    settings = TrainingSettings(epochs=30, batch_size=32, lr=3e-3)
    workspace = init_workspace(
        root / "workspace", InitOptions(shards=5, slices=4, seed=2026, training=settings)
    )
    say(f"workspace: {workspace.root} (5 shards x 4 slices, SQLite, local executor)")
    result = ingest_file(workspace, train_csv, ColumnChoice(subject="writer", label="digit"))
    say(f"ingested {result.rows} records of {result.subjects} writers")

    started = time.perf_counter()
    train(workspace, plan_training(workspace), device)
    say(f"trained every shard in {time.perf_counter() - started:.1f} s")
    before = evaluate_file(workspace, test_csv, Aggregation.VOTE, device)
    per_shard = ", ".join(f"{a:.3f}" for a in before.shard_accuracy)
    say(f"held-out accuracy: ensemble {before.accuracy:.3f} (shards: {per_shard})")

    writers = ["w0001", "w0100", "w0420"]
    plan = plan_erasure(workspace, subject_records(workspace, writers))
    started = time.perf_counter()
    erased = erase(workspace, plan, device)
    seconds = time.perf_counter() - started
    rewound = ", ".join(f"shard {r.shard} from slice {r.from_slice}" for r in plan.rewinds)
    say(f"erased {len(plan.record_keys)} records of writers {', '.join(writers)} in {seconds:.1f} s")
    say(f"rewound and retrained: {rewound}")
    say(f"purged {len(erased.purged)} checkpoints that had seen them; other shards were not touched")
    after = evaluate_file(workspace, test_csv, Aggregation.VOTE, device)
    say(f"held-out accuracy after erasure: ensemble {after.accuracy:.3f}")
    for summary in shard_summaries(workspace):
        say(f"  shard {summary.shard}: {summary.records} records, checkpoint {summary.latest_checkpoint}")
    return root
