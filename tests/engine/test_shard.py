from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robustlab.engine import shard_indices


@given(n=st.integers(0, 5000), world=st.integers(1, 64))
def test_shards_tile_range_without_padding(n: int, world: int) -> None:
    shards = [shard_indices(n, r, world) for r in range(world)]
    assert all(isinstance(s, range) and s.step == 1 for s in shards)
    # in rank order the shards are contiguous and their union is exactly 0..n-1, each index once
    assert [i for s in shards for i in s] == list(range(n))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the extra items go to the first ranks


def test_hand_computed_examples() -> None:
    assert [shard_indices(101, r, 2) for r in range(2)] == [range(0, 51), range(51, 101)]
    assert [shard_indices(2, r, 4) for r in range(4)] == [range(0, 1), range(1, 2), range(2, 2), range(2, 2)]
    assert shard_indices(0, 0, 1) == range(0)


@pytest.mark.parametrize(("n", "rank", "world", "match"), [
    (-1, 0, 1, "n must be"), (5, 0, 0, "world_size"), (5, 2, 2, "rank"), (5, -1, 2, "rank"),
])  # fmt: skip
def test_bad_arguments(n: int, rank: int, world: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        shard_indices(n, rank, world)
