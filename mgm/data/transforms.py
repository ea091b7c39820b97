"""Spatial transforms applied with the same geometry to a clip's frames and to its motion grid.

A transform first *plans* the geometry of one clip, a crop box (y0, x0, y1, x1) in source pixels
and a horizontal flip flag, then applies that plan to the frames (crop, resize to size x size,
flip, normalise) and to the block motion (motion.resample_to_grid: average onto the patch grid,
scale vectors to output pixels, mirror the grid and negate dx on a flip). Planning separately is
what keeps the two aligned.

Crops (VideoMAE / TSN conventions):
- multiscale: GroupMultiScaleCrop, VideoMAE pre-training: side lengths min(H, W) x scale for
  scales (1, .875, .75, .66), width and height scales at most `max_distort` steps apart, at one of
  13 fixed positions (corners, centre, edge middles, quarter points); then resized.
- center: the centred square of side min(H, W) * crop_fraction (resize short side, centre crop).
- three: multi-view testing: three squares of side min(H, W) at the start, middle and end of
  the long side (VideoMAE's test crops).
- resize: the whole frame resized without cropping (what `mgm mask` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mgm.config import CODEC_BLOCK, IMAGENET_MEAN, IMAGENET_STD, Geometry
SCALES = (1.0, 0.875, 0.75, 0.66)
CROPS = ("multiscale", "center", "three", "resize")


def multiscale_box(src_hw, size: int, rng: np.random.Generator, scales=SCALES, max_distort: int = 1):
    """VideoMAE's multi-scale crop box (y0, x0, y1, x1) in a frame of src_hw = (H, W)."""
    h, w = src_hw
    base = min(h, w)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(s - size) < 3 else s for s in sides]  # snap near-size crops (as TSN does)
    pairs = [(sides[i], sides[j]) for i in range(len(sides)) for j in range(len(sides))
             if abs(i - j) <= max_distort]  # (crop_h, crop_w)
    ch, cw = pairs[int(rng.integers(len(pairs)))]
    ch, cw = min(ch, h), min(cw, w)
    sy, sx = (h - ch) // 4, (w - cw) // 4
    # (y, x) in quarter steps: 4 corners, centre, 4 edge middles, 4 quarter points
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (4, 2), (0, 2),
            (1, 1), (1, 3), (3, 1), (3, 3)]
    qy, qx = grid[int(rng.integers(len(grid)))]
    y0, x0 = qy * sy, qx * sx
    return (y0, x0, y0 + ch, x0 + cw)


def center_box(src_hw, crop_fraction: float = 1.0):
    """Centred square of side min(H, W) * crop_fraction."""
    h, w = src_hw
    side = max(int(round(min(h, w) * crop_fraction)), 1)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return (y0, x0, y0 + side, x0 + side)


def three_crop_box(src_hw, view: int, views: int = 3):
    """Square of side min(H, W) at position view / (views - 1) along the long side."""
    h, w = src_hw
    side = min(h, w)
    step = (max(h, w) - side) / max(views - 1, 1)
    off = int(round(view * step))
    return (off, 0, off + side, side) if h > w else (0, off, side, off + side)


def resize_frames(frames: np.ndarray, size: int):
    """uint8 [T, H, W, 3] -> uint8 tensor [T, 3, size, size] (a channels-last view): bilinear,
    antialiased, for every crop mode, training and evaluation alike.

    Resized in uint8, not float: torch's antialiased bilinear has a uint8 path for channels-last
    input that costs a fifth of the float one (a 16-frame 272 px crop to 224: ~4 vs ~21 ms) and
    differs from the float result rounded to uint8 by at most one grey level
    (tests/test_data_transforms.py bounds the difference).
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def normalise(x, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 tensor [T, 3, S, S] -> float32 [3, T, S, S], (x - 255 mean) / (255 std) per channel.
    Transposed while still uint8 (a quarter of the bytes to move), then normalised in place."""
    return normalise_video(x.permute(1, 0, 2, 3).contiguous(), mean, std)


