"""Model families: an MLP for tabular rows, a small CNN for image arrays, or a user's factory."""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence

import torch
from torch import nn

from sisa.errors import ModelSpecError


class MLP(nn.Module):
    """Two hidden layers; enough for tabular data without memorising it in one epoch."""

    def __init__(self, input_shape: Sequence[int], classes: int, hidden: int = 64) -> None:
        super().__init__()
        features = math.prod(input_shape)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class SmallCNN(nn.Module):
    """Two convolutions and a linear head, for (channels, height, width) inputs as small as 8x8."""

    def __init__(self, input_shape: Sequence[int], classes: int, width: int = 16) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ModelSpecError(
                f"the cnn model needs an image shape (channels, height, width), got {tuple(input_shape)}"
            )
        channels, height, width_px = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d((max(1, height // 2), max(1, width_px // 2))),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * max(1, height // 2) * max(1, width_px // 2), classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def build_model(spec: str, input_shape: Sequence[int], classes: int) -> nn.Module:
    """`mlp`, `cnn`, or `package.module:callable` called as `callable(input_shape=..., classes=...)`."""
    shape = tuple(int(d) for d in input_shape)
    if spec == "mlp":
        return MLP(shape, classes)
    if spec == "cnn":
        return SmallCNN(shape, classes)
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ModelSpecError(f"unknown model {spec!r}: use mlp, cnn or module:callable")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ModelSpecError(f"cannot load model factory {spec!r}: {error}") from error
    model = factory(input_shape=shape, classes=classes)
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"model factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model
