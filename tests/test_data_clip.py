"""The one clip path (mgm/data/clip.py): its seed convention, and every consumer making the same clip alike."""

import numpy as np
import pytest
import torch

from mgm import codec
from mgm.config import Geometry
from mgm.data import synth
from mgm.data.clip import clip_rng, decode_clip, sample_clip, span_motion
from mgm.data.dataset import build_dataset
from mgm.data.lists import read_list
from mgm.data.memory import MemoryClips, decode_split
from mgm.masking import build_mask_generator
from mgm.motion import accumulate

GEO = Geometry(num_frames=8, size=32, tubelet=2, patch=8)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("clipsynth")
    synth.generate(out, "tiny", seed=3, per_class={"val": 1}, jobs=1, progress=False)
    return out


def test_seed_convention():
    draw = lambda g: g.random(4).tolist()  # noqa: E731
    assert draw(clip_rng(7)) == draw(np.random.default_rng(7))  # `mgm mask --seed 7`, as it always was
    assert draw(clip_rng(7, 3, 2)) == draw(np.random.default_rng([7, 2, 3]))  # training: seed, epoch, index
    assert draw(clip_rng(7, 3)) == draw(np.random.default_rng([7, 3]))  # evaluation: seed, index
    assert draw(clip_rng(7, 3, 2, view=1)) == draw(np.random.default_rng([7, 2, 3, 1]))  # an extra view
    assert draw(clip_rng(7, 3, 2, view=0)) == draw(clip_rng(7, 3, 2))


def test_a_val_item_is_the_in_memory_clip_of_the_same_video(bench):
    """Streaming dataset and in-memory clips share the clip path: on a square video (the centre crop
    is the whole frame) a val item equals the evaluation clip of the decoded split, video, motion and
    MGM mask, and neither changes with the epoch."""
    samples = read_list(bench / "val.txt", root=bench)
    gen = build_mask_generator("mgm", GEO, 0.75)
    ds = build_dataset(samples, geometry=GEO, mode="val", stride=2, mask_generator=gen, return_motion=True, seed=4)
    split = decode_split(str(bench / "val.txt"), root=str(bench), progress=False)
    memory = MemoryClips(split, GEO, 2, mask_generator=gen, train=False, seed=4, return_motion=True)
    for i in (0, 5, 9):
        a, b = ds[i], memory[i]
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["mask"], b["mask"])
        np.testing.assert_allclose(a["motion"].numpy(), b["motion"].numpy(), atol=1e-6)
        ds.set_epoch(3)
        memory.set_epoch(3)
        assert torch.equal(ds[i]["mask"], a["mask"]) and torch.equal(memory[i]["mask"], b["mask"])
        ds.set_epoch(0)
        memory.set_epoch(0)


def test_span_motion_reads_only_the_clip_rows_and_equals_the_whole_video_accumulation(bench):
    field = codec.read_motion(read_list(bench / "val.txt", root=bench)[2].path)
    idx = np.array([5, 9, 13, 31, 31])  # past the end repeats the last frame
    whole = accumulate(field.dx, field.dy, idx, 4)
    for rows in (field, type("Rows", (), {"dx": field.dx.astype(np.float16), "dy": field.dy.astype(np.float16)})):
        got = span_motion(rows.dx, rows.dy, idx, 4)
        np.testing.assert_allclose(got[0], whole[0], atol=1e-6)
        np.testing.assert_allclose(got[1], whole[1], atol=1e-6)


def test_the_mask_command_clip_is_the_decoded_clip_resized_whole(bench):
    path = read_list(bench / "val.txt", root=bench)[4].path
    clip, motion = sample_clip(path, GEO, 3, start=10)
    frames, dx, dy, _ = codec.read_clip(path, 10 + 3 * np.arange(8), stride=3)
    assert np.array_equal(clip.frames, frames) and clip.last == 31 and clip.indices[-1] == 31
    assert motion.shape == (8, 2, 4, 4)
    # 64 px frames on 32 px clips: each patch is a 16 px block of the source, at half the length
    np.testing.assert_allclose(motion[:, 0], dx / 2, atol=1e-6)
    np.testing.assert_allclose(motion[:, 1], dy / 2, atol=1e-6)
    assert decode_clip(path, [30, 33], 2).last == 31


def test_a_decoded_clip_leaves_no_frame_behind(bench):
    """decode_clip's one-pass read keeps the sampled PyAV frames (cycles with their side data) until
    their pixels are copied: they must be freed by the read, not wait in the oldest GC generation
    for the process's next full collection (they held ~5 MB a clip, growing clip after clip)."""
    import gc

    import av

    def frames_alive():  # collected or not: a cycle waiting for a full collection counts
        return sum(isinstance(o, av.VideoFrame) for o in gc.get_objects())

    path = read_list(bench / "val.txt", root=bench)[2].path
    gc.collect()
    before = frames_alive()  # whatever other tests left
    for start in (0, 7, 20):
        clip = decode_clip(path, start + 2 * np.arange(8), 2)
        assert clip.dx is not None
    assert frames_alive() - before == 0, "decoded frames outlived their read"


def test_the_loaders_reads_decode_on_one_thread_and_read_what_threaded_decoding_reads(bench, tmp_path, monkeypatch):
    """A loader runs a worker per core: each clip's decoder gets one thread, not FFmpeg's default
    of one per core (thread pools started for every clip, for slices a one-slice picture lacks).
    Pixels and motion are those of a decoder on its default threads."""
    from mgm.data.motion_cache import MotionCache

    path = read_list(bench / "val.txt", root=bench)[2].path
    idx = 3 + 2 * np.arange(8)
    threaded = [decode_clip(path, idx, 2, motion=m, cache=c) for m, c in ((True, None), (False, None))]
    asked, configure = [], codec._configure
    monkeypatch.setattr(codec, "_configure", lambda *a, **kw: asked.append(kw.get("threads")) or configure(*a, **kw))
    one = decode_clip(path, idx, 2)  # pixels and motion in one pass
    cached = decode_clip(path, idx, 2, cache=MotionCache(tmp_path / "cache"))  # cache filled, then pixels only
    pixels = decode_clip(path, idx, 2, motion=False)
    from mgm.data.memory import _decode_all

    _decode_all(path)  # a split decoded into memory, clip by clip
    assert asked == [1, 1, 1, 1, 1]
    for clip in (one, cached):
        np.testing.assert_array_equal(clip.frames, threaded[0].frames)
        np.testing.assert_allclose(clip.dx, threaded[0].dx, atol=0.02)  # the cache holds float16
        np.testing.assert_allclose(clip.dy, threaded[0].dy, atol=0.02)
    np.testing.assert_array_equal(one.dx, threaded[0].dx)
    np.testing.assert_array_equal(pixels.frames, threaded[1].frames)
