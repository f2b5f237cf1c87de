"""The job lock: one writer of data and models per workspace, across processes and hosts."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from forget.errors import JobLockedError

if TYPE_CHECKING:
    from forget.workspace.core import Workspace

LOCK_FILE = ".forget.lock"


@contextmanager
def job_lock(workspace: Workspace) -> Iterator[None]:
    """An exclusive lock for commands that change data or models (`run`, `train`, `ingest`).

    A file lock for one host, and on PostgreSQL an advisory lock for hosts sharing the database;
    the OS or the server releases both if the holder dies.

    Raises `JobLockedError` (exit 5) at once, without waiting, when another job holds either lock.
    """
    handle = (workspace.root / LOCK_FILE).open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobLockedError(
                "another `forget run`, `train` or `ingest` is working on this workspace; nothing was changed"
            ) from None
        with workspace.datastore.advisory_lock(f"forget-job:{workspace.config.origin}") as acquired:
            if not acquired:
                raise JobLockedError("another forget job holds this workspace's database; nothing was changed")
            yield
    finally:
        handle.close()
