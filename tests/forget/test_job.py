"""`run_job`'s steps, as its test seam (`JobHooks`) sees them: the crash tests kill at these."""

from __future__ import annotations

from pathlib import Path

from forget.erasure.job import JobHooks, Step, run_job
from forget.erasure.rewind import plan_erasure, subject_records
from forget.workspace.core import open_workspace
from sisa.trainer import TrainedSlice
from tests.conftest import write_tabular_csv
from tests.helpers import cli, init_args

COLUMNS = ["--subject-column", "subject", "--label-column", "label", "--id-column", "record"]


def test_the_hooks_see_each_step_once_its_effect_is_durable_and_slices_as_they_train(
    tmp_path: Path, database_url: str
) -> None:
    records = write_tabular_csv(tmp_path / "d.csv", rows=120)
    ws = tmp_path / "ws"
    cli(*init_args(ws, database_url))
    cli("-w", ws, "ingest", tmp_path / "d.csv", *COLUMNS)
    cli("-w", ws, "train", "--device", "cpu")
    workspace = open_workspace(ws)
    subject = records[0]["subject"]
    plan = plan_erasure(workspace, subject_records(workspace, [subject]))
    expected_slices = sum(workspace.config.slices - r.from_slice for r in plan.rewinds)
    cli("-w", ws, "request", "--subject-id", subject)
    cli("-w", ws, "request", "--subject-id", "person-never-seen")

    seen: list[Step] = []
    trained: list[TrainedSlice] = []
    observer = open_workspace(ws).datastore  # an engine of its own: it sees only what committed

    state_after = {Step.STARTED: "running", Step.COMPLETED: "completed"}

    def at(step: Step) -> None:
        seen.append(step)
        if step in state_after:
            assert {row.state for row in observer.find_requests()} == {state_after[step]}

    summary = run_job(workspace, device="cpu", on_slice=trained.append, hooks=JobHooks(at=at))
    assert not summary.schema_changed
    assert len(trained) == expected_slices > 0
    assert seen == [
        Step.STARTED, Step.ERASED, Step.PURGED, *[Step.RETRAINING] * expected_slices, Step.RETRAINED,
        Step.COMPLETED,
    ]  # fmt: skip
    assert len(summary.certificates) == 2

    # A run whose only request holds no data erases nothing and trains nothing.
    cli("-w", ws, "request", "--subject-id", "person-also-never-seen")
    seen.clear()
    summary = run_job(workspace, device="cpu", hooks=JobHooks(at=seen.append))
    assert seen == [Step.STARTED, Step.PURGED, Step.RETRAINED, Step.COMPLETED]
    assert len(summary.no_data) == 1 and summary.records_erased == 0
    seen.clear()
    assert run_job(workspace, device="cpu", hooks=JobHooks(at=seen.append)).run_id is None
    assert seen == []
