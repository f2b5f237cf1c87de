"""`forget demo`: the whole flow on scikit-learn's bundled digits, in a fresh workspace.

Init, ingest, train, evaluate, file requests, `forget run`, verify the certificates offline,
render one to HTML (and PDF when weasyprint is installed), verify the ledger.

The digits (1,797 8x8 images) ship inside scikit-learn, so nothing is downloaded. Each image is
given to a synthetic "writer" (about three images each) who plays the data subject.
"""

from __future__ import annotations

import csv
import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from forget.audit.certificate_view import certificate_view
from forget.audit.ledger_view import public_keys
from forget.audit.ledger_view import verify as verify_ledger
from forget.data.ingest import ColumnChoice, ingest_file
from forget.erasure.job import run_job
from forget.erasure.requests import file_request
from forget.errors import MissingExtraError
from forget.evaluation.evaluate import evaluate_utility
from forget.training.train import plan_training, train
from forget.workspace.config import TrainingSettings
from forget.workspace.core import InitOptions, init_workspace
from reports.errors import CertificateFormatError
from reports.render import render_html, render_pdf
from reports.verify import load_verifier_key, verify_certificate
from sisa.aggregation import Aggregation


def write_digits_csv(train_path: Path, test_path: Path, test_every: int = 5) -> None:
    """Every fifth image is held out; the rest are training records of writers w0000, w0001, ..."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise MissingExtraError("the demo needs scikit-learn's bundled data: pip install 'forget[demo]'") from error
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
    workspace = init_workspace(root / "workspace", InitOptions(shards=5, slices=4, seed=2026, training=settings))
    workspace.save_config(replace(workspace.config, organisation="Example Ltd (forget demo)"))
    say(f"workspace: {workspace.root} (5 shards x 4 slices, SQLite, local executor)")
    result = ingest_file(workspace, train_csv, ColumnChoice(subject="writer", label="digit"))
    say(f"ingested {result.rows} records of {result.subjects} writers")

    started = time.perf_counter()
    train(workspace, plan_training(workspace), device)
    say(f"trained every shard in {time.perf_counter() - started:.1f} s")
    before = evaluate_utility(workspace, test_csv, Aggregation.VOTE, device)
    per_shard = ", ".join(f"{a.value:.3f}" for a in before.shard_accuracy)
    say(f"held-out accuracy: ensemble {before.accuracy.value:.3f} (shards: {per_shard})")

    writers = ["w0001", "w0100", "w0420"]
    requests = [file_request(workspace, w, note=f"DSAR-2026-{i + 1:04d}")[0] for i, w in enumerate(writers)]
    requests.append(file_request(workspace, "w9999", note="DSAR-2026-0004")[0])  # never ingested: "no data held"
    say(f"filed {len(requests)} erasure requests (one for a writer the workspace never held)")
    started = time.perf_counter()
    summary = run_job(workspace, device=device)
    seconds = time.perf_counter() - started
    say(
        f"forget run: {summary.records_erased} records of {len(summary.completed)} writers erased,"
        f" {len(summary.no_data)} request with no data held, shards {list(summary.shards_retrained)} retrained"
        f" ({len(summary.shards_retrained)} of 5), {summary.checkpoints_purged} checkpoints purged, in {seconds:.1f} s"
    )
    after = evaluate_utility(workspace, test_csv, Aggregation.VOTE, device)
    say(f"held-out accuracy after erasure: ensemble {after.accuracy.value:.3f}")

    # What an auditor is handed: `forget keys public`'s output (PEM, then the note verifier key,
    # which also pins this workspace's log), read back as the auditor's tools read it.
    key_file = root / "verifier.key"
    pem, vkey = public_keys(workspace)
    key_file.write_text(pem + vkey + "\n")
    key = load_verifier_key(key_file.read_bytes())
    erased = []
    for path in summary.certificates:
        verified = verify_certificate(Path(path).read_bytes(), key)
        proven = f"{verified.entries} ledger entries proven at tree size {verified.checkpoint.size}"
        say(f"certificate {path}: valid, {proven}")
        if verified.predicate["request"]["outcome"] == "erased":
            erased.append(Path(path))
    first = erased[0] if erased else Path(summary.certificates[0])
    view = certificate_view(first.read_bytes(), key, workspace=workspace)  # verifies again: only a valid one renders
    html = first.with_suffix(".html")
    html.write_text(render_html(view))
    say(f"rendered {html}")
    try:
        pdf = first.with_suffix(".pdf")
        pdf.write_bytes(render_pdf(view))
        say(f"rendered {pdf}")
    except CertificateFormatError as error:
        say(f"no PDF: {error}")
    report = verify_ledger(workspace)
    say(f"ledger verified: {report.entries} entries, {report.heads} signed heads")
    say("")
    say("an auditor checks a certificate with the certificate and the verifier key alone (pip install forget):")
    say(f"  forget certificate verify {shlex.quote(str(first))} --public-key {shlex.quote(str(key_file))}")
    say(f"workspace: {workspace.root}   (forget -w {workspace.root} status | ledger show | shards)")
    return root
