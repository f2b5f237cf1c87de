"""`forget`: exact machine unlearning for the GDPR right to be forgotten.

The commands live in one module per user, each with its own `commands`; this module assembles
them into `app` (in the order `forget --help` lists them) and holds the process entry point.

    cli/app.py           the typer app, global options, the workspace and output helpers
    cli/data.py          plan, init, ingest, schema, train, shards, predict, evaluate
    cli/demo.py          demo
    cli/requests.py      request, request extend, status, run
    cli/ledger.py        ledger head/show/prove/export/verify/cosign, keys public, witness ...
    cli/certificates.py  certificate issue/verify/render, audit replay
    cli/errors.py        the one place errors become `error: ...` and an exit code
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from cli import certificates, data, demo, ledger, requests, service
from cli.app import app
from cli.errors import ExitCode

__all__ = ["app", "console", "run"]

for _part in (data, demo, requests, ledger, certificates, service):
    app.add_typer(_part.commands)


def run() -> None:
    """The console script: a failure that is not one of ours is a bug, shown as such (exit 70)."""
    try:
        app()
    except Exception:
        import traceback

        traceback.print_exc()
        print("error: internal error in forget (a bug): please report it with the traceback above", file=sys.stderr)
        sys.exit(int(ExitCode.INTERNAL))


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
