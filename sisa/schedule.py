"""How a shard's epoch budget is spread over its slices.

SISA trains slice by slice on cumulative data: step k (0-based) sees slices 0..k. With a
budget of E epochs per shard and R slices, both schedules spend the same compute as E epochs
over the whole shard, so an erasure's cost is the same under either:

* `uniform` (the paper's): every step runs c = 2E/(R+1) passes over its cumulative data. A record
  of slice j is then seen c(R-j) times: the first slice about 2E times, the newest only 2E/(R+1)
  times (with R=10 and E=10, under two passes). The newest data is starved.
* `balanced` (ours, the default): step k runs c/2 passes over the older slices and c(k+2)/2 over
  the new one. Water-filling gives every slice the same exposure after every step, c(k+2)/2 passes,
  so at the end every record has been seen exactly E times, as in monolithic training.

Passes may be fractional; the fraction is a seeded random subset of the slice.
"""

from __future__ import annotations

from enum import StrEnum


class Schedule(StrEnum):
    """How a shard's epoch budget is spread over its slices (see the module's docstring for the numbers).

    Part of `TrainingConfig`, so of every checkpoint's config digest: a shard is never resumed
    under another schedule than the one that trained its earlier slices.
    """

    UNIFORM = "uniform"
    BALANCED = "balanced"


def slice_passes(step: int, slices: int, epochs: float, schedule: Schedule) -> list[float]:
    """Passes over each of slices 0..step during training step `step`."""
    if not 0 <= step < slices:
        raise ValueError(f"step {step} is outside 0..{slices - 1}")
    c = 2.0 * epochs / (slices + 1)
    if schedule is Schedule.UNIFORM:
        return [c] * (step + 1)
    return [c / 2.0] * step + [c * (step + 2) / 2.0]


def total_exposure(slices: int, epochs: float, schedule: Schedule) -> list[float]:
    """Passes each slice receives over the whole schedule (for docs and tests)."""
    exposure = [0.0] * slices
    for step in range(slices):
        for j, passes in enumerate(slice_passes(step, slices, epochs, schedule)):
            exposure[j] += passes
    return exposure
