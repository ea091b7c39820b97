"""The one dataset core used for every video dataset: list file + sampler + paired transform + mask.

One decode per clip, then one view per item, both by the clip path every consumer shares
(mgm/data/clip.py): `decode_clip` returns the sampled frames and, for each, the motion accumulated
over the frames skipped since the previous sample; `clip_view` crops / resizes / flips both with
one geometry and makes the mask, in the DataLoader worker, from that motion. When nothing needs
motion (e.g. tube masks) the motion vectors are not even exported.

Item (`dataset[i]`):
  video  float32 [C, T, S, S], normalised (uint8 [C, T, S, S] unnormalised with uint8=True);       label  int;   index  int (video index in the list)
  mask   bool [N], N = T'H'W' flattened in (t, h, w) order (only with a mask generator)
  decoder_mask  bool [N], VideoMAE V2's decoder mask (only when the mask generator carries one)
  motion float32 [T, 2, H', W'] on the patch grid, output pixels (only with return_motion=True)
  view   int, view number in multi-view testing (only when the dataset has several views per video)
  skipped int, bad videos skipped to produce this item (policy "skip"; 0 normally)
With repeated augmentation (num_sample = N > 1, training only) the video is read once and video,
mask and motion gain a leading [N]: N views with their own crop, flip, augmentation and mask
(`collate_views` flattens them into the batch).

Randomness (clip start, crop, flip, mask) is a pure function of (seed, epoch, item index), so a
resumed run and every DDP rank / worker see the same clips: call `set_epoch(e)` before each epoch
(with persistent workers, index the dataset by `(epoch, i)` instead, e.g. via EpochSampler).
Evaluation items (val / test) do not depend on the epoch: the seed convention of mgm/data/clip.py.

Bad videos (missing, corrupt, no motion vectors) are never silently replaced. Policy "error"
raises the VideoError. Policy "skip" logs a warning with path and reason, records it in a JSON-lines
log shared by all workers, and returns the next readable video in list order (deterministic), whose
index is in the item; `epoch_summary(epoch)` reports the count and the videos.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import tempfile
import weakref

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from mgm import codec
from mgm.config import CODEC_BLOCK, Geometry
from mgm.data.augment import RandAugment, RandomErasing
from mgm.data.clip import Clip, clip_rng, clip_view, decode_clip
from mgm.data.lists import Sample, read_list
from mgm.data.motion_cache import MotionCache
from mgm.data.sampling import build_sampler
from mgm.data.transforms import ClipTransform
from mgm.errors import MGMError, VideoError
from mgm.files import append_line

log = logging.getLogger(__name__)

# PyAV frames converted to RGB own a swscale context with its own threads. If such a frame is
# cyclic garbage when a DataLoader forks its workers, a worker's garbage collector frees it and
# joins threads that do not exist in the child: the worker hangs forever (seen with the fork start
# method after the parent decoded clips). Collecting in the parent just before every fork frees
# that garbage where its threads live.
os.register_at_fork(before=gc.collect)
POLICIES = ("error", "skip")
MODES = ("pretrain", "train", "val", "test")



class VideoDataset(Dataset):
    """samples: list of Sample (or a list-file path, with root); sampler / transform: see
    mgm.data.sampling and mgm.data.transforms; mask_generator: a mgm.masking.MaskGenerator or None."""

    def __init__(self, samples, *, geometry: Geometry, sampler, transform: ClipTransform, root=None,
                 mask_generator=None, mode: str = "train", return_motion: bool = False,
                 bad_videos: str = "error", seed: int = 0, block: int = CODEC_BLOCK, bad_log=None,
                 motion_cache=None, num_sample: int = 1):
        if mode not in MODES:
            raise MGMError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
        if bad_videos not in POLICIES:
            raise MGMError(f"unknown bad-video policy {bad_videos!r} (choose from {', '.join(POLICIES)})")
        if sampler.num_frames != geometry.num_frames or transform.geometry != geometry:
            raise ValueError("sampler, transform and dataset must share one Geometry")
        if mask_generator is not None and mask_generator.geometry != geometry:
            raise ValueError("mask generator geometry differs from the dataset's")
        self.samples = read_list(samples, root) if isinstance(samples, (str, os.PathLike)) else list(samples)
        self.geometry, self.sampler, self.transform = geometry, sampler, transform
        self.mask_generator, self.mode, self.return_motion = mask_generator, mode, return_motion
        self.bad_videos, self.seed, self.block, self.epoch = bad_videos, seed, block, 0
        if num_sample > 1 and mode not in ("pretrain", "train"):
            raise MGMError(f"repeated augmentation (num_sample={num_sample}) is for training, not mode {mode!r}")
        self.num_sample = num_sample
        self.needs_motion = return_motion or bool(mask_generator is not None and mask_generator.needs_motion)
        # A directory: each video's motion is read once and memory-mapped afterwards (MotionCache).
        self.motion_cache = None
        if motion_cache and self.needs_motion:
            self.motion_cache = MotionCache(motion_cache, block)
        if bad_log is None and bad_videos == "skip":  # a file, not a list: workers are separate processes
            # (training passes a file in its run directory; this temporary one serves library use)
            fd, bad_log = tempfile.mkstemp(prefix="mgm-bad-videos-", suffix=".jsonl")
            os.close(fd)
            weakref.finalize(self, _remove_if_owner, bad_log, os.getpid())
        self.bad_log = None if bad_log is None else str(bad_log)
        self._num_frames: dict[str, int] = {}

    # ------------------------------------------------------------------ indexing
    @property
    def views_per_video(self) -> int:
        return self.sampler.num_views * self.transform.num_views

    def __len__(self) -> int:
        return len(self.samples) * self.views_per_video

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The generator of item `index` in `epoch` (mgm.data.clip's seed convention): the same on
        every rank, worker and resume; evaluation items (val / test) are the same every epoch."""
        if self.mode in ("val", "test"):
            return clip_rng(self.seed, index)
        return clip_rng(self.seed, index, self.epoch if epoch is None else epoch)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if not 0 <= index < len(self):
            raise IndexError(index)
        video_index, view = divmod(index, self.views_per_video)
        tview, sview = divmod(view, self.transform.num_views)
        rng = self.rng(index, epoch)
        skipped = 0
        while True:
            sample = self.samples[video_index]
            try:
                item = self._load(sample, tview, sview, rng, index, epoch)
                break
            except VideoError as e:
                if self.bad_videos == "error":
                    raise
                self._record(epoch, video_index, e)
                skipped += 1
                if skipped >= len(self.samples):
                    raise MGMError(f"no readable video in the list ({skipped} bad, last: {e})") from None
                video_index = (video_index + 1) % len(self.samples)
        item.update(label=sample.label, index=video_index)
        if self.views_per_video > 1:
            item["view"] = view
        if self.bad_videos == "skip":
            item["skipped"] = skipped
        return item

    # ------------------------------------------------------------------ one clip
    def num_video_frames(self, path: str) -> int:
        """Frame count from the container header (cached); counted by decoding when the header has none."""
        n = self._num_frames.get(path)
        if n is None:
            n = codec.probe(path).num_frames
            if n <= 0:
                n = sum(1 for _ in codec.iter_frames(path, pixels=False, motion=False))
            if n <= 0:
                raise VideoError(path, "no frames")
            self._num_frames[path] = n
        return n

    def _load(self, sample: Sample, tview: int, sview: int, rng: np.random.Generator, index: int,
              epoch: int) -> dict:
        """One read of the video, then `num_sample` views of it (repeated augmentation): each its
        own crop, flip, augmentation and mask, from its own generator (the first is `rng`)."""
        clip = self._read(sample, tview, rng)
        where = f"{sample.path} (clip from frame {int(clip.indices[0])})"
        rngs = [rng] + [clip_rng(self.seed, index, epoch, view=k) for k in range(1, self.num_sample)]
        views = [clip_view(clip, self.transform, r, view=sview, mask_generator=self.mask_generator,
                           return_motion=self.return_motion, where=where) for r in rngs]
        if self.num_sample == 1:
            return views[0]
        return {k: torch.stack([v[k] for v in views]) for k in views[0]}  # [N, ...] each

    def _read(self, sample: Sample, tview: int, rng: np.random.Generator) -> Clip:
        """The clip at the sampler's indices: frames uint8 [T, H, W, 3] and its motion dx, dy
        [T, Hb, Wb] (None when nothing needs it)."""
        n = self.num_video_frames(sample.path)
        indices = self.sampler(n, tview, rng)
        return decode_clip(sample.path, indices, self.sampler.motion_stride(n), motion=self.needs_motion,
                           cache=self.motion_cache, block=self.block)

    # ------------------------------------------------------------------ bad videos
    def _record(self, epoch: int, index: int, err: VideoError) -> None:
        log.warning("bad video skipped (epoch %d, index %d): %s", epoch, index, err)
        # one short append per event: atomic across workers
        append_line(self.bad_log, json.dumps({"epoch": epoch, "index": index, "path": err.path,
                                              "reason": err.reason}))

    def epoch_summary(self, epoch: int | None = None) -> dict:
        """Bad videos met in `epoch` (default: the current one) by every worker:
        {"epoch", "bad": number of skip events, "videos": {path: reason}}."""
        epoch = self.epoch if epoch is None else epoch
        videos, count = {}, 0
        if self.bad_log is not None and os.path.exists(self.bad_log):
            with open(self.bad_log) as f:
                for line in f:
                    rec = json.loads(line)
                    if rec["epoch"] == epoch:
                        count += 1
                        videos[rec["path"]] = rec["reason"]
        return {"epoch": epoch, "bad": count, "videos": videos}

    def log_epoch_summary(self, epoch: int | None = None) -> dict:
        s = self.epoch_summary(epoch)
        if s["bad"]:
            log.warning("epoch %d: %d bad-video events over %d videos: %s", s["epoch"], s["bad"],
                        len(s["videos"]), "; ".join(f"{p}: {r}" for p, r in s["videos"].items()))
        else:
            log.info("epoch %d: no bad videos", s["epoch"])
        return s


