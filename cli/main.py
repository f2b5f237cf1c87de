"""`forget`: exact machine unlearning for the GDPR right to be forgotten."""

from __future__ import annotations

import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cli import errors
from cli.errors import reports_errors
from forget.config import DEFAULT_DATABASE, TrainingSettings
from sisa.placement import PlacementMode
from sisa.schedule import Schedule

if TYPE_CHECKING:
    from forget.workspace import Workspace

app = typer.Typer(
    name="forget",
    help="Exact machine unlearning (SISA) with a signed ledger, for the GDPR right to be forgotten.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (logs, CI, cron mail) gets a wide page rather than rich's 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


class DeviceChoice(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class State:
    workspace_option: Path | None = None


state = State()


def workspace(signing: bool = False) -> Workspace:
    """The workspace; with `signing`, its signing key is opened first, so a wrong passphrase stops
    a command before it writes anything."""
    # Imported here so that `certificate verify` never loads the database layer.
    from forget.workspace import locate_workspace, open_workspace

    ws = open_workspace(locate_workspace(state.workspace_option), _passphrase())
    if signing:
        ws.signing_key()
    return ws


def _passphrase() -> bytes | None:
    """An encrypted signing key's passphrase comes from the environment, never from an argument."""
    value = os.environ.get("FORGET_KEY_PASSPHRASE")
    return value.encode() if value else None


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


@app.callback()
def main(
    workspace_dir: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="Workspace folder (else $FORGET_WORKSPACE, else the current one)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show tracebacks for errors.")] = False,
) -> None:
    state.workspace_option = workspace_dir
    errors.verbose = verbose


@app.command()
@reports_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace (created if missing).")],
    shards: Annotated[int, typer.Option(help="Number of shards (S).")] = 5,
    slices: Annotated[int, typer.Option(help="Slices per shard (R).")] = 4,
    model: Annotated[str, typer.Option(help="mlp, cnn, or module:callable returning an nn.Module.")] = "mlp",
    epochs: Annotated[float, typer.Option(help="Each shard's training budget in epochs.")] = 10.0,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    optimizer: Annotated[str, typer.Option(help="adam or sgd.")] = "adam",
    schedule: Annotated[Schedule, typer.Option(help="How the epoch budget spreads over slices.")] = (Schedule.BALANCED),
    threads: Annotated[int, typer.Option(help="torch threads while training (fixed for determinism).")] = 1,
    seed: Annotated[int | None, typer.Option(help="Root seed (random when omitted; recorded).")] = None,
    placement: Annotated[PlacementMode, typer.Option(help="subject: a subject's records share a shard.")] = (
        PlacementMode.SUBJECT
    ),
    db: Annotated[str, typer.Option(help="SQLAlchemy database URL.")] = DEFAULT_DATABASE,
    keys_from: Annotated[
        Path | None, typer.Option(help="Reuse another workspace's keys (replays, equivalence checks).")
    ] = None,
) -> None:
    """Create a workspace: forget.toml, keys (mode 0600), checkpoint store and database."""
    from forget.workspace import InitOptions, init_workspace

    if optimizer not in ("adam", "sgd"):
        raise typer.BadParameter("use adam or sgd", param_hint="--optimizer")
    ws = init_workspace(
        directory,
        InitOptions(
            shards=shards,
            slices=slices,
            seed=seed,
            database=db,
            placement=placement,
            training=TrainingSettings(model, epochs, batch_size, lr, optimizer, schedule, threads),
            keys_from=keys_from,
            passphrase=_passphrase(),
        ),
    )
    shape = f"{shards} shards x {slices} slices"
    out.print(f"created workspace {ws.root} ({shape}, model {model}, seed {ws.config.seed})")


def _executor_kind(name: str | None) -> str | None:
    if name is not None and name not in ("local", "dask"):
        raise typer.BadParameter("use local or dask", param_hint="--executor")
    return name


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a shape like 1,8,8", param_hint="--input-shape") from None
    if not shape or min(shape) < 1:
        raise typer.BadParameter(f"{text!r} is not a shape like 1,8,8", param_hint="--input-shape")
    return shape


