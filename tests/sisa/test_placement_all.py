"""`place_all` is `place` for many records at once: the same shard and slice for every record."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sisa.placement import PlacementMode, place, place_all

keys = st.text(min_size=1, max_size=70)  # any text: the hashes see the key's UTF-8 bytes


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(keys, keys), max_size=30),
    repeat=st.lists(st.integers(min_value=0, max_value=29), max_size=10),
    seed=st.integers(min_value=-(2**63), max_value=2**64),
    shards=st.integers(min_value=1, max_value=500),
    slices=st.integers(min_value=1, max_value=50),
    mode=st.sampled_from(list(PlacementMode)),
)
def test_place_all_equals_place_record_by_record(
    pairs: list[tuple[str, str]], repeat: list[int], seed: int, shards: int, slices: int, mode: PlacementMode
) -> None:
    # Subjects repeat (several records each), which place_all hashes once.
    pairs = pairs + [(f"r{i}", pairs[i][1]) for i in repeat if i < len(pairs)]
    records, subjects = [r for r, _ in pairs], [s for _, s in pairs]
    expected = [place(r, s, seed=seed, shards=shards, slices=slices, mode=mode) for r, s in pairs]
    shard_of, slice_of = place_all(records, subjects, seed=seed, shards=shards, slices=slices, mode=mode)
    assert [(p.shard, p.slice) for p in expected] == list(zip(shard_of, slice_of, strict=True))


def test_place_all_refuses_what_place_refuses() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        place_all(["a"], ["b"], seed=1, shards=0, slices=3, mode=PlacementMode.SUBJECT)
    with pytest.raises(ValueError, match="1 record keys for 2 subject keys"):
        place_all(["a"], ["b", "c"], seed=1, shards=2, slices=3, mode=PlacementMode.SUBJECT)
