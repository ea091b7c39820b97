"""In-memory splits (mgm.data.memory): decoded once, cached, resized once, sampled deterministically."""

import numpy as np
import pytest
import torch

from mgm import codec
from mgm.config import IMAGENET_MEAN, IMAGENET_STD, Geometry
from mgm.data import synth
from mgm.data.memory import DecodedSplit, MemoryClips, clip_indices, decode_split
from mgm.motion import accumulate


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("memsynth")
    synth.generate(out, "tiny", seed=2, per_class={"val": 1}, jobs=1, progress=False)
    return out


def test_decode_split_matches_the_codec_and_its_cache(bench):
    cache = str(bench / "cache" / "val")
    split = decode_split(str(bench / "val.txt"), root=str(bench), cache=cache, progress=False)
    assert split.video.shape == (12, 32, 64, 64, 3) and list(split.labels) == list(range(12))
    frames, _, _, field = codec.read_clip(split.paths[5], np.arange(32), stride=1)
    np.testing.assert_array_equal(split.video[5], frames)
    np.testing.assert_allclose(split.dx[5], field.dx, atol=1e-3)  # stored as float16
    again = decode_split(str(bench / "val.txt"), root=str(bench), cache=cache, progress=False)
    assert isinstance(again.video, np.memmap) and again.source_size == 0
    np.testing.assert_array_equal(again.video, split.video)


def test_resized_split_keeps_the_motion_of_the_source_frames(bench):
    cache = str(bench / "cache" / "val")
    full = decode_split(str(bench / "val.txt"), root=str(bench), cache=cache, progress=False)
    small = decode_split(str(bench / "val.txt"), root=str(bench), cache=cache, progress=False, size=32)
    assert small.video.shape == (12, 32, 32, 32, 3) and small.source_size == 64
    reloaded = DecodedSplit.load(cache + "-32px")
    assert reloaded.source_size == 64
    np.testing.assert_array_equal(reloaded.video, small.video)
    # pixels: what the loader's own per-clip resize gives, to the rounding of uint8
    ref = torch.nn.functional.interpolate(torch.from_numpy(np.array(full.video[3])).permute(0, 3, 1, 2).float(),
                                          size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    assert (ref.permute(0, 2, 3, 1).numpy() - small.video[3]).__abs__().max() <= 0.5 + 1e-3
    # motion: the same patch-grid motion from either split (it is measured on the source frames)
    g = Geometry(num_frames=8, size=32, patch=8)
    a, b = MemoryClips(full, g, 4, return_motion=True), MemoryClips(small, g, 4, return_motion=True)
    idx = clip_indices(32, g, 4, None)
    np.testing.assert_allclose(a.motion(7, idx), b.motion(7, idx))
    # and it is the accumulated block motion scaled to the new size (32 / 64 = 0.5 px per px)
    dx, _ = accumulate(full.dx[7].astype(np.float32), full.dy[7].astype(np.float32), idx, 4)
    whole_frame = b.motion(7, idx)[:, 0].mean(axis=(1, 2))
    np.testing.assert_allclose(whole_frame, 0.5 * dx.mean(axis=(1, 2)), atol=1e-4)


def test_clip_indices_and_deterministic_items(bench):
    g = Geometry(num_frames=8, size=32, patch=8)
    np.testing.assert_array_equal(clip_indices(32, g, 4, None), [1, 5, 9, 13, 17, 21, 25, 29])  # centred
    np.testing.assert_array_equal(clip_indices(20, g, 4, None), [0, 4, 8, 12, 16, 19, 19, 19])  # padded
    split = decode_split(str(bench / "val.txt"), root=str(bench), progress=False, size=32,
                         cache=str(bench / "cache" / "val"))
    ds = MemoryClips(split, g, 2, train=True, seed=5)
    ds.set_epoch(3)
    x, y = ds[4]["video"], ds[4]["video"]
    assert torch.equal(x, y) and x.shape == (3, 8, 32, 32)
    # the start is the one (seed, epoch, index) draws, and the pixels are those frames, normalised
    idx = clip_indices(32, g, 2, np.random.default_rng([5, 3, 4]))
    want = torch.from_numpy(np.array(split.video[4, idx])).permute(3, 0, 1, 2).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    torch.testing.assert_close(x, (want - mean) / std)
    ds.set_epoch(4)
    assert not torch.equal(ds[4]["video"], x) or clip_indices(32, g, 2, np.random.default_rng([5, 4, 4]))[0] == idx[0]


def test_a_second_save_of_one_split_keeps_the_first_and_leaves_no_temporary(tmp_path):
    """Processes decoding the same split at once both save it: the first rename wins."""
    def split(value):
        return DecodedSplit(np.full((1, 2, 4, 4, 3), value, np.uint8), np.zeros((1, 2, 1, 1), np.float16),
                            np.zeros((1, 2, 1, 1), np.float16), np.array([0]), ["a.mp4"])

    path = str(tmp_path / "train")
    split(1).save(path)
    split(2).save(path)
    assert DecodedSplit.load(path).video.max() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]


def test_a_file_listed_many_times_is_decoded_and_stored_once(bench, tmp_path):
    """figures.py lists one video 64 times (64 random windows an epoch): one row, not 64 copies."""
    lines = (bench / "val.txt").read_text().splitlines()
    listing = tmp_path / "repeats.txt"
    listing.write_text("\n".join([lines[3], lines[5], lines[3], lines[3], lines[5]]) + "\n")
    cache = str(tmp_path / "cache")
    split = decode_split(str(listing), root=str(bench), cache=cache, progress=False)
    assert split.video.shape[0] == 2 and list(split.rows) == [0, 1, 0, 0, 1]
    assert list(split.labels) == [3, 5, 3, 3, 5]
    assert list(DecodedSplit.load(cache).rows) == [0, 1, 0, 0, 1]
    for size in (None, 32):  # as decoded, and resized once (cached beside it)
        rep = decode_split(str(listing), root=str(bench), cache=cache, progress=False, size=size)
        ref = decode_split(str(bench / "val.txt"), root=str(bench), cache=str(bench / "cache" / "val"),
                           progress=False, size=size)
        g = Geometry(num_frames=8, size=rep.video.shape[2], patch=8)
        idx = clip_indices(32, g, 4, None)
        a, b = MemoryClips(rep, g, 4, train=False), MemoryClips(ref, g, 4, train=False)
        assert len(a) == 5 and rep.video.shape[0] == 2
        for entry, source in enumerate([3, 5, 3, 3, 5]):
            np.testing.assert_array_equal(a.frames(entry, idx), b.frames(source, idx))
            np.testing.assert_array_equal(a.motion(entry, idx), b.motion(source, idx))


def test_uint8_items_normalise_to_the_float_items(bench):
    """MemoryClips(uint8=True): the same clip and mask, the video uint8 until normalise_video."""
    from mgm.data.transforms import normalise_video
    from mgm.masking import build_mask_generator

    g = Geometry(num_frames=8, size=32, patch=8)
    split = decode_split(str(bench / "val.txt"), root=str(bench), progress=False, size=32,
                         cache=str(bench / "cache" / "val"))
    gen = build_mask_generator("mgm", g, 0.75)
    f, u = (MemoryClips(split, g, 2, train=True, seed=1, mask_generator=gen, uint8=flag) for flag in (False, True))
    for i in (0, 7):
        a, b = f[i], u[i]
        assert b["video"].dtype == torch.uint8 and torch.equal(normalise_video(b["video"]), a["video"])
        assert torch.equal(a["mask"], b["mask"]) and a["label"] == b["label"]
