"""Exit codes, and the one place where the application's errors become a line and a status."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec, TypeVar

import typer

from forget.errors import USER_ERRORS, InputError, JobLockedError, storage_failure
from ledger.errors import VerificationError
from reports.errors import CertificateFormatError
from sisa.store import CheckpointDigestError

P = ParamSpec("P")
R = TypeVar("R")


class ExitCode(IntEnum):
    OK = 0
    VERIFICATION_FAILED = 1
    BAD_INPUT = 2
    """Bad usage or input: nothing was written."""
    WORKSPACE = 3
    """No workspace, a missing database, untrained shards, unreadable keys or checkpoints."""
    OVERDUE = 4
    """`forget status`: at least one request is past its deadline (a signal for monitoring)."""
    LOCKED = 5
    """`forget run`: another job holds the workspace; nothing was changed."""
    INTERNAL = 70
    """An unexpected exception: a bug (EX_SOFTWARE), never a verdict on data or proofs."""


def exit_code_for(error: BaseException) -> ExitCode:
    if isinstance(error, VerificationError | CheckpointDigestError):  # a checkpoint file that is not its digest
        return ExitCode.VERIFICATION_FAILED
    if isinstance(error, InputError | CertificateFormatError):
        return ExitCode.BAD_INPUT
    if isinstance(error, JobLockedError):
        return ExitCode.LOCKED
    return ExitCode.WORKSPACE


verbose = False


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Show our errors as `error: ...` on stderr with their exit code; `--verbose` adds the traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as error:
            if verbose:
                import traceback

                traceback.print_exc()
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(int(exit_code_for(error))) from None
        except Exception as error:
            problem = storage_failure(error)
            if problem is None:
                raise
            if verbose:
                import traceback

                traceback.print_exc()
            print(f"error: {problem}", file=sys.stderr)
            raise typer.Exit(int(ExitCode.WORKSPACE)) from None

    return wrapper
