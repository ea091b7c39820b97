"""The dataset core: items against a hand-wired decode + transform, determinism, bad videos, workers."""

import logging

import numpy as np
import pytest
import torch

from mgm import codec
from mgm.config import Geometry
from mgm.data import synth
from mgm.codec import read_frames
from mgm.data.dataset import EpochSampler, build_dataset
from mgm.data.lists import Sample, read_list
from mgm.data.transforms import ClipTransform, center_box
from mgm.errors import MGMError, VideoError
from mgm.masking import build_mask_generator

GEO = Geometry(num_frames=8, size=32, tubelet=2, patch=8)  # grid 4 x 4 x 4


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    synth.generate(out, "tiny", seed=1, per_class={"val": 1}, jobs=1, progress=False)
    samples = read_list(out / "val.txt", root=out)[:4]
    (out / "garbage.mp4").write_bytes(b"not a video at all" * 10)
    return out, samples


def test_val_item_matches_hand_wired_pipeline(bench):
    _, samples = bench
    mgm = build_mask_generator("mgm", GEO, 0.75)
    ds = build_dataset(samples, geometry=GEO, mode="val", stride=2, mask_generator=mgm, return_motion=True)
    item = ds[1]
    assert set(item) == {"video", "mask", "motion", "label", "index"}
    assert item["label"] == samples[1].label and item["index"] == 1
    # 32 frames, 8 at stride 2 cover 15: centred start (32 - 15) // 2 = 8
    idx = np.arange(8, 24, 2)
    frames, dx, dy, _ = codec.read_clip(samples[1].path, idx, stride=2)
    t = ClipTransform(GEO, crop="center")
    box = center_box((64, 64))
    assert torch.equal(item["video"], t.frames(frames, box, False))
    assert item["video"].shape == (3, 8, 32, 32) and item["video"].dtype == torch.float32
    assert np.array_equal(item["motion"].numpy(), t.motion(dx, dy, (64, 64), box, False))
    assert item["mask"].shape == (64,) and item["mask"].dtype == torch.bool
    assert int(item["mask"].sum()) == 4 * int(0.75 * 16)
    expect = mgm(item["motion"].numpy(), ds.rng(1)).reshape(-1)  # same (seed, epoch, index) stream
    assert np.array_equal(item["mask"].numpy(), expect)


def test_pixels_only_path_decodes_the_same_frames(bench):
    _, samples = bench
    idx = [3, 5, 7, 31, 31]
    frames, *_ = codec.read_clip(samples[0].path, idx, stride=2)
    assert np.array_equal(read_frames(samples[0].path, idx), frames)
    ds = build_dataset(samples, geometry=GEO, mode="pretrain", mask_generator=build_mask_generator("tube", GEO, 0.9))
    assert not ds.needs_motion and set(ds[0]) == {"video", "mask", "label", "index"}


def test_randomness_is_a_function_of_seed_epoch_index(bench):
    _, samples = bench
    mk = lambda seed: build_dataset(samples, geometry=GEO, mode="pretrain", stride=2, seed=seed,
                                    mask_generator=build_mask_generator("mgm", GEO, 0.75))
    a, b = mk(0), mk(0)
    for i in (2, 0):  # order of access does not matter
        assert torch.equal(a[i]["video"], b[i]["video"]) and torch.equal(a[i]["mask"], b[i]["mask"])
    masks_e0 = [a[i]["mask"] for i in range(4)]
    a.set_epoch(1)
    assert any(not torch.equal(a[i]["mask"], masks_e0[i]) for i in range(4))
    assert torch.equal(a[(0, 2)]["mask"], masks_e0[2])  # (epoch, index) keys, for persistent workers
    c = mk(5)
    assert any(not torch.equal(c[i]["mask"], masks_e0[i]) for i in range(4))


def test_multiview_test_mode(bench):
    _, samples = bench
    ds = build_dataset(samples[:2], geometry=GEO, mode="test", sampling="segment", test_clips=2, test_crops=3)
    assert len(ds) == 2 * 2 * 3
    items = [ds[i] for i in range(6, 12)]
    assert [it["view"] for it in items] == list(range(6)) and {it["index"] for it in items} == {1}
    assert torch.equal(items[0]["video"], items[2]["video"])  # square video: the 3 crops coincide
    assert not torch.equal(items[0]["video"], items[3]["video"])  # different temporal view


def test_bad_videos_error_and_skip(bench, tmp_path, caplog):
    out, samples = bench
    rows = [samples[0], Sample(str(out / "garbage.mp4"), 5), Sample(str(out / "missing.mp4"), 6), samples[1]]
    mk = lambda policy: build_dataset(rows, geometry=GEO, mode="val", stride=2, bad_videos=policy)
    with pytest.raises(VideoError, match="garbage.mp4"):
        mk("error")[1]
    ds = mk("skip")
    with caplog.at_level(logging.WARNING):
        item = ds[1]
    assert item["index"] == 3 and item["label"] == samples[1].label and item["skipped"] == 2
    assert "garbage.mp4" in caplog.text and "missing.mp4" in caplog.text
    assert ds[0]["skipped"] == 0
    s = ds.epoch_summary()
    assert s["bad"] == 2 and set(s["videos"]) == {str(out / "garbage.mp4"), str(out / "missing.mp4")}
    assert "no such file" in s["videos"][str(out / "missing.mp4")]
    ds.set_epoch(1)
    assert ds.epoch_summary()["bad"] == 0
    with pytest.raises(MGMError, match="no readable video"):
        build_dataset(rows[1:3], geometry=GEO, mode="val", bad_videos="skip")[0]


