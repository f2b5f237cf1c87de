"""`forget run`: the batch job that carries out due erasure requests, one job at a time.

Each step is a ledger entry written in the same transaction as its effect, or before anything
relies on it, so a job killed at any point (SIGKILL included) leaves a state that the next run
resumes from and finishes exactly as an uninterrupted run would:

1. the due requests become `running` in a new run (request.started names the run);
2. their records are deleted and their shards' checkpoints from the rewind slice on are
   dropped, with one plan per request (erasure.planned) and the new slice manifests, in one
   transaction;
3. every checkpoint file the lineage no longer points at is deleted, then the run's dropped
   checkpoints are checked absent and logged (erasure.checkpoints_purged, once per run);
4. the rewound shards retrain from their last clean checkpoint (lineage.checkpoint per slice);
5. the requests complete (request.completed), PostgreSQL vacuums, a tree head is signed;
6. each completed request gets its certificate (request.certified), even after a crash.

A killed job's requests are resumed first, in the run they started in (never under a new run
id: their entries must all name one run for their certificates to verify); due requests then
start a run of their own.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from forget.data.rederive import rederive_after_erasure
from forget.erasure.certify import issue_certificates, uncertified
from forget.erasure.reconcile import reconcile_workspace
from forget.erasure.requests import ErasureRequest, Outcome, RequestState, format_time
from forget.erasure.rewind import (
    ERASURE_PLANNED,
    ERASURE_PURGED,
    RequestPart,
    delete_and_rewind,
    plan_erasure,
    purged_entry,
)
from forget.errors import InputError
from forget.store.checkpoints import collect_garbage
from forget.training.lineage import sign_head
from forget.training.train import plan_training, train
from forget.workspace.core import Workspace
from forget.workspace.lock import job_lock
from ledger.evidence import EntryKind, ErasurePlanned, RequestCompleted, RequestStarted
from ledger.evidence import Outcome as EvidenceOutcome

if TYPE_CHECKING:
    from sisa.executor import ShardExecutor
    from sisa.trainer import TrainedSlice

STARTED = EntryKind.REQUEST_STARTED.value
COMPLETED = EntryKind.REQUEST_COMPLETED.value
CRASH_ENV = "FORGET_CRASH_AT"
"""Fault injection for the crash tests: the job SIGKILLs itself at the named step."""


def parse_duration(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise InputError(f"{text!r} is not a duration like 30m, 12h, 7d or 2w")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


PAUSE_ENV = "FORGET_PAUSE_AT"
"""For the concurrency test: `STEP:PATH` makes the job wait at STEP until PATH exists (60 s at most)."""


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    step, _, path = os.environ.get(PAUSE_ENV, "").partition(":")
    if step == name and path:
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)


@dataclass(frozen=True)
class RunPlan:
    resumed: tuple[ErasureRequest, ...]
    """Requests a killed job had started; they finish first."""
    due: tuple[ErasureRequest, ...]
    records: int
    shards: tuple[int, ...]

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "resumed": [r.request_id for r in self.resumed],
            "due": [r.to_dict(now) for r in self.due],
            "records": self.records,
            "shards": list(self.shards),
        }


@dataclass(frozen=True)
class RunSummary:
    run_id: str | None
    completed: tuple[str, ...] = ()
    no_data: tuple[str, ...] = ()
    records_erased: int = 0
    shards_retrained: tuple[int, ...] = ()
    checkpoints_purged: int = 0
    seconds: float = 0.0
    overdue: tuple[str, ...] = field(default_factory=tuple)
    """Requests completed after their deadline."""
    certificates: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    """Every run this job carried out: a killed job's run first (resumed with its own id), then a new one."""
    schema_changed: bool = False
    """The schema re-derived from the retained records differed (schema.rederived): every shard retrained."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "runs": list(self.runs),
            "completed": list(self.completed),
            "no_data": list(self.no_data),
            "records_erased": self.records_erased,
            "shards_retrained": list(self.shards_retrained),
            "checkpoints_purged": self.checkpoints_purged,
            "seconds": round(self.seconds, 3),
            "completed_late": list(self.overdue),
            "certificates": list(self.certificates),
            "schema_changed": self.schema_changed,
        }


def _select(
    workspace: Workspace, due_within: timedelta | None, limit: int | None, now: datetime
) -> tuple[list[ErasureRequest], list[ErasureRequest]]:
    if limit is not None and limit < 1:
        raise InputError("--limit must be at least 1")
    store = workspace.datastore
    resumed = [ErasureRequest.from_row(r) for r in store.find_requests(states=[RequestState.RUNNING])]
    pending = [ErasureRequest.from_row(r) for r in store.find_requests(states=[RequestState.PENDING])]
    if due_within is not None:
        pending = [r for r in pending if r.deadline <= now + due_within]
    return resumed, pending[:limit] if limit is not None else pending


def plan_run(
    workspace: Workspace,
    due_within: timedelta | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> RunPlan:
    """What `forget run` would do now, without writing anything (`--dry-run`)."""
    moment = now or datetime.now(UTC)
    resumed, due = _select(workspace, due_within, limit, moment)
    index = workspace.datastore.records_of_subjects([r.subject_key for r in [*resumed, *due]])
    keys = [key for records in index.values() for key in records]
    shards = tuple(sorted({r.shard for r in plan_erasure(workspace, keys).rewinds})) if keys else ()
    return RunPlan(tuple(resumed), tuple(due), len(keys), shards)


def run_job(
    workspace: Workspace,
    due_within: timedelta | None = None,
    limit: int | None = None,
    device: str = "auto",
    on_slice: Callable[[TrainedSlice], None] | None = None,
    now: datetime | None = None,
    executor: ShardExecutor | None = None,
) -> RunSummary:
    reconcile_workspace(workspace)  # tables edited outside forget stop the job before it selects anything
    started_clock = time.perf_counter()
    with job_lock(workspace):
        moment = now or datetime.now(UTC)
        resumed, due = _select(workspace, due_within, limit, moment)
        if not resumed and not due:
            # A job killed after completing requests but before certifying them finishes them now.
            unsigned = uncertified(workspace)
            if unsigned:
                workspace.datastore.vacuum_records()
                sign_head(workspace)
            late_certificates = issue_certificates(workspace, unsigned)
            return RunSummary(
                run_id=None,
                certificates=tuple(str(p) for p in late_certificates),
                seconds=time.perf_counter() - started_clock,
            )
        from sisa.device import resolve_device
        from sisa.executor import LocalExecutor

        if executor is None or isinstance(executor, LocalExecutor):
            resolve_device(device)  # a missing GPU must stop the job before it erases anything
        store = workspace.datastore
        runs: list[_RunResult] = []
        # A killed job's requests finish first, in the run they started in: their started, planned
        # and purged entries name that run, and a certificate needs them all to name one run.
        for run_id, requests in _runs_of(workspace, resumed):
            runs.append(_carry_out(workspace, run_id, requests, device, on_slice, executor, now, moment))
        if due:
            run_id = f"run_{secrets.token_hex(8)}"
            _start(workspace, run_id, due)
            runs.append(_carry_out(workspace, run_id, due, device, on_slice, executor, now, moment))
        store.vacuum_records()
        sign_head(workspace)
        certificates = issue_certificates(workspace, uncertified(workspace))
        return RunSummary(
            run_id=runs[-1].run_id,
            completed=tuple(r for run in runs for r in run.completed),
            no_data=tuple(r for run in runs for r in run.no_data),
            records_erased=sum(run.records_erased for run in runs),
            shards_retrained=tuple(s for run in runs for s in run.shards_retrained),
            checkpoints_purged=sum(run.checkpoints_purged for run in runs),
            seconds=time.perf_counter() - started_clock,
            overdue=tuple(r for run in runs for r in run.overdue),
            certificates=tuple(str(p) for p in certificates),
            runs=tuple(run.run_id for run in runs),
            schema_changed=any(run.schema_changed for run in runs),
        )


@dataclass(frozen=True)
class _RunResult:
    run_id: str
    completed: tuple[str, ...]
    no_data: tuple[str, ...]
    records_erased: int
    shards_retrained: tuple[int, ...]
    checkpoints_purged: int
    overdue: tuple[str, ...]
    schema_changed: bool = False


def _runs_of(workspace: Workspace, resumed: list[ErasureRequest]) -> list[tuple[str, list[ErasureRequest]]]:
    """The interrupted runs and their requests, in the order they started; a request keeps its run id."""
    runs: dict[str, list[ErasureRequest]] = {}
    for request in resumed:
        row = workspace.datastore.get_request(request.request_id)
        run_id = row.run_id if row is not None else None
        if run_id is None:  # not possible since request.started and the state change commit together
            run_id = f"run_{secrets.token_hex(8)}"
            _start(workspace, run_id, [request])
        runs.setdefault(run_id, []).append(request)
    return list(runs.items())


def _start(workspace: Workspace, run_id: str, requests: list[ErasureRequest]) -> None:
    """Step 1: the requests become `running` in run `run_id`, with their request.started entries."""
    store = workspace.datastore
    with store.engine.begin() as connection:
        for request in requests:
            store.update_request(connection, request.request_id, state=RequestState.RUNNING.value, run_id=run_id)
        workspace.ledger.append(connection, [RequestStarted(r.request_id, run_id).entry() for r in requests])
    _crash_point("started")


def _stale_of_run(workspace: Workspace, run_id: str) -> list[str] | None:
    """The checkpoints the run's logged plans dropped; None when the run erased nothing or its
    purge is logged already (a resumed run logs it once)."""
    stale: list[str] = []
    planned = False
    with workspace.datastore.engine.connect() as connection:
        for entry in workspace.ledger.entries(connection, kind=ERASURE_PLANNED):
            if entry.payload.get("run_id") == run_id:
                plan = ErasurePlanned.from_payload(entry.payload)
                stale.extend(d for rewind in plan.rewinds for d in rewind.stale_checkpoints)
                planned = True
        if not planned:
            return None
        for entry in workspace.ledger.entries(connection, kind=ERASURE_PURGED):
            if entry.payload.get("run_id") == run_id:
                return None
    return stale


def _carry_out(
    workspace: Workspace,
    run_id: str,
    batch: list[ErasureRequest],
    device: str,
    on_slice: Callable[[TrainedSlice], None] | None,
    executor: ShardExecutor | None,
    now: datetime | None,
    moment: datetime,
) -> _RunResult:
    """Steps 2 to 5 for the started requests of one run; each step is skipped where a killed job did it."""
    store = workspace.datastore
    ledger = workspace.ledger
    index = store.records_of_subjects([r.subject_key for r in batch])
    keys = [key for records in index.values() for key in records]
    last = workspace.config.slices - 1
    if keys:
        plan = plan_erasure(workspace, keys)
        places = store.placements_of(keys)
        with store.engine.begin() as connection:
            parts = []
            for request in batch:
                records = index.get(request.subject_key, [])
                if records:
                    shards = sorted({places[key][0] for key in records})
                    parts.append(RequestPart(request.request_id, len(records), tuple(shards)))
                    store.update_request(
                        connection,
                        request.request_id,
                        records_erased=len(records),
                        shards=json.dumps(shards),
                    )
            delete_and_rewind(workspace, connection, plan, run_id, parts)
        _crash_point("erased")

    purged = collect_garbage(workspace)
    stale = _stale_of_run(workspace, run_id)
    if stale is not None:
        with store.engine.begin() as connection:
            ledger.append(connection, [purged_entry(workspace, run_id, stale).entry()])
    _crash_point("purged")
    # Invariant 9, before retraining: a changed schema drops every checkpoint, so one retraining covers it.
    schema_check = rederive_after_erasure(workspace, run_id)

    def on_trained(result: TrainedSlice) -> None:
        _crash_point("retraining")
        if on_slice is not None:
            on_slice(result)

    plans = plan_training(workspace)
    train(workspace, plans, device=device, on_slice=on_trained, executor=executor)
    purged += collect_garbage(workspace)  # files a killed training stored but never recorded
    _crash_point("retrained")

    finished = datetime.now(UTC) if now is None else moment
    after = store.checkpoint_map()
    completed: list[str] = []
    no_data: list[str] = []
    late: list[str] = []
    erased_total = 0
    with store.engine.begin() as connection:
        for request in batch:
            row = store.get_request(request.request_id, connection)
            assert row is not None
            outcome = Outcome.ERASED if row.records_erased else Outcome.NO_DATA
            shards = json.loads(row.shards) if row.shards else []
            store.update_request(
                connection,
                request.request_id,
                state=RequestState.COMPLETED.value,
                outcome=outcome.value,
                records_erased=row.records_erased or 0,
                completed_at=format_time(finished),
            )
            payload = RequestCompleted(
                request_id=request.request_id,
                run_id=run_id,
                subject_key=request.subject_key,
                outcome=EvidenceOutcome(outcome.value),
                records_erased=row.records_erased or 0,
                received_at=format_time(request.received_at),
                deadline=format_time(request.deadline),
                completed_at=format_time(finished),
                deadline_met=finished <= request.deadline,
                checkpoints_after={int(s): after[(int(s), last)] for s in shards},
            )
            ledger.append(connection, [payload.entry()])
            (completed if outcome is Outcome.ERASED else no_data).append(request.request_id)
            erased_total += row.records_erased or 0
            if finished > request.deadline:
                late.append(request.request_id)
    _crash_point("completed")
    return _RunResult(
        run_id=run_id,
        completed=tuple(completed),
        no_data=tuple(no_data),
        records_erased=erased_total,
        shards_retrained=tuple(p.shard for p in plans),
        checkpoints_purged=len(purged),
        overdue=tuple(late),
        schema_changed=schema_check.changed,
    )
