"""The crash tests' job: `forget run`'s job in a process of its own, killed or paused at a named step.

    python -m tests.crashing_job WORKSPACE STEP                    # SIGKILL itself at STEP
    python -m tests.crashing_job WORKSPACE STEP --pause-until PATH # wait at STEP until PATH exists

It calls `forget.erasure.job.run_job` as `forget run --device cpu` does (signing key opened
first, the workspace's configured executor), with a `JobHooks` whose `at` does the killing or
the pausing: the fault is passed in, never read from the environment by the job. A run that
never reaches STEP finishes and exits 0, which the tests treat as a failure to crash. The tests
then resume with the real `forget run` and verify every certificate offline.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from forget.erasure.job import JobHooks, Step, run_job
from forget.workspace.core import open_workspace

REPOSITORY = Path(__file__).resolve().parents[1]
PAUSE_LIMIT_S = 60.0


def kill_at(step: Step) -> Callable[[Step], None]:
    def at(reached: Step) -> None:
        if reached is step:
            os.kill(os.getpid(), signal.SIGKILL)

    return at


def pause_at(step: Step, release: Path, limit_s: float = PAUSE_LIMIT_S) -> Callable[[Step], None]:
    def at(reached: Step) -> None:
        if reached is step:
            deadline = time.monotonic() + limit_s
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    return at


def start(workspace: Path, step: str, *, pause_until: Path | None = None) -> subprocess.Popen[str]:
    """This module as a subprocess on `workspace`: killed at `step`, or paused there until a file exists."""
    extra = ["--pause-until", str(pause_until)] if pause_until is not None else []
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crashing_job", str(workspace), step, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPOSITORY,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crashing_job", description=__doc__)
    parser.add_argument("workspace", type=Path)
    parser.add_argument("step", choices=[s.value for s in Step])
    parser.add_argument("--pause-until", type=Path, help="pause at STEP until this file exists, instead of dying")
    args = parser.parse_args(argv)
    step = Step(args.step)
    workspace = open_workspace(args.workspace)
    workspace.signing_key()
    at = kill_at(step) if args.pause_until is None else pause_at(step, args.pause_until)
    summary = run_job(workspace, device="cpu", hooks=JobHooks(at=at))  # the configured executor, as train picks it
    sys.stdout.write(json.dumps(summary.to_dict(), sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
