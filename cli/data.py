"""The data scientist's commands: plan, init, ingest, schema, train, shards, predict, evaluate."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from cli.app import AsJson, emit_json, err, out, passphrase, workspace
from cli.errors import reports_errors
from forget.choices import (
    AggregationChoice,
    CaseRule,
    DeviceChoice,
    EmailRule,
    OptimizerChoice,
    PlacementMode,
    Schedule,
    as_aggregation,
)
from forget.data.schema import DEFAULT_MIN_SUBJECTS
from forget.subjects.identity import IdentityForm
from forget.workspace.config import DEFAULT_DATABASE, TrainingSettings

if TYPE_CHECKING:
    from forget.workspace.core import Workspace

_TRAINING_DEFAULTS = TrainingSettings()

commands = typer.Typer()


@commands.command()
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
    optimizer: Annotated[OptimizerChoice, typer.Option(help="adam or sgd.")] = OptimizerChoice.ADAM,
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
        AggregationChoice, typer.Option(help="How predict and evaluate combine the shards: vote, mean or geomean.")
    ] = AggregationChoice(_TRAINING_DEFAULTS.aggregation),
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

    training = TrainingSettings(model, epochs, batch_size, lr, optimizer.value, schedule, threads, aggregation.value)
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
            passphrase=passphrase(),
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


@commands.command("plan")
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
    aggregation: Annotated[AggregationChoice, typer.Option(help="vote, mean or geomean.")] = AggregationChoice(
        _TRAINING_DEFAULTS.aggregation
    ),
    validation: Annotated[float, typer.Option(help="Share of subjects held out to score on.")] = 0.2,
    max_loss: Annotated[
        float, typer.Option(help="Accuracy the recommendation may give up for cheaper erasures.")
    ] = 0.02,
    max_rows: Annotated[int, typer.Option(help="Subsample larger files (by subject) to this many rows.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed for the split, the placement and training.")] = 0,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the plan (JSON) here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained page with the chart.")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Write the chart as PNG (needs matplotlib).")] = None,
    as_json: AsJson = False,
) -> None:
    """Measure shards x slices (and models, epochs) on your data before `init`: accuracy against erasure cost."""
    from dataclasses import replace

    from forget.evaluation.plan import PlanOptions, make_plan
    from forget.outputs import plan_html, plan_png, write_file

    options = PlanOptions(
        shards=_counts(shards, "--shards"),
        slices=_counts(slices, "--slices"),
        models=tuple(model or ()),
        epochs=tuple(epochs or ()),
        training=replace(_TRAINING_DEFAULTS, batch_size=batch_size, lr=lr, aggregation=aggregation.value),
        aggregation=aggregation.value,
        validation=validation,
        seed=seed,
        max_loss=max_loss,
        max_rows=max_rows,
    )
    quiet = as_json or not err.is_terminal
    made = make_plan(file, subject_column, label_column, options, None if quiet else lambda m: err.print(m))
    data = made.to_dict()
    if png is not None:
        png.write_bytes(plan_png(data))  # first: a missing matplotlib stops before anything is written
    if output is not None:
        write_file(output, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    if html is not None:
        html.write_text(plan_html(data))
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


@commands.command()
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
    as_json: AsJson = False,
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


@commands.command()
@reports_errors
def schema() -> None:
    """Print the workspace's feature schema as TOML (reusable with `ingest --schema`)."""
    import tomli_w

    ws = workspace()
    if ws.config.schema is None:
        raise typer.BadParameter("the workspace has no schema yet: ingest a file first")
    sys.stdout.write(tomli_w.dumps({"schema": ws.config.schema.to_dict()}))


@commands.command()
@reports_errors
def train(
    device: Annotated[DeviceChoice, typer.Option(help="auto: CUDA when present, else the CPU.")] = DeviceChoice.AUTO,
    shard: Annotated[list[int] | None, typer.Option(help="Train only this shard (repeatable).")] = None,
    from_scratch: Annotated[bool, typer.Option(help="Discard the selected shards' checkpoints first.")] = False,
    executor: Annotated[str | None, typer.Option(help="local or dask (default: forget.toml [executor]).")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, tcp://HOST:PORT.")] = None,
    as_json: AsJson = False,
) -> None:
    """Train each shard slice by slice, with a checkpoint after every slice; resumes where it stopped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from forget.store.checkpoints import collect_garbage
    from forget.training.train import executor_for, plan_training, restart_shards
    from forget.training.train import train as train_shards
    from forget.workspace.lock import job_lock

    ws = workspace(signing=True)
    chosen = executor_for(ws, executor, scheduler)
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


@commands.command()
@reports_errors
def shards(as_json: AsJson = False) -> None:
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


@commands.command()
@reports_errors
def predict(
    file: Annotated[Path, typer.Argument(help="CSV, TSV or Parquet with the schema's feature columns.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write CSV here (default stdout).")] = None,
    aggregation: Annotated[
        AggregationChoice | None,
        typer.Option(help="vote, mean or geomean (default: forget.toml [training] aggregation)."),
    ] = None,
    device: Annotated[DeviceChoice, typer.Option(help="auto: CUDA when present, else the CPU.")] = DeviceChoice.AUTO,
) -> None:
    """Predict with the ensemble of the shards' latest models; extra columns are ignored."""
    import csv
    import io

    from forget.training.predict import predict_file

    ws = workspace()
    result = predict_file(ws, file, as_aggregation(aggregation or ws.config.training.aggregation), device)
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


@commands.command()
@reports_errors
def evaluate(
    file: Annotated[Path, typer.Argument(help="Labelled CSV, TSV or Parquet held out from training.")],
    aggregation: Annotated[
        AggregationChoice | None,
        typer.Option(help="vote, mean or geomean (default: forget.toml [training] aggregation)."),
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
    as_json: AsJson = False,
) -> None:
    """Ensemble and per-shard accuracy with 95% intervals; membership inference with --mia or --erased.

    Also the majority-class baseline, balanced accuracy, macro-F1 and per-class recall with their
    intervals, a verdict and warnings; the gap to --reference, with the Tug-of-War score."""
    from forget.evaluation.evaluate import Attack, Comparison
    from forget.evaluation.evaluate import evaluate as run_evaluation
    from forget.workspace.core import open_workspace

    other = open_workspace(reference) if reference is not None else None
    chosen = as_aggregation(aggregation) if aggregation is not None else None
    report = run_evaluation(workspace(), file, chosen, device, mia=mia, erased=erased, reference=other,
                            members=members, seed=seed)  # fmt: skip
    data = report.to_dict()
    diagnosis = report.diagnosis
    if diagnosis is not None:
        for _code, message in diagnosis.warnings:
            err.print(f"warning: {message}", markup=False)
    if html is not None:
        from forget.outputs import evaluation_html

        html.write_text(evaluation_html(data))
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
    for shard, item in zip(data["utility"]["shards"], data["utility"]["shard_accuracy"], strict=True):
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
