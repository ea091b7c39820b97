"""The motion-guided strategies: mgm, motion-topk and mgm-warp.

Motion is float32 `[B, T, 2, H', W']` as the package docstring (mgm.masking) defines it: (dx, dy)
per sampled frame on the patch grid, in pixels of the resized clip.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from mgm.masking.base import MaskGenerator, _mask_smallest


class NoMotionWarning(UserWarning):
    """A motion-guided strategy got a clip without any motion and fell back to its documented default."""


# ---------------------------------------------------------------------------------------------
# motion helpers (batched: every array has a leading batch axis B)


def _mask_largest_random_ties(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """bool [..., N]: the k largest scores along the last axis, ties broken uniformly at random.

    Scores such as motion magnitudes are often exactly equal (zero in static areas, identical vectors
    on a rigid object); argpartition alone would then always prefer the lowest indices.
    """
    perm = np.argsort(rng.random(scores.shape), axis=-1)
    shuffled = np.take_along_axis(scores, perm, axis=-1)
    order = np.argsort(-shuffled, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, np.take_along_axis(perm, order, axis=-1), True, axis=-1)
    return mask


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """[n, n] row-normalised Gaussian weights: `M @ x` blurs x along one axis, renormalised at the edges.

    Truncated at 3 sigma so that a static area stays exactly 0 (and ties there are broken at random).
    """
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    w = np.where(np.abs(d) <= 3 * sigma, np.exp(-0.5 * (d / sigma) ** 2), 0.0)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _median_last(x: np.ndarray) -> np.ndarray:
    """np.median(x, axis=-1) by one partial sort: twice as fast, and masks are made per clip."""
    n = x.shape[-1]
    h = n // 2
    if n % 2:
        return np.partition(x, h, axis=-1)[..., h]
    p = np.partition(x, [h - 1, h], axis=-1)
    return 0.5 * (p[..., h - 1] + p[..., h])


def remove_median_motion(motion: np.ndarray) -> np.ndarray:
    """[..., 2, H', W'] -> the same minus each frame's median (dx, dy): a pan or shake moves every
    patch alike; the subject is what moves differently from the rest."""
    flat = motion.reshape(*motion.shape[:-2], -1)
    return motion - _median_last(flat)[..., None, None]


def slot_magnitude(motion: np.ndarray, tubelet: int, camera_comp: bool) -> np.ndarray:
    """Motion magnitude per tubelet slot.

    motion: float32 [B, T, 2, H', W'] -> float32 [B, T', H', W'], the sum over each slot's frames of
    |(dx, dy)|, after subtracting each frame's median vector when `camera_comp`.
    """
    if camera_comp:
        motion = remove_median_motion(motion)
    mag = np.hypot(motion[:, :, 0], motion[:, :, 1])
    b, t, h, w = mag.shape
    return mag.reshape(b, t // tubelet, tubelet, h, w).sum(axis=2)


def _slot_motion(motion: np.ndarray, tubelet: int) -> np.ndarray:
    """float32 [B, T, 2, H', W'] -> [B, T', 2, H', W']: displacement from one slot's last frame to the next's."""
    b, t, c, h, w = motion.shape
    return motion.reshape(b, t // tubelet, tubelet, c, h, w).sum(axis=2)


def _nearest_moving_slot(moving: np.ndarray) -> np.ndarray:
    """int [B, T']: for each slot the nearest slot (in time) that has motion; itself if it has.

    moving: bool [B, T']. Ties go to the earlier slot. Clips with no moving slot get index 0
    (callers handle them separately).
    """
    t = moving.shape[1]
    dist = np.abs(np.arange(t)[:, None] - np.arange(t)[None, :]).astype(np.float32)  # [T', T']
    dist = np.where(moving[:, None, :], dist[None], np.inf)  # [B, T'(slot), T'(source)]
    return np.argmin(dist, axis=-1)


def _warn_no_motion(name: str, count: int, total: int, fallback: str):
    warnings.warn(f"{name} mask: {count} of {total} clip(s) have no motion; {fallback}",
                  NoMotionWarning, stacklevel=4)


# ---------------------------------------------------------------------------------------------
# the strategies


@dataclass
class _MotionMask(MaskGenerator):
    """Common part of the strategies that rank patches by motion magnitude."""

    camera_comp: bool = True   # subtract each frame's median vector before taking magnitudes
    smooth: float = 1.0        # sigma (patches) of the Gaussian blur of the magnitude map; 0 = off
    min_motion: float = 0.25   # a slot whose largest magnitude (px per slot) is below this has no motion

    needs_motion = True

    def __post_init__(self):
        super().__post_init__()
        if self.smooth < 0 or self.min_motion < 0:
            raise ValueError(f"smooth and min_motion must be >= 0 (strategy {self.name})")
        _, h, w = self.grid
        self._blur = (_gaussian_matrix(h, self.smooth), _gaussian_matrix(w, self.smooth)) if self.smooth > 0 else None

    def _magnitude(self, motions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """motions [B, T, 2, H', W'] -> (smoothed magnitude float32 [B, T', H', W'], moving bool [B, T'],
        the magnitude before smoothing [B, T', H', W'])."""
        raw = slot_magnitude(motions, self.geometry.tubelet, self.camera_comp)
        moving = raw.max(axis=(2, 3)) > self.min_motion
        mag = raw
        if self._blur is not None:
            bh, bw = self._blur
            mag = bh @ raw @ bw.T
        return mag, moving, raw


@dataclass
class MGMMask(_MotionMask):
    """Motion-guided masking (Fan et al., ICCV 2023) as DESIGN.md "MGM, as we implement it" fixes it.

    Centres, `track=True` (the default): the mask follows the motion. It is placed on the argmax of
    the (camera-compensated, smoothed) magnitude of the first slot that has motion (earlier slots
    share it); then, slot by slot, it is carried by the mean motion vector of the content that was
    within `reach` patches of it (the patches whose vectors point back there; weighted by compensated
    magnitude, so the moving content sets the step, not the still background; the raw vector, so the
    mask moves with the content in the frame, pan included) and settles on the strongest (smoothed)
    motion within `reach` of the carried position. It is re-anchored on the slot's argmax only where
    the motion under it is lost: the carried centre leaves the frame, or the magnitude there is below
    `lost` times the slot's largest. A slot without motion holds the centre. `track=False` is the
    pre-2026-12 MGM, kept for the ablation: the argmax of every slot on its own (so with two moving
    objects the mask jumps to whichever is faster), slots without motion taking the nearest slot's
    centre. Either way a Gaussian jitter of `jitter` patches is added per slot (not carried) so that
    repeated epochs differ, and a clip without any motion gets one random centre for all its slots
    (and a NoMotionWarning).

    Then k = floor(ratio * H'W') patches are masked per slot: round(focus * k) drawn without
    replacement with probability proportional to a Gaussian of width `sigma` (patches) around the
    centre (Gumbel top-k, so sigma sets how tight the blob is: sigma -> 0 is the k nearest patches),
    the rest uniformly at random among the other patches. focus = 1 is the pure motion-centred mask.
    sigma, jitter, reach and lost are our choices; the paper fixes none of them.
    """

    sigma: float = 2.0
    focus: float = 1.0
    jitter: float = 0.5
    track: bool = True    # follow the motion from slot to slot (False: argmax in every slot)
    reach: float = 2.0    # radius (patches) of the neighbourhood that carries and then finds the centre
    lost: float = 0.1     # re-anchor where the magnitude under the centre is below lost * slot max

    name = "mgm"

    def __post_init__(self):
        super().__post_init__()
        if self.sigma <= 0 or self.jitter < 0 or not 0.0 <= self.focus <= 1.0:
            raise ValueError(f"mgm needs sigma > 0, jitter >= 0 and 0 <= focus <= 1; got "
                             f"sigma={self.sigma}, jitter={self.jitter}, focus={self.focus}")
        if self.reach <= 0 or not 0.0 <= self.lost <= 1.0:
            raise ValueError(f"mgm needs reach > 0 and 0 <= lost <= 1; got reach={self.reach}, lost={self.lost}")

    def centres(self, motions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """motions [B, T, 2, H', W'] -> float [B, T', 2] mask centres (y, x) in patches, jitter included."""
        b = motions.shape[0]
        t, h, w = self.grid
        mag, moving, raw = self._magnitude(motions)
        flat = mag.reshape(b, t, h * w).argmax(axis=-1)
        peak = np.stack([flat // w, flat % w], axis=-1).astype(np.float64)  # [B, T', 2]
        if self.track:
            centre = self._track(motions, mag, moving, peak, raw)
        else:
            centre = np.take_along_axis(peak, _nearest_moving_slot(moving)[..., None], axis=1)
        still = ~moving.any(axis=1)
        if still.any():
            _warn_no_motion(self.name, int(still.sum()), b, "using one random centre per clip")
            random_centre = rng.random((b, 1, 2)) * np.array([h - 1, w - 1])
            centre = np.where(still[:, None, None], random_centre, centre)
        if self.jitter > 0:
            centre = centre + rng.normal(0.0, self.jitter, size=centre.shape)
        return np.clip(centre, 0, [h - 1, w - 1])

    def _track(self, motions: np.ndarray, mag: np.ndarray, moving: np.ndarray, peak: np.ndarray,
               weight: np.ndarray) -> np.ndarray:
        """Centres float [B, T', 2] (y, x) carried along the motion (see the class docstring).

        motions [B, T, 2, H', W'] (px); mag [B, T', H', W'] smoothed magnitude, moving bool [B, T'] and
        weight [B, T', H', W'] the magnitude before smoothing (from `_magnitude`); peak [B, T', 2] each
        slot's argmax of mag.

        One clip and one slot at a time, the centre in Python floats: masks are made per clip in the
        loader, and numpy's per-call cost on [B, 2] arrays, not the arithmetic, was most of a mask's
        time (0.7 -> 0.45 ms per 16x224^2 clip). Every value comes from the same float32 / float64
        operations in the same order as the earlier batch-vectorised loop (tests/test_masking.py keeps
        that code as the reference and compares masks bit for bit).
        """
        b, t, h, w = mag.shape
        r2 = self.reach ** 2
        # Vectors sit where the content is now: slot s's displacement since slot s-1, as (dy, dx) in patches.
        step = _slot_motion(motions, self.geometry.tubelet)[:, :, ::-1] / self.geometry.patch  # [B, T', 2, H', W']
        gy, gx = np.divmod(np.arange(h * w, dtype=np.float64), w)  # [H'W'] patch coordinates
        from_y = gy.reshape(h, w) - step[:, :, 0]  # [B, T', H', W']: where the content was one slot earlier
        from_x = gx.reshape(h, w) - step[:, :, 1]
        faint = self.lost * mag.max(axis=(2, 3))  # [B, T']: below this the motion under the centre is lost
        flat_mag = mag.reshape(b, t, h * w)

        def carry(cy: float, cx: float, i: int, s: int) -> tuple[float, float]:
            # Carry: the mean vector of the content that was within `reach` of the centre one slot
            # earlier (the patches whose vector points back there: any speed), weighted by (compensated)
            # magnitude so that the moving content, not the still background around it, sets the step.
            wgt = np.where((from_y[i, s] - cy) ** 2 + (from_x[i, s] - cx) ** 2 <= r2, weight[i, s], 0.0)
            vy, vx = (step[i, s] * wgt).sum(axis=(1, 2)) / np.maximum(wgt.sum(), 1e-12)  # float32; 0 if none
            cy, cx = cy + float(vy), cx + float(vx)
            if not (-0.5 < cy < h - 0.5 and -0.5 < cx < w - 0.5):  # left the frame: lost
                return float(peak[i, s, 0]), float(peak[i, s, 1])
            # Correspondence: the strongest motion within `reach` of the carried centre (the vectors are
            # patch averages, short where a patch is only partly on the object, so the carry alone lags).
            # A 0.1% handicap at the rim sends near-ties (a flat moving area) to the patch nearest the carry.
            ky, kx = min(max(cy, 0.0), h - 1.0), min(max(cx, 0.0), w - 1.0)
            d2 = (gy - ky) ** 2 + (gx - kx) ** 2
            near = int(np.where(d2 <= r2, flat_mag[i, s] * (1 - 1e-3 * d2 / r2), -np.inf).argmax())
            if flat_mag[i, s, near] < faint[i, s]:  # the motion there is faint: lost, re-anchor on the argmax
                return float(peak[i, s, 0]), float(peak[i, s, 1])
            return float(near // w), float(near % w)

        first = np.argmax(moving, axis=1)  # [B]; 0 for a clip without motion (the caller replaces those)
        centre = np.empty((b, t, 2))
        for i in range(b):
            cy, cx = peak[i, first[i]]
            for s in range(t):
                # Slots up to the first with motion keep its anchor; a slot without motion holds the centre.
                if s > first[i] and moving[i, s]:
                    cy, cx = carry(cy, cx, i, s)
                centre[i, s] = cy, cx
        return centre

    def _generate(self, motions, b, rng):
        t, h, w = self.grid
        k = self.per_slot
        centre = self.centres(motions, rng)
        yy, xx = np.divmod(np.arange(h * w), w)
        d2 = (yy - centre[..., 0:1]) ** 2 + (xx - centre[..., 1:2]) ** 2  # [B, T', H'W']
        # Gumbel top-k: the n largest of log(weight) + Gumbel noise are a weighted draw without replacement.
        gumbel = -np.log(-np.log(rng.random(d2.shape) + 1e-12) + 1e-12)
        n_focus = int(math.floor(self.focus * k + 0.5))
        focus = _mask_smallest(d2 / (2 * self.sigma ** 2) - gumbel, n_focus)
        # Focused patches first (key -1), then uniform random among the rest.
        keys = np.where(focus, -1.0, rng.random(d2.shape))
        return _mask_smallest(keys, k).reshape(b, t, h, w)


@dataclass
class MotionTopKMask(_MotionMask):
    """Mask the k patches of highest (camera-compensated, smoothed) motion in each slot, ties at random.

    The randomness is only among equal magnitudes (typically the static background): the same motion
    with distinct magnitudes always gives the same mask. Slots without motion use the magnitude map
    of the nearest slot with motion; a clip without any motion degenerates to a random per-slot mask (with a NoMotionWarning).
    """

    name = "motion-topk"

    def _generate(self, motions, b, rng):
        t, h, w = self.grid
        mag, moving, _ = self._magnitude(motions)
        mag = np.take_along_axis(mag, _nearest_moving_slot(moving)[..., None, None], axis=1)
        still = ~moving.any(axis=1)
        if still.any():
            _warn_no_motion(self.name, int(still.sum()), b, "masking random patches")
            mag[still] = 0.0
        return _mask_largest_random_ties(mag.reshape(b, t, h * w), self.per_slot, rng).reshape(b, t, h, w)


@dataclass
class WarpMask(MaskGenerator):
    """MGMAE's idea (Huang et al., ICCV 2023) driven by the bitstream's motion vectors instead of RAFT.

    A random score per patch is drawn for the first slot; each next slot's scores are the previous
    slot's scores carried along the motion (backward nearest-patch warp: the patch at q takes the
    score of q - v(q), v = the raw motion summed over the slot's frames, in patches; content entering
    from outside the frame gets a fresh random score), and the k = floor(ratio * H'W') highest scores
    are masked, ties at random. So a masked patch stays masked as its content moves, and every slot
    is topped up or trimmed to exactly k. Raw motion (no camera compensation): the mask should follow
    the content, pan included. Without any motion this is a tube mask (with a NoMotionWarning).
    """

    min_motion: float = 0.25   # px per slot; a clip whose largest displacement is below this has no motion

    name = "mgm-warp"
    needs_motion = True

    def _generate(self, motions, b, rng):
        t, h, w = self.grid
        patch = self.geometry.patch
        shift = _slot_motion(motions, self.geometry.tubelet) / patch  # [B, T', 2, H', W'] in patches
        still = np.hypot(shift[:, :, 0], shift[:, :, 1]).max(axis=(1, 2, 3)) * patch <= self.min_motion
        if still.any():
            _warn_no_motion(self.name, int(still.sum()), b, "the mask stays in place (a tube)")
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        bi = np.arange(b)[:, None, None]
        scores = np.empty((b, t, h, w))
        scores[:, 0] = rng.random((b, h, w))
        for s in range(1, t):
            sy = np.rint(yy - shift[:, s, 1]).astype(np.int64)
            sx = np.rint(xx - shift[:, s, 0]).astype(np.int64)
            inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
            carried = scores[:, s - 1][bi, np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)]
            scores[:, s] = np.where(inside, carried, rng.random((b, h, w)))
        return _mask_largest_random_ties(scores.reshape(b, t, h * w), self.per_slot, rng).reshape(b, t, h, w)