def _remove_if_owner(path: str, pid: int) -> None:
    if os.getpid() == pid and os.path.exists(path):  # workers' copies must not delete the log
        os.remove(path)


class EpochSampler:
    """Yields (epoch, index) keys so persistent DataLoader workers see the epoch; wraps any
    index sampler (e.g. DistributedSampler) and forwards set_epoch to it."""

    def __init__(self, sampler):
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, i) for i in self.sampler)

    def __len__(self):
        return len(self.sampler)


def build_dataset(samples, *, geometry: Geometry, mode: str, root=None, sampling: str = "dense",
                  stride: int = 4, test_clips: int = 1, test_crops: int = 1, crop: str | None = None,
                  flip: bool = False, mask_generator=None, return_motion: bool = False,
                  bad_videos: str = "error", seed: int = 0, motion_cache=None, bad_log=None, num_sample: int = 1,
                  rand_augment: str = "", erase_prob: float = 0.0, erase_mode: str = "pixel",
                  uint8: bool = False) -> VideoDataset:
    """The usual wiring per mode. pretrain / train: random clip, multi-scale crop; val: centred clip,
    centre crop; test: `test_clips` x `test_crops` views (K400: 5 x 3 dense; SSv2: 2 x 3 segment).
    uint8: items hold the video unnormalised (ClipTransform(uint8=True))."""
    sampler = build_sampler(sampling, geometry.num_frames, stride, mode, views=test_clips)
    if crop is None:
        crop = {"pretrain": "multiscale", "train": "multiscale", "val": "center",
                "test": "three" if test_crops > 1 else "center"}[mode]
    augment, erase = None, None
    if mode == "train":  # VideoMAE's fine-tuning augmentations; pre-training keeps crop + flip only
        # VideoMAE's create_random_augment: timm's grey fill (128) and bicubic resampling
        augment = RandAugment.from_string(rand_augment, fill=(128, 128, 128), resample=Image.BICUBIC) \
            if rand_augment else None
        erase = RandomErasing(prob=erase_prob, mode=erase_mode) if erase_prob > 0 else None
    transform = ClipTransform(geometry, crop=crop, flip=flip and mode in ("pretrain", "train"),
                              augment=augment, erase=erase,
                              crop_views=test_crops, uint8=uint8)
    return VideoDataset(samples, geometry=geometry, sampler=sampler, transform=transform, root=root,
                        mask_generator=mask_generator, mode=mode, return_motion=return_motion,
                        bad_videos=bad_videos, seed=seed, motion_cache=motion_cache, bad_log=bad_log,
                        num_sample=num_sample)


def collate_views(batch: list[dict]) -> dict:
    """DataLoader collate for repeated augmentation: B items of N views -> a batch of B*N clips
    (video [B*N, C, T, H, W], mask [B*N, L]; label and index repeated per view)."""
    out = default_collate(batch)
    n = out["video"].shape[1]
    for key, value in out.items():
        if key in ("video", "mask", "decoder_mask", "motion"):
            out[key] = value.flatten(0, 1)
        elif torch.is_tensor(value):
            out[key] = value.repeat_interleave(n)
    return out
