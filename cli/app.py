"""The typer application, its global options, and what every command shares: the workspace and output."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from cli import errors

if TYPE_CHECKING:
    from forget.workspace.core import Workspace

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

AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
"""The `--json` flag most commands share."""


class State:
    workspace_option: Path | None = None


state = State()


def workspace(signing: bool = False) -> Workspace:
    """The workspace; with `signing`, its signing key is opened first, so a wrong passphrase stops
    a command before it writes anything."""
    # Imported here so that `certificate verify` never loads the database layer.
    from forget.workspace.core import locate_workspace, open_workspace

    ws = open_workspace(locate_workspace(state.workspace_option), passphrase())
    for warning in ws.check_keys():
        err.print(f"warning: {warning}")
    if signing:
        ws.signing_key()
    return ws


def workspace_if_any() -> Workspace | None:
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


def passphrase() -> bytes | None:
    """An encrypted signing key's passphrase comes from the environment, never from an argument."""
    value = os.environ.get("FORGET_KEY_PASSPHRASE")
    return value.encode() if value else None


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def now() -> datetime:
    return datetime.now(UTC)


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
