"""Model families, by name: `MODELS` maps a family's name to the builder of its architectures.

A spec is `name` or `name-ARGUMENT`, or `package.module:callable` for a user's factory:

- `tanh-W`, `relu-W`, `tanh-WxD`: D hidden layers (default 1) of W units with that activation.
  `tanh-128` on 600 inputs is the SISA reference's Purchase network (Bourtoule et al.); `tanh-256`
  is the default.
- `linear`: softmax regression, no hidden layer.
- `mlp`: the first default, two hidden layers of 64 ReLU units; kept unchanged so that workspaces
  trained with it rebuild the same architecture.
- `cnn`: two convolutions and a linear head, for (channels, height, width) inputs.
- `package.module:callable`: `callable(input_shape=..., classes=...)` must return an `nn.Module`.

A new family is one `register_model(name, ModelFamily(build, usage, argument))` (or an entry
point in the group `sisa.models` naming a `ModelFamily`): `build(argument, input_shape, classes)`
receives what follows `name-` ("" for the bare name), which `argument`, a regular expression,
has matched in full.

A spec names an architecture forever: a checkpoint stores weights, not code, so a rewind rebuilds
the model from its spec. Changing what a name builds would change the models of every workspace
that uses it, so a name cannot be registered twice; a new architecture gets a new name. The
measurements behind the default are in docs/benchmarks.md ("Defaults by measurement").
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sisa.errors import ModelSpecError
from sisa.registry import Registry

DEFAULT_MODEL = "tanh-256"
"""One hidden layer of 256 tanh units: the measured winner (docs/benchmarks.md)."""

MAX_WIDTH = 65_536
MAX_DEPTH = 16

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


class MLP(nn.Module):
    """Two hidden layers of 64 ReLU units: the first default, kept as `mlp` for existing workspaces.

    Measured against the others it is the weakest family where shards are small or classes many
    (a 64-unit bottleneck before 100 classes): 34% against 80% for `tanh-256` on the Purchase-like
    data at 20 shards x 10 slices.
    """

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
        """Logits for a batch (no softmax: the trainer's loss and `predict_proba` apply their own)."""
        out: torch.Tensor = self.net(x)
        return out


class DenseNet(nn.Module):
    """`depth` hidden layers of `width` units with one activation; depth 0 is softmax regression.

    A single wide tanh layer is the SISA reference's Purchase network generalised to any width.
    With few records per shard it trains in few steps and saturates rather than overfitting.
    """

    def __init__(self, input_shape: Sequence[int], classes: int, width: int, depth: int, activation: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        previous = math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(previous, width), _ACTIVATIONS[activation]()]
            previous = width
        layers.append(nn.Linear(previous, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch (no softmax: the trainer's loss and `predict_proba` apply their own)."""
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
        """Logits for a batch of images (no softmax: the trainer's loss and `predict_proba` apply it)."""
        out: torch.Tensor = self.head(self.features(x))
        return out


ModelBuilder = Callable[[str, tuple[int, ...], int], nn.Module]
"""(argument, input_shape, classes) -> the model; the argument is what follows `name-` in the spec."""


@dataclass(frozen=True)
class ModelFamily:
    """What `register_model` takes: how to build a family's models, and how messages name its specs.

    A spec `name-ARGUMENT` reaches `build` only once ARGUMENT matches `argument` in full, so a
    builder needs no parsing of its own beyond converting the argument; it may raise
    `ModelSpecError` for values the pattern lets through (a width over the limit).
    """

    build: ModelBuilder
    usage: str
    """How a spec names the family, for messages: `tanh-WIDTH[xDEPTH]`."""
    argument: str = ""
    """A regular expression the argument must match in full; the default admits the bare name only."""


MODELS: Registry[ModelFamily] = Registry(
    "model family", "sisa.models", r"[a-z][a-z0-9_]*", "must be lower-case letters, digits or _"
)


def register_model(name: str, family: ModelFamily) -> None:
    """Make the specs `name` (and `name-ARGUMENT`, if the family takes one) build with `family`."""
    MODELS.register(name, family)


def spec_help() -> str:
    """The spec forms, for messages: `mlp, cnn, ..., relu-WIDTH[xDEPTH] or module:callable`."""
    return ", ".join(family.usage for _, family in MODELS.items()) + " or module:callable"


def _dense(activation: str) -> ModelBuilder:
    def build(argument: str, shape: tuple[int, ...], classes: int) -> nn.Module:
        width, _, depth = argument.partition("x")
        if int(width) > MAX_WIDTH or int(depth or 1) > MAX_DEPTH:
            raise ModelSpecError(
                f"model '{activation}-{argument}': width is at most {MAX_WIDTH} and depth at most {MAX_DEPTH}"
            )
        return DenseNet(shape, classes, width=int(width), depth=int(depth or 1), activation=activation)

    return build


register_model("mlp", ModelFamily(lambda _, shape, classes: MLP(shape, classes), "mlp"))
register_model("cnn", ModelFamily(lambda _, shape, classes: SmallCNN(shape, classes), "cnn"))
register_model(
    "linear",
    ModelFamily(lambda _, shape, classes: DenseNet(shape, classes, width=0, depth=0, activation="relu"), "linear"),
)
_WIDTH_X_DEPTH = r"[1-9][0-9]*(?:x[1-9][0-9]*)?"
register_model("tanh", ModelFamily(_dense("tanh"), "tanh-WIDTH[xDEPTH]", _WIDTH_X_DEPTH))
register_model("relu", ModelFamily(_dense("relu"), "relu-WIDTH[xDEPTH]", _WIDTH_X_DEPTH))


def parameter_count(spec: str, input_shape: Sequence[int], classes: int) -> int:
    """Trainable parameters of the model a spec builds (the model is built once, on the CPU)."""
    return sum(p.numel() for p in build_model(spec, input_shape, classes).parameters() if p.requires_grad)


def build_model(spec: str, input_shape: Sequence[int], classes: int) -> nn.Module:
    """The model a spec names (see the module's docstring); the caller seeds torch beforehand."""
    shape = tuple(int(d) for d in input_shape)
    if ":" in spec:
        return _from_factory(spec, shape, classes)
    name, separator, argument = spec.partition("-")
    family = MODELS.lookup(name)
    if family is None or (separator and not argument) or not re.fullmatch(family.argument, argument):
        raise ModelSpecError(f"unknown model {spec!r}: use {spec_help()}")
    return family.build(argument, shape, classes)


def _from_factory(spec: str, shape: tuple[int, ...], classes: int) -> nn.Module:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ModelSpecError(f"unknown model {spec!r}: use {spec_help()}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ModelSpecError(f"cannot load model factory {spec!r}: {error}") from error
    model = factory(input_shape=shape, classes=classes)
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"model factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model
