"""mgm.data.augment: clip-level RandAugment and random erasing checked against their definitions
(timm's rand_augment_transform / RandomErasing as used by VideoMAE fine-tuning)."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest
import torch

from mgm.data.augment import (IMAGENET_FILL, RAND_INCREASING_TRANSFORMS, RAND_TRANSFORMS,
                              RandAugment, RandomErasing)

RECIPE = "rand-m7-n4-mstd0.5-inc1"
N_CLIPS = 20000


@pytest.fixture(scope="module")
def recipe_plans():
    aug = RandAugment.from_string(RECIPE)
    rng = np.random.default_rng(1234)
    return [aug.draw(rng) for _ in range(N_CLIPS)]


def _texture(rng, t=1, h=24, w=24):
    return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- parsing

def test_parse_recipe_and_defaults():
    aug = RandAugment.from_string(RECIPE)
    assert (aug.magnitude, aug.num_ops, aug.mstd, aug.increasing) == (7, 4, 0.5, True)
    assert aug.ops == RAND_INCREASING_TRANSFORMS and len(aug.ops) == 15
    same = RandAugment.from_string("rand-inc1-mstd0.5-n4-m7")  # sections in any order
    assert (same.magnitude, same.num_ops, same.mstd, same.ops) == (7, 4, 0.5, aug.ops)
    default = RandAugment.from_string("rand")  # timm defaults: m10, n2, mstd0, inc0
    assert (default.magnitude, default.num_ops, default.mstd, default.ops) == (10, 2, 0.0, RAND_TRANSFORMS)
    assert RandAugment.from_string("rand-m9-inc0").ops == RAND_TRANSFORMS
    assert set(RAND_INCREASING_TRANSFORMS) - set(RAND_TRANSFORMS) == {
        "PosterizeIncreasing", "SolarizeIncreasing", "ColorIncreasing", "ContrastIncreasing",
        "BrightnessIncreasing", "SharpnessIncreasing"}


@pytest.mark.parametrize("spec, bad", [
    ("augmix-m7", "augmix"),
    ("rand-m7-w0", "w0"),          # timm's choice weights: not supported
    ("rand-m7-x3", "x3"),
    ("rand-m7.5", "m7.5"),         # magnitude is an integer in timm
    ("rand-m", "'m'"),
    ("rand--m7", "''"),
    ("rand-mstd0.5.1", "mstd0.5.1"),
    ("rand-m7-m8", "'m'"),         # given twice
    ("rand-inc2", "inc"),
    ("rand-mstd101", "mstd > 100"),
])
def test_parse_errors_name_the_bad_part(spec, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        RandAugment.from_string(spec)


# ---------------------------------------------------------------- drawing

def test_ops_uniform_with_replacement_each_applied_with_half_probability(recipe_plans):
    lengths = np.array([len(p) for p in recipe_plans])
    assert lengths.max() <= 4
    # n = 4 chosen ops, each applied with p = 0.5 -> plan length ~ Binomial(4, 0.5)
    freq = np.bincount(lengths, minlength=5) / N_CLIPS
    np.testing.assert_allclose(freq, [math.comb(4, k) / 16 for k in range(5)], atol=0.015)
    # every op of the increasing set, with frequency 1/15 per applied slot
    counts = Counter(name for plan in recipe_plans for name, _ in plan)
    assert set(counts) == set(RAND_INCREASING_TRANSFORMS)
    expected = N_CLIPS * 4 * 0.5 / 15
    for name, count in counts.items():
        assert abs(count - expected) < 5 * math.sqrt(expected), name
    # with replacement: four applied ops are all distinct with probability 15*14*13*12 / 15^4
    full = [p for p in recipe_plans if len(p) == 4]
    distinct = np.mean([len({n for n, _ in p}) == 4 for p in full])
    assert abs(distinct - 15 * 14 * 13 * 12 / 15 ** 4) < 5 * math.sqrt(0.25 / len(full))


# |argument| = scale * m / 10 for the continuous ops (the increasing enhancers: |factor - 1|)
_SCALE = {"Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3, "TranslateXRel": 0.45,
          "TranslateYRel": 0.45, "ColorIncreasing": 0.9, "ContrastIncreasing": 0.9,
          "BrightnessIncreasing": 0.9, "SharpnessIncreasing": 0.9}


def _magnitudes_and_signs(plans):
    m, neg = [], []
    for plan in plans:
        for name, arg in plan:
            if name in _SCALE:
                dev = arg - 1.0 if name.endswith("Increasing") else arg
                m.append(abs(dev) / _SCALE[name] * 10)
                neg.append(dev < 0)
    return np.array(m), np.array(neg)


def test_magnitude_gaussian_per_op_and_random_sign(recipe_plans):
    m, neg = _magnitudes_and_signs(recipe_plans)
    assert len(m) > 20000
    assert abs(m.mean() - 7.0) < 0.02 and abs(m.std() - 0.5) < 0.02
    assert abs(neg.mean() - 0.5) < 0.02
    # one magnitude draw per op, not per clip: ops within a clip differ
    multi = [p for p in recipe_plans if sum(n in _SCALE for n, _ in p) >= 2]
    m0, _ = _magnitudes_and_signs([[next(op for op in p if op[0] in _SCALE)] for p in multi])
    m1, _ = _magnitudes_and_signs([[[op for op in p if op[0] in _SCALE][1]] for p in multi])
    assert abs(np.corrcoef(m0, m1)[0, 1]) < 0.05


@pytest.mark.parametrize("m, bound", [(10, 10.0), (0, 0.0)])
def test_magnitude_clipped_to_0_10(m, bound):
    aug = RandAugment.from_string(f"rand-m{m}-n4-mstd2-inc1")
    rng = np.random.default_rng(5)
    mags, _ = _magnitudes_and_signs([aug.draw(rng) for _ in range(3000)])
    assert mags.min() >= -1e-9 and mags.max() <= 10 + 1e-9
    assert abs(np.mean(np.isclose(mags, bound)) - 0.5) < 0.04  # half of N(m, 2) falls beyond m


# hand-computed arguments at m = 7 (f = 0.7), mstd 0: timm's level -> argument maps
_M7_INC = {"AutoContrast": {None}, "Equalize": {None}, "Invert": {None}, "Rotate": {21.0, -21.0},
           "PosterizeIncreasing": {2}, "SolarizeIncreasing": {77}, "SolarizeAdd": {77},
           "ColorIncreasing": {1.63, 0.37}, "ContrastIncreasing": {1.63, 0.37},
           "BrightnessIncreasing": {1.63, 0.37}, "SharpnessIncreasing": {1.63, 0.37},
           "ShearX": {0.21, -0.21}, "ShearY": {0.21, -0.21},
           "TranslateXRel": {0.315, -0.315}, "TranslateYRel": {0.315, -0.315}}
_M7_PLAIN = {"Posterize": {2}, "Solarize": {179}, "Color": {1.36}, "Contrast": {1.36},
             "Brightness": {1.36}, "Sharpness": {1.36}}


@pytest.mark.parametrize("inc", [1, 0])
def test_level_to_argument_at_fixed_magnitude(inc):
    aug = RandAugment.from_string(f"rand-m7-n4-inc{inc}")
    rng = np.random.default_rng(6)
    seen: dict[str, set] = {}
    for _ in range(2000):
        for name, arg in aug.draw(rng):
            seen.setdefault(name, set()).add(arg if arg is None or isinstance(arg, int) else round(arg, 9))
    expected = dict(_M7_INC)
    if not inc:
        expected = {k: v for k, v in expected.items() if "Increasing" not in k} | _M7_PLAIN
    assert seen == expected


def test_draw_deterministic_in_generator():
    aug = RandAugment.from_string(RECIPE)
    a = [aug.draw(np.random.default_rng([3, 1, 7])) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    assert len({repr(aug.draw(rng)) for _ in range(50)}) > 40


# ---------------------------------------------------------------- applying

_EVERY_OP = [("AutoContrast", None), ("Rotate", -13.0), ("PosterizeIncreasing", 3),
             ("SolarizeIncreasing", 200), ("SolarizeAdd", 40), ("ColorIncreasing", 1.5),
             ("ContrastIncreasing", 0.6), ("BrightnessIncreasing", 1.2),
             ("SharpnessIncreasing", 0.4), ("ShearX", 0.1), ("ShearY", -0.2),
             ("TranslateXRel", 0.1), ("TranslateYRel", -0.15), ("Equalize", None), ("Invert", None)]


def test_same_transform_on_every_frame():
    aug = RandAugment.from_string(RECIPE)
    rng = np.random.default_rng(8)
    plans = [_EVERY_OP] + [aug.draw(rng) for _ in range(10)]
    frame = _texture(rng)
    clip = _texture(rng, t=5)
    for plan in plans:
        copies = aug.apply(np.repeat(frame, 6, axis=0), plan)
        assert copies.dtype == np.uint8 and copies.shape == (6, 24, 24, 3)
        assert (copies == copies[:1]).all()  # T copies stay T copies
        out = aug.apply(clip, plan)
        for t in range(5):  # each frame = the same plan applied to that frame alone
            np.testing.assert_array_equal(out[t], aug.apply(clip[t:t + 1], plan)[0])
    assert not np.array_equal(aug.apply(clip, _EVERY_OP), clip)


def test_call_is_draw_then_apply():
    aug = RandAugment.from_string(RECIPE)
    clip = _texture(np.random.default_rng(0), t=3)
    out = aug(clip, np.random.default_rng(42))
    np.testing.assert_array_equal(out, aug.apply(clip, aug.draw(np.random.default_rng(42))))


def test_apply_rejects_bad_frames():
    aug = RandAugment.from_string(RECIPE)
    with pytest.raises(ValueError, match="uint8"):
        aug.apply(np.zeros((2, 8, 8, 3), np.float32), [])
    with pytest.raises(ValueError, match="uint8"):
        aug.apply(np.zeros((8, 8, 3), np.uint8), [])


def _one(op, arg, img):
    return RandAugment().apply(img[None], [(op, arg)])[0]


def test_pixel_ops_against_hand_computed():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    v = x.astype(int)
    np.testing.assert_array_equal(_one("Invert", None, x), 255 - v)
    np.testing.assert_array_equal(_one("PosterizeIncreasing", 2, x), v & 0b11000000)  # keep 2 MSBs
    np.testing.assert_array_equal(_one("Posterize", 0, x), 0)
    np.testing.assert_array_equal(_one("SolarizeIncreasing", 77, x), np.where(v >= 77, 255 - v, v))
    np.testing.assert_array_equal(_one("Solarize", 256, x), v)  # threshold 256: no-op
    np.testing.assert_array_equal(_one("SolarizeAdd", 77, x), np.where(v < 128, np.minimum(v + 77, 255), v))
    bright = _one("BrightnessIncreasing", 0.37, x).astype(int)  # blend with black
    assert np.abs(bright - v * 0.37).max() <= 1
    # AutoContrast maps [min, max] = [50, 101] linearly onto [0, 255]: (v - 50) * 5
    narrow = (50 + np.arange(104) % 52).astype(np.uint8).reshape(8, 13, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(_one("AutoContrast", None, narrow), (narrow.astype(int) - 50) * 5)


def test_geometric_ops_against_hand_computed():
    img = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    fill = np.array(IMAGENET_FILL, np.uint8)
    np.testing.assert_array_equal(_one("Rotate", 90.0, img), np.rot90(img))  # counter-clockwise
    corner = _one("Rotate", 45.0, img)
    np.testing.assert_array_equal(corner[0, 0], fill)
    # TranslateXRel +0.25 of width 8: content moves 2 px left, the right 2 columns are fill
    out = _one("TranslateXRel", 0.25, img)
    np.testing.assert_array_equal(out[:, :6], img[:, 2:])
    assert (out[:, 6:] == fill).all()
    # TranslateYRel -0.25: content moves 2 px down
    out = _one("TranslateYRel", -0.25, img)
    np.testing.assert_array_equal(out[2:], img[:-2])
    assert (out[:2] == fill).all()
    # ShearX s: output pixel centre (x+.5, y+.5) samples input x + .5 + s (y + .5); s = 2 lands
    # on pixel centres: out[y, x] = in[y, x + 2y + 1], fill beyond the right edge
    out = _one("ShearX", 2.0, img)
    for y in range(8):
        for x in range(8):
            src = x + 2 * y + 1
            np.testing.assert_array_equal(out[y, x], img[y, src] if src < 8 else fill)
    out = _one("ShearY", 2.0, img)
    for y in range(8):
        for x in range(8):
            src = y + 2 * x + 1
            np.testing.assert_array_equal(out[y, x], img[src, x] if src < 8 else fill)


# ---------------------------------------------------------------- random erasing

H = W = 224


@pytest.fixture(scope="module")
def erase_draws():
    er = RandomErasing()
    rng = np.random.default_rng(99)
    return [er.draw(rng, H, W) for _ in range(N_CLIPS)]


def test_erasing_probability_and_count(erase_draws):
    erased = np.array([len(b) > 0 for b in erase_draws])
    assert abs(erased.mean() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / N_CLIPS)
    assert max(len(b) for b in erase_draws) == 1


def test_erasing_box_area_and_aspect(erase_draws):
    boxes = np.array([b[0] for b in erase_draws if b])  # (top, left, h, w)
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= H).all() and (left + w <= W).all()
    area = h * w / (H * W)
    assert area.min() >= 0.02 - 0.005 and area.max() <= 1 / 3 + 0.005  # slack: sides are rounded
    # area fraction ~ U(0.02, 1/3): mean and quartiles (the ~0.5 % of attempts that do not fit
    # and are redrawn shift these by < 0.001)
    lo, hi = 0.02, 1 / 3
    assert abs(area.mean() - (lo + hi) / 2) < 0.005
    np.testing.assert_allclose(np.quantile(area, [0.25, 0.5, 0.75]),
                               [lo + q * (hi - lo) for q in (0.25, 0.5, 0.75)], atol=0.01)
    # aspect h / w log-uniform in [0.3, 1 / 0.3]: log-aspect uniform, symmetric around 0
    log_aspect = np.log(h / w)
    bound = math.log(1 / 0.3)
    assert np.abs(log_aspect).max() <= bound + 0.06
    assert abs(log_aspect.mean()) < 0.03
    assert abs(log_aspect.std() - 2 * bound / math.sqrt(12)) < 0.03


def test_erasing_count_scales_area():
    er = RandomErasing(prob=1.0, count=3)
    rng = np.random.default_rng(4)
    draws = [er.draw(rng, H, W) for _ in range(3000)]
    ks = np.bincount([len(b) for b in draws], minlength=4)[1:] / len(draws)
    np.testing.assert_allclose(ks, [1 / 3] * 3, atol=0.04)  # k uniform in 1..count
    for k in (1, 2, 3):
        areas = [h * w / (H * W) for b in draws if len(b) == k for _, _, h, w in b]
        assert abs(np.mean(areas) - (0.02 + 1 / 3) / 2 / k) < 0.01


def test_erasing_same_box_every_frame_in_place():
    er = RandomErasing(prob=1.0)
    rng = np.random.default_rng(11)
    for _ in range(20):
        video = torch.full((3, 6, 40, 48), 5.0)
        seed = int(rng.integers(1 << 30))
        assert er.erase(video, np.random.default_rng(seed)) is video
        # erase draws the box first, so the same seed recovers it; prob 1 always erases
        (top, left, h, w), = er.draw(np.random.default_rng(seed), 40, 48)
        expected = torch.zeros(40, 48, dtype=torch.bool)
        expected[top:top + h, left:left + w] = True
        assert torch.equal(video != 5.0, expected.expand(3, 6, 40, 48))


def test_erasing_pixel_noise_is_standard_normal():
    er = RandomErasing(prob=1.0, mode="pixel", min_area=0.3, max_area=0.3)
    video = torch.full((3, 16, 64, 64), float("nan"))
    er.erase(video, np.random.default_rng(2))
    noise = video[~torch.isnan(video)].reshape(3, 16, -1)  # the erased box, per channel and frame
    assert noise.shape[-1] > 1000
    assert abs(noise.mean().item()) < 0.01 and abs(noise.std().item() - 1) < 0.01
    assert abs((noise.abs() < 1).float().mean().item() - 0.6827) < 0.01
    # independent per channel and per frame (fresh noise inside the common box)
    assert abs(np.corrcoef(noise[0, 0], noise[1, 0])[0, 1]) < 0.1
    assert abs(np.corrcoef(noise[0, 0], noise[0, 1])[0, 1]) < 0.1


def test_erasing_rand_and_const_modes():
    video = torch.full((3, 4, 32, 32), float("nan"))
    RandomErasing(prob=1.0, mode="rand").erase(video, np.random.default_rng(3))
    box = video[:, :, ~torch.isnan(video[0, 0])]  # [C, T, pixels]
    assert box.shape[-1] > 0
    assert torch.equal(box, box[..., :1].expand_as(box))  # one value per channel (and frame)
    assert len(set(box[:, 0, 0].tolist())) == 3
    video = torch.full((3, 4, 32, 32), float("nan"))
    RandomErasing(prob=1.0, mode="const").erase(video, np.random.default_rng(3))
    assert (video[~torch.isnan(video)] == 0).all()


def test_erasing_deterministic_and_prob_zero():
    base = torch.randn(3, 4, 32, 32)
    er = RandomErasing(prob=1.0)
    a = er.erase(base.clone(), np.random.default_rng([1, 2, 3]))
    b = er.erase(base.clone(), np.random.default_rng([1, 2, 3]))
    assert torch.equal(a, b) and not torch.equal(a, base)
    assert torch.equal(RandomErasing(prob=0.0).erase(base.clone(), np.random.default_rng(0)), base)


def test_erasing_rejects_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        RandomErasing(mode="noise")
