"""The privacy team's commands: record and extend erasure requests, follow them, carry them out."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from cli.app import AsJson, emit_json, err, now, out, workspace
from cli.errors import ExitCode, reports_errors
from forget.choices import DeviceChoice

commands = typer.Typer()


request_app = typer.Typer(help="Record an erasure request (Art. 17), or extend its deadline (Art. 12(3)).")
commands.add_typer(request_app, name="request")


@request_app.callback(invoke_without_command=True)
@reports_errors
def request(
    ctx: typer.Context,
    subject_id: Annotated[str | None, typer.Option(help="The data subject's id, as in the ingested files.")] = None,
    received_at: Annotated[str | None, typer.Option(help="When it was received (ISO 8601; default now).")] = None,
    note: Annotated[str | None, typer.Option(help="A note for the privacy team (no personal data).")] = None,
    as_json: AsJson = False,
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
        emit_json({**filed.to_dict(now()), "created": created})
        return
    verb = "recorded" if created else "already pending:"
    out.print(f"{verb} {filed.request_id}, deadline {filed.deadline:%Y-%m-%d %H:%M} UTC")


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


@commands.command()
@reports_errors
def status(
    request_id: Annotated[str | None, typer.Option(help="Only this request.")] = None,
    subject_id: Annotated[str | None, typer.Option(help="Only this subject's requests.")] = None,
    as_json: AsJson = False,
) -> None:
    """Erasure requests with their state and deadline; exit 4 when any is overdue."""
    from forget.erasure.reconcile import reconcile_requests
    from forget.erasure.requests import RequestState, list_requests

    moment = now()
    ws = workspace()
    reconcile_requests(ws)  # a row deleted or edited outside forget is exit 1, not a quiet table
    found = list_requests(ws, request_id, subject_id)
    overdue = [r for r in found if r.state is not RequestState.COMPLETED and r.overdue(moment)]
    if as_json:
        emit_json({"requests": [r.to_dict(moment) for r in found], "overdue": len(overdue)})
    else:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("request", no_wrap=True)
        for heading in ("state", "received", "deadline", "days left", "outcome"):
            table.add_column(heading, no_wrap=True)
        table.add_column("ticket / reason")
        for r in found:
            late = r in overdue
            days = "-" if r.state is RequestState.COMPLETED else f"{r.days_left(moment):.1f}"
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
        raise typer.Exit(int(ExitCode.OVERDUE))


@commands.command("run")
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
    as_json: AsJson = False,
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
            emit_json(plan.to_dict(now()))
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
        chosen = executor_for(ws, executor, scheduler)
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
