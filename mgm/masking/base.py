"""The mask-generator interface (`MaskGenerator`) and the motion-free strategies: random, tube,
frame and running-cell.

Masks are bool `[B, T', H', W']` (True = masked), counts as the package docstring (mgm.masking)
states them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from mgm.config import Geometry

# ---------------------------------------------------------------------------------------------
# helpers shared by all strategies (batched: every array has a leading batch axis B)


def _floor(x: float) -> int:
    """floor that forgives float error: 0.29 * 100 = 28.999999999999996 must give 29."""
    return int(math.floor(x + 1e-9))


def _mask_smallest(keys: np.ndarray, k: int) -> np.ndarray:
    """bool [..., N]: True at the k smallest keys along the last axis (exactly k, any ties split)."""
    mask = np.zeros(keys.shape, dtype=bool)
    if k <= 0:
        return mask
    if k >= keys.shape[-1]:
        mask[...] = True
        return mask
    idx = np.argpartition(keys, k - 1, axis=-1)[..., :k]
    np.put_along_axis(mask, idx, True, axis=-1)
    return mask


# ---------------------------------------------------------------------------------------------
# the interface


@dataclass
class MaskGenerator:
    """Base of all strategies. Subclasses are dataclasses whose extra fields are the strategy's
    constants (all exposed to `build_mask_generator(**params)` and to the CLI)."""

    geometry: Geometry
    ratio: float

    name = "base"
    needs_motion = False
    # VideoMAE V2's dual masking: a second, motion-free generator whose mask (drawn from the same
    # rng, after this one's) says which tokens the decoder drops; the datasets emit it as
    # "decoder_mask". Not a field: set by mgm.train.datasets.mask_generator, None = off.
    decoder = None

    def __post_init__(self):
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio} (strategy {self.name})")

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.geometry.grid

    @property
    def per_slot(self) -> int:
        """k = floor(ratio * H'W'), the masked patches per time slot of the per-slot strategies."""
        return _floor(self.ratio * self.geometry.tokens_per_slot)

    @property
    def num_masked(self) -> int:
        """Masked tokens per clip, the same for every clip (see the module docstring)."""
        return self.grid[0] * self.per_slot

    @property
    def params(self) -> dict:
        """The strategy's own constants (everything but geometry and ratio)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("geometry", "ratio")}

    def __call__(self, motion: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """motion: float32 [T, 2, H', W'] or None -> bool [T', H', W'] (True = masked)."""
        motions = None if motion is None else np.asarray(motion)[None]
        return self.batch(motions, rng)[0]

    def batch(self, motions: np.ndarray | None, rng: np.random.Generator, batch_size: int | None = None
              ) -> np.ndarray:
        """motions: float32 [B, T, 2, H', W'] or None (then `batch_size` clips) -> bool [B, T', H', W']."""
        rng = np.random.default_rng(rng)
        if motions is None:
            if self.needs_motion:
                raise ValueError(f"{self.name} mask needs motion [B, T, 2, H', W'], got None")
            b = 1 if batch_size is None else batch_size
        else:
            motions = np.asarray(motions, dtype=np.float32)
            t, h, w = self.grid
            expected = (self.geometry.num_frames, 2, h, w)
            if motions.ndim != 5 or motions.shape[1:] != expected:
                raise ValueError(f"{self.name} mask: motion must be [B, {', '.join(map(str, expected))}], "
                                 f"got {list(motions.shape)}")
            b = motions.shape[0]
        mask = self._generate(motions, b, rng)
        assert mask.shape == (b, *self.grid) and mask.dtype == bool
        return mask

    def _generate(self, motions: np.ndarray | None, b: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@dataclass
class RandomMask(MaskGenerator):
    """Spacetime-agnostic random masking (ST-MAE): floor(ratio * T'H'W') tokens anywhere."""

    name = "random"

    @property
    def num_masked(self) -> int:
        return _floor(self.ratio * self.geometry.num_tokens)

    def _generate(self, motions, b, rng):
        keys = rng.random((b, self.geometry.num_tokens))
        return _mask_smallest(keys, self.num_masked).reshape(b, *self.grid)


@dataclass
class TubeMask(MaskGenerator):
    """VideoMAE's tube masking: one random spatial mask of k patches, repeated in every time slot."""

    name = "tube"

    def _generate(self, motions, b, rng):
        t, h, w = self.grid
        spatial = _mask_smallest(rng.random((b, h * w)), self.per_slot).reshape(b, 1, h, w)
        return np.broadcast_to(spatial, (b, t, h, w)).copy()


@dataclass
class FrameMask(MaskGenerator):
    """Whole time slots masked: round(ratio * T') random slots, at most T' - 1 so one stays visible."""

    name = "frame"

    @property
    def num_slots(self) -> int:
        t = self.grid[0]
        return min(int(math.floor(self.ratio * t + 0.5)), t - 1)

    @property
    def num_masked(self) -> int:
        return self.num_slots * self.geometry.tokens_per_slot

    def _generate(self, motions, b, rng):
        t, h, w = self.grid
        slots = _mask_smallest(rng.random((b, t)), self.num_slots)
        return np.broadcast_to(slots[:, :, None, None], (b, t, h, w)).copy()


@dataclass
class RunningCellMask(MaskGenerator):
    """VideoMAE V2's running-cell mask (its decoder mask), generalised to any ratio.

    The grid is tiled by 2x2 cells; the cell's 4 positions (row-major p) get priority
    (p + phase + t + 1) mod 4 in slot t, so the pattern shifts by one position per slot and every
    position is visible in some slot. The k lowest priorities are masked, ties at random. For ratios
    that are multiples of 1/4 on an even grid this is exactly VideoMAE V2's `RunningCellMaskingGenerator`
    (phase = its random pointer); otherwise it tops the quarter pattern up to exactly k patches.
    """

    name = "running-cell"

    def _generate(self, motions, b, rng):
        t, h, w = self.grid
        position = 2 * (np.arange(h)[:, None] % 2) + (np.arange(w)[None, :] % 2)  # [H', W']
        phase = rng.integers(0, 4, size=(b, 1, 1, 1))
        priority = (position[None, None] + phase + np.arange(t)[None, :, None, None] + 1) % 4
        keys = priority + rng.random((b, t, h, w))  # random in [0, 1) only orders within a level
        return _mask_smallest(keys.reshape(b, t, h * w), self.per_slot).reshape(b, t, h, w)
