"""The ledger's exceptions: one family, rooted at `LedgerError`.

The ledger knows nothing of the application: `forget.errors.translated()` maps a
`VerificationError` to its verification family (exit 1) and any other `LedgerError` to its
workspace family (exit 3); `forget-verify` catches `LedgerError` itself.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises; `str(error)` is a one-line message for a person."""

    def diagnostics(self) -> str:
        """The message for a person, on one line (the application shows it after `error: `)."""
        return " ".join(line.strip() for line in str(self).splitlines() if line.strip()) or type(self).__name__


class VerificationError(LedgerError):
    """A proof, a signature or a stored entry did not check out."""


class KeyFileError(LedgerError):
    """A key file is missing, unreadable, of the wrong kind, or its passphrase is wrong."""
