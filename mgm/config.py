"""Clip geometry shared by sampling, masking and the model: the one place tubelet and patch live;
and the constants every layer shares."""

from __future__ import annotations

from dataclasses import dataclass

# ImageNet statistics in [0, 1] pixel units: VideoMAE normalises every clip with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The macroblock size H.264 / MPEG-4 motion vectors are gridded on: the default block of every motion grid.
CODEC_BLOCK = 16


@dataclass(frozen=True)
class Geometry:
    """Shape of one clip and of its token grid.

    A clip is `num_frames` frames of `size`x`size` pixels; the model cuts it into tubelets of
    `tubelet` frames x `patch` x `patch` pixels, so the token grid is `grid = (T', H', W')` =
    (num_frames / tubelet, size / patch, size / patch) and a mask has that shape.
    """

    num_frames: int = 16
    size: int = 224
    tubelet: int = 2
    patch: int = 16

    def __post_init__(self):
        for name in ("num_frames", "size", "tubelet", "patch"):
            if getattr(self, name) < 1:  # a zero would divide by zero, a negative patch pass the checks below
                raise ValueError(f"{name}={getattr(self, name)} is not a positive number")
        if self.num_frames % self.tubelet:
            raise ValueError(f"num_frames={self.num_frames} is not a multiple of tubelet={self.tubelet}")
        if self.size % self.patch:
            raise ValueError(f"size={self.size} is not a multiple of patch={self.patch}")

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.num_frames // self.tubelet, self.size // self.patch, self.size // self.patch)

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def tokens_per_slot(self) -> int:
        _, h, w = self.grid
        return h * w
