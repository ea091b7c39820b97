"""Clip samplers: which frames of a video make a clip. One interface, two strategies.

A sampler has `num_views` (temporal views per video: 1 for training, several for multi-view
testing), `motion_stride(n)` (frames over which each sample's motion is accumulated) and
`__call__(num_video_frames, view, rng) -> int64 [T]` display indices, non-decreasing. Indices never
exceed the last frame: a video too short for the clip repeats its last frame (padding).

- DenseSampler: T frames at a fixed stride (VideoMAE pre-training: 16 x 4 on K400, 16 x 2 on SSv2);
  random start when training, centred otherwise; for `views > 1` the starts are spread evenly over
  the video (K400 testing: 5 views).
- SegmentSampler: the video cut into T equal segments, one frame from each (TSN; VideoMAE's SSv2
  fine-tuning): random within the segment when training; at fractions (v + 0.5) / views of each
  segment for view v otherwise (SSv2 testing: 2 views).
"""

from __future__ import annotations

import numpy as np


class DenseSampler:
    def __init__(self, num_frames: int, stride: int, random: bool = False, views: int = 1):
        if num_frames < 1 or stride < 1 or views < 1:
            raise ValueError(f"num_frames, stride, views must be >= 1, got {num_frames}, {stride}, {views}")
        self.num_frames, self.stride, self.random, self.num_views = num_frames, stride, random, views

    def __call__(self, n: int, view: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
        """n: frames in the video -> int64 [num_frames] indices `start + stride * i`, clamped to n - 1."""
        span = (self.num_frames - 1) * self.stride + 1  # frames covered from first to last sample
        room = max(n - span, 0)
        if self.random:
            start = int(rng.integers(0, room + 1))
        elif self.num_views == 1:
            start = room // 2
        else:
            start = view * room // (self.num_views - 1)
        idx = start + self.stride * np.arange(self.num_frames, dtype=np.int64)
        return np.minimum(idx, max(n - 1, 0))

    def motion_stride(self, n: int) -> int:
        """Frames over which each sample's motion is accumulated: the stride."""
        return self.stride

    def __repr__(self):
        return f"DenseSampler(num_frames={self.num_frames}, stride={self.stride}, random={self.random}, views={self.num_views})"


class SegmentSampler:
    def __init__(self, num_frames: int, random: bool = False, views: int = 1):
        if num_frames < 1 or views < 1:
            raise ValueError(f"num_frames, views must be >= 1, got {num_frames}, {views}")
        self.num_frames, self.random, self.num_views = num_frames, random, views

    def motion_stride(self, n: int) -> int:
        """Frames over which each sample's motion is accumulated: the segment length."""
        return max(n // self.num_frames, 1)

    def __call__(self, n: int, view: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
        """n: frames in the video -> int64 [num_frames], one index inside each of the equal segments."""
        t = self.num_frames
        lo = np.floor(np.arange(t) * n / t).astype(np.int64)
        hi = np.maximum(np.floor(np.arange(1, t + 1) * n / t).astype(np.int64), lo + 1)
        if self.random:
            idx = rng.integers(lo, hi)
        else:
            idx = lo + np.floor((hi - lo) * (view + 0.5) / self.num_views).astype(np.int64)
        return np.minimum(idx, max(n - 1, 0))

    def __repr__(self):
        return f"SegmentSampler(num_frames={self.num_frames}, random={self.random}, views={self.num_views})"


def build_sampler(kind: str, num_frames: int, stride: int = 4, mode: str = "train", views: int = 1):
    """`dense` or `segment`; random in 'pretrain' / 'train' mode, deterministic in 'val' / 'test'.

    views > 1 only in 'test' mode (multi-view testing).
    """
    random = mode in ("pretrain", "train")
    views = views if mode == "test" else 1
    if kind == "dense":
        return DenseSampler(num_frames, stride, random=random, views=views)
    if kind == "segment":
        return SegmentSampler(num_frames, random=random, views=views)
    raise ValueError(f"unknown sampler {kind!r} (dense or segment)")
