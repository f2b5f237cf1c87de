"""Planning an exact erasure: which shards rewind, and to which slice."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sisa.placement import Placement


@dataclass(frozen=True)
class ShardRewind:
    """Retrain `shard` from `from_slice`; the checkpoint of slice `from_slice - 1` is the last clean one."""

    shard: int
    from_slice: int

    @property
    def restore_slice(self) -> int | None:
        """The slice whose checkpoint retraining starts from; None when the shard retrains from scratch.

        That checkpoint predates every erased record, which is why restoring it is exact.
        """
        return self.from_slice - 1 if self.from_slice > 0 else None


def plan_rewinds(placements: Iterable[Placement]) -> list[ShardRewind]:
    """One rewind per affected shard, to the earliest slice any erased record sits in."""
    earliest: dict[int, int] = {}
    for place in placements:
        earliest[place.shard] = min(earliest.get(place.shard, place.slice), place.slice)
    return [ShardRewind(shard, first) for shard, first in sorted(earliest.items())]
