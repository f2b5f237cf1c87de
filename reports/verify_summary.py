"""What the verifying commands share (`forget certificate verify`, `forget-verify`): no database, no torch."""

from __future__ import annotations

from pathlib import Path

from reports.errors import CertificateFormatError
from reports.verify import VerifiedCertificate


def read_input(path: Path, what: str) -> bytes:
    """The bytes of a file a verifying command was given (a key, a head); `what` names it in the message.

    One reader so that every unreadable input gives the same one-line error. Read whole, without a
    size cap: certificates go through `reports.verify.read_certificate`, which has one. Raises
    `CertificateFormatError` (exit 2) when the file cannot be read.
    """
    try:
        return path.read_bytes()
    except OSError as error:
        raise CertificateFormatError(f"cannot read the {what} {path}: {error.strerror}") from error


def summary_line(result: VerifiedCertificate) -> str:
    """The one line a verifying command prints on success: what the certificate proves, for a person.

    Takes a `VerifiedCertificate`, so it is only ever said of a certificate that checked out; the
    predicate's fields were checked by the verifier, so it raises nothing.
    """
    predicate = result.predicate
    request = predicate["request"]
    text = (
        f"valid: request {request['request_id']} ({request['outcome']}, {request['records_erased']} records),"
        f" completed {request['completed_at']}, deadline {'met' if request['deadline_met'] else 'MISSED'};"
        f" {result.entries} ledger entries proven in {predicate['log']['origin']} at size {result.checkpoint.size}"
    )
    if result.later_size is not None:
        text += f"; the log only grew to size {result.later_size}"
    return text
