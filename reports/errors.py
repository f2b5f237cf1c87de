"""Certificate errors: every failure names what did not check out.

Both are `LedgerError`s, the root `forget-verify` catches: a `CertificateError` is a failed
verification (exit 1), a `CertificateFormatError` a file that is not what it should be (exit 2).
The `forget` command gets them translated into its own families by `forget.errors.translated()`.
"""

from __future__ import annotations

from ledger.errors import LedgerError, VerificationError


class CertificateError(VerificationError):
    """A certificate, its signature, a proof in it, or a checkpoint given with it is not valid."""


class CertificateFormatError(LedgerError):
    """A file that is not a certificate (or not a checkpoint bundle) at all."""
