"""Motion-vector records -> dense per-block motion; accumulation, camera-motion removal, resampling.

Convention (contract): `dx, dy` is the forward motion of the content of a block from the previous
frame to this one, in pixels per frame, x to the right, y down; 0 where a frame or block has no
motion vector (I-frames, intra blocks).

What the bitstream does and does not tell. FFmpeg exports, per predicted block, `dst` (block centre
in this frame), `motion = (src - dst) * motion_scale` (where the block's content sits in the
reference frame) and `source` (< 0: a past reference, > 0: a future one). So the content's forward
motion is `sign(source) * motion / motion_scale` *per reference gap*. The gap itself (which past or
future frame was referenced) is not exported: with x264's default of 3 reference frames and
B-frames a vector may span 1-3 frames, so magnitudes are only good for ranking. Videos encoded with
one reference frame and no B-frames (`mgm transcode`'s default, `x264-params bframes=0:ref=1`) give
exact per-frame motion. Bi-predicted blocks carry one record per direction; both are averaged.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mgm.config import CODEC_BLOCK


@dataclass
class MotionField:
    """Motion of F decoded frames on a block grid.

    dx, dy: float32 [F, Hb, Wb] with Hb = ceil(height / block), Wb = ceil(width / block);
    known: bool [F, Hb, Wb], True where at least one motion vector covered the block;
    frame_type: str [F] ("I", "P", "B"); width, height: frame size in pixels.
    """

    dx: np.ndarray
    dy: np.ndarray
    known: np.ndarray
    frame_type: np.ndarray
    width: int
    height: int
    block: int = CODEC_BLOCK

    @property
    def num_frames(self) -> int:
        return len(self.frame_type)

    def magnitude(self) -> np.ndarray:
        """float32 [F, Hb, Wb]."""
        return np.hypot(self.dx, self.dy)

    def save_npz(self, path) -> None:
        """dx, dy, frame_type to `path` (.npz, what np.savez writes), atomically; OSError ->
        one-line MGMError. Each array is written from its own memory: np.savez copies it to bytes
        first, in pieces of up to 16 MiB (+8.6 MB of peak memory for 600 frames at 720p)."""
        import zipfile

        from mgm.files import atomic_write  # here: it loads hashlib and OpenSSL, which reads do not need

        with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, a in (("dx", self.dx), ("dy", self.dy), ("frame_type", self.frame_type.astype("<U1"))):
                a = np.ascontiguousarray(a)
                with z.open(f"{name}.npy", "w", force_zip64=True) as member:  # as np.savez does
                    np.lib.format.write_array_header_1_0(member, np.lib.format.header_data_from_array_1_0(a))
                    member.write(memoryview(a.reshape(-1).view(np.uint8)))


def grid_shape(width: int, height: int, block: int = CODEC_BLOCK) -> tuple[int, int]:
    return (-(-height // block), -(-width // block))


def mvs_to_grid(mvs: np.ndarray | None, width: int, height: int, block: int = CODEC_BLOCK):
    """Area-weighted mean forward motion of each block of one frame.

    mvs: FFmpeg motion-vector records (fields w, h, dst_x, dst_y, motion_x, motion_y,
    motion_scale, source) or None. Returns dx, dy float32 [Hb, Wb] and known bool [Hb, Wb].
    """
    dx, dy, known = mvs_to_grids([mvs], width, height, block)
    return dx[0], dy[0], known[0]


def mvs_to_grids(frames_mvs: Sequence[np.ndarray | None], width: int, height: int,
                 block: int = CODEC_BLOCK):
    """mvs_to_grid for F frames at once (one bincount for all: the per-call numpy overhead, not
    the arithmetic, dominates on a single frame). Returns dx, dy float32 and known bool [F, Hb, Wb].

    Records larger than `block` are split into pieces so that every piece lies in one cell.
    """
    hb, wb = grid_shape(width, height, block)
    n_frames, n = len(frames_mvs), hb * wb
    parts = [m for m in frames_mvs if m is not None and len(m)]
    if not parts:
        z = np.zeros((n_frames, hb, wb), np.float32)
        return z, z.copy(), np.zeros((n_frames, hb, wb), bool)
    # Concatenate as raw bytes: numpy copies padded structured records field by field (30x slower).
    mvs = (np.concatenate([np.ascontiguousarray(m).view(np.uint8).ravel() for m in parts]).view(parts[0].dtype)
           if len(parts) > 1 else parts[0])
    frame = np.repeat(np.arange(n_frames), [0 if m is None else len(m) for m in frames_mvs])
    w, h = mvs["w"], mvs["h"]
    # weight = area * sign(source) / motion_scale, so that weight * motion = area * forward motion
    area = w.astype(np.float32) * h
    k = np.where(mvs["source"] < 0, -area, area) / mvs["motion_scale"]
    if w.max() <= block and h.max() <= block:
        # The common case (every H.264 partition lies inside its 16x16 macroblock): bin by centre.
        col, row = mvs["dst_x"] // block, mvs["dst_y"] // block
        wx, wy = k * mvs["motion_x"], k * mvs["motion_y"]
    else:
        # Split each record into nx*ny equal pieces; piece p of record r sits at (i, j) in its grid.
        nx = np.maximum(1, -(-w.astype(np.int64) // block))
        ny = np.maximum(1, -(-h.astype(np.int64) // block))
        reps = nx * ny
        r = np.repeat(np.arange(len(mvs)), reps)
        p = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        i, j = p % nx[r], p // nx[r]
        pw, ph = w[r] / nx[r], h[r] / ny[r]
        col = ((mvs["dst_x"][r] - w[r] / 2 + (i + 0.5) * pw) // block).astype(np.int64)
        row = ((mvs["dst_y"][r] - h[r] / 2 + (j + 0.5) * ph) // block).astype(np.int64)
        share = k[r] / reps[r]
        area, frame = area[r] / reps[r], frame[r]
        wx, wy = share * mvs["motion_x"][r], share * mvs["motion_y"][r]
    cell = frame * n + np.clip(row, 0, hb - 1) * wb + np.clip(col, 0, wb - 1)
    total = n_frames * n
    wsum = np.bincount(cell, weights=area, minlength=total)
    known = wsum > 0
    denom = np.where(known, wsum, 1.0)
    dx = (np.bincount(cell, weights=wx, minlength=total) / denom).astype(np.float32)
    dy = (np.bincount(cell, weights=wy, minlength=total) / denom).astype(np.float32)
    shape = (n_frames, hb, wb)
    return dx.reshape(shape), dy.reshape(shape), known.reshape(shape)


def accumulate(dx: np.ndarray, dy: np.ndarray, indices: Sequence[int], stride: int,
               offset: int = 0):
    """Motion of each sampled frame summed over the `stride` decoded frames ending at it.

    dx, dy: [F, Hb, Wb] per decoded frame, where row f is display frame `offset + f`;
    indices: [T] display indices of the sampled frames (clamped into the decoded range).
    Returns dx, dy float32 [T, Hb, Wb]: the displacement from frame `i - stride` to frame `i`
    (summed on the fixed block grid; the content is not warped along its path, which is exact for
    translation and a close approximation over the 2-4 frame strides used for sampling).
    """
    idx = np.clip(np.asarray(indices, dtype=np.int64) - offset, 0, dx.shape[0] - 1)
    summed = _prefix_sums if stride > _DIRECT_STRIDE else _direct_sums
    return summed(dx, dy, idx, stride)


def _prefix_sums(dx: np.ndarray, dy: np.ndarray, idx: np.ndarray, stride: int):
    """accumulate's sums as differences of float64 prefix sums over every row (long strides).
    idx: [T] row numbers, already clipped into [0, F)."""
    lo = np.clip(idx - stride + 1, 0, None)
    out = []
    for a in (dx, dy):
        c = np.concatenate([np.zeros_like(a[:1], dtype=np.float64), np.cumsum(a, 0, dtype=np.float64)])
        out.append((c[idx + 1] - c[lo]).astype(np.float32))
    return out[0], out[1]


def _direct_sums(dx: np.ndarray, dy: np.ndarray, idx: np.ndarray, stride: int):
    """The <= stride rows of each sample summed directly, in float64: the same sums as
    `_prefix_sums` (exact for float32 / float16 rows: a prefix sum of motion in pixels keeps every
    bit), at a fraction of the cost (no cumsum over every decoded frame; ~0.4 ms a clip)."""
    earlier = [(idx - k, idx - k >= 0) for k in range(1, stride)]
    out = []
    for a in (dx, dy):
        s = a[idx].astype(np.float64)
        for j, ok in earlier:
            if ok.all():
                s += a[j]
            elif ok.any():
                s[ok] += a[j[ok]]
        out.append(s.astype(np.float32))
    return out[0], out[1]


# Strides up to this sum their rows directly in `accumulate`; longer ones difference prefix sums.
_DIRECT_STRIDE = 8


def remove_camera_motion(dx: np.ndarray, dy: np.ndarray, known: np.ndarray | None = None,
                         method: str = "median"):
    """Subtract the per-frame global (camera) motion. dx, dy, known: [F, Hb, Wb] (or [Hb, Wb]).

    median: the per-frame median vector over known blocks (robust when the moving objects cover
    less than half the frame). affine: a least-squares affine field (pans, zooms, rotations),
    refitted once without the blocks whose residual is far above the median residual.
    Unknown blocks stay 0. A step beyond the paper; its effect is measured in the benchmarks.
    """
    squeeze = dx.ndim == 2
    if squeeze:
        dx, dy = dx[None], dy[None]
        known = None if known is None else known[None]
    if known is None:
        known = (dx != 0) | (dy != 0)
    if method == "median":
        with warnings.catch_warnings():  # frames without any vector give NaN -> no correction
            warnings.simplefilter("ignore", RuntimeWarning)
            gx = np.nanmedian(np.where(known, dx, np.nan), axis=(1, 2))
            gy = np.nanmedian(np.where(known, dy, np.nan), axis=(1, 2))
        gx = np.nan_to_num(gx)[:, None, None]
        gy = np.nan_to_num(gy)[:, None, None]
    elif method == "affine":
        gx, gy = _affine_field(dx, dy, known)
    else:
        raise ValueError(f"unknown camera-motion method {method!r} (median or affine)")
    ox = np.where(known, dx - gx, 0).astype(np.float32)
    oy = np.where(known, dy - gy, 0).astype(np.float32)
    return (ox[0], oy[0]) if squeeze else (ox, oy)


def _affine_field(dx, dy, known):
    """Per-frame affine fit (d = a + b*x + c*y for each component); returns the fitted fields."""
    f, hb, wb = dx.shape
    yy, xx = np.mgrid[0:hb, 0:wb].astype(np.float64)
    design = np.stack([np.ones(hb * wb), xx.ravel(), yy.ravel()], 1)  # [HW, 3]
    gx = np.zeros_like(dx, dtype=np.float64)
    gy = np.zeros_like(dy, dtype=np.float64)
    for t in range(f):
        use = known[t].ravel()
        if use.sum() < 3:
            continue
        target = np.stack([dx[t].ravel(), dy[t].ravel()], 1).astype(np.float64)
        for _ in range(2):  # fit, drop outliers (the moving objects), refit
            coef, *_ = np.linalg.lstsq(design[use], target[use], rcond=None)
            res = np.linalg.norm(target - design @ coef, axis=1)
            keep = use & (res <= 2 * np.median(res[use]) + 0.5)
            if keep.sum() < 3 or (keep == use).all():
                break
            use = keep
        fit = design @ coef
        gx[t], gy[t] = fit[:, 0].reshape(hb, wb), fit[:, 1].reshape(hb, wb)
    return gx, gy


def _overlap(n_out: int, lo: float, hi: float, n_src: int, block: int) -> np.ndarray:
    """[n_out, n_src] weights: share of output cell k (an equal slice of [lo, hi) source pixels)
    falling in source block b ([b*block, (b+1)*block)); rows sum to 1."""
    edges = lo + (hi - lo) * np.arange(n_out + 1) / n_out
    a0, a1 = edges[:-1, None], edges[1:, None]
    b0 = np.arange(n_src)[None] * block
    inter = np.clip(np.minimum(a1, b0 + block) - np.maximum(a0, b0), 0, None)
    return inter / np.maximum(inter.sum(1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=256)
def _overlap32(n_out: int, lo: float, hi: float, n_src: int, block: int) -> np.ndarray:
    """_overlap as float32, read-only, remembered: evaluation's centre crops (and the whole-frame
    resize) ask for the same few every clip."""
    w = _overlap(n_out, lo, hi, n_src, block).astype(np.float32)
    w.flags.writeable = False
    return w


def resample_to_grid(dx: np.ndarray, dy: np.ndarray, src_hw: tuple[int, int],
                     box: tuple[float, float, float, float], out_size: tuple[int, int],
                     grid_hw: tuple[int, int], block: int = CODEC_BLOCK, hflip: bool = False):
    """Block motion of a video cropped to `box` and resized, averaged onto the clip's patch grid.

    dx, dy: [T, Hb, Wb] on `block`-pixel blocks of a src_hw = (H, W) video; box = (y0, x0, y1, x1)
    in source pixels; out_size = (h, w) pixels of the resized crop; grid_hw = (gh, gw) cells.
    Returns dx, dy float32 [T, gh, gw] in output pixels (scaled by out/box size), area-weighted;
    `hflip` mirrors the grid and negates dx, as a horizontal flip of the frames does.
    """
    y0, x0, y1, x1 = box
    ay = _overlap32(grid_hw[0], y0, y1, dx.shape[1], block)
    axt = _overlap32(grid_hw[1], x0, x1, dx.shape[2], block).T
    sx = out_size[1] / (x1 - x0)
    sy = out_size[0] / (y1 - y0)
    # Two batched matrix products (ay @ m @ ax^T) on both components at once: a 3-operand einsum
    # contracts naively and cost ~1.5 ms per 16-frame clip, as much as the rest of an MGM item.
    m = np.stack([dx, dy]).astype(np.float32, copy=False)  # [2, T, Hb, Wb]
    out = ay @ m @ axt  # [2, T, gh, gw]
    ox, oy = out[0] * np.float32(sx), out[1] * np.float32(sy)
    if hflip:
        ox, oy = -ox[:, :, ::-1], oy[:, :, ::-1]
    return np.ascontiguousarray(ox, np.float32), np.ascontiguousarray(oy, np.float32)
