"""Datasets for the training commands, built from the config's data section.

source "list": the list-file video dataset of mgm.data (real or `mgm synth` videos).
source "random": `RandomClips`, random tensors with a learnable class signal -- for smoke tests,
resume / distributed tests and throughput runs without decoding video.
Items are {"video" float [C, T, H, W], "mask" bool [N] (when masking), "label" int, "index" int},
plus "decoder_mask" bool [N] with data.decoder_mask (True = the decoder drops the token).
"""

from __future__ import annotations

import numpy as np
import torch

from mgm.config import Geometry
from mgm.data.dataset import build_dataset as build_video_dataset
from mgm.data.lists import read_list
from mgm.data.memory import MemoryClips, decode_split
from mgm.errors import MGMError
from mgm.masking import build_mask_generator
from mgm.train.config import TrainConfig


class RandomClips(torch.utils.data.Dataset):
    """`length` clips of Gaussian noise plus a per-class pattern, deterministic in (seed, index).

    The mask of item i in epoch e comes from numpy's Generator seeded with (seed, epoch, i), so the
    masks do not depend on worker count, rank or on where a resumed run restarted.
    """

    def __init__(self, length: int, geometry: Geometry, *, num_classes: int = 4, mask_generator=None,
                 seed: int = 0, channels: int = 3, offset: int = 0):
        self.length, self.geometry, self.num_classes = length, geometry, num_classes
        self.mask_generator, self.seed, self.channels = mask_generator, seed, channels
        self.offset = offset  # noise of item i is that of "clip" offset + i: disjoint train / val
        self.epoch = 0
        g = torch.Generator().manual_seed(seed + 12345)
        # One fixed spatio-temporal pattern per class, so that classification is learnable.
        self.patterns = torch.randn(num_classes, channels, geometry.num_frames, geometry.size, geometry.size,
                                    generator=g)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.offset + index)
        label = index % self.num_classes
        noise = torch.randn(self.channels, self.geometry.num_frames, self.geometry.size, self.geometry.size,
                            generator=g)
        item = {"video": 0.5 * self.patterns[label] + noise, "label": label, "index": index}
        if self.mask_generator is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            item["mask"] = torch.from_numpy(self.mask_generator(None, rng).reshape(-1))
            if self.mask_generator.decoder is not None:  # dual masking (mask_generator)
                item["decoder_mask"] = torch.from_numpy(self.mask_generator.decoder(None, rng).reshape(-1))
        return item


def mask_generator(cfg: TrainConfig):
    """The encoder's mask generator of cfg.data; with data.decoder_mask it carries the decoder's as
    `.decoder` (VideoMAE V2's dual masking). Carried on the generator, not passed beside it, so every
    dataset that takes a mask generator (list, in-memory, random) gets it with no new argument."""
    d = cfg.data
    try:
        gen = build_mask_generator(d.mask, d.geometry, d.mask_ratio, **d.mask_params)
    except ValueError as e:
        raise MGMError(f"config data.mask: {e}") from None
    if d.decoder_mask:
        dec = build_mask_generator(d.decoder_mask, d.geometry, d.decoder_ratio)
        if dec.needs_motion:  # the datasets fetch motion for the encoder's mask only
            raise MGMError(f"config data.decoder_mask: '{d.decoder_mask}' needs motion; use a motion-free "
                           f"strategy (VideoMAE V2: running-cell)")
        gen.decoder = dec
    return gen


def uint8_video(cfg: TrainConfig) -> bool:
    """Whether the loader hands over uint8 clips (cfg.data.video_dtype; auto: on CUDA, without random
    erasing). The training loop normalises them on the device (mgm.train.loop.video_to_device)."""
    d = cfg.data
    if d.video_dtype != "auto":
        return d.video_dtype == "uint8"
    device = cfg.run.device
    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    return cuda and d.erase_prob == 0