def normalise_video(video, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 [..., 3, T, S, S] (a clip or a batch, on any device) -> float32, normalised as
    `normalise`, bit for bit: the training loop's half of a loader that hands over uint8 clips
    (ClipTransform(uint8=True)), a quarter of the bytes through worker memory, pinning and the copy."""
    shift, scale = _pixel_scale(tuple(mean), tuple(std), video.device)
    return video.float().sub_(shift).div_(scale)


@lru_cache(maxsize=None)
def _pixel_scale(mean: tuple, std: tuple, device):
    """(255 mean, 255 std) float32 [3, 1, 1, 1] on `device`, made once per device: built there per
    batch, a small tensor from host memory is a copy that waits for the device's queue (a host sync
    in the training loop's every step). Computed on the CPU, so every device divides by the same
    float32 numbers."""
    import torch

    return tuple((torch.tensor(v).view(3, 1, 1, 1) * 255).to(device) for v in (mean, std))


@dataclass
class ClipTransform:
    """Frames (+ motion) -> normalised video tensor (+ motion on the patch grid), one geometry.

    crop: one of CROPS; flip: random horizontal flip with p = 0.5 (off by default: it turns
    "left" into "right", wrong for SSv2 and the synthetic benchmark); crop_views: spatial views
    for crop="three". mean/std are in [0, 1] pixel units.
    """

    geometry: Geometry
    crop: str = "multiscale"
    flip: bool = False
    scales: tuple = SCALES
    crop_fraction: float = 1.0
    crop_views: int = 3
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    block: int = CODEC_BLOCK  # motion block size of the codec grid
    augment: object = None  # mgm.data.augment.RandAugment: one draw per clip, on the cropped uint8 frames
    erase: object = None    # mgm.data.augment.RandomErasing: one box per clip, on the normalised video
    uint8: bool = False

    def __post_init__(self):
        if self.crop not in CROPS:
            raise ValueError(f"unknown crop {self.crop!r} (choose from {', '.join(CROPS)})")
        if self.uint8 and self.erase is not None:
            raise ValueError("random erasing works on the normalised video: it cannot hand over uint8 clips")

    @property
    def num_views(self) -> int:
        return self.crop_views if self.crop == "three" else 1

    def plan(self, src_hw, rng: np.random.Generator | None = None, view: int = 0):
        """Geometry of one clip: (box (y0, x0, y1, x1) in source pixels, hflip)."""
        if self.crop == "multiscale":
            box = multiscale_box(src_hw, self.geometry.size, rng, self.scales)
        elif self.crop == "center":
            box = center_box(src_hw, self.crop_fraction)
        elif self.crop == "three":
            box = three_crop_box(src_hw, view, self.crop_views)
        else:
            box = (0, 0, src_hw[0], src_hw[1])
        hflip = bool(self.flip and rng.random() < 0.5)
        return box, hflip

    def frames(self, frames: np.ndarray, box, hflip: bool, rng: np.random.Generator | None = None):
        """uint8 [T, H, W, 3] -> normalised float32 tensor [3, T, size, size] (uint8: the same
        unnormalised, uint8 [3, T, size, size]). RandAugment (on the
        crop, before resizing: VideoMAE augments before its crop; on the crop it costs less) and
        random erasing (after normalising, as VideoMAE) draw from `rng`, once per clip."""
        y0, x0, y1, x1 = (int(v) for v in box)
        crop = frames[:, y0:y1, x0:x1]
        if self.augment is not None:
            crop = self.augment(np.ascontiguousarray(crop), rng)
        x = resize_frames(crop, self.geometry.size)
        if hflip:
            x = x.flip(-1)
        if self.uint8:
            return x.permute(1, 0, 2, 3).contiguous()
        video = normalise(x, self.mean, self.std)
        return video if self.erase is None else self.erase(video, rng)

    def motion(self, dx: np.ndarray, dy: np.ndarray, src_hw, box, hflip: bool) -> np.ndarray:
        """Block motion dx, dy [T, Hb, Wb] -> float32 [T, 2, H', W'] on the patch grid, output pixels."""
        from mgm.motion import resample_to_grid

        _, gh, gw = self.geometry.grid
        s = self.geometry.size
        ox, oy = resample_to_grid(dx, dy, tuple(src_hw), tuple(float(v) for v in box), (s, s), (gh, gw),
                                  block=self.block, hflip=hflip)
        return np.stack([ox, oy], 1)

    def __call__(self, frames: np.ndarray, dx=None, dy=None, rng=None, view: int = 0):
        """frames uint8 [T, H, W, 3] (+ dx, dy [T, Hb, Wb]) -> (video [3, T, S, S], motion [T, 2, H', W'] or None)."""
        src_hw = frames.shape[1:3]
        box, hflip = self.plan(src_hw, rng, view)
        video = self.frames(frames, box, hflip, rng)
        motion = None if dx is None else self.motion(dx, dy, src_hw, box, hflip)
        return video, motion
