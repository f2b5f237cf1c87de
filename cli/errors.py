"""Where the application's errors become a line on stderr and an exit status: caught once, here.

Every command runs inside `forget.errors.translated()`, so what reaches `reports_errors` is a
`ForgetError` whose family carries its exit code (`ExitCode`, documented in the README), or a
bug, which `cli.main.run` reports with its traceback and exit 70.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from forget.errors import ExitCode, ForgetError, translated

__all__ = ["ExitCode", "exit_code_for", "reports_errors", "verbose"]

P = ParamSpec("P")
R = TypeVar("R")


def exit_code_for(error: ForgetError) -> ExitCode:
    """The status a command ends with for `error`: its family's."""
    return error.exit_code


verbose = False


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Show our errors as `error: ...` on stderr with their exit code; `--verbose` adds the traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with translated():
                return command(*args, **kwargs)
        except ForgetError as error:
            if verbose:
                import traceback

                traceback.print_exc()
            print(f"error: {error.diagnostics()}", file=sys.stderr)
            raise typer.Exit(int(exit_code_for(error))) from None

    return wrapper
