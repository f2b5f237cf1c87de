"""How a failure becomes an HTTP answer in `forget serve`: one table from error family to status.

Every handler runs inside `forget.errors.translated()`, so a library's error (`sisa`, `ledger`,
`reports`) or a full disk arrives here as one of the application's families, the same ones that
give the CLI its exit codes (forget/errors.py). The status is the family's, looked up along the
error's class hierarchy in `STATUS_BY_FAMILY` (most specific class first):

    UnknownRequestError       404  no such request (an `InputError` that names a missing thing)
    InputError                422  the request parsed but a value in it is refused; nothing was written
    JobLockedError            409  another job holds the workspace: try again later
    OpenRequestExistsError    409  the subject already has an open request (a race the intake resolves)
    WorkspaceError            503  not ready: no trained shards, every shard quarantined, no signed head,
                                   an unreadable key, a full disk or a read-only database, a missing extra
    VerificationFailedError   500  the server's own evidence (a stored entry, a checkpoint, a
                                   certificate, a request row) does not check out

Why 422 and not 400 for bad input: 400 stays what it already means on these routes, a body that is
not a JSON object at all (`HTTPProblem`); 422 is a well-formed call whose values the application
refuses (a malformed subject id, a receipt time in the future, an unknown `state`), exactly what
`forget request` refuses with exit 2.

Why 500 and not 409 for a failed verification: a 409 says the caller's request conflicts with
the resource's state and that the caller can resolve it. A failed verification is the opposite:
the server's stored evidence is wrong (tampering, a corrupted file, a bug), nothing the caller
sends can fix it, and an operator must look now. 500 puts it where monitoring alerts on server
errors; its body, "verification failed: ...", tells it apart from a bug's generic one.

Every error body is `{"error": "<one line>"}` (plus `"hint"` when the error has one). No body
holds a raw subject id: `redacted` removes the one the call carried from any message, since the
libraries' messages are written for an operator. Anything that is none of our errors is a bug:
500 with a generic body, and the traceback (subject id redacted) goes to the `forget.service` log.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Mapping

from forget.erasure.requests import UnknownRequestError
from forget.errors import (
    ForgetError,
    InputError,
    JobLockedError,
    VerificationFailedError,
    WorkspaceError,
    one_line,
)
from forget.store.interface import OpenRequestExistsError

log = logging.getLogger("forget.service")

STATUS_BY_FAMILY: Mapping[type[ForgetError], int] = {
    UnknownRequestError: 404,
    InputError: 422,
    JobLockedError: 409,
    OpenRequestExistsError: 409,
    WorkspaceError: 503,
    VerificationFailedError: 500,
}
"""The HTTP status of each error family (see the module's docstring for why)."""

INTERNAL_STATUS = 500
INTERNAL_MESSAGE = "internal error: the server's log has the details"
"""The body of a bug: nothing of the exception reaches the caller."""


class HTTPProblem(Exception):
    """An answer other than 2xx that is not one of our errors (bad JSON, a missing token, a limit)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """An HTTP status, a one-line message (never a subject id), and extra headers; raises nothing."""
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def http_status(error: ForgetError) -> int:
    """The status for `error`: its most specific class in `STATUS_BY_FAMILY`; raises nothing.

    A `ForgetError` outside every family (the root raised directly, which forget/errors.py forbids)
    is 500, like a bug.
    """
    for kind in type(error).__mro__:
        status = STATUS_BY_FAMILY.get(kind)
        if status is not None:
            return status
    return INTERNAL_STATUS


def redacted(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` (a subject id the call carried), in any case, replaced.

    The identity form may have changed the id's case or surrounding spaces before a message quoted
    it, so the match ignores case and is made on the stripped id. Raises nothing.
    """
    if secret is None or not secret.strip():
        return text
    return re.sub(re.escape(secret.strip()), "<subject id>", text, flags=re.IGNORECASE)


def error_body(error: ForgetError, secret: str | None = None) -> dict[str, str]:
    """The JSON body for `error`: one line (`hint` apart), never the call's subject id; raises nothing."""
    message = one_line(str(error)) or type(error).__name__
    if isinstance(error, VerificationFailedError):
        message = f"verification failed: {message}"
    body = {"error": redacted(message, secret)}
    if error.hint is not None:
        body["hint"] = redacted(one_line(error.hint), secret)
    return body


def log_bug(error: BaseException, method: str, path: str, secret: str | None = None) -> None:
    """Log an unexpected exception with its traceback (the call's subject id redacted); raises nothing."""
    text = "".join(traceback.format_exception(error)).rstrip()
    log.error("%s %s: unexpected error (a bug, answered 500)\n%s", method, path, redacted(text, secret))
