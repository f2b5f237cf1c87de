"""The application's exceptions, and the tuple of every family the CLI shows as one line."""

from __future__ import annotations

import errno

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


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
_DATABASE_STORAGE_MESSAGES = (
    "database or disk is full",
    "attempt to write a readonly database",
    "disk i/o error",
    "no space left on device",
    "could not extend file",
    "unable to open database file",
)


_REMEDY = "free space or fix permissions, then run the command again"


def storage_failure(error: BaseException) -> str | None:
    """One line for a full disk, a quota or a read-only workspace, from a file or a database error.

    Such a failure is the machine's state, not a bug: the command exits 3. Nothing half-written
    survives it (database transactions roll back; files are written to a temp file and renamed).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _STORAGE_ERRNOS:
            where = f" {current.filename}" if current.filename else ""
            return f"cannot write{where}: {current.strerror}; nothing was half-written: {_REMEDY}"
        text = str(getattr(current, "orig", None) or current).lower()
        if type(current).__name__ in ("OperationalError", "DiskFull") and any(
            m in text for m in _DATABASE_STORAGE_MESSAGES
        ):
            first = str(getattr(current, "orig", current)).strip().splitlines()[0]
            return f"the database cannot be written ({first}); the transaction was rolled back: {_REMEDY}"
        current = current.__cause__ or current.__context__
    return None
