"""The SISA engine's exceptions: one family, rooted at `SisaError`."""

from __future__ import annotations


class SisaError(Exception):
    """Root of every error the SISA engine raises; `str(error)` is one line for a person."""


class CheckpointError(SisaError):
    """A checkpoint is missing, or its bytes do not match their sha256."""


class ModelSpecError(SisaError):
    """A model specification (`mlp`, `cnn` or `module:callable`) cannot be built."""


class DeviceError(SisaError):
    """The requested device is not available on this machine."""


class DivergedError(SisaError):
    """Training produced non-finite weights; the slice's checkpoint was not stored."""
