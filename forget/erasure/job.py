"""`forget run`: the batch job that carries out due erasure requests, one job at a time.

Each step is one function below, and a ledger entry written in the same transaction as its
effect, or before anything relies on it, so a job killed at any point (SIGKILL included) leaves
a state that the next run resumes from and finishes exactly as an uninterrupted run would:

1. `start_requests`: the due requests become `running` in a new run (request.started names it);
2. `erase_records`: their records are deleted and their shards' checkpoints from the rewind slice
   on are dropped, with one plan per request (erasure.planned) and the new slice manifests, in
   one transaction;
3. `purge_checkpoints`: every checkpoint file the lineage no longer points at is deleted, then
   the run's dropped checkpoints are checked absent and logged (erasure.checkpoints_purged, once);
4. `retrain_shards`: the schema is re-derived from the retained records (schema.rederived), and
   the rewound shards retrain from their last clean checkpoint (lineage.checkpoint per slice);
5. `complete_requests`: the requests complete (request.completed);
6. `certify_requests`: PostgreSQL vacuums, a tree head is signed, and each completed request gets
   its certificate (request.certified), even one a killed job completed.

A killed job's requests are resumed first, in the run they started in (never under a new run
id: their entries must all name one run for their certificates to verify); due requests then
start a run of their own. `JobHooks` is the crash tests' seam: production passes none.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
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


def parse_duration(text: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w` as a timedelta; raises `InputError` for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not match:
        raise InputError(f"{text!r} is not a duration like 30m, 12h, 7d or 2w")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


class Step(StrEnum):
    """The moments a job passes, each once its effect is durable: where the crash tests kill it."""

    STARTED = "started"
    """Step 1 committed."""
    ERASED = "erased"
    """Step 2 committed (passed only by a run that had records to erase)."""
    PURGED = "purged"
    """Step 3 done."""
    RETRAINING = "retraining"
    """Inside step 4, after each slice it trained."""
    RETRAINED = "retrained"
    """Step 4 done."""
    COMPLETED = "completed"
    """Step 5 committed."""


def _carry_on(step: Step) -> None:
    """The production hook: nothing."""


@dataclass(frozen=True)
class JobHooks:
    """A test seam: `at(step)` is called as the job passes each step, in the job's process.

    Production passes none (`forget run` never reads a fault from the environment); the crash
    tests run the job through `tests/crashing_job.py`, whose hook SIGKILLs the process at a
    named step or pauses it there, and then resume it with the real `forget run`.
    """

    at: Callable[[Step], None] = _carry_on


NO_HOOKS = JobHooks()


@dataclass(frozen=True)
class RunPlan:
    resumed: tuple[ErasureRequest, ...]
    """Requests a killed job had started; they finish first."""
    due: tuple[ErasureRequest, ...]
    records: int
    shards: tuple[int, ...]

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """The plan as `forget run --dry-run --json` prints it; raises nothing."""
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
        """The summary as `forget run --json` prints it; raises nothing."""
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
    """What `forget run` would do now, without writing anything (`--dry-run`).

    Raises `InputError` for a `limit` below 1, `ErasureError` for a record that vanished meanwhile.
    """
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
    hooks: JobHooks = NO_HOOKS,
) -> RunSummary:
    """Carry out the due requests (and finish a killed job's) under the job lock: steps 1 to 6.

    With nothing due, it still certifies what a killed job completed but never certified.
    Raises `JobLockedError` (exit 5, nothing changed) when another job holds the workspace,
    `RequestMismatchError` / `CheckpointLineageError` (exit 1) when the tables disagree with the
    ledger, `InputError` for a `limit` below 1, and the training's and signing's errors (a missing
    device, a full disk) with the job left resumable.
    """
    reconcile_workspace(workspace)  # tables edited outside forget stop the job before it selects anything
    started_clock = time.perf_counter()
    with job_lock(workspace):
        resumed, due = _select(workspace, due_within, limit, now or datetime.now(UTC))
        runs: list[_RunResult] = []
        if resumed or due:
            _check_device(device, executor)  # a missing GPU must stop the job before it erases anything
            training = _Training(device, on_slice, executor)
            # A killed job's requests finish first, in the run they started in: their started, planned
            # and purged entries name that run, and a certificate needs them all to name one run.
            for run_id, requests in _runs_of(workspace, resumed, hooks):
                runs.append(_carry_out(workspace, run_id, requests, training, now, hooks))
            if due:
                run_id = f"run_{secrets.token_hex(8)}"
                start_requests(workspace, run_id, due)
                hooks.at(Step.STARTED)
                runs.append(_carry_out(workspace, run_id, due, training, now, hooks))
        certificates = certify_requests(workspace)
        return RunSummary(
            run_id=runs[-1].run_id if runs else None,
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


def _check_device(device: str, executor: ShardExecutor | None) -> None:
    from sisa.device import resolve_device

    if executor is None or executor.trains_here:
        resolve_device(device)


@dataclass(frozen=True)
class _Training:
    """How step 4 trains: the caller's device, progress callback and executor."""

    device: str
    on_slice: Callable[[TrainedSlice], None] | None
    executor: ShardExecutor | None


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


def _runs_of(
    workspace: Workspace, resumed: list[ErasureRequest], hooks: JobHooks
) -> list[tuple[str, list[ErasureRequest]]]:
    """The interrupted runs and their requests, in the order they started; a request keeps its run id."""
    runs: dict[str, list[ErasureRequest]] = {}
    for request in resumed:
        row = workspace.datastore.get_request(request.request_id)
        run_id = row.run_id if row is not None else None
        if run_id is None:  # not possible since request.started and the state change commit together
            run_id = f"run_{secrets.token_hex(8)}"
            start_requests(workspace, run_id, [request])
            hooks.at(Step.STARTED)
        runs.setdefault(run_id, []).append(request)
    return list(runs.items())


def _carry_out(
    workspace: Workspace,
    run_id: str,
    batch: list[ErasureRequest],
    training: _Training,
    now: datetime | None,
    hooks: JobHooks,
) -> _RunResult:
    """Steps 2 to 5 for the started requests of one run; each step is skipped where a killed job did it."""
    if erase_records(workspace, run_id, batch):
        hooks.at(Step.ERASED)
    purged = purge_checkpoints(workspace, run_id)
    hooks.at(Step.PURGED)

    def on_trained(result: TrainedSlice) -> None:
        hooks.at(Step.RETRAINING)
        if training.on_slice is not None:
            training.on_slice(result)

    retrained = retrain_shards(workspace, run_id, training.device, on_trained, training.executor)
    hooks.at(Step.RETRAINED)
    completion = complete_requests(workspace, run_id, batch, now if now is not None else datetime.now(UTC))
    hooks.at(Step.COMPLETED)
    return _RunResult(
        run_id=run_id,
        completed=completion.completed,
        no_data=completion.no_data,
        records_erased=completion.records_erased,
        shards_retrained=retrained.shards,
        checkpoints_purged=len(purged) + len(retrained.purged),
        overdue=completion.overdue,
        schema_changed=retrained.schema_changed,
    )


def start_requests(workspace: Workspace, run_id: str, requests: list[ErasureRequest]) -> None:
    """Step 1: the requests become `running` in run `run_id`, with their request.started entries.

    Raises `EvidenceError` for a malformed id; a database error rolls the step back and propagates.
    """
    store = workspace.datastore
    with store.transaction() as connection:
        for request in requests:
            store.update_request(connection, request.request_id, state=RequestState.RUNNING.value, run_id=run_id)
        workspace.ledger.append(connection, [RequestStarted(r.request_id, run_id).entry() for r in requests])


def erase_records(workspace: Workspace, run_id: str, batch: list[ErasureRequest]) -> bool:
    """Step 2: delete the run's records and drop the checkpoints that saw them, with their plans.

    False when none of the requests' subjects holds a record any more: nothing to erase (a
    subject with no data, or a resumed run whose step 2 had committed). Raises what
    `plan_erasure` and `delete_and_rewind` raise.
    """
    store = workspace.datastore
    index = store.records_of_subjects([r.subject_key for r in batch])
    keys = [key for records in index.values() for key in records]
    if not keys:
        return False
    plan = plan_erasure(workspace, keys)
    places = store.placements_of(keys)
    parts = []
    for request in batch:
        records = index.get(request.subject_key, [])
        if records:
            shards = tuple(sorted({places[key][0] for key in records}))
            parts.append(RequestPart(request.request_id, len(records), shards))
    delete_and_rewind(workspace, plan, run_id, parts)
    return True


def purge_checkpoints(workspace: Workspace, run_id: str) -> list[str]:
    """Step 3: delete every checkpoint file the lineage no longer points at, then log which of the
    run's dropped checkpoints are gone (once per run). Returns the deleted digests.

    Raises the checkpoint store's errors (`SisaError`, `OSError`) when a file cannot be deleted.
    """
    purged = collect_garbage(workspace)
    stale = _stale_of_run(workspace, run_id)
    if stale is not None:
        with workspace.datastore.transaction() as connection:
            workspace.ledger.append(connection, [purged_entry(workspace, run_id, stale).entry()])
    return purged


def _stale_of_run(workspace: Workspace, run_id: str) -> list[str] | None:
    """The checkpoints the run's logged plans dropped; None when the run erased nothing or its
    purge is logged already (a resumed run logs it once)."""
    stale: list[str] = []
    planned = False
    with workspace.datastore.snapshot() as connection:
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


@dataclass(frozen=True)
class Retrained:
    shards: tuple[int, ...]
    """The shards step 4 trained, each from its last clean checkpoint."""
    purged: tuple[str, ...]
    """Checkpoint files a killed training had stored but never recorded, deleted afterwards."""
    schema_changed: bool


def retrain_shards(
    workspace: Workspace,
    run_id: str,
    device: str,
    on_slice: Callable[[TrainedSlice], None] | None = None,
    executor: ShardExecutor | None = None,
) -> Retrained:
    """Step 4: re-derive the schema, then retrain every shard short of its last slice.

    Invariant 9 comes first: a changed schema drops every checkpoint, so one retraining covers it.
    Raises the trainer's errors (`SisaError`: no device, a diverged slice) with the shards left
    to resume from their last checkpoint.
    """
    schema_check = rederive_after_erasure(workspace, run_id)
    plans = plan_training(workspace)
    train(workspace, plans, device=device, on_slice=on_slice, executor=executor)
    purged = collect_garbage(workspace)  # files a killed training stored but never recorded
    return Retrained(tuple(p.shard for p in plans), tuple(purged), schema_check.changed)


@dataclass(frozen=True)
class Completion:
    completed: tuple[str, ...]
    """Requests whose records were erased."""
    no_data: tuple[str, ...]
    """Requests whose subject held no record."""
    records_erased: int
    overdue: tuple[str, ...]
    """Requests completed after their deadline."""


def complete_requests(workspace: Workspace, run_id: str, batch: list[ErasureRequest], finished: datetime) -> Completion:
    """Step 5: the run's requests complete at `finished`, each with its request.completed entry,
    which names its shards' checkpoints after retraining.

    Raises `KeyError` if a shard has no last checkpoint (a bug: step 4 trained it); a database
    error rolls the step back and propagates.
    """
    store = workspace.datastore
    last = workspace.config.slices - 1
    after = store.checkpoint_map()
    completed: list[str] = []
    no_data: list[str] = []
    late: list[str] = []
    erased_total = 0
    with store.transaction() as connection:
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
            workspace.ledger.append(connection, [payload.entry()])
            (completed if outcome is Outcome.ERASED else no_data).append(request.request_id)
            erased_total += row.records_erased or 0
            if finished > request.deadline:
                late.append(request.request_id)
    return Completion(tuple(completed), tuple(no_data), erased_total, tuple(late))


def certify_requests(workspace: Workspace) -> list[Path]:
    """Step 6: every completed request without a certificate gets one, a killed job's included.

    First PostgreSQL vacuums the erased rows away and a tree head is signed over the completions,
    so that the certificates rest on a signed head. Returns the certificates' paths.
    Raises what `issue_certificates` and signing raise (`LedgerError`, `VerificationError`).
    """
    unsigned = uncertified(workspace)
    if unsigned:
        workspace.datastore.vacuum_records()
        sign_head(workspace)
    return issue_certificates(workspace, unsigned)
