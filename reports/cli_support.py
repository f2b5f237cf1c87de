"""What `forget certificate verify/render` need, importing no database and no torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger.keys import load_public_key_bytes
from reports.dsse import parse_envelope
from reports.errors import CertificateError, CertificateFormatError
from reports.verify import VerifiedCertificate, verify_certificate


def read_input(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CertificateFormatError(f"cannot read the {what} {path}: {error.strerror}") from error


def verify_files(certificate: bytes, public_key_pem: bytes, later: bytes | None) -> VerifiedCertificate:
    return verify_certificate(certificate, load_public_key_bytes(public_key_pem), later)


def summary_line(result: VerifiedCertificate) -> str:
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


def statement_of(certificate: bytes) -> dict[str, Any]:
    """The statement inside an envelope, for rendering (rendering never stands in for verifying)."""
    import base64

    envelope = parse_envelope(certificate)
    try:
        statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"], validate=True))
    except (ValueError, TypeError) as error:
        raise CertificateError("the certificate's payload is not a readable statement") from error
    return statement