def build_dataset(cfg: TrainConfig, split: str, *, masks: bool):
    """The train or val dataset of cfg.data (masks: attach a mask per item, for pre-training)."""
    d = cfg.data
    gen = mask_generator(cfg) if masks else None
    if masks and (d.rand_augment or d.erase_prob > 0):
        raise MGMError("data.rand_augment / data.erase_prob are fine-tuning augmentations (VideoMAE pre-trains "
                       "with crop and flip only); data.num_sample works in both")
    if d.num_sample > 1 and (d.source != "list" or d.in_memory):
        raise MGMError("data.num_sample > 1 (repeated augmentation) needs data.source=list without data.in_memory")
    if d.source == "random":
        if gen is not None and gen.needs_motion:
            raise MGMError(f"data.source=random has no motion; mask '{d.mask}' needs motion")
        # val clips share the class patterns of the train clips, not their noise
        return RandomClips(d.random_len, d.geometry, num_classes=d.num_classes or 4, mask_generator=gen,
                           seed=cfg.run.seed, offset=0 if split == "train" else 500_000)
    list_file = d.train_list if split == "train" else d.val_list
    if not list_file:
        if split == "train":
            raise MGMError("config data.train_list is empty: give a list file (see `mgm lists`, "
                           "`mgm synth`) or --set data.source=random for a smoke test")
        return None
    if d.in_memory:
        return _memory_dataset(cfg, split, list_file, gen)
    views = d.test_clips * d.test_crops
    mode = "pretrain" if masks else "train" if split == "train" else "test" if views > 1 else "val"
    return build_video_dataset(list_file, geometry=d.geometry, mode=mode, root=d.root or None,
                               sampling=d.sampling, stride=d.stride, test_clips=d.test_clips,
                               test_crops=d.test_crops, flip=d.flip, mask_generator=gen,
                               bad_videos=d.bad_videos, seed=cfg.run.seed, motion_cache=d.motion_cache or None,
                               # beside log.jsonl (mgm.train.rundir clears it with the run it belongs to)
                               bad_log=cfg.run_dir / f"bad_videos_{split}.jsonl" if d.bad_videos == "skip" else None,
                               num_sample=d.num_sample if split == "train" else 1,
                               rand_augment=d.rand_augment, erase_prob=d.erase_prob, erase_mode=d.erase_mode,
                               uint8=uint8_video(cfg))


def _memory_dataset(cfg: TrainConfig, split: str, list_file: str, gen):
    """The split decoded once into RAM (mgm.data.memory), optionally cached in <cache>/<list name>/."""
    import os

    d = cfg.data
    cache = None
    if d.cache:
        os.makedirs(d.cache, exist_ok=True)
        cache = os.path.join(d.cache, os.path.splitext(os.path.basename(list_file))[0])
    data = decode_split(list_file, root=d.root or None, cache=cache, progress=cfg.run.progress, size=d.size)
    return MemoryClips(data, d.geometry, d.stride, mask_generator=gen, train=split == "train", seed=cfg.run.seed,
                       uint8=uint8_video(cfg))


def num_classes_of(cfg: TrainConfig, dataset) -> int:
    """cfg.data.num_classes, or 1 + the largest label the dataset knows about."""
    if cfg.data.num_classes > 0:
        return cfg.data.num_classes
    if isinstance(dataset, RandomClips):
        return dataset.num_classes
    if hasattr(dataset, "samples"):  # list-file VideoDataset
        labels = [s.label for s in dataset.samples]
    elif hasattr(dataset, "labels"):  # in-memory clips
        labels = list(dataset.labels())
    else:
        raise MGMError("cannot infer the number of classes; set data.num_classes")
    if not labels:
        raise MGMError("the training list is empty")
    return int(max(labels)) + 1


def check_labels(cfg: TrainConfig) -> None:
    """Every label of the training and validation lists names a class (data.num_classes, or the
    training list's labels): checked before any video is decoded, not found at the first
    evaluation after hours of training."""
    d = cfg.data
    if d.source != "list" or not d.train_list:
        return
    lists = {f: read_list(f) for f in (d.train_list, d.val_list) if f}
    num_classes = d.num_classes or 1 + max(s.label for s in lists[d.train_list])
    origin = "data.num_classes is" if d.num_classes > 0 else "the training list has"
    for list_file, samples in lists.items():
        bad = next((s for s in samples if s.label >= num_classes), None)
        if bad is not None:
            raise MGMError(f"{list_file}:{bad.line}: label {bad.label} is not a class ({origin} "
                           f"{num_classes} classes, labels 0..{num_classes - 1})")
