from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sisa.placement import Placement
from sisa.schedule import Schedule, slice_passes, total_exposure
from sisa.seeds import derive_seed
from sisa.unlearning import ShardRewind, plan_rewinds


@given(slices=st.integers(1, 30), epochs=st.floats(0.5, 50))
def test_balanced_gives_every_slice_exactly_the_budget(slices: int, epochs: float) -> None:
    assert total_exposure(slices, epochs, Schedule.BALANCED) == pytest.approx([epochs] * slices)


@given(slices=st.integers(1, 30), epochs=st.floats(0.5, 50), schedule=st.sampled_from(list(Schedule)))
def test_both_schedules_spend_the_same_compute_as_monolithic_epochs(
    slices: int, epochs: float, schedule: Schedule
) -> None:
    # Equal-size slices: the total passes weighted by slice count equal E passes over the shard.
    visits = sum(sum(slice_passes(step, slices, epochs, schedule)) for step in range(slices))
    assert visits == pytest.approx(epochs * slices)


def test_uniform_starves_the_newest_slice() -> None:
    exposure = total_exposure(10, 10, Schedule.UNIFORM)
    assert exposure[0] == pytest.approx(200 / 11) and exposure[-1] == pytest.approx(20 / 11)


def test_step_outside_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        slice_passes(3, 3, 1.0, Schedule.UNIFORM)


def test_seeds_are_pinned_and_label_types_differ() -> None:
    assert derive_seed(1, "order", 0, 1) == derive_seed(1, "order", 0, 1)
    assert derive_seed(1, 1) != derive_seed(1, "1")
    assert len({derive_seed(7, "order", s, k) for s in range(20) for k in range(10)}) == 200
    assert derive_seed(0) == 3546566306821564787  # pinned: a change re-randomises every workspace


def test_plan_rewinds_takes_the_earliest_slice_per_shard() -> None:
    placements = [Placement(2, 3), Placement(2, 1), Placement(0, 4), Placement(2, 2)]
    assert plan_rewinds(placements) == [ShardRewind(0, 4), ShardRewind(2, 1)]
    assert ShardRewind(2, 0).restore_slice is None and ShardRewind(2, 1).restore_slice == 0
