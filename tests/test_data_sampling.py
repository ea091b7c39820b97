"""Clip samplers against hand-computed indices."""

import numpy as np
import pytest

from mgm.data.sampling import DenseSampler, SegmentSampler, build_sampler


def test_dense_centred_views_and_padding():
    s = DenseSampler(4, 3)  # covers (4 - 1) * 3 + 1 = 10 frames
    assert s(20).tolist() == [5, 8, 11, 14]  # room 10 -> start 5
    assert s(10).tolist() == [0, 3, 6, 9]
    assert s(7).tolist() == [0, 3, 6, 6]  # too short: last frame repeated
    assert s(1).tolist() == [0, 0, 0, 0]
    views = DenseSampler(4, 3, views=5)
    assert [views(22, v)[0] for v in range(5)] == [0, 3, 6, 9, 12]  # room 12 spread evenly
    assert views(22, 4).tolist() == [12, 15, 18, 21]
    assert s.motion_stride(100) == 3


def test_dense_random_start_covers_exactly_the_room():
    s = DenseSampler(4, 2, random=True)  # covers 7 frames
    rng = np.random.default_rng(0)
    starts = {int(s(10, 0, rng)[0]) for _ in range(300)}
    assert starts == {0, 1, 2, 3}
    idx = s(10, 0, rng)
    assert np.diff(idx).tolist() == [2, 2, 2]


def test_segment_middle_views_and_short():
    s = SegmentSampler(4)
    # n=10: segments [0,2) [2,5) [5,7) [7,10)
    assert s(10).tolist() == [1, 3, 6, 8]
    v = SegmentSampler(4, views=2)
    assert v(10, 0).tolist() == [0, 2, 5, 7]
    assert v(10, 1).tolist() == [1, 4, 6, 9]
    assert s(3).tolist() == [0, 0, 1, 2]  # fewer frames than segments: repeats, in order
    assert s.motion_stride(10) == 2 and s.motion_stride(3) == 1


def test_segment_random_stays_in_segments():
    s = SegmentSampler(4, random=True)
    rng = np.random.default_rng(1)
    draws = np.stack([s(10, 0, rng) for _ in range(400)])
    for col, (lo, hi) in enumerate([(0, 2), (2, 5), (5, 7), (7, 10)]):
        assert set(draws[:, col].tolist()) == set(range(lo, hi))


def test_build_sampler_modes():
    assert build_sampler("dense", 16, 4, "pretrain").random
    test = build_sampler("dense", 16, 4, "test", views=5)
    assert not test.random and test.num_views == 5
    assert build_sampler("segment", 16, mode="val", views=2).num_views == 1
    with pytest.raises(ValueError):
        build_sampler("uniform", 16)
