"""The checkpoint format: torch's zip archive of plain containers and tensors, never pickled code."""

from __future__ import annotations

import io
from typing import Any

import torch

from sisa.errors import CheckpointError

CHECKPOINT_FORMAT = "forget-checkpoint/1"


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    """torch's zip format holds no timestamps, so equal states give equal bytes (and digests)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def decode_checkpoint(data: bytes) -> dict[str, Any]:
    """Tensors and plain containers only: `weights_only=True` refuses pickled code."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a damaged archive
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint cannot be read: {first_line}") from error
    if not isinstance(state, dict) or state.get("meta", {}).get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"not a {CHECKPOINT_FORMAT} checkpoint")
    return state
