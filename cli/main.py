"""`forget`: exact machine unlearning for the GDPR right to be forgotten."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cli import errors
from cli.errors import reports_errors
from forget.data.schema import DEFAULT_MIN_SUBJECTS
from forget.subjects.identity import CaseRule, EmailRule, IdentityForm
from forget.workspace.config import AGGREGATIONS, DEFAULT_DATABASE, TrainingSettings
from sisa.placement import PlacementMode
from sisa.schedule import Schedule

if TYPE_CHECKING:
    from forget.workspace.core import Workspace

_TRAINING_DEFAULTS = TrainingSettings()

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
    from forget.workspace.core import locate_workspace, open_workspace

    ws = open_workspace(locate_workspace(state.workspace_option), _passphrase())
    for warning in ws.check_keys():
        err.print(f"warning: {warning}")
    if signing:
        ws.signing_key()
    return ws


def _passphrase() -> bytes | None:
    """An encrypted signing key's passphrase comes from the environment, never from an argument."""
    value = os.environ.get("FORGET_KEY_PASSPHRASE")
    return value.encode() if value else None


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _print_version(value: bool) -> None:
    if value:
        import forget

        out.print(f"forget {forget.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    workspace_dir: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="Workspace folder (else $FORGET_WORKSPACE, else the current one)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print forget's version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    state.workspace_option = workspace_dir
    errors.verbose = verbose
    _show_warnings()


class _StderrWarnings(logging.Handler):
    """The application's logged warnings (a witness that is down) as `warning: ...` lines on stderr,
    looked up at each write so that a captured stderr gets them too."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"warning: {record.getMessage()}\n")


def _show_warnings() -> None:
    logger = logging.getLogger("forget")
    if not any(isinstance(handler, _StderrWarnings) for handler in logger.handlers):
        logger.addHandler(_StderrWarnings(logging.WARNING))


@app.command()
@reports_errors
def init(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace (created if missing).")],
    shards: Annotated[int, typer.Option(help="Number of shards (S).")] = 5,
    slices: Annotated[int, typer.Option(help="Slices per shard (R).")] = 4,
    model: Annotated[
        str, typer.Option(help="tanh-WIDTH\\[xDEPTH], relu-WIDTH\\[xDEPTH], linear, mlp, cnn, or module:callable.")
    ] = _TRAINING_DEFAULTS.model,
    epochs: Annotated[float, typer.Option(help="Each shard's training budget in epochs.")] = 10.0,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = _TRAINING_DEFAULTS.batch_size,
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
    id_case: Annotated[
        CaseRule, typer.Option(help="Are subject ids case-sensitive? insensitive erases more: the safe side.")
    ] = CaseRule.INSENSITIVE,
    id_email: Annotated[
        EmailRule, typer.Option(help="With --id-case sensitive: lower-case e-mail domains, or both parts.")
    ] = EmailRule.NONE,
    min_subjects_per_category: Annotated[
        int, typer.Option(help="k: a category or label class enters the schema only if k subjects hold it.")
    ] = DEFAULT_MIN_SUBJECTS,
    aggregation: Annotated[
        str, typer.Option(help="How predict and evaluate combine the shards: vote, mean or geomean.")
    ] = _TRAINING_DEFAULTS.aggregation,
    from_plan: Annotated[
        Path | None, typer.Option(help="Take shards, slices and training settings from `forget plan --output`.")
    ] = None,
    plan_row: Annotated[
        int | None, typer.Option(help="With --from-plan: this row of the plan's table, not its recommendation.")
    ] = None,
    organisation: Annotated[
        str | None, typer.Option(help="Who operates it, named on certificate renderings ([workspace] organisation).")
    ] = None,
) -> None:
    """Create a workspace: forget.toml, keys (mode 0600), checkpoint store and database."""
    from forget.workspace.config import organisation_problems
    from forget.workspace.core import InitOptions, init_workspace

    if organisation_problems(organisation):
        raise typer.BadParameter(organisation_problems(organisation)[0], param_hint="--organisation")

    training = TrainingSettings(model, epochs, batch_size, lr, optimizer, schedule, threads, aggregation)
    plan_record = None
    if from_plan is not None:
        from forget.evaluation.plan import frozen_settings, read_plan

        fixed = ("shards", "slices", "model", "epochs", "batch_size", "lr", "optimizer", "schedule", "threads")
        # By name: typer vendors its own click, whose ParameterSource is private.
        sources = {n: getattr(ctx.get_parameter_source(n), "name", "") for n in (*fixed, "aggregation")}
        given = [n for n, source in sources.items() if source == "COMMANDLINE"]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise typer.BadParameter(f"{flag} conflicts with --from-plan, which fixes it", param_hint="--from-plan")
        shards, slices, training, plan_record = frozen_settings(read_plan(from_plan), plan_row)
    elif plan_row is not None:
        raise typer.BadParameter("applies only with --from-plan", param_hint="--plan-row")

    if id_case is CaseRule.INSENSITIVE and id_email is not EmailRule.NONE:
        raise typer.BadParameter("applies only with --id-case sensitive", param_hint="--id-email")

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
            training=training,
            keys_from=keys_from,
            passphrase=_passphrase(),
            identity=IdentityForm(id_case, id_email),
            plan=plan_record,
            min_subjects=min_subjects_per_category,
        ),
    )
    if organisation is not None:
        from dataclasses import replace

        ws.save_config(replace(ws.config, organisation=organisation.strip()))
    shape = f"{shards} shards x {slices} slices"
    source = f", from the plan {from_plan.name}" if from_plan is not None else ""
    out.print(f"created workspace {ws.root} ({shape}, model {training.model}, seed {ws.config.seed}{source})")


def _counts(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list of counts like 1,5,10", param_hint=flag) from None
    if not values:
        raise typer.BadParameter(f"{text!r} is not a list of counts like 1,5,10", param_hint=flag)
    return values


@app.command("plan")
@reports_errors
def plan_command(
    file: Annotated[Path, typer.Argument(help="The CSV, TSV or Parquet file you will ingest.")],
    subject_column: Annotated[str, typer.Option(help="Column naming the data subject.")],
    label_column: Annotated[str, typer.Option(help="Column holding the class label.")],
    shards: Annotated[str, typer.Option(help="Shard counts to try, comma-separated.")] = "1,5,10,20",
    slices: Annotated[str, typer.Option(help="Slice counts to try, comma-separated.")] = "1,5,10",
    model: Annotated[
        list[str] | None, typer.Option(help="Model to try (repeatable; default: the default model).")
    ] = None,
    epochs: Annotated[list[float] | None, typer.Option(help="Epoch budget to try (repeatable).")] = None,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = _TRAINING_DEFAULTS.batch_size,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = _TRAINING_DEFAULTS.lr,
    aggregation: Annotated[str, typer.Option(help="vote, mean or geomean.")] = _TRAINING_DEFAULTS.aggregation,
    validation: Annotated[float, typer.Option(help="Share of subjects held out to score on.")] = 0.2,
    max_loss: Annotated[
        float, typer.Option(help="Accuracy the recommendation may give up for cheaper erasures.")
    ] = 0.02,
    max_rows: Annotated[int, typer.Option(help="Subsample larger files (by subject) to this many rows.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed for the split, the placement and training.")] = 0,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the plan (JSON) here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained page with the chart.")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Write the chart as PNG (needs matplotlib).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Measure shards x slices (and models, epochs) on your data before `init`: accuracy against erasure cost."""
    from dataclasses import replace

    from forget.evaluation.plan import PlanOptions, make_plan

    if aggregation not in AGGREGATIONS:
        raise typer.BadParameter(f"use {', '.join(AGGREGATIONS)}", param_hint="--aggregation")
    options = PlanOptions(
        shards=_counts(shards, "--shards"),
        slices=_counts(slices, "--slices"),
        models=tuple(model or ()),
        epochs=tuple(epochs or ()),
        training=replace(_TRAINING_DEFAULTS, batch_size=batch_size, lr=lr, aggregation=aggregation),
        aggregation=aggregation,
        validation=validation,
        seed=seed,
        max_loss=max_loss,
        max_rows=max_rows,
    )
    quiet = as_json or not err.is_terminal
    made = make_plan(file, subject_column, label_column, options, None if quiet else lambda m: err.print(m))
    data = made.to_dict()
    if png is not None:
        from reports.plan import render_plan_png

        png.write_bytes(render_plan_png(data))  # first: a missing matplotlib stops before anything is written
    if output is not None:
        from sisa.store import write_atomically

        write_atomically(output, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    if html is not None:
        from reports.plan import render_plan_html

        html.write_text(render_plan_html(data))
    for warning in made.warnings:
        err.print(f"warning: {warning}", markup=False)
    if as_json:
        emit_json(data)
        return
    counts = made.counts
    out.print(
        f"{counts.rows} rows of {counts.subjects} subjects, {counts.classes} classes, {counts.features} features;"
        f" trained on {counts.train_rows}, scored on {counts.validation_rows} held-out rows"
        f" (always predicting their most frequent class: {made.baseline:.1%})"
    )
    table = Table("row", "shards x slices", "model", "epochs", "records/shard", "accuracy (95% CI)", "balanced",
                  "retrain/request", "~s here", box=box.SIMPLE_HEAD)  # fmt: skip
    for i, r in enumerate(made.results):
        table.add_row(
            f"{'*' if i == made.recommended else ''}{i}", f"{r.shards} x {r.slices}", r.model, f"{r.epochs:g}",
            f"{r.records_per_shard:.0f}", f"{r.accuracy:.1%} ({r.accuracy_low:.1%}-{r.accuracy_high:.1%})",
            f"{r.balanced_accuracy:.1%}", f"{r.retrain_share:.2%}", f"{r.erase_s:.2f}",
        )  # fmt: skip
    out.print(table)
    best = made.recommendation()
    out.print(
        f"recommended (row {made.recommended}): --shards {best.shards} --slices {best.slices} --model {best.model}"
        f" --epochs {best.epochs:g}: {made.reason}",
        markup=False,
    )
    for path in (output, html, png):
        if path is not None:
            out.print(f"wrote {path}")
    if output is not None:
        out.print(f"freeze it: forget init WORKSPACE --from-plan {output}")


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
    from forget.data.ingest import ColumnChoice, ingest_file
    from forget.workspace.lock import job_lock

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

    from forget.store.checkpoints import collect_garbage
    from forget.training.train import executor_for, plan_training, restart_shards
    from forget.training.train import train as train_shards
    from forget.workspace.lock import job_lock

    ws = workspace(signing=True)
    chosen = executor_for(ws, _executor_kind(executor), scheduler)
    with job_lock(ws):
        collect_garbage(ws)  # what a killed training stored but never recorded, and its temp files
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
    diagnosis = _training_verdict(ws, device.value)
    if as_json:
        emit_json(
            {
                "shards_trained": sorted(trained),
                "slices_trained": total,
                "seconds": round(elapsed, 3),
                "diagnosis": None if diagnosis is None else diagnosis.to_dict(),
            }
        )
    elif not plans:
        out.print("every shard is up to date")
    else:
        out.print(f"trained {len(plans)} shards ({total} slices) in {elapsed:.1f} s")
    if diagnosis is not None:
        for _code, message in diagnosis.warnings:
            err.print(f"warning: {message}", markup=False)
        if not as_json:
            out.print(diagnosis.verdict, markup=False)


def _training_verdict(ws: Workspace, device: str) -> Any:
    """`forget train`'s last line: the ensemble on a sample of its own records (None while shards are untrained)."""
    from forget.errors import NotTrainedError
    from forget.evaluation.evaluate import training_verdict

    try:
        return training_verdict(ws, device)
    except NotTrainedError:
        return None  # some shards were not selected (--shard): no ensemble to judge yet


@app.command()
@reports_errors
def shards(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Per shard: records, slices trained, and the sha256 of its latest checkpoint."""
    from forget.training.train import shard_summaries

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
    aggregation: Annotated[
        str | None, typer.Option(help="vote, mean or geomean (default: forget.toml [training] aggregation).")
    ] = None,
    device: Annotated[DeviceChoice, typer.Option(help="auto: CUDA when present, else the CPU.")] = DeviceChoice.AUTO,
) -> None:
    """Predict with the ensemble of the shards' latest models; extra columns are ignored."""
    import csv
    import io

    from forget.training.predict import predict_file

    ws = workspace()
    result = predict_file(ws, file, _aggregation(aggregation or ws.config.training.aggregation), device)
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
        raise typer.BadParameter(f"use {', '.join(AGGREGATIONS)}", param_hint="--aggregation") from None


@app.command()
@reports_errors
def evaluate(
    file: Annotated[Path, typer.Argument(help="Labelled CSV, TSV or Parquet held out from training.")],
    aggregation: Annotated[
        str | None, typer.Option(help="vote, mean or geomean (default: forget.toml [training] aggregation).")
    ] = None,
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
    """Ensemble and per-shard accuracy with 95% intervals; membership inference with --mia or --erased.

    Also the majority-class baseline, balanced accuracy, macro-F1 and per-class recall with their
    intervals, a verdict and warnings; the gap to --reference, with the Tug-of-War score."""
    from forget.evaluation.evaluate import Attack, Comparison
    from forget.evaluation.evaluate import evaluate as run_evaluation
    from forget.workspace.core import open_workspace

    other = open_workspace(reference) if reference is not None else None
    chosen = _aggregation(aggregation) if aggregation is not None else None
    report = run_evaluation(workspace(), file, chosen, device, mia=mia, erased=erased, reference=other,
                            members=members, seed=seed)  # fmt: skip
    data = report.to_dict()
    diagnosis = report.diagnosis
    if diagnosis is not None:
        for _code, message in diagnosis.warnings:
            err.print(f"warning: {message}", markup=False)
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
    out.print(
        f"{utility.rows} rows: ensemble accuracy ({utility.aggregation.value}) {accuracy['value']:.4f}"
        f" (95% CI {low:.4f}-{high:.4f})"
    )
    table = Table("shard", "accuracy", "95% CI")
    for shard, item in enumerate(data["utility"]["shard_accuracy"]):
        table.add_row(str(shard), f"{item['value']:.4f}", f"{item['ci95'][0]:.4f}-{item['ci95'][1]:.4f}")
    out.print(table)
    _print_class_table(data["utility"])
    if report.membership is not None:
        for comparison in Comparison:
            for attack in Attack:
                result = report.membership.result(attack, comparison)
                if result is not None:
                    out.print(
                        f"MIA {attack.value:<12} {comparison.value:<22} AUC {result.auc:.3f} ± {result.auc_se:.3f},"
                        f" advantage {result.advantage:.3f} (chance up to {result.advantage_null95:.3f}):"
                        f" {result.conclusion.value} ({result.reason})",
                        markup=False,
                    )
    if report.reference is not None:
        tow = data["reference"]["tug_of_war"]
        sets = ", ".join(tow["sets"])
        out.print(f"Tug-of-War against the reference ({sets}): {tow['score']:.4f}; {tow['note']}", markup=False)
    if diagnosis is not None:
        out.print(diagnosis.verdict, markup=False)


def _print_class_table(utility: dict[str, Any]) -> None:
    """Baseline, balanced accuracy, macro-F1 and per-class recall, as `forget evaluate` prints them."""
    balanced, macro = utility["balanced_accuracy"], utility["macro_f1"]

    def interval(item: dict[str, Any]) -> str:
        return "" if item["ci95"] is None else f" (95% CI {item['ci95'][0]:.4f}-{item['ci95'][1]:.4f})"

    baseline = utility["majority_baseline"]
    out.print(
        f"majority-class baseline {baseline['value']:.4f};"
        f" balanced accuracy {balanced['value']:.4f}{interval(balanced)};"
        f" macro-F1 {macro['value']:.4f}{interval(macro)}"
    )
    table = Table("class", "rows", "predicted", "recall", "95% CI", "F1")
    for item in utility["per_class"]:
        recall = item["recall"]
        cells = ("-", "-") if recall is None else (f"{recall['value']:.4f}", "{:.4f}-{:.4f}".format(*recall["ci95"]))
        table.add_row(item["label"], str(item["support"]), str(item["predicted"]), *cells, f"{item['f1']:.4f}")
    out.print(table)


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
    from forget.erasure.requests import file_request, parse_time

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
    from forget.erasure.requests import extend_request

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
    from forget.erasure.reconcile import reconcile_requests
    from forget.erasure.requests import RequestState, list_requests

    now = _now()
    ws = workspace()
    reconcile_requests(ws)  # a row deleted or edited outside forget is exit 1, not a quiet table
    found = list_requests(ws, request_id, subject_id)
    overdue = [r for r in found if r.state is not RequestState.COMPLETED and r.overdue(now)]
    if as_json:
        emit_json({"requests": [r.to_dict(now) for r in found], "overdue": len(overdue)})
    else:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("request", no_wrap=True)
        for heading in ("state", "received", "deadline", "days left", "outcome"):
            table.add_column(heading, no_wrap=True)
        table.add_column("ticket / reason")
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
                " / ".join(text for text in (r.note, r.extension_reason) if text),
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

    from forget.erasure.job import parse_duration, plan_run, run_job
    from forget.training.train import executor_for

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
    if summary.schema_changed:
        out.print("the feature schema changed with the retained data (schema.rederived): every shard was retrained")


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
    from forget.audit.ledger_view import consistency_bundle, latest_note

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
    from forget.audit.ledger_view import entries

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
    from forget.audit.ledger_view import prove

    emit_json(prove(workspace(), index, size).to_dict())


@ledger_app.command("export")
@reports_errors
def ledger_export(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File (default stdout).")] = None,
) -> None:
    """Every entry as JSON Lines with its canonical bytes: enough to recompute every leaf and the root."""
    from forget.audit.ledger_view import export

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
    from forget.audit.ledger_view import verify
    from reports.verify_summary import read_input

    kept = read_input(head, "head").decode() if head is not None else None
    report = verify(workspace(), kept)
    if as_json:
        emit_json({"entries": report.entries, "signed_heads": report.heads, "root_hash": report.root_hash.hex(),
                   "anchored_heads": report.anchored, "unanchored_heads": report.unanchored})  # fmt: skip
    else:
        heads = f"{report.heads} signed heads ({report.anchored} anchored)"
        out.print(f"ledger verified: {report.entries} entries, {heads}, root {report.root_hash.hex()}")


@keys_app.command("public")
@reports_errors
def keys_public() -> None:
    """The signing key's public half: PEM, then the note verifier key line."""
    from forget.audit.ledger_view import public_keys

    pem, vkey = public_keys(workspace())
    sys.stdout.write(pem + vkey + "\n")


@ledger_app.command("cosign")
@reports_errors
def ledger_cosign(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Ask the witnesses in forget.toml to cosign the heads they have not; exit 1 if one refuses (a fork)."""
    from forget.audit.witness import collect_pending

    outcomes = collect_pending(workspace())
    if as_json:
        emit_json([o.to_dict() for o in outcomes])
    elif not outcomes:
        out.print("no witnesses in forget.toml ([[ledger.witnesses]])", markup=False)
    for o in [] if as_json else outcomes:
        cosigned = ", ".join(map(str, o.cosigned)) or "none"
        state = f"{len(o.uncosigned)} heads uncosigned" if o.uncosigned else "every head cosigned"
        problem = f"; {o.problem}" if o.problem else ""
        out.print(f"{o.witness}: cosigned now {cosigned}; {state}{problem}", markup=False)
    if any(o.refused for o in outcomes):
        raise typer.Exit(int(errors.ExitCode.VERIFICATION_FAILED))
    if any(o.problem for o in outcomes):
        raise typer.Exit(int(errors.ExitCode.WORKSPACE))


witness_app = typer.Typer(help="Run a C2SP witness that cosigns other logs' checkpoints (c2sp.org/tlog-witness).")
app.add_typer(witness_app, name="witness")


@witness_app.command("init")
@reports_errors
def witness_init(
    state_dir: Annotated[Path, typer.Option("--state", help="Folder for the witness's key and state.")],
    name: Annotated[str, typer.Option(help="The witness's name, e.g. witness.example.org/w1.")],
) -> None:
    """Create a witness: a new Ed25519 key (mode 0600) and empty state; prints its verifier key."""
    from forget.audit.witness import init_witness

    sys.stdout.write(init_witness(state_dir, name) + "\n")


@witness_app.command("add-log")
@reports_errors
def witness_add_log(
    state_dir: Annotated[Path, typer.Option("--state", help="The witness's folder.")],
    key: Annotated[str, typer.Option(help="The log's note verifier key (last line of `forget keys public`).")],
    origin: Annotated[str | None, typer.Option(help="The log's origin (default: the key's name).")] = None,
) -> None:
    """Let the witness cosign a log's checkpoints, signed by this key (restart a running witness)."""
    from forget.audit.witness import add_witnessed_log

    out.print(f"witnessing {add_witnessed_log(state_dir, key, origin)}", markup=False)


@witness_app.command("serve")
@reports_errors
def witness_serve(
    state_dir: Annotated[Path, typer.Option("--state", help="The witness's folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 7380,
    allow_remote: Annotated[
        bool, typer.Option(help="Listen on a non-loopback address (put a TLS reverse proxy in front).")
    ] = False,
) -> None:
    """Serve POST /add-checkpoint until interrupted; cosigns only checkpoints consistent with the last one."""
    from forget.audit.witness import serve_witness

    def ready(url: str, vkey: str) -> None:
        out.print(f"witness {vkey.split('+', 1)[0]} listening on {url}", markup=False)
        out.print(f"verifier key: {vkey}", markup=False)
        sys.stdout.flush()

    serve_witness(state_dir, host, port, allow_remote, ready)


certificate_app = typer.Typer(help="Erasure certificates: issue, verify offline, render.")
audit_app = typer.Typer(help="Re-derive an erasure's proof from the data (needs the workspace).")
app.add_typer(certificate_app, name="certificate")
app.add_typer(audit_app, name="audit")


PUBLIC_KEY_HELP = (
    "The operator's note verifier key (name+keyid+key): `forget keys public` output, or its last line."
    " A bare PEM key names no log and needs --origin."
)
ORIGIN_HELP = "The log's name (its checkpoints' origin), when --public-key is a bare PEM key."
MAX_BYTES_HELP = "Refuse a certificate larger than this, before reading it (default 16 MiB)."


@certificate_app.command("issue")
@reports_errors
def certificate_issue(
    request_id: Annotated[str, typer.Argument(help="A completed request.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the certificate (JSON).")],
) -> None:
    """(Re-)issue a completed request's certificate, signed and anchored in the latest tree head."""
    from forget.erasure.certify import build_certificate
    from sisa.store import write_atomically

    write_atomically(output, build_certificate(workspace(signing=True), request_id))
    out.print(f"wrote {output}")


@certificate_app.command("verify")
@reports_errors
def certificate_verify(
    file: Annotated[Path, typer.Argument(help="The certificate (a DSSE envelope, JSON).")],
    public_key: Annotated[Path, typer.Option(help=PUBLIC_KEY_HELP)],
    checkpoint: Annotated[
        Path | None, typer.Option(help="A later head from `forget ledger head --consistency-from SIZE`.")
    ] = None,
    origin: Annotated[str | None, typer.Option(help=ORIGIN_HELP)] = None,
    max_bytes: Annotated[int | None, typer.Option(min=1, help=MAX_BYTES_HELP)] = None,
    witness_key: Annotated[
        list[Path] | None, typer.Option(help="A witness's verifier key (a file); its cosignature is required.")
    ] = None,
    witness_threshold: Annotated[
        int | None, typer.Option(help="How many of the --witness-key witnesses must cosign (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Verify a certificate offline: signature, every inclusion proof, the signed checkpoint, the claims."""
    from reports.verify import DEFAULT_MAX_BYTES, load_verifier_key, read_certificate, verify_certificate
    from reports.verify_summary import read_input, summary_line

    if witness_threshold is not None and not 1 <= witness_threshold <= len(witness_key or []):
        raise typer.BadParameter("must be between 1 and the number of --witness-key", param_hint="--witness-threshold")
    key = load_verifier_key(read_input(public_key, "public key"), origin)
    limit = max_bytes or DEFAULT_MAX_BYTES
    later = read_certificate(checkpoint, limit, "later checkpoint") if checkpoint else None
    result = verify_certificate(read_certificate(file, limit), key, later, max_bytes=limit)
    if witness_key:
        from reports.verify import verify_witness_cosignatures

        keys = [read_input(path, "witness key").decode("utf-8", "replace").strip() for path in witness_key]
        verify_witness_cosignatures(result.predicate["log"]["checkpoint"], keys, witness_threshold)
    if as_json:
        emit_json({"valid": True, **result.summary()})
    else:
        out.print(summary_line(result))


@certificate_app.command("render")
@reports_errors
def certificate_render(
    file: Annotated[Path, typer.Argument(help="The certificate (JSON).")],
    public_key: Annotated[Path, typer.Option(help=PUBLIC_KEY_HELP + " Only a certificate that verifies is rendered.")],
    origin: Annotated[str | None, typer.Option(help=ORIGIN_HELP)] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page here.")] = None,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Write a PDF here (needs the pdf extra).")] = None,
    evaluation: Annotated[
        Path | None, typer.Option(help="Attach `forget evaluate --json` output as supplementary evidence.")
    ] = None,
    witness_key: Annotated[
        list[Path] | None, typer.Option(help="A witness's verifier key (a file); its cosignature is required.")
    ] = None,
    witness_threshold: Annotated[
        int | None, typer.Option(help="How many of the --witness-key witnesses must cosign (default: all).")
    ] = None,
) -> None:
    """Render a certificate for people: HTML and PDF views of the same signed statement.

    Only a certificate that verifies is rendered. In its own workspace the page also names the
    organisation (forget.toml) and the DSAR ticket (the request's note); elsewhere it says they are
    not available offline.
    """
    from forget.audit.certificate_view import certificate_view
    from reports.render import render_html, render_pdf
    from reports.verify import load_verifier_key, read_certificate
    from reports.verify_summary import read_input

    if html is None and pdf is None:
        raise typer.BadParameter("give --html OUT and/or --pdf OUT", param_hint="--html")
    if witness_threshold is not None and not 1 <= witness_threshold <= len(witness_key or []):
        raise typer.BadParameter("must be between 1 and the number of --witness-key", param_hint="--witness-threshold")
    key = load_verifier_key(read_input(public_key, "public key"), origin)
    witnesses = [read_input(path, "witness key").decode("utf-8", "replace").strip() for path in witness_key or []]
    view = certificate_view(  # never render what does not verify
        read_certificate(file),
        key,
        workspace=_workspace_if_any(),
        witness_keys=witnesses,
        witness_threshold=witness_threshold,
    )
    supplement = None
    if evaluation is not None:
        from reports.evaluation import read_evaluation, render_evaluation_section

        supplement = render_evaluation_section(read_evaluation(read_input(evaluation, "evaluation")), view.statement)
    if html is not None:
        html.write_text(render_html(view, supplement))
        out.print(f"wrote {html}")
    if pdf is not None:
        pdf.write_bytes(render_pdf(view, supplement))
        out.print(f"wrote {pdf}")


def _workspace_if_any() -> Workspace | None:
    """The workspace `--workspace`, $FORGET_WORKSPACE or the current folder names, if there is one:
    rendering also works offline, where the page says what only the workspace knows."""
    from forget.errors import WorkspaceError
    from forget.workspace.core import locate_workspace

    if state.workspace_option is None:
        try:
            locate_workspace(None)
        except WorkspaceError:
            return None
    return workspace()


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
    from forget.audit.replay import replay

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


def console() -> NoReturn:
    """The process entry point (`python -m cli`, the `forget` script): `run`, then a fast exit.

    When a command returns, what it must leave is durable: transactions committed, checkpoints,
    certificates and anchors fsync'd and renamed. The interpreter's teardown would then free a
    few hundred thousand objects one by one, torch's most of them: 0.3 to 0.7 s of CPU, about as
    much as a one-subject erasure's own work (docs/benchmarks.md, "The fixed cost of a process").
    So this waits for non-daemon threads, runs the atexit handlers (logging's flush, temporary
    folders' cleanup), flushes stdout and stderr, and leaves with `os._exit` and the status the
    interpreter would have used. Open database connections end with the process: with every
    transaction committed, SQLite has no journal to settle, and PostgreSQL ends an idle session
    whose client is gone. `run` itself still raises `SystemExit`, for callers that go on.
    """
    try:
        run()
        code: object = 0
    except SystemExit as exit_:
        code = exit_.code
    os._exit(_finish(code))


def _finish(code: object) -> int:
    """What CPython does with `SystemExit(code)` at exit, minus the teardown; returns the status."""
    import atexit
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:  # sys.exit("message"): the message goes to stderr, the status is 1
        print(code, file=sys.stderr)
        status = 1
    for thread in threading.enumerate():  # the interpreter waits for non-daemon threads too
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`forget ... | head`): CPython exits 120 then
            status = status or 120
    return status
