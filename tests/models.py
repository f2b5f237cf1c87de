"""Models for tests that need training to misbehave on purpose (`--model tests.models:NAME`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class _Exploding(nn.Module):
    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * float("inf")


def exploding(input_shape: Sequence[int], classes: int) -> nn.Module:
    """Logits of +-inf: the loss is NaN at the first step and so are the weights after it."""
    width = 1
    for size in input_shape:
        width *= size
    return _Exploding(width, classes)
