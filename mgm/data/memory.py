"""Decode a small list-file dataset once into memory, then sample clips, motion and masks from RAM.

For CPU-scale experiments the decoder, not the model, would dominate a step; decoding every clip
once (frames *and* per-frame block motion, in the same pass) and sampling from arrays removes it.
The clip sampling, motion accumulation and masking are the same functions the streaming dataset
uses (mgm.motion.accumulate / resample_to_grid, mgm.masking), so masks are identical in kind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from mgm import codec
from mgm.config import IMAGENET_MEAN, IMAGENET_STD, Geometry
from mgm.data.lists import read_list
from mgm.data.transforms import normalise, resize_frames
from mgm.errors import MGMError, warnings_about
from mgm.files import os_error, temp_name
from mgm.motion import accumulate, resample_to_grid


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
    frames, _, _, field = codec.read_clip(path, idx, stride=1)
    return frames[:field.num_frames], field.dx, field.dy, field


def clip_indices(num_decoded: int, geometry: Geometry, stride: int, rng: np.random.Generator | None):
    """[T] frame indices: T = geometry.num_frames at `stride`; a random start when rng is given,
    else centred. Clips shorter than the span repeat their last frame."""
    span = (geometry.num_frames - 1) * stride + 1
    room = max(num_decoded - span, 0)
    start = int(rng.integers(0, room + 1)) if rng is not None else room // 2
    return np.minimum(start + stride * np.arange(geometry.num_frames), num_decoded - 1)


class MemoryClips(torch.utils.data.Dataset):
    """Clips sampled from a DecodedSplit: {"video" float [C, T, H, W] (ImageNet-normalised),
    "label", "index"} plus "mask" bool [N] with a mask generator (and "decoder_mask" bool [N] when it
    carries one, see mgm.train.datasets.mask_generator), "motion" float [T, 2, H', W'] with
    `return_motion`. Random starts and masks derive from (seed, epoch, index) only, so a resumed
    or distributed run draws the same ones. No flips: they would swap the motion classes."""

    def __init__(self, split: DecodedSplit, geometry: Geometry, stride: int, *, mask_generator=None,
                 train: bool = True, seed: int = 0, return_motion: bool = False, subset=None):
        self.split, self.geometry, self.stride = split, geometry, stride
        self.mask_generator, self.train, self.seed = mask_generator, train, seed
        self.return_motion = return_motion
        self.items = np.arange(len(split.labels)) if subset is None else np.asarray(subset)
        self.epoch = 0
        n, f, h, w, _ = split.video.shape
        if h != w:
            raise MGMError(f"in-memory clips must be square, got {h}x{w}")
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def labels(self) -> np.ndarray:
        return self.split.labels[self.items]

    def frames(self, i: int, idx: np.ndarray) -> np.ndarray:
        """uint8 [T, H, W, 3]: entry i's frames at indices idx."""
        return self.split.video[self.split.rows[i], idx]

    def motion(self, i: int, idx: np.ndarray) -> np.ndarray:
        """float32 [T, 2, H', W']: motion of entry i's sampled frames over the stride, on the patch grid."""
        s = self.split
        size = s.motion_frame_size
        r = s.rows[i]
        dx, dy = accumulate(s.dx[r].astype(np.float32), s.dy[r].astype(np.float32), idx, self.stride)
        g = self.geometry
        gx, gy = resample_to_grid(dx, dy, (size, size), (0, 0, size, size), (g.size, g.size),
                                  g.grid[1:])
        return np.stack([gx, gy], 1)

    def __getitem__(self, index: int) -> dict:
        i = int(self.items[index])
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        idx = clip_indices(self.split.video.shape[1], self.geometry, self.stride, rng)
        # the streaming loader's resize (uint8, antialiased) and normalisation: C, T, H, W
        video = normalise(resize_frames(self.frames(i, idx), self.geometry.size))
        item = {"video": video, "label": int(self.split.labels[i]), "index": index}
        need_motion = self.return_motion or (self.mask_generator is not None
                                             and self.mask_generator.needs_motion)
        motion = self.motion(i, idx) if need_motion else None
        if self.mask_generator is not None:
            mrng = rng if rng is not None else np.random.default_rng([self.seed, i])
            with warnings_about(f"{self.split.paths[i]} (clip from frame {int(idx[0])})"):
                item["mask"] = torch.from_numpy(self.mask_generator(motion, mrng).reshape(-1))
            if self.mask_generator.decoder is not None:  # dual masking (mgm.train.datasets.mask_generator)
                item["decoder_mask"] = torch.from_numpy(self.mask_generator.decoder(None, mrng).reshape(-1))
        if self.return_motion:
            item["motion"] = torch.from_numpy(motion)
        return item
