"""The one clip path: frame indices -> frames + motion over the stride -> patch grid -> mask.

Every consumer makes its clips here: the streaming dataset (`dataset.VideoDataset`), the in-memory
clips (`memory.MemoryClips`), `mgm mask` and `mgm show` (`commands/mask.py`). What differs between
them is only where the frames and the per-frame block motion come from and which crop they use:

    decode_clip (a video file: one decode for both, or pixels only with the motion from a
    MotionCache) or MemoryClips.clip (a decoded split)  ->  Clip
    clip_view(clip, transform, rng): crop / flip / resize plan -> video [3, T, S, S],
        patch_motion -> motion [T, 2, H', W'], clip_masks -> mask [T', H', W'] (+ decoder mask)

Seed convention (docs/DESIGN.md §4): all the randomness of one clip comes from one generator,
`clip_rng(seed, index, epoch)`, drawn in this order: the clip's start (random samplers), its crop
and flip (`ClipTransform.plan`), RandAugment, random erasing, the mask, the decoder mask.
- training clips, drawn anew every epoch: np.random.default_rng([seed, epoch, index]);
- evaluation clips, the same every epoch: np.random.default_rng([seed, index]);
- a lone clip (`mgm mask --seed S`, `mgm show`): np.random.default_rng([S]), which is default_rng(S);
- the k-th extra view of a training item (repeated augmentation, k >= 1): [seed, epoch, index, k].
`index` is the item's number in its list (the dataset's item, views included; a split's entry).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mgm.config import CODEC_BLOCK, Geometry
from mgm.data.sampling import DenseSampler
from mgm.errors import warnings_about


def clip_rng(seed: int, index: int | None = None, epoch: int | None = None, view: int = 0) -> np.random.Generator:
    """The generator of one clip (module docstring): [seed, epoch, index(, view)] for a training
    clip, [seed, index] when epoch is None (evaluation), [seed] for a lone clip."""
    key = [seed] + ([] if epoch is None else [epoch]) + ([] if index is None else [index]) + ([view] if view else [])
    return np.random.default_rng(key)


def clip_indices(num_decoded: int, geometry: Geometry, stride: int, rng: np.random.Generator | None):
    """[T] frame indices: T = geometry.num_frames at `stride`; a random start when rng is given,
    else centred. Clips shorter than the span repeat their last frame (a DenseSampler's indices)."""
    return DenseSampler(geometry.num_frames, stride, random=rng is not None)(num_decoded, 0, rng)


@dataclass
class Clip:
    """One clip before any transform.

    frames uint8 [T, H, W, 3]; indices int64 [T] the display indices asked for; dx, dy float32
    [T, Hb, Wb] the block motion of each sampled frame summed over the stride (None: not read);
    motion_hw (H, W) of the frames the block grid measures, when not the frames' own size (a split
    resized after decoding); last: the last decoded display index, where the reader knows it.
    """

    frames: np.ndarray
    indices: np.ndarray
    dx: np.ndarray | None = None
    dy: np.ndarray | None = None
    motion_hw: tuple[int, int] | None = None
    last: int | None = None


def span_motion(dx: np.ndarray, dy: np.ndarray, indices, stride: int):
    """Per-decoded-frame motion dx, dy [F, Hb, Wb] (arrays or memory maps, float16 or float32) ->
    float32 [T, Hb, Wb] each, motion.accumulate over `stride` for the sampled `indices`, reading
    only the rows the clip spans. Indices past the last frame repeat it, as the decoder does."""
    from mgm.motion import accumulate

    clamped = np.minimum(np.asarray(indices), dx.shape[0] - 1)
    lo, hi = max(int(clamped.min()) - stride + 1, 0), int(clamped.max()) + 1
    return accumulate(np.asarray(dx[lo:hi]), np.asarray(dy[lo:hi]), clamped, stride, offset=lo)


def decode_clip(path, indices, stride: int, *, motion: bool = True, cache=None, block: int = CODEC_BLOCK) -> Clip:
    """The frames at `indices` of the video `path` and, with `motion`, each one's motion over the
    preceding `stride` decoded frames: from one decode pass (`codec.read_clip`), or with `cache` (a
    `MotionCache`) by decoding pixels only and reading the motion from the cache. Without motion the
    motion vectors are not even exported (`codec.read_frames`)."""
    from mgm import codec

    indices = np.asarray(indices, dtype=np.int64)
    threads = codec.CLIP_THREADS  # one decoding thread: a loader reads clips on every core at once
    if motion and cache is not None:
        rows = cache.motion(path)
        dx, dy = span_motion(rows[0], rows[1], indices, stride)
        return Clip(codec.read_frames(path, indices, threads=threads), indices, dx, dy, last=rows.shape[1] - 1)
    if motion:
        frames, dx, dy, field = codec.read_clip(path, indices, stride=stride, block=block, threads=threads)
        first = max(int(indices.min()) - stride + 1, 0)
        return Clip(frames, indices, dx, dy, last=first + field.num_frames - 1)
    return Clip(codec.read_frames(path, indices, threads=threads), indices)


def sample_clip(path, geometry: Geometry, stride: int, start: int = 0) -> tuple[Clip, np.ndarray]:
    """The clip of `mgm mask` / `mgm show`: frames start, start + stride, ... of the video `path`
    (past its end the last frame repeats), the whole frame resized without cropping to the
    geometry's size. Returns the Clip (frames at the video's own size, `last` its last decoded
    frame) and its motion float32 [T, 2, H', W'] on the patch grid, in pixels of the resized clip."""
    from mgm.data.transforms import ClipTransform

    clip = decode_clip(path, start + stride * np.arange(geometry.num_frames), stride)
    transform = ClipTransform(geometry, crop="resize")
    box, hflip = transform.plan(clip.frames.shape[1:3])  # the whole frame, no flip: no random draw
    return clip, patch_motion(clip, transform, box, hflip)


def patch_motion(clip: Clip, transform, box, hflip: bool) -> np.ndarray | None:
    """The clip's motion float32 [T, 2, H', W'] on the patch grid of `transform` (a ClipTransform),
    in output pixels, for the crop `box` (in frame pixels) and flip of its plan; None without motion."""
    if clip.dx is None:
        return None
    frame_hw = clip.frames.shape[1:3]
    motion_hw = clip.motion_hw or frame_hw
    if tuple(motion_hw) != tuple(frame_hw):  # the box in the pixels the motion grid measures
        sy, sx = motion_hw[0] / frame_hw[0], motion_hw[1] / frame_hw[1]
        box = (box[0] * sy, box[1] * sx, box[2] * sy, box[3] * sx)
    return transform.motion(clip.dx, clip.dy, motion_hw, box, hflip)


def clip_masks(generator, motion: np.ndarray | None, rng: np.random.Generator, where: str) -> dict:
    """{"mask": bool [T', H', W']} (+ "decoder_mask" with dual masking) from `generator` (a
    MaskGenerator); warnings (a clip without motion) re-issued naming `where`."""
    with warnings_about(where):
        out = {"mask": generator(motion if generator.needs_motion else None, rng)}
    if generator.decoder is not None:  # dual masking (mgm.train.datasets.mask_generator)
        out["decoder_mask"] = generator.decoder(None, rng)
    return out


def clip_view(clip: Clip, transform, rng: np.random.Generator, *, view: int = 0, mask_generator=None,
              return_motion: bool = False, where: str = "") -> dict:
    """One view of a clip, the dataset item's tensors: "video" float32 [3, T, S, S] (ClipTransform:
    crop, flip, augmentations, normalised), "mask" / "decoder_mask" bool [N] flattened in (t, h, w)
    order with a mask generator, "motion" float32 [T, 2, H', W'] with `return_motion`."""
    import torch

    box, hflip = transform.plan(clip.frames.shape[1:3], rng, view)
    item = {"video": transform.frames(clip.frames, box, hflip, rng)}
    motion = patch_motion(clip, transform, box, hflip)
    if mask_generator is not None:
        for key, mask in clip_masks(mask_generator, motion, rng, where).items():
            item[key] = torch.from_numpy(np.ascontiguousarray(mask).reshape(-1))
    if return_motion:
        item["motion"] = torch.from_numpy(motion)
    return item
