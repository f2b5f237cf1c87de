"""The application's exceptions, and the tuple of every family the CLI shows as one line."""

from __future__ import annotations

from ledger.errors import LedgerError
from sisa.errors import SisaError


class ForgetError(Exception):
    """Root of the application's errors; `str(error)` is one line for a person."""


class WorkspaceError(ForgetError):
    """No workspace, a broken `forget.toml`, or a missing database."""


class InputError(ForgetError):
    """A data file or an argument that cannot be used as given; nothing was written."""


class NotTrainedError(ForgetError):
    """A command needs trained shards that are not there yet."""


class ErasureError(ForgetError):
    """An erasure cannot proceed (for example, records the workspace does not hold)."""


class JobLockedError(ForgetError):
    """Another `forget run` holds this workspace."""


USER_ERRORS: tuple[type[Exception], ...] = (ForgetError, SisaError, LedgerError)
"""Every error whose message is meant for a person; anything else is a bug and shows a traceback."""
