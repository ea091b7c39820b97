"""Clip-level RandAugment and random erasing, VideoMAE's fine-tuning augmentations.

VideoMAE fine-tunes with timm's RandAugment "rand-m7-n4-mstd0.5-inc1" on the uint8 frames and
timm's RandomErasing (p 0.25, mode "pixel", count 1) on the normalised clip. Both are video-aware
there in the same way as here: ONE draw of operations / box per clip, applied to every frame, so
the clip stays temporally coherent (a per-frame draw would make the augmentation itself motion).

Each transform is split into `draw(rng, ...)` (all randomness, from the numpy Generator passed in,
never a global RNG, so the dataset's per-(seed, epoch, index) generators keep runs reproducible)
and `apply(...)` (deterministic given the draw, apart from erasing noise, which also comes from rng).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

# Magnitudes are on timm's 0..10 scale ("m7" = 7/10 of each op's maximum strength).
MAX_LEVEL = 10.0
# ImageNet mean x 255: what timm fills uncovered pixels of rotated / sheared / translated frames with.
IMAGENET_FILL = (124, 116, 104)

# timm's _RAND_TRANSFORMS / _RAND_INCREASING_TRANSFORMS, in timm's order. The "increasing" set
# replaces the ops whose severity *decreases* with the magnitude (Posterize keeps more bits,
# Solarize a higher threshold, enhance factors go from 0.1 to 1.9 through the no-op 1.0).
RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel",
)
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)

# Ops whose argument gets a random sign (timm's _randomly_negate, p = 0.5).
_SIGNED = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ColorIncreasing",
           "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"}


def _level_to_arg(name: str, m: float, sign: float):
    """timm's magnitude m in [0, 10] -> the op's PIL argument (None for argument-free ops)."""
    f = m / MAX_LEVEL
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    if name == "Rotate":
        return sign * 30.0 * f  # degrees, counter-clockwise
    if name in ("ShearX", "ShearY"):
        return sign * 0.3 * f
    if name in ("TranslateXRel", "TranslateYRel"):
        return sign * 0.45 * f  # fraction of the frame width / height
    if name == "Posterize":
        return int(4 * f)  # bits kept
    if name == "PosterizeIncreasing":
        return 4 - int(4 * f)
    if name == "Solarize":
        return int(256 * f)  # threshold: pixels >= it are inverted
    if name == "SolarizeIncreasing":
        return 256 - int(256 * f)
    if name == "SolarizeAdd":
        return int(110 * f)  # added to pixels < 128
    if name.endswith("Increasing"):  # Color/Contrast/Brightness/Sharpness: factor 1 +- 0.9 f,
        return 1.0 + sign * 0.9 * f  # >= 0.1 as m <= 10, so timm's max(0.1, .) never binds
    return 1.8 * f + 0.1  # Color/Contrast/Brightness/Sharpness: factor in [0.1, 1.9]


def _lut(img: Image.Image, fn) -> Image.Image:
    """Apply the same value map fn(0..255) -> 0..255 to each RGB band."""
    return img.point([fn(i) for i in range(256)] * 3)


_ENHANCERS = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
              "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}


def _apply_op(img: Image.Image, name: str, arg, fill, resample) -> Image.Image:
    """One op on one RGB PIL image. Geometric ops use output->input affine maps (PIL convention):
    TranslateXRel by +p shows the content shifted LEFT by p * width pixels."""
    w, h = img.size
    geo = dict(resample=resample, fillcolor=fill)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        return img.rotate(arg, **geo)
    if name == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, arg, 0, 0, 1, 0), **geo)
    if name == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, arg, 1, 0), **geo)
    if name == "TranslateXRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, arg * w, 0, 1, 0), **geo)
    if name == "TranslateYRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, arg * h), **geo)
    if name.startswith("Posterize"):  # keep `arg` MSBs; own LUT as PIL >= 10 refuses 0 bits (black)
        return _lut(img, lambda i: i & (0xFF << (8 - arg)) & 0xFF)
    if name == "SolarizeAdd":
        return _lut(img, lambda i: min(255, i + arg) if i < 128 else i)
    if name.startswith("Solarize"):
        return ImageOps.solarize(img, arg)
    return _ENHANCERS[name.removesuffix("Increasing")](img).enhance(arg)


class RandAugment:
    """timm RandAugment with one draw per clip.

    Per clip: `n` ops chosen uniformly WITH replacement from the op set; each is applied with
    p = 0.5; an applied op draws its magnitude ~ N(m, mstd) clipped to [0, 10] (exactly m when
    mstd = 0) and, for signed ops, a random sign. The resulting plan is applied to every frame.
    """

    def __init__(self, magnitude: int = 10, num_ops: int = 2, mstd: float = 0.0,
                 increasing: bool = False, fill=IMAGENET_FILL, resample=Image.BILINEAR):
        self.magnitude = magnitude
        self.num_ops = num_ops
        self.mstd = mstd
        self.increasing = increasing
        self.ops = RAND_INCREASING_TRANSFORMS if increasing else RAND_TRANSFORMS
        self.fill = tuple(fill)
        self.resample = resample

    @classmethod
    def from_string(cls, spec: str, **kwargs) -> "RandAugment":
        """Parse timm's "rand-m7-n4-mstd0.5-inc1": sections after "rand", in any order, each at
        most once: m<int> magnitude (default 10), n<int> ops per clip (default 2), mstd<float>
        magnitude std (default 0), inc<0|1> increasing op set (default 0). kwargs (fill,
        resample) go to the constructor. Raises ValueError naming the offending section."""
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"RandAugment spec {spec!r} must start with 'rand', got {parts[0]!r}")
        parsers = {"m": int, "n": int, "mstd": float, "inc": int}
        values = {}
        for part in parts[1:]:
            match = re.fullmatch(r"([a-z]+)(\d[\d.]*)", part)
            if match is None or match.group(1) not in parsers:
                raise ValueError(f"RandAugment spec {spec!r}: unknown or malformed section {part!r} "
                                 f"(expected m<int>, n<int>, mstd<float> or inc<0|1>)")
            key, text = match.groups()
            if key in values:
                raise ValueError(f"RandAugment spec {spec!r}: section {key!r} given twice")
            try:
                values[key] = parsers[key](text)
            except ValueError:
                raise ValueError(f"RandAugment spec {spec!r}: bad value in section {part!r}") from None
        if values.get("inc", 0) not in (0, 1):
            raise ValueError(f"RandAugment spec {spec!r}: inc must be 0 or 1, got {values['inc']}")
        if values.get("mstd", 0.0) > 100:  # timm reads mstd > 100 as "uniform magnitude"; not supported
            raise ValueError(f"RandAugment spec {spec!r}: mstd > 100 (uniform magnitude) is not supported")
        return cls(magnitude=values.get("m", 10), num_ops=values.get("n", 2),
                   mstd=values.get("mstd", 0.0), increasing=bool(values.get("inc", 0)), **kwargs)

    def draw(self, rng: np.random.Generator) -> list[tuple[str, object]]:
        """The clip's plan: [(op name, PIL argument or None)] for the ops actually applied, in order."""
        plan = []
        for name in rng.choice(self.ops, self.num_ops):
            if rng.random() >= 0.5:  # each chosen op is applied with p = 0.5
                continue
            m = self.magnitude if self.mstd <= 0 else rng.normal(self.magnitude, self.mstd)
            m = min(max(float(m), 0.0), MAX_LEVEL)
            sign = -1.0 if name in _SIGNED and rng.random() < 0.5 else 1.0
            plan.append((str(name), _level_to_arg(str(name), m, sign)))
        return plan

    def apply(self, frames: np.ndarray, plan) -> np.ndarray:
        """frames uint8 [T, H, W, 3] -> new uint8 [T, H, W, 3], the same plan on every frame."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
        out = np.empty_like(frames)
        for t, frame in enumerate(frames):
            img = Image.fromarray(np.ascontiguousarray(frame))
            for name, arg in plan:
                img = _apply_op(img, name, arg, self.fill, self.resample)
            out[t] = np.asarray(img)
        return out

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(frames, self.draw(rng))

    def __repr__(self) -> str:
        return (f"RandAugment(m={self.magnitude}, n={self.num_ops}, mstd={self.mstd}, "
                f"increasing={self.increasing})")


class RandomErasing:
    """timm / VideoMAE random erasing of a normalised clip, the same box(es) on every frame.

    With probability `prob` the clip gets k boxes, k uniform in [1, count] (timm's max_count with
    min_count 1). Each box: area fraction ~ U(min_area, max_area) / k, aspect h / w log-uniform in
    [min_aspect, max_aspect] (default 1 / min_aspect), side lengths rounded; up to `attempts` draws
    until it fits strictly inside the frame, else that box is skipped. Fill, as in VideoMAE's cube
    mode (a fresh fill per frame, inside the common box): "pixel" N(0, 1) per channel, frame and
    pixel; "rand" one N(0, 1) value per channel and frame; "const" 0 (the mean, after normalising).
    """

    MODES = ("pixel", "rand", "const")

    def __init__(self, prob: float = 0.25, mode: str = "pixel", min_area: float = 0.02,
                 max_area: float = 1 / 3, min_aspect: float = 0.3, max_aspect: float | None = None,
                 count: int = 1, attempts: int = 10):
        if mode not in self.MODES:
            raise ValueError(f"random erasing mode must be one of {self.MODES}, got {mode!r}")
        if not 0 < min_area <= max_area <= 1 or count < 1:
            raise ValueError(f"bad random erasing parameters: area [{min_area}, {max_area}], count {count}")
        self.prob = prob
        self.mode = mode
        self.min_area, self.max_area = min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))
        self.count = count
        self.attempts = attempts

    def draw(self, rng: np.random.Generator, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """Boxes (top, left, h, w) for a clip of frames height x width; [] when not erasing."""
        if rng.random() >= self.prob:
            return []
        k = int(rng.integers(1, self.count + 1))
        boxes = []
        for _ in range(k):
            for _ in range(self.attempts):
                area = rng.uniform(self.min_area, self.max_area) * height * width / k
                aspect = math.exp(rng.uniform(*self.log_aspect))
                h = int(round(math.sqrt(area * aspect)))
                w = int(round(math.sqrt(area / aspect)))
                if h < height and w < width:
                    top = int(rng.integers(0, height - h + 1))
                    left = int(rng.integers(0, width - w + 1))
                    boxes.append((top, left, h, w))
                    break
        return boxes

    def apply(self, video: torch.Tensor, boxes, rng: np.random.Generator) -> torch.Tensor:
        """Fill `boxes` of video float [C, T, H, W] IN PLACE (fill values from rng); returns video."""
        c, t = video.shape[:2]
        for top, left, h, w in boxes:
            if self.mode == "pixel":
                fill = torch.from_numpy(rng.standard_normal((c, t, h, w), dtype=np.float32))
            elif self.mode == "rand":
                fill = torch.from_numpy(rng.standard_normal((c, t, 1, 1), dtype=np.float32))
            else:
                fill = torch.zeros(())
            video[:, :, top:top + h, left:left + w] = fill.to(video)
        return video

    def erase(self, video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """video float [C, T, H, W], normalised -> the same tensor, erased IN PLACE (or untouched)."""
        return self.apply(video, self.draw(rng, video.shape[-2], video.shape[-1]), rng)

    __call__ = erase
