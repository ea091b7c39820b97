"""Decode a small list-file dataset once into memory, then sample clips, motion and masks from RAM.

For CPU-scale experiments the decoder, not the model, would dominate a step; decoding every clip
once (frames *and* per-frame block motion, in the same pass) and sampling from arrays removes it.
Clips are made by the clip path the streaming dataset uses (mgm/data/clip.py: sampling, motion
accumulation, patch grid, masks), so masks are identical in kind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from mgm import codec
from mgm.config import Geometry
from mgm.data.clip import Clip, clip_indices, clip_rng, clip_view, patch_motion, span_motion
from mgm.data.lists import read_list
from mgm.data.sampling import DenseSampler
from mgm.data.transforms import ClipTransform
from mgm.errors import MGMError
from mgm.files import os_error, temp_name

__all__ = ["DecodedSplit", "MemoryClips", "clip_indices", "decode_split", "resize_split"]  # clip_indices: for its callers


@dataclass
class DecodedSplit:
    """A whole split in memory: N list entries over U <= N distinct files. video: uint8
    [U, F, H, W, 3]; dx, dy: float16 [U, F, Hb, Wb] (per decoded frame, 16-px blocks of the
    *source* frames); labels: int64 [N]; paths: [N] as listed; rows: int64 [N], the row of video /
    dx / dy holding each entry (a list naming one file many times, e.g. for several windows of
    it, decodes and stores it once); source_size: side of the decoded frames the motion grid
    refers to (0: the video's own size; set when the video was resized, see `resize_split`)."""

    video: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    labels: np.ndarray
    paths: list
    source_size: int = 0
    rows: np.ndarray | None = None  # None: one row per entry (and caches written before rows)

    FIELDS = ("video", "dx", "dy", "labels", "paths")

    def __post_init__(self):
        if self.rows is None:
            self.rows = np.arange(len(self.labels))

    @property
    def motion_frame_size(self) -> int:
        return self.source_size or self.video.shape[2]

    def save(self, path: str) -> None:
        """A directory of .npy files (written to a temporary directory, then renamed). Processes that
        decode the same split at once each write their own temporary directory; the first rename
        wins and the others are dropped."""
        import shutil

        tmp = str(temp_name(path))
        try:
            os.makedirs(tmp)
            for name in self.FIELDS:
                value = getattr(self, name)
                np.save(os.path.join(tmp, name + ".npy"), np.array(value) if name == "paths" else value)
            np.save(os.path.join(tmp, "source_size.npy"), np.array(self.source_size))
            np.save(os.path.join(tmp, "rows.npy"), np.asarray(self.rows, np.int64))
            os.rename(tmp, path)
        except OSError as e:
            if not os.path.isdir(path):  # not "another process saved it first": a real failure
                raise os_error(path, e) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # after a failure or a lost race; gone after a rename

    @classmethod
    def load(cls, path: str) -> "DecodedSplit":
        """Memory-mapped: every run and worker shares the page cache instead of a private copy."""
        arrays = {n: np.load(os.path.join(path, n + ".npy"), mmap_mode=None if n == "paths" else "r")
                  for n in cls.FIELDS}
        arrays["paths"] = arrays["paths"].tolist()
        size_file = os.path.join(path, "source_size.npy")
        source = int(np.load(size_file)) if os.path.exists(size_file) else 0
        rows_file = os.path.join(path, "rows.npy")
        rows = np.load(rows_file) if os.path.exists(rows_file) else None
        return cls(**arrays, source_size=source, rows=rows)


def decode_split(list_file: str, root: str | None = None, cache: str | None = None,
                 progress: bool = True, size: int | None = None) -> DecodedSplit:
    """Decode every clip of a list file (all of equal size and length, as `mgm synth` writes them).

    With `cache` (a directory), the arrays are stored there and memory-mapped on the next call.
    With `size`, the frames are resized to size x size once (cached in `<cache>-<size>px`): a
    per-clip resize in the loader costs more than a small model's training step.
    """
    if size is not None:
        split = decode_split(list_file, root, cache, progress)
        if split.video.shape[2] == size:
            return split
        resized_cache = f"{cache}-{size}px" if cache else None
        if resized_cache and os.path.exists(resized_cache):
            return DecodedSplit.load(resized_cache)
        split = resize_split(split, size, progress)
        if resized_cache:
            split.save(resized_cache)
        return split
    if cache and os.path.exists(cache):
        return DecodedSplit.load(cache)
    entries = read_list(list_file, root=root)
    files = list(dict.fromkeys(e.path for e in entries))  # distinct, in list order
    row_of = {path: r for r, path in enumerate(files)}
    it = files
    if progress:
        from tqdm import tqdm
        it = tqdm(files, desc=f"decode {os.path.basename(list_file)}", unit="clip", leave=False)
    videos, dxs, dys = [], [], []
    for path in it:
        frames, dx, dy, _ = _decode_all(path)
        videos.append(frames), dxs.append(dx), dys.append(dy)
    lengths = {v.shape for v in videos}
    if len(lengths) != 1:
        raise MGMError(f"{list_file}: clips differ in size or length ({sorted(lengths)[:3]}...); "
                       "the in-memory dataset needs equal clips")
    split = DecodedSplit(np.stack(videos), np.stack(dxs).astype(np.float16),
                         np.stack(dys).astype(np.float16),
                         np.array([e.label for e in entries], np.int64), [e.path for e in entries],
                         rows=np.array([row_of[e.path] for e in entries], np.int64))
    if cache:
        split.save(cache)
    return split


def resize_split(split: DecodedSplit, size: int, progress: bool = True, chunk: int = 32) -> DecodedSplit:
    """The same split with every frame resized to size x size (bilinear, antialiased); the motion
    grid is kept as it is and remembers the frame size it was measured at."""
    n, f, h, w, _ = split.video.shape
    out = np.empty((n, f, size, size, 3), np.uint8)
    starts = range(0, n, chunk)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc=f"resize to {size}px", unit="chunk", leave=False)
    for i in starts:
        v = torch.from_numpy(np.array(split.video[i:i + chunk])).flatten(0, 1).permute(0, 3, 1, 2).float()
        v = torch.nn.functional.interpolate(v, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
        out[i:i + chunk] = v.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(-1, f, size, size, 3).numpy()
    return DecodedSplit(out, split.dx, split.dy, split.labels, split.paths, split.motion_frame_size,
                        split.rows)


def _decode_all(path):
    """frames uint8 [F, H, W, 3] and per-frame block motion dx, dy [F, Hb, Wb] in one pass."""
    info = codec.probe(path)
    idx = np.arange(max(info.num_frames, 1))
    frames, _, _, field = codec.read_clip(path, idx, stride=1, threads=codec.CLIP_THREADS)  # small clips: 1 thread
    return frames[:field.num_frames], field.dx, field.dy, field


class MemoryClips(torch.utils.data.Dataset):
    """Clips sampled from a DecodedSplit: {"video" float [C, T, H, W] (ImageNet-normalised; with
    uint8, uint8 [C, T, H, W] unnormalised), "label", "index"} plus "mask" bool [N] with a mask
    generator (and "decoder_mask" bool [N] when it carries one, see
    mgm.train.datasets.mask_generator), "motion" float [T, 2, H', W'] with
    `return_motion`. The clip path is the streaming dataset's (mgm/data/clip.py): whole frames
    resized to the geometry's size, no crop and no flips (they would swap the motion classes).
    Random starts (train) and masks derive from (seed, epoch, entry) only, evaluation clips (centred)
    from (seed, entry), so a resumed or distributed run draws the same ones."""

    def __init__(self, split: DecodedSplit, geometry: Geometry, stride: int, *, mask_generator=None,
                 train: bool = True, seed: int = 0, return_motion: bool = False, subset=None, uint8: bool = False):
        self.split, self.geometry, self.stride = split, geometry, stride
        self.mask_generator, self.train, self.seed = mask_generator, train, seed
        self.return_motion = return_motion
        self.items = np.arange(len(split.labels)) if subset is None else np.asarray(subset)
        self.epoch = 0
        n, f, h, w, _ = split.video.shape
        if h != w:
            raise MGMError(f"in-memory clips must be square, got {h}x{w}")
        self.sampler = DenseSampler(geometry.num_frames, stride, random=train)
        self.transform = ClipTransform(geometry, crop="resize", uint8=uint8)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> np.ndarray:
        return self.split.labels[self.items]

    def frames(self, i: int, idx: np.ndarray) -> np.ndarray:
        """uint8 [T, H, W, 3]: entry i's frames at indices idx."""
        return self.split.video[self.split.rows[i], idx]

    def clip(self, i: int, idx: np.ndarray, motion: bool = True) -> Clip:
        """Entry i's clip at indices idx, with each frame's motion over the stride (if `motion`)."""
        s = self.split
        r = s.rows[i]
        dx, dy = span_motion(s.dx[r], s.dy[r], idx, self.stride) if motion else (None, None)
        return Clip(self.frames(i, idx), np.asarray(idx), dx, dy, motion_hw=(s.motion_frame_size,) * 2)

    def motion(self, i: int, idx: np.ndarray) -> np.ndarray:
        """float32 [T, 2, H', W']: motion of entry i's sampled frames over the stride, on the patch grid."""
        clip = self.clip(i, idx)
        return patch_motion(clip, self.transform, (0, 0, *clip.frames.shape[1:3]), False)

    def __getitem__(self, index: int) -> dict:
        i = int(self.items[index])
        rng = clip_rng(self.seed, i, self.epoch if self.train else None)
        idx = self.sampler(self.split.video.shape[1], 0, rng)
        need_motion = self.return_motion or (self.mask_generator is not None
                                             and self.mask_generator.needs_motion)
        item = clip_view(self.clip(i, idx, need_motion), self.transform, rng, mask_generator=self.mask_generator,
                         return_motion=self.return_motion,
                         where=f"{self.split.paths[i]} (clip from frame {int(idx[0])})")
        item.update(label=int(self.split.labels[i]), index=index)
        return item
