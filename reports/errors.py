"""Certificate errors: every failure names what did not check out."""

from __future__ import annotations

from ledger.errors import LedgerError, VerificationError


class CertificateError(VerificationError):
    """A certificate, its signature, a proof in it, or a checkpoint given with it is not valid."""


class CertificateFormatError(LedgerError):
    """A file that is not a certificate (or not a checkpoint bundle) at all."""
