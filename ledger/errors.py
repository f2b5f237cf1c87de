"""The ledger's exceptions: one family, rooted at `LedgerError`."""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises; `str(error)` is a one-line message for a person."""


class VerificationError(LedgerError):
    """A proof, a signature or a stored entry did not check out."""


class KeyFileError(LedgerError):
    """A key file is missing, unreadable, of the wrong kind, or its passphrase is wrong."""
