"""The SISA engine's exceptions: one family, rooted at `SisaError`.

The engine knows nothing of the application: `forget.errors.translated()` maps these into its
families (a checkpoint that is not its digest fails verification; the rest are the workspace's or
the machine's state).
"""

from __future__ import annotations


class SisaError(Exception):
    """Root of every error the SISA engine raises; `str(error)` is one line for a person."""

    def diagnostics(self) -> str:
        """The message for a person, on one line (the application shows it after `error: `)."""
        return " ".join(line.strip() for line in str(self).splitlines() if line.strip()) or type(self).__name__


class CheckpointError(SisaError):
    """A checkpoint is missing, or its bytes do not match their sha256."""


class ModelSpecError(SisaError):
    """A model specification (`mlp`, `cnn` or `module:callable`) cannot be built."""


class DeviceError(SisaError):
    """The requested device is not available on this machine."""


class DivergedError(SisaError):
    """Training produced non-finite weights; the slice's checkpoint was not stored."""
