"""Mask generators: random, tube, frame, running-cell and the motion-guided ones, behind one interface.

A mask is a bool array of the clip's token grid `(T', H', W')` = `Geometry.grid`, True = masked
(flattened in (t, h, w) order it is HF's `bool_masked_pos`). Generators are pure functions of
(motion, geometry, ratio, rng): no I/O, no global state.

Motion, for the strategies that use it, is float32 `[T, 2, H', W']`: (dx, dy) per sampled frame
(T = num_frames), already averaged onto the patch grid, in pixels of the resized clip, the forward
motion of the content now at each patch since the previous sampled frame (x right, y down).

Masked counts, identical for every clip of a given geometry and ratio (`MaskGenerator.num_masked`):
  - random:                   floor(ratio * T'H'W') tokens anywhere in the clip;
  - frame:                    round(ratio * T') whole time slots, at most T' - 1 (one slot stays
                              visible), so its fraction is within half a slot of the ratio;
  - every other strategy:     k = floor(ratio * H'W') patches in every time slot.
Hence the masked fraction is below the ratio by less than one patch (of the clip or of the slot)
for all strategies except `frame`, whose granularity is a whole slot.

    gen = build_mask_generator("mgm", Geometry(), 0.75, sigma=2.0)
    mask = gen(motion, np.random.default_rng(0))               # bool [T', H', W']
    masks = generate_batch(gen, motions, rng)                  # bool [B, T', H', W']

Modules: mgm.masking.base (the interface, motion-free strategies), mgm.masking.guided (the
motion-guided ones); this one holds the registry and re-exports both.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from mgm.config import Geometry
from mgm.masking.base import FrameMask, MaskGenerator, RandomMask, RunningCellMask, TubeMask
from mgm.masking.guided import (MGMMask, MotionTopKMask, NoMotionWarning, WarpMask, remove_median_motion,
                                slot_magnitude)

__all__ = ["STRATEGIES", "FrameMask", "MGMMask", "MaskGenerator", "MotionTopKMask", "NoMotionWarning",
           "RandomMask", "RunningCellMask", "TubeMask", "WarpMask", "build_mask_generator", "generate_batch",
           "remove_median_motion", "slot_magnitude", "strategy_parameters"]


_CLASSES = {c.name: c for c in (RandomMask, TubeMask, FrameMask, RunningCellMask, MGMMask,
                                MotionTopKMask, WarpMask)}
STRATEGIES: tuple[str, ...] = tuple(_CLASSES)


def strategy_parameters(name: str) -> dict:
    """The constants strategy `name` accepts, with their defaults (empty for the motion-free ones)."""
    if name not in _CLASSES:
        raise ValueError(f"unknown mask strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return {f.name: f.default for f in fields(_CLASSES[name]) if f.name not in ("geometry", "ratio")}


def build_mask_generator(name: str, geometry: Geometry, ratio: float, **params) -> MaskGenerator:
    """The generator of strategy `name` (one of STRATEGIES); `params` are its constants (see its class).

    Unknown names or parameters raise ValueError naming the valid ones.
    """
    valid = strategy_parameters(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"strategy {name} has no parameter(s) {', '.join(unknown)}; "
                         f"its parameters: {', '.join(valid) or 'none'}")
    return _CLASSES[name](geometry=geometry, ratio=ratio, **params)


def generate_batch(generator: MaskGenerator, motions: np.ndarray | None, rng: np.random.Generator,
                   batch_size: int | None = None) -> np.ndarray:
    """Masks of a whole batch in one vectorised call.

    motions: float32 [B, T, 2, H', W'] or None (motion-free strategies; then `batch_size` clips)
    -> bool [B, T', H', W'], every clip with `generator.num_masked` True entries.
    """
    return generator.batch(motions, rng, batch_size)
