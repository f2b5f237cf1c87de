"""`python -m cli` (the `forget` script's code) leaves with `os._exit`: its status, output, atexit
handlers and threads must come out as the interpreter's own exit leaves them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Block-buffered stdout, as a pipe gets by default: what is left in the buffer must reach the reader.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}

# `run` is replaced by a stand-in that does what a command might; then either `console()` exits
# (fast) or `run()`'s SystemExit reaches the interpreter (normal), for comparison.
SCRIPT = textwrap.dedent(
    """
    import atexit, os, sys, threading, time
    import cli.main

    exit_mode, outcome, marker = sys.argv[1:4]

    def command():
        atexit.register(lambda: open(marker, "a").write("atexit\\n"))
        def late():
            time.sleep(0.2)
            open(marker, "a").write("thread\\n")
        threading.Thread(target=late).start()
        if outcome == "closed":  # the reader is gone before the exit's flush (`forget ... | head`)
            sys.stdout.write("buffered")
            while not os.path.exists(marker + ".closed"):
                time.sleep(0.01)
            return
        sys.stdout.write("x" * 100_000 + "\\n")  # its tail stays in the buffer until the exit's flush
        if outcome == "ok":
            return
        if outcome == "internal":
            raise RuntimeError("boom")
        if outcome == "text":
            sys.exit("a message")
        sys.exit(None if outcome == "none" else int(outcome))

    def run():
        try:
            command()
        except Exception:
            raise SystemExit(70)

    cli.main.run = run
    if exit_mode == "fast":
        cli.main.console()
    else:
        run()
    """
)


def finish(exit_mode: str, outcome: str, tmp_path: Path) -> tuple[int, str, str, str]:
    marker = tmp_path / f"{exit_mode}-{outcome}"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, exit_mode, outcome, str(marker)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr, marker.read_text()


@pytest.mark.parametrize(("outcome", "status"), [("ok", 0), ("none", 0), ("2", 2), ("70", 70), ("256", 0), ("text", 1)])
def test_the_fast_exit_leaves_what_the_interpreters_exit_leaves(outcome: str, status: int, tmp_path: Path) -> None:
    # The two interpreters run side by side: each spends most of its time importing and sleeping.
    with ThreadPoolExecutor(2) as pool:
        fast, normal = pool.map(lambda mode: finish(mode, outcome, tmp_path), ["fast", "normal"])
    assert fast == normal
    code, out, err, marker = fast
    assert code == status and out == "x" * 100_000 + "\n" and marker == "thread\natexit\n"
    assert err == ("a message\n" if outcome == "text" else "")


@pytest.mark.parametrize("exit_mode", ["fast", "normal"])
def test_a_closed_stdout_exits_120_as_cpython_does(exit_mode: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with subprocess.Popen(
        [sys.executable, "-c", SCRIPT, exit_mode, "closed", str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=ENV,
    ) as process:
        assert process.stdout is not None
        process.stdout.close()
        (tmp_path / "marker.closed").touch()
        assert process.wait(timeout=60) == 120


def test_real_commands_exit_with_their_status_and_whole_output(tmp_path: Path) -> None:
    shown = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert shown.returncode == 0 and "Usage: python -m cli [OPTIONS] COMMAND" in shown.stdout
    assert shown.stdout.rstrip().endswith("╯")  # the whole page, its last line included
    missing = subprocess.run(
        [sys.executable, "-m", "cli", "-w", str(tmp_path / "none"), "shards"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    assert missing.returncode == 3 and missing.stderr.startswith("error: ") and missing.stdout == ""
