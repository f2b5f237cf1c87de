"""The application's errors: one root, a family per boundary, and the one place library errors join them.

`ForgetError` is the root of everything a command shows a person: `diagnostics()` is one line
(plus, where there is one, a hint). Each family says what kind of failure it is by its exit
code, the contract the README's table documents:

    VerificationFailedError  1  a signature, proof, stored entry, checkpoint or replay did not check out
    InputError               2  a file or an argument that cannot be used as given; nothing was written
    WorkspaceError           3  no workspace, a missing database, untrained shards, unreadable keys,
                                a full disk (StorageError), a missing extra (MissingExtraError)
    JobLockedError           5  another job holds the workspace; nothing was changed

The libraries (`sisa`, `ledger`, `reports`) know nothing of this package and raise their own
roots. `translated()` turns their errors, and a full disk or a read-only workspace, into these
families at the application's edge, so the CLI catches `ForgetError` and nothing else; anything
that still escapes is a bug (exit 70).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import ClassVar

from ledger.errors import LedgerError
from ledger.errors import VerificationError as LedgerVerificationError
from reports.errors import CertificateFormatError
from sisa.errors import SisaError
from sisa.store import CheckpointDigestError


class ExitCode(IntEnum):
    """The `forget` command's exit statuses (README.md and docs/operations.md document them)."""

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


class ForgetError(Exception):
    """Root of the application's errors: a message for a person, and the family's exit code.

    Raise a family (or a subclass of one), never the root: the family is what says how the
    command ends.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.WORKSPACE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def diagnostics(self) -> str:
        """What the person sees after `error: `: the message as one line, then `hint: ...` if there is one."""
        text = one_line(str(self)) or type(self).__name__
        return text if self.hint is None else f"{text}\nhint: {one_line(self.hint)}"


class VerificationFailedError(ForgetError):
    """A signature, a proof, a stored entry, a checkpoint or a replay did not check out."""

    exit_code = ExitCode.VERIFICATION_FAILED


class InputError(ForgetError):
    """A data file or an argument that cannot be used as given; nothing was written."""

    exit_code = ExitCode.BAD_INPUT


class WorkspaceError(ForgetError):
    """No workspace, a broken `forget.toml`, or a missing database: the workspace cannot do this."""

    exit_code = ExitCode.WORKSPACE


class NotTrainedError(WorkspaceError):
    """A command needs trained shards that are not there yet."""


class ErasureError(WorkspaceError):
    """An erasure cannot proceed (for example, records the workspace does not hold)."""


class StorageError(WorkspaceError):
    """A full disk, a quota or a read-only workspace: the machine's state, not a bug."""


class MissingExtraError(WorkspaceError):
    """This installation lacks an optional dependency the command needs (`pip install 'forget[...]'`)."""


class JobLockedError(ForgetError):
    """Another `forget run` holds this workspace."""

    exit_code = ExitCode.LOCKED


FAMILIES: tuple[type[ForgetError], ...] = (VerificationFailedError, InputError, WorkspaceError, JobLockedError)
"""Every error the application raises belongs to exactly one of these."""

_LIBRARY_FAMILIES: tuple[tuple[type[Exception], type[ForgetError]], ...] = (
    (CheckpointDigestError, VerificationFailedError),  # a checkpoint file that is not its digest
    (LedgerVerificationError, VerificationFailedError),  # a proof, a signature, a certificate
    (CertificateFormatError, InputError),  # a file that is no certificate, plan or evaluation at all
    (SisaError, WorkspaceError),  # a model that cannot be built, no CUDA device, a diverged slice
    (LedgerError, WorkspaceError),  # an unreadable key, an unreachable witness, a missing head
)
"""The libraries' errors by family, most specific first."""


def as_forget_error(error: BaseException) -> ForgetError | None:
    """`error` in the application's families, or None when it is none of ours (a bug).

    Our own errors come back as they are; a library's error becomes its family with the same
    message; a full disk or a read-only workspace, from a file or a database, is a `StorageError`.
    """
    if isinstance(error, ForgetError):
        return error
    for library, family in _LIBRARY_FAMILIES:
        if isinstance(error, library):
            return family(_message(error))
    problem = storage_failure(error)
    return StorageError(problem) if problem is not None else None


@contextmanager
def translated() -> Iterator[None]:
    """Let only the application's families leave: library errors and storage failures are translated.

    The original stays the translation's `__cause__` (shown with `--verbose`); anything else,
    a bug, passes through untouched.
    """
    try:
        yield
    except ForgetError:
        raise
    except Exception as error:
        translation = as_forget_error(error)
        if translation is None:
            raise
        raise translation from error


def one_line(text: str) -> str:
    """`text` on one line: a message that quotes a multi-line one (a parser's, a worker's) keeps all of it."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _message(error: BaseException) -> str:
    diagnostics = getattr(error, "diagnostics", None)
    text = diagnostics() if callable(diagnostics) else str(error)
    return one_line(str(text)) or type(error).__name__


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
