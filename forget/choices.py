"""The choices commands offer, as enumerations: the CLI shows them and refuses any other value.

They import no torch: `sisa.aggregation.Aggregation` and `sisa.trainer.OptimizerKind` do, so the
aggregation and optimizer choices repeat their values here (a test keeps them in step), and
`as_aggregation()` converts when a command is about to load the models anyway.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from forget.subjects.identity import CaseRule, EmailRule
from forget.workspace.config import ExecutorKind
from sisa.placement import PlacementMode
from sisa.schedule import Schedule

if TYPE_CHECKING:
    from sisa.aggregation import Aggregation

__all__ = [
    "AggregationChoice",
    "CaseRule",
    "DeviceChoice",
    "EmailRule",
    "ExecutorKind",
    "OptimizerChoice",
    "PlacementMode",
    "Schedule",
    "as_aggregation",
]


class DeviceChoice(StrEnum):
    """Where models train and predict; `auto` is CUDA when the machine has it, else the CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class OptimizerChoice(StrEnum):
    """`sisa.trainer.OptimizerKind`'s values."""

    ADAM = "adam"
    SGD = "sgd"


class AggregationChoice(StrEnum):
    """`sisa.aggregation.Aggregation`'s values: how `predict` and `evaluate` combine the shards."""

    VOTE = "vote"
    MEAN = "mean"
    GEOMEAN = "geomean"


def as_aggregation(choice: AggregationChoice | str) -> Aggregation:
    """The engine's aggregation for a choice (imports torch)."""
    from sisa.aggregation import Aggregation

    return Aggregation(str(choice))