def test_dataloader_two_workers_matches_single_process(bench):
    out, samples = bench
    rows = samples + [Sample(str(out / "garbage.mp4"), 0)]
    ds = build_dataset(rows, geometry=GEO, mode="pretrain", stride=2, bad_videos="skip",
                       mask_generator=build_mask_generator("mgm", GEO, 0.75))
    ds.set_epoch(3)
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=workers,
                                             sampler=EpochSampler(range(len(ds))))
        loader.sampler.set_epoch(3)
        batches.append(next(iter(loader)))
    assert batches[0]["video"].shape == (5, 3, 8, 32, 32) and batches[0]["mask"].shape == (5, 64)
    for key in ("video", "mask", "index", "skipped"):
        assert torch.equal(batches[0][key], batches[1][key])
    assert batches[0]["index"].tolist() == [0, 1, 2, 3, 0]  # the bad last video wraps to the first
    assert ds.epoch_summary(3)["bad"] == 2  # one event in this process, one in a worker


def test_motion_cache_gives_the_one_pass_items_and_reads_motion_once(bench, tmp_path, monkeypatch):
    _, samples = bench
    mgm = build_mask_generator("mgm", GEO, 0.75)
    kw = dict(geometry=GEO, mode="pretrain", stride=4, mask_generator=mgm, return_motion=True, seed=3)
    plain = build_dataset(samples, **kw)
    cached = build_dataset(samples, motion_cache=tmp_path / "mv", **kw)
    for epoch in (0, 1):
        for i in range(len(samples)):
            a, b = plain[epoch, i], cached[epoch, i]
            assert torch.equal(a["video"], b["video"]) and torch.equal(a["mask"], b["mask"])
            np.testing.assert_allclose(a["motion"].numpy(), b["motion"].numpy(), atol=1e-5)
    entries = sorted(p.name for p in (tmp_path / "mv").iterdir())
    assert len(entries) == len(samples) and all(e.endswith(".npy") for e in entries)
    # later visits decode pixels only: no motion read, no motion-vector export
    calls = []
    monkeypatch.setattr(codec, "read_motion", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(codec, "read_clip", lambda *a, **k: calls.append(a))
    cached[2, 0]
    assert calls == []
    # a replaced video gets a new entry
    src = tmp_path / "copy.mp4"
    src.write_bytes(open(samples[0].path, "rb").read())
    from mgm.data.motion_cache import MotionCache
    cache = MotionCache(tmp_path / "mv2")
    first = cache.entry(src)
    import os
    os.utime(src, ns=(1, 1))
    assert cache.entry(src) != first


def test_old_float32_cache_entries_are_read_and_new_ones_are_float16(tmp_path):
    """tests/data/motion_cache_float32: 32 frames of bikes.mp4 (real footage) at 192x80, x264
    defaults (B-frames, 3 references), and the entry the pre-2026-12-04 MotionCache wrote for it
    (float32 [2, F, Hb, Wb]). The reader takes that entry as it is (no rewrite), with the items of
    the one-pass read; a fresh entry is float16, half the bytes, with the same masks."""
    import os
    import shutil
    from pathlib import Path

    from mgm.data.motion_cache import MotionCache

    data = Path(__file__).parent / "data" / "motion_cache_float32"
    video = tmp_path / "bikes-192x80.mp4"
    shutil.copy(data / "bikes-192x80.mp4", video)
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    entry = MotionCache(old_dir).entry(video)
    shutil.copy(data / "bikes-192x80.npy", entry)
    written = Path(entry).read_bytes()
    old = MotionCache(old_dir).motion(video)
    field = codec.read_motion(video)
    assert old.dtype == np.float32 and np.array_equal(old, np.stack([field.dx, field.dy]))
    geo = Geometry(num_frames=8, size=64, tubelet=2, patch=8)
    kw = dict(geometry=geo, mode="pretrain", stride=2, mask_generator=build_mask_generator("mgm", geo, 0.75),
              return_motion=True, seed=4)
    samples = [Sample(str(video), 0)]
    plain = build_dataset(samples, **kw)
    caches = {d: build_dataset(samples, motion_cache=d, **kw) for d in (old_dir, new_dir)}
    for epoch in range(6):
        a = plain[epoch, 0]
        for cached in caches.values():
            b = cached[epoch, 0]
            assert torch.equal(a["video"], b["video"]) and torch.equal(a["mask"], b["mask"])
            np.testing.assert_allclose(a["motion"].numpy(), b["motion"].numpy(), atol=1e-5)
    assert Path(entry).read_bytes() == written and os.listdir(old_dir) == [os.path.basename(entry)]
    new = MotionCache(new_dir).motion(video)
    assert new.dtype == np.float16 and new.shape == old.shape
    assert os.path.getsize(MotionCache(new_dir).entry(video)) < 0.55 * len(written)