@app.command()
@reports_errors
def ingest(
    file: Annotated[Path, typer.Argument(help="CSV, TSV or Parquet file.")],
    subject_column: Annotated[str | None, typer.Option(help="Column naming the data subject.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Column holding the class label.")] = None,
    id_column: Annotated[str | None, typer.Option(help="Column with a stable record id (optional).")] = None,
    input_shape: Annotated[str | None, typer.Option(help="Feature shape for image models, e.g. 1,8,8.")] = None,
    schema: Annotated[
        Path | None, typer.Option(help="Use this reviewed \\[schema] (TOML) instead of inferring.")
    ] = None,
    allow_erased: Annotated[
        bool, typer.Option(help="Accept records of subjects erased before (new data, given anew).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Pseudonymise, encode and place the file's records; nothing is written if any row is bad."""
    from forget.ingest import ColumnChoice, ingest_file
    from forget.workspace import job_lock

    ws = workspace(signing=True)
    choice = ColumnChoice(subject_column, label_column, id_column, _parse_shape(input_shape))
    with job_lock(ws):
        result = ingest_file(ws, file, choice, schema, allow_erased=allow_erased)
    if as_json:
        emit_json({**result.__dict__, "shards_touched": list(result.shards_touched)})
        return
    touched = len(result.shards_touched)
    out.print(f"ingested {result.rows} records of {result.subjects} subjects into {touched} shards")
    if result.schema_inferred:
        review = f"inferred the feature schema; review it in {ws.config_path} ([schema]) before training"
        out.print(review, markup=False)


@app.command()
@reports_errors
def schema() -> None:
    """Print the workspace's feature schema as TOML (reusable with `ingest --schema`)."""
    import tomli_w

    ws = workspace()
    if ws.config.schema is None:
        raise typer.BadParameter("the workspace has no schema yet: ingest a file first")
    sys.stdout.write(tomli_w.dumps({"schema": ws.config.schema.to_dict()}))


@app.command()
@reports_errors
def train(
    device: Annotated[DeviceChoice, typer.Option(help="auto: CUDA when present, else the CPU.")] = DeviceChoice.AUTO,
    shard: Annotated[list[int] | None, typer.Option(help="Train only this shard (repeatable).")] = None,
    from_scratch: Annotated[bool, typer.Option(help="Discard the selected shards' checkpoints first.")] = False,
    executor: Annotated[str | None, typer.Option(help="local or dask (default: forget.toml [executor]).")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, tcp://HOST:PORT.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Train each shard slice by slice, with a checkpoint after every slice; resumes where it stopped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from forget.training import executor_for, plan_training, restart_shards
    from forget.training import train as train_shards
    from forget.workspace import job_lock

    ws = workspace(signing=True)
    chosen = executor_for(ws, _executor_kind(executor), scheduler)
    with job_lock(ws):
        if from_scratch:
            restart_shards(ws, shard)
        plans = plan_training(ws, shard)
        total = sum(ws.config.slices - p.start_slice for p in plans)
        started = time.perf_counter()
        with Progress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("slices"),
            TimeElapsedColumn(),
            console=err,
            disable=as_json or not err.is_terminal,
        ) as progress:
            task = progress.add_task("train", total=total)
            trained = train_shards(ws, plans, device, on_slice=lambda _: progress.advance(task), executor=chosen)
        elapsed = time.perf_counter() - started
    if as_json:
        emit_json({"shards_trained": sorted(trained), "slices_trained": total, "seconds": round(elapsed, 3)})
    elif not plans:
        out.print("every shard is up to date")
    else:
        out.print(f"trained {len(plans)} shards ({total} slices) in {elapsed:.1f} s")


@app.command()
@reports_errors
def shards(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Per shard: records, slices trained, and the sha256 of its latest checkpoint."""
    from forget.training import shard_summaries

    summaries = shard_summaries(workspace())
    if as_json:
        emit_json([s.to_dict() for s in summaries])
        return
    table = Table("shard", "records", "slices trained", "latest checkpoint (sha256)")
    for s in summaries:
        table.add_row(str(s.shard), str(s.records), f"{s.slices_trained}/{s.slices}", s.latest_checkpoint or "-")
    out.print(table)


@app.command()
@reports_errors
def predict(
    file: Annotated[Path, typer.Argument(help="CSV, TSV or Parquet with the schema's feature columns.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write CSV here (default stdout).")] = None,
    aggregation: Annotated[str, typer.Option(help="vote or mean.")] = "vote",
    device: Annotated[DeviceChoice, typer.Option(help="auto: CUDA when present, else the CPU.")] = DeviceChoice.AUTO,
) -> None:
    """Predict with the ensemble of the shards' latest models; extra columns are ignored."""
    import csv
    import io

    from forget.serving import predict_file

    result = predict_file(workspace(), file, _aggregation(aggregation), device)
    mean = result.probabilities.mean(axis=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "prediction", *(f"p_{label}" for label in result.labels)])
    for row, (label, probs) in enumerate(zip(result.predicted, mean, strict=True), start=1):
        writer.writerow([row, result.labels[int(label)], *(f"{p:.6f}" for p in probs)])
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        output.write_text(buffer.getvalue())
        out.print(f"wrote {len(result.predicted)} predictions to {output}")


def _aggregation(name: str) -> Any:
    from sisa.aggregation import Aggregation

    try:
        return Aggregation(name)
    except ValueError:
        raise typer.BadParameter("use vote or mean", param_hint="--aggregation") from None


@app.command()
@reports_errors
def evaluate(
    file: Annotated[Path, typer.Argument(help="Labelled CSV, TSV or Parquet held out from training.")],
    aggregation: Annotated[str, typer.Option(help="vote or mean.")] = "vote",
    device: Annotated[DeviceChoice, typer.Option(help="auto: CUDA when present, else the CPU.")] = DeviceChoice.AUTO,
    mia: Annotated[bool, typer.Option("--mia", help="Also run membership inference attacks.")] = False,
    erased: Annotated[
        Path | None, typer.Option(help="Records erased by completed requests, supplied again (implies --mia).")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="A workspace retrained from scratch on the retained data, to compare.")
    ] = None,
    members: Annotated[int | None, typer.Option(help="Retained training records to sample (default: rows).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling members and the bootstrap.")] = 0,
    html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Ensemble and per-shard accuracy with 95% intervals; membership inference with --mia or --erased."""
    from forget.evaluation import Attack, Comparison
    from forget.evaluation import evaluate as run_evaluation
    from forget.workspace import open_workspace

    other = open_workspace(reference) if reference is not None else None
    report = run_evaluation(workspace(), file, _aggregation(aggregation), device, mia=mia, erased=erased,
                            reference=other, members=members, seed=seed)  # fmt: skip
    data = report.to_dict()
    if html is not None:
        from reports.evaluation import render_evaluation_html

        html.write_text(render_evaluation_html(data))
        err.print(f"wrote {html}")
    if as_json:
        emit_json(data)
        return
    utility = report.utility
    accuracy = data["utility"]["ensemble_accuracy"]
    low, high = accuracy["ci95"]
    out.print(f"{utility.rows} rows: ensemble accuracy {accuracy['value']:.4f} (95% CI {low:.4f}-{high:.4f})")
    table = Table("shard", "accuracy", "95% CI")
    for shard, item in enumerate(data["utility"]["shard_accuracy"]):
        table.add_row(str(shard), f"{item['value']:.4f}", f"{item['ci95'][0]:.4f}-{item['ci95'][1]:.4f}")
    out.print(table)
    if report.membership is not None:
        for comparison in Comparison:
            for attack in Attack:
                result = report.membership.result(attack, comparison)
                if result is not None:
                    out.print(
                        f"MIA {attack.value:<12} {comparison.value:<22} AUC {result.auc:.3f} ± {result.auc_se:.3f},"
                        f" advantage {result.advantage:.3f} (chance up to {result.advantage_null95:.3f})"
                    )


@app.command()
@reports_errors
def demo(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to build the demo (default: a new temp folder).")
    ] = None,
    device: Annotated[DeviceChoice, typer.Option(help="auto: CUDA when present, else the CPU.")] = DeviceChoice.AUTO,
) -> None:
    """End to end on bundled data: train, erase on request, verify the certificates offline."""
    from forget.demo import run_demo

    run_demo(directory, device, out.print)


request_app = typer.Typer(help="Record an erasure request (Art. 17), or extend its deadline (Art. 12(3)).")
app.add_typer(request_app, name="request")


@request_app.callback(invoke_without_command=True)
@reports_errors
def request(
    ctx: typer.Context,
    subject_id: Annotated[str | None, typer.Option(help="The data subject's id, as in the ingested files.")] = None,
    received_at: Annotated[str | None, typer.Option(help="When it was received (ISO 8601; default now).")] = None,
    note: Annotated[str | None, typer.Option(help="A note for the privacy team (no personal data).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Record an erasure request for a subject; a pending one for the same subject is returned as is."""
    if ctx.invoked_subcommand is not None:
        return
    if subject_id is None:
        raise typer.BadParameter("give --subject-id ID (or use `forget request extend`)", param_hint="--subject-id")
    from forget.requests import file_request, parse_time

    moment = parse_time(received_at) if received_at is not None else None
    filed, created = file_request(workspace(signing=True), subject_id, moment, note)
    if as_json:
        emit_json({**filed.to_dict(_now()), "created": created})
        return
    verb = "recorded" if created else "already pending:"
    out.print(f"{verb} {filed.request_id}, deadline {filed.deadline:%Y-%m-%d %H:%M} UTC")


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@request_app.command("extend")
@reports_errors
def request_extend(
    request_id: Annotated[str, typer.Argument(help="The request to extend.")],
    months: Annotated[int, typer.Option(help="1 or 2 months (2 in all, Art. 12(3)).")] = 1,
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger; no personal data).")] = "",
) -> None:
    """Extend a request's deadline by one or two months, with the reason the subject is told."""
    from forget.requests import extend_request

    extended = extend_request(workspace(signing=True), request_id, months, reason)
    out.print(f"{extended.request_id}: deadline now {extended.deadline:%Y-%m-%d %H:%M} UTC")


@app.command()
@reports_errors
def status(
    request_id: Annotated[str | None, typer.Option(help="Only this request.")] = None,
    subject_id: Annotated[str | None, typer.Option(help="Only this subject's requests.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Erasure requests with their state and deadline; exit 4 when any is overdue."""
    from forget.requests import RequestState, list_requests

    now = _now()
    found = list_requests(workspace(), request_id, subject_id)
    overdue = [r for r in found if r.state is not RequestState.COMPLETED and r.overdue(now)]
    if as_json:
        emit_json({"requests": [r.to_dict(now) for r in found], "overdue": len(overdue)})
    else:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("request", no_wrap=True)
        for heading in ("state", "received", "deadline", "days left", "outcome"):
            table.add_column(heading, no_wrap=True)
        for r in found:
            late = r in overdue
            days = "-" if r.state is RequestState.COMPLETED else f"{r.days_left(now):.1f}"
            table.add_row(
                r.request_id,
                "OVERDUE" if late else r.state.value,
                f"{r.received_at:%Y-%m-%d}",
                f"{r.deadline:%Y-%m-%d}",
                days,
                r.outcome.value if r.outcome else "",
                style="bold red" if late else None,
            )
        out.print(table)
        out.print(f"{len(found)} requests, {len(overdue)} overdue")
    if overdue:
        raise typer.Exit(int(errors.ExitCode.OVERDUE))


@app.command("run")
@reports_errors
def run_requests(
    due_within: Annotated[
        str | None, typer.Option(help="Only requests due within this time (30m, 12h, 7d, 2w); default all.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many new requests.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Show the plan; change nothing.")] = False,
    device: Annotated[DeviceChoice, typer.Option(help="auto: CUDA when present, else the CPU.")] = DeviceChoice.AUTO,
    executor: Annotated[str | None, typer.Option(help="local or dask (default: forget.toml [executor]).")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, tcp://HOST:PORT.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Carry out pending erasure requests as one batch: one rewind and retrain per affected shard."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from forget.jobs import parse_duration, plan_run, run_job
    from forget.training import executor_for

    window = parse_duration(due_within) if due_within is not None else None
    ws = workspace(signing=True)
    if dry_run:
        plan = plan_run(ws, window, limit)
        if as_json:
            emit_json(plan.to_dict(_now()))
        else:
            out.print(
                f"would run {len(plan.due)} due and {len(plan.resumed)} resumed requests:"
                f" {plan.records} records, shards {list(plan.shards)}"
            )
        return
    with Progress(
        TextColumn("retraining"), BarColumn(), TextColumn("{task.completed} slices"), TimeElapsedColumn(),
        console=err, disable=as_json or not err.is_terminal,
    ) as progress:  # fmt: skip
        task = progress.add_task("retrain", total=None)
        chosen = executor_for(ws, _executor_kind(executor), scheduler)
        summary = run_job(ws, window, limit, device, on_slice=lambda _: progress.advance(task), executor=chosen)
    if as_json:
        emit_json(summary.to_dict())
        return
    if summary.run_id is None:
        out.print("no request is due")
        return
    out.print(
        f"{summary.run_id}: {len(summary.completed)} requests erased ({summary.records_erased} records),"
        f" {len(summary.no_data)} with no data held; shards retrained {list(summary.shards_retrained)};"
        f" {summary.checkpoints_purged} checkpoints purged; {summary.seconds:.1f} s"
    )
    if summary.overdue:
        out.print(f"completed after the deadline: {', '.join(summary.overdue)}")


ledger_app = typer.Typer(help="The signed, append-only ledger: head, entries, proofs, export, verify.")
keys_app = typer.Typer(help="The workspace's public key, for auditors.")
app.add_typer(ledger_app, name="ledger")
app.add_typer(keys_app, name="keys")


@ledger_app.command("head")
@reports_errors
def ledger_head(
    consistency_from: Annotated[
        int | None,
        typer.Option(help="Emit JSON with a consistency proof from this size (for certificate verify --checkpoint)."),
    ] = None,
) -> None:
    """Print the latest signed tree head (a C2SP tlog-checkpoint signed note)."""
    from forget.ledger_view import consistency_bundle, latest_note

    if consistency_from is None:
        sys.stdout.write(latest_note(workspace()))
    else:
        emit_json(consistency_bundle(workspace(), consistency_from))


@ledger_app.command("show")
@reports_errors
def ledger_show(
    kind: Annotated[str | None, typer.Option(help="Only entries of this kind.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines, one entry per line.")] = False,
) -> None:
    """List the ledger's entries."""
    from forget.ledger_view import entries

    for entry in entries(workspace(), kind):
        if as_json:
            sys.stdout.write(json.dumps(entry.to_dict(), sort_keys=True) + "\n")
        else:
            payload = json.dumps(dict(entry.payload), sort_keys=True)
            out.print(f"{entry.index:>6}  {entry.time}  {entry.kind:<28} {payload}", markup=False)


@ledger_app.command("prove")
@reports_errors
def ledger_prove(
    index: Annotated[int, typer.Argument(help="Entry index.")],
    size: Annotated[int | None, typer.Option(help="Tree size (default: the latest signed head).")] = None,
) -> None:
    """Inclusion proof of one entry (RFC 9162), as JSON, checked before it is printed."""
    from forget.ledger_view import prove

    emit_json(prove(workspace(), index, size).to_dict())


@ledger_app.command("export")
@reports_errors
def ledger_export(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File (default stdout).")] = None,
) -> None:
    """Every entry as JSON Lines with its canonical bytes: enough to recompute every leaf and the root."""
    from forget.ledger_view import export

    ws = workspace()
    if output is None:
        export(ws, sys.stdout)
        return
    with output.open("w") as handle:
        count = export(ws, handle)
    err.print(f"exported {count} entries to {output}")


@ledger_app.command("verify")
@reports_errors
def ledger_verify(
    head: Annotated[
        Path | None, typer.Option(help="A head saved earlier (`forget ledger head`): also catches truncation.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recompute the whole tree from the stored entries and check every signed head; exit 1 on any change."""
    from forget.ledger_view import verify
    from reports.cli_support import read_input

    kept = read_input(head, "head").decode() if head is not None else None
    report = verify(workspace(), kept)
    if as_json:
        emit_json({"entries": report.entries, "signed_heads": report.heads, "root_hash": report.root_hash.hex()})
    else:
        heads = f"{report.heads} signed heads"
        out.print(f"ledger verified: {report.entries} entries, {heads}, root {report.root_hash.hex()}")


@keys_app.command("public")
@reports_errors
def keys_public() -> None:
    """The signing key's public half: PEM, then the note verifier key line."""
    from forget.ledger_view import public_keys

    pem, vkey = public_keys(workspace())
    sys.stdout.write(pem + vkey + "\n")


certificate_app = typer.Typer(help="Erasure certificates: issue, verify offline, render.")
audit_app = typer.Typer(help="Re-derive an erasure's proof from the data (needs the workspace).")
app.add_typer(certificate_app, name="certificate")
app.add_typer(audit_app, name="audit")


@certificate_app.command("issue")
@reports_errors
def certificate_issue(
    request_id: Annotated[str, typer.Argument(help="A completed request.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the certificate (JSON).")],
) -> None:
    """(Re-)issue a completed request's certificate, signed and anchored in the latest tree head."""
    from forget.certificates import build_certificate
    from sisa.store import write_atomically

    write_atomically(output, build_certificate(workspace(signing=True), request_id))
    out.print(f"wrote {output}")


@certificate_app.command("verify")
@reports_errors
def certificate_verify(
    file: Annotated[Path, typer.Argument(help="The certificate (a DSSE envelope, JSON).")],
    public_key: Annotated[Path, typer.Option(help="The workspace's public key (PEM), from `forget keys public`.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="A later head from `forget ledger head --consistency-from SIZE`.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Verify a certificate offline: signature, every inclusion proof, the signed checkpoint, the claims."""
    from reports.cli_support import read_input, summary_line, verify_files

    result = verify_files(read_input(file, "certificate"), read_input(public_key, "public key"),
                          read_input(checkpoint, "checkpoint") if checkpoint else None)  # fmt: skip
    if as_json:
        emit_json({"valid": True, **result.summary()})
    else:
        out.print(summary_line(result))


@certificate_app.command("render")
@reports_errors
def certificate_render(
    file: Annotated[Path, typer.Argument(help="The certificate (JSON).")],
    html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page here.")] = None,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Write a PDF here (needs the pdf extra).")] = None,
    evaluation: Annotated[
        Path | None, typer.Option(help="Attach `forget evaluate --json` output as supplementary evidence.")
    ] = None,
) -> None:
    """Render a certificate for people: HTML and PDF views of the same signed statement."""
    from reports.cli_support import read_input, statement_of
    from reports.render import render_html, render_pdf

    if html is None and pdf is None:
        raise typer.BadParameter("give --html OUT and/or --pdf OUT", param_hint="--html")
    statement = statement_of(read_input(file, "certificate"))
    supplement = None
    if evaluation is not None:
        from reports.evaluation import read_evaluation, render_evaluation_section

        supplement = render_evaluation_section(read_evaluation(read_input(evaluation, "evaluation")), statement)
    if html is not None:
        html.write_text(render_html(statement, supplement))
        out.print(f"wrote {html}")
    if pdf is not None:
        pdf.write_bytes(render_pdf(statement, supplement))
        out.print(f"wrote {pdf}")


@audit_app.command("replay")
@reports_errors
def audit_replay(
    request_id: Annotated[str, typer.Argument(help="A completed request of this workspace.")],
    device: Annotated[
        DeviceChoice, typer.Option(help="The kind of device the certificate's models were trained on.")
    ] = DeviceChoice.CPU,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Retrain the request's shards from scratch on the retained records and compare with its certificate."""
    from forget.replay import replay

    report = replay(workspace(), request_id, device)
    if as_json:
        emit_json(report.to_dict())
    else:
        for line in report.lines():
            out.print(line)
    if not report.reproduced:
        raise typer.Exit(int(errors.ExitCode.VERIFICATION_FAILED))


def run() -> None:
    """The console script: a failure that is not one of ours is a bug, shown as such (exit 70)."""
    try:
        app()
    except Exception:
        import traceback

        traceback.print_exc()
        print("error: internal error in forget (a bug): please report it with the traceback above", file=sys.stderr)
        sys.exit(int(errors.ExitCode.INTERNAL))
