"""A procedural video benchmark whose classes are defined by motion alone, encoded to real H.264.

Each clip shows one main object on a textured background. Its class is *how it moves*
(CLASSES below); everything one frame shows is random per clip: shape, texture, colours, size,
position, background, one or two smaller distractor objects wandering irrelevantly, and on part
of the clips a camera pan that moves the whole scene. The main object's time-averaged screen
position is uniform whatever the class, so a single frame says (almost) nothing about the class:
telling "stop" from "start" or "bounce" from "left" needs several frames.

Geometry: screen coordinates, x right, y down, pixels. "Clockwise" is clockwise as seen on screen.
Every clip is a pure function of (seed, variant, split, index): the same seed gives identical
pixels, hence (x264 being deterministic with one thread) identical files and decoded frames.
`variant="shifted"` draws backgrounds, shapes, palettes and speeds from disjoint families, for
transfer experiments.

Layout written by `generate(out, ...)`:
  out/<split>/<class>/<index>.mp4   H.264, yuv420p, no B-frames, one reference, one GOP per clip
  out/<split>.txt                   VideoMAE list (`<split>/<class>/<index>.mp4 label`)
  out/<split>.jsonl                 per clip: label, shape, pan, main object's centre/scale/angle per frame
  out/classes.txt, out/meta.json    class names; preset, seed, variant, encoder settings
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from mgm.errors import MGMError
from mgm.files import atomic_write, write_text

CLASSES = ("left", "right", "up", "down", "approach", "recede", "rotate_cw", "rotate_ccw",
           "bounce", "stop", "start", "orbit")
VARIANTS = ("base", "shifted")
_SHAPES = {"base": ("circle", "square", "triangle", "diamond"),
           "shifted": ("star", "cross", "ring", "hexagon")}
_TEXTURES = {"base": ("stripes", "checker", "dots"), "shifted": ("rings", "noise", "waves")}


@dataclass(frozen=True)
class Scene:
    """How hard a clip is to read: main object size, camera pans, distractors (sizes are fractions
    of the frame side; speeds in px/frame at 96 px, scaled with the frame)."""

    radius: tuple = (0.11, 0.18)       # main object radius
    pan_prob: float = 0.5              # share of clips with a camera pan
    pan_speed: tuple = (0.4, 1.2)
    distractors: tuple = (1, 2)        # inclusive range of distractor objects
    distractor_radius: tuple = (0.05, 0.09)
    distractor_speed: float = 0.9      # amplitude of their wandering velocity
    grating: float = 0.2               # weight of the fine grating in the base background (vs smooth blobs)


@dataclass(frozen=True)
class Preset:
    """Benchmark size: frames of `size`x`size` pixels, `num_frames` per clip, clips per class per split."""

    size: int
    num_frames: int
    per_class: dict = field(default_factory=dict)  # split -> clips per class
    fps: int = 25
    crf: int = 18
    scene: Scene = Scene()


# the experiment: 12 x (300 + 50 + 20) = 4,440 clips of 96x96x32, ~75 MB; measured 120 clips in
# 8 s with 2 jobs on the shared 2-core machine, so ~5 min for the whole set
_SMALL = Preset(size=96, num_frames=32, per_class={"train": 300, "val": 50, "dev": 20})
PRESETS = {
    # tests and the demo: 12 classes x 6 clips (72), ~2 s to generate on 2 cores, ~1 MB
    "tiny": Preset(size=64, num_frames=32, per_class={"train": 4, "val": 2}),
    "small": _SMALL,
    # `small` with the main object 1.5x larger, so that it spans 2-3 tokens of the experiment's
    # 6 x 6 grid instead of 1-2: a tube mask then hides all of it less often and pre-training
    # has more to learn from (the experiment's `large` preset, RESULTS.md)
    "small-large": replace(_SMALL, scene=Scene(radius=(0.165, 0.27))),
}


def x264_params(num_frames: int) -> str:
    """One GOP per clip (a single I-frame, so every other frame carries motion vectors), no
    B-frames and one reference so vectors are exact per-frame displacements; one thread keeps the
    output bit-identical across runs."""
    return f"bframes=0:ref=1:keyint={num_frames}:min-keyint={num_frames}:scenecut=0:threads=1"


# ---------------------------------------------------------------- appearance
def _hsv(h, s, v) -> np.ndarray:
    """HSV in [0, 1] -> RGB float [3]."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float32)


def _colour(rng, variant: str, role: str) -> np.ndarray:
    # Disjoint palettes (saturation, value ranges) so the shifted variant changes appearance
    # statistics: base = vivid objects on greyish backgrounds, shifted = pastel objects on dark
    # saturated backgrounds.
    sat, val = {("base", "object"): ((0.55, 1.0), (0.6, 1.0)),
                ("base", "background"): ((0.05, 0.45), (0.25, 0.7)),
                ("shifted", "object"): ((0.2, 0.5), (0.75, 1.0)),
                ("shifted", "background"): ((0.4, 0.8), (0.15, 0.45))}[variant, role]
    return _hsv(rng.random(), rng.uniform(*sat), rng.uniform(*val))


def _smooth_noise(rng, h: int, w: int, cell: int) -> np.ndarray:
    """Bilinearly upsampled random grid: float [h, w] in [0, 1], features about `cell` px wide."""
    from PIL import Image

    low = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    img = Image.fromarray(low, mode="F").resize((w + 2 * cell, h + 2 * cell), Image.BILINEAR)
    return np.asarray(img)[cell:cell + h, cell:cell + w]


def _background(rng, h: int, w: int, variant: str, grating: float = 0.2) -> np.ndarray:
    """Textured background, float [h, w, 3] in [0, 1], with enough structure for motion vectors."""
    c1, c2 = _colour(rng, variant, "background"), _colour(rng, variant, "background")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, np.pi)
    if variant == "base":  # smooth blobs plus a faint grating
        m = _smooth_noise(rng, h, w, int(rng.integers(6, 14)))
        m = (1 - grating) * m + grating * (0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a))
                                                            / rng.uniform(5, 12)))
    else:  # hard-edged checks/stripes plus fine noise
        f = rng.uniform(6, 16)
        u, v = xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)
        m = ((np.floor(u / f) + np.floor(v / f * rng.integers(0, 2))) % 2).astype(np.float32)
        m = 0.2 + 0.6 * m + 0.2 * rng.random((h, w), dtype=np.float32)
    return c1 * m[..., None] + c2 * (1 - m[..., None])


def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (units of the object radius, < 0 inside) in local coordinates."""
    r = np.hypot(u, v)
    if shape == "circle":
        return r - 1
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.85
    if shape == "diamond":
        return (np.abs(u) + np.abs(v) - 1.15) / math.sqrt(2)
    if shape in ("triangle", "hexagon"):
        k, inner = (3, 0.6) if shape == "triangle" else (6, 0.9)
        return np.max([u * math.cos(a) + v * math.sin(a) for a in
                       (np.pi / 2 + 2 * np.pi * np.arange(k) / k)], axis=0) - inner
    if shape == "star":
        return r - (0.72 + 0.28 * np.cos(5 * np.arctan2(v, u)))
    if shape == "cross":
        return np.minimum(np.maximum(np.abs(u) - 0.38, np.abs(v) - 1), np.maximum(np.abs(u) - 1, np.abs(v) - 0.38))
    if shape == "ring":
        return np.abs(r - 0.72) - 0.28
    raise ValueError(shape)


def _texture(kind: str, u, v, freq: float, phase: float) -> np.ndarray:
    """Pattern in [0, 1] in object coordinates, so rotation and scaling of the object are visible."""
    if kind == "stripes":
        return (np.sin(freq * u + phase) > 0).astype(np.float32)
    if kind == "checker":
        return ((np.sin(freq * u + phase) * np.sin(freq * v)) > 0).astype(np.float32)
    if kind == "dots":
        return (np.hypot(np.sin(freq * u + phase), np.sin(freq * v)) < 0.7).astype(np.float32)
    if kind == "rings":
        return (np.sin(freq * 1.5 * np.hypot(u + 0.3, v) + phase) > 0).astype(np.float32)
    if kind == "noise":  # hashed cells: a fixed random pattern attached to the object
        cell = np.floor(u * freq / 2) * 12.9898 + np.floor(v * freq / 2) * 78.233 + phase
        return (np.sin(cell) * 43758.5453 % 1 > 0.5).astype(np.float32)
    if kind == "waves":
        return (np.sin(freq * u + 2 * np.sin(freq * v / 2) + phase) > 0).astype(np.float32)
    raise ValueError(kind)


@dataclass
class _Object:
    shape: str
    texture: str
    radius: float  # px at scale 1
    colours: tuple
    freq: float
    phase: float
    centre: np.ndarray  # [T, 2] screen (x, y)
    scale: np.ndarray  # [T]
    angle: np.ndarray  # [T] radians, increasing = clockwise on screen

    def draw(self, img: np.ndarray, t: int, xx: np.ndarray, yy: np.ndarray) -> None:
        """Alpha-composite the object at frame t onto img float [H, W, 3] (in place)."""
        rad = self.radius * self.scale[t]
        c, s = math.cos(self.angle[t]), math.sin(self.angle[t])
        px, py = xx - self.centre[t, 0], yy - self.centre[t, 1]
        u, v = (c * px + s * py) / rad, (-s * px + c * py) / rad  # rotate by -angle into the object frame
        alpha = np.clip(0.5 - _shape_sdf(self.shape, u, v) * rad, 0, 1)[..., None]  # 1-px soft edge
        pat = _texture(self.texture, u, v, self.freq, self.phase)[..., None]
        col = self.colours[0] * pat + self.colours[1] * (1 - pat)
        img *= 1 - alpha
        img += alpha * col


# ---------------------------------------------------------------- motion of each class
def _unit(a):
    return np.array([math.cos(a), math.sin(a)])


def _trajectory(cls: str, rng, T: int, size: int, speed_scale: float):
    """Displacement [T, 2] px, log-scale [T] and angle change [T] of the main object for class `cls`."""
    t = np.arange(T, dtype=np.float64)
    v = rng.uniform(0.010, 0.020) * size * speed_scale  # px / frame
    disp = np.zeros((T, 2))
    logs = np.zeros(T)
    ang = np.zeros(T)
    jitter = rng.uniform(-0.26, 0.26)  # +-15 degrees around the nominal direction
    event = rng.uniform(0.35, 0.65) * (T - 1)  # bounce / stop / start moment
    direction = _unit(rng.uniform(0, 2 * np.pi))
    if cls in ("left", "right", "up", "down"):
        base = {"right": 0.0, "down": np.pi / 2, "left": np.pi, "up": -np.pi / 2}[cls]
        disp = v * t[:, None] * _unit(base + jitter)
    elif cls in ("approach", "recede"):
        g = rng.uniform(0.018, 0.032) * speed_scale
        logs = (g if cls == "approach" else -g) * t
    elif cls in ("rotate_cw", "rotate_ccw"):
        w = rng.uniform(0.07, 0.13) * speed_scale
        ang = (w if cls == "rotate_cw" else -w) * t
    elif cls == "bounce":  # out along a random axis and back
        disp = v * np.minimum(t, 2 * event - t)[:, None] * direction
    elif cls == "stop":
        disp = v * np.minimum(t, event)[:, None] * direction
    elif cls == "start":
        disp = v * np.maximum(t - event, 0)[:, None] * direction
    elif cls == "orbit":
        r = rng.uniform(0.10, 0.16) * size
        w = v / r * rng.choice([-1, 1])
        phi = rng.uniform(0, 2 * np.pi) + w * t
        disp = r * np.stack([np.cos(phi), np.sin(phi)], 1)
    else:
        raise ValueError(cls)
    # Centre in time so the mean position / log-size carries no class information.
    return disp - disp.mean(0), logs - logs.mean(), ang


def _wander(rng, T: int, amp: float) -> np.ndarray:
    """Irrelevant smooth random motion: displacement [T, 2] from summed slow sinusoidal velocities."""
    t = np.arange(T)[:, None]
    vel = sum(rng.uniform(0, amp, 2) * np.sin(rng.uniform(0.05, 0.3, 2) * t + rng.uniform(0, 2 * np.pi, 2))
              for _ in range(2))
    return np.cumsum(vel, 0)


def make_clip(label: int, rng: np.random.Generator, size: int, num_frames: int, variant: str = "base",
              scene: Scene = Scene()):
    """Render one clip of class CLASSES[label]. Returns (frames uint8 [T, S, S, 3], annotation dict)."""
    if variant not in VARIANTS:
        raise MGMError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
    T, S = num_frames, size
    speed_scale = 1.0 if variant == "base" else 1.4
    shapes, textures = _SHAPES[variant], _TEXTURES[variant]

    def new_object(radius, disp, logs, ang, anchor):
        return _Object(shape=str(rng.choice(shapes)), texture=str(rng.choice(textures)), radius=radius,
                       colours=(_colour(rng, variant, "object"), _colour(rng, variant, "object")),
                       freq=float(rng.uniform(4, 8)), phase=float(rng.uniform(0, 2 * np.pi)),
                       centre=anchor + disp, scale=np.exp(logs), angle=rng.uniform(0, 2 * np.pi) + ang)

    # Camera: on half of the clips a constant pan (content moves by -pan on screen), zero-mean in time.
    pan = (_unit(rng.uniform(0, 2 * np.pi)) * rng.uniform(*scene.pan_speed) * S / 96
           if rng.random() < scene.pan_prob else np.zeros(2))
    cam = pan[None] * (np.arange(T) - (T - 1) / 2)[:, None]  # [T, 2] camera offset
    margin = int(np.abs(cam).max()) + 2
    bg = _background(rng, S + 2 * margin, S + 2 * margin, variant, scene.grating)

    disp, logs, ang = _trajectory(CLASSES[label], rng, T, S, speed_scale)
    main = new_object(rng.uniform(*scene.radius) * S, disp - cam, logs, ang, rng.uniform(0.25, 0.75, 2) * S)
    objects = [main]
    for _ in range(int(rng.integers(scene.distractors[0], scene.distractors[1] + 1))):
        d = _wander(rng, T, scene.distractor_speed * S / 96 * speed_scale)
        objects.append(new_object(rng.uniform(*scene.distractor_radius) * S, d - d.mean(0) - cam, np.zeros(T),
                                  np.zeros(T), rng.uniform(0.1, 0.9, 2) * S))
    rng.shuffle(objects)  # the main object is not always in front

    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5
    frames = np.empty((T, S, S, 3), np.uint8)
    for t in range(T):
        img = _shifted_crop(bg, margin + cam[t, 1], margin + cam[t, 0], S)
        for obj in objects:
            obj.draw(img, t, xx, yy)
        frames[t] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    ann = {"label": label, "class": CLASSES[label], "shape": main.shape, "texture": main.texture,
           "radius": round(main.radius, 2), "pan": np.round(pan, 3).tolist(), "distractors": len(objects) - 1,
           "centre": np.round(main.centre, 2).tolist(), "scale": np.round(main.scale, 4).tolist(),
           "angle": np.round(main.angle, 4).tolist()}
    return frames, ann


def _shifted_crop(img: np.ndarray, y: float, x: float, size: int) -> np.ndarray:
    """size x size window of img [H, W, 3] at a sub-pixel offset (bilinear). Returns a new array."""
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    fy, fx = y - y0, x - x0
    a = img[y0:y0 + size + 1, x0:x0 + size + 1]
    top = a[:-1, :-1] * (1 - fx) + a[:-1, 1:] * fx
    bot = a[1:, :-1] * (1 - fx) + a[1:, 1:] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


# ---------------------------------------------------------------- writing the benchmark
_SPLIT_IDS = {"train": 0, "val": 1, "dev": 2}


def clip_rng(seed: int, variant: str, split: str, index: int) -> np.random.Generator:
    """Per-clip generator: clips are independent of generation order and of each other."""
    return np.random.default_rng([seed, VARIANTS.index(variant), _SPLIT_IDS[split], index])


def _work(job):
    out, rel, label, seed, variant, split, index, size, T, fps, crf, scene = job
    from mgm.codec import write_video

    frames, ann = make_clip(label, clip_rng(seed, variant, split, index), size, T, variant, scene)
    path = Path(out) / rel
    if not path.exists():  # resumable: files appear atomically (temp + rename)
        write_video(path, frames, fps=fps, options={"x264-params": x264_params(T), "crf": str(crf)}, gop=T)
    return index, ann


def generate(out, preset: str = "tiny", seed: int = 0, variant: str = "base", jobs: int | None = None,
             per_class: dict | None = None, progress: bool = True) -> dict:
    """Write the benchmark into `out` (see the module docstring). Returns the meta dict.

    per_class overrides the preset's {split: clips per class} (tests use fewer). Existing clips are
    kept (resume after an interruption); a folder holding a different benchmark is an error.
    """
    if preset not in PRESETS:
        raise MGMError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if variant not in VARIANTS:
        raise MGMError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
    p = PRESETS[preset]
    counts = dict(per_class or p.per_class)
    unknown = sorted(set(counts) - set(_SPLIT_IDS))
    if unknown:  # before anything is written
        raise MGMError(f"unknown split {unknown[0]!r} (train, val, dev)")
    out = Path(out)
    meta = {"preset": preset, "variant": variant, "seed": seed, "size": p.size, "num_frames": p.num_frames,
            "fps": p.fps, "classes": list(CLASSES), "per_class": counts,
            "scene": json.loads(json.dumps(asdict(p.scene))),
            "encoder": {"codec": "libx264", "x264-params": x264_params(p.num_frames), "crf": p.crf,
                        "pix_fmt": "yuv420p"}}
    meta_path = out / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text()) != meta:
        raise MGMError(f"{out}: holds a different benchmark (meta.json differs); choose another folder")
    write_text(meta_path, json.dumps(meta, indent=1))
    write_text(out / "classes.txt", "".join(f"{c}\n" for c in CLASSES))

    jobs_list, rows = [], {}
    for split, k in counts.items():
        rows[split] = []
        for i in range(k * len(CLASSES)):
            label = i % len(CLASSES)
            rel = f"{split}/{CLASSES[label]}/{i:05d}.mp4"
            rows[split].append((rel, label))
            jobs_list.append((str(out), rel, label, seed, variant, split, i, p.size, p.num_frames, p.fps, p.crf,
                              p.scene))
    anns = _run_jobs(jobs_list, jobs, progress)

    from mgm.data.lists import write_list

    for split, split_rows in rows.items():
        write_list(out / f"{split}.txt", split_rows)
        with atomic_write(out / f"{split}.jsonl", "w") as f:
            for rel, label in split_rows:
                i = int(Path(rel).stem)
                f.write(json.dumps({"path": rel, **anns[(split, i)]}) + "\n")
    return meta


def _run_jobs(jobs_list, jobs, progress):
    from tqdm import tqdm

    jobs = jobs or os.cpu_count() or 1
    bar = tqdm(total=len(jobs_list), unit="clip", desc="synth", disable=not progress)
    anns = {}
    keys = [(j[5], j[6]) for j in jobs_list]
    if jobs == 1:
        results = map(_work, jobs_list)
    else:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(jobs)
        results = pool.imap(_work, jobs_list, chunksize=4)
    try:
        for key, (_, ann) in zip(keys, results):
            anns[key] = ann
            bar.update()
    finally:
        bar.close()
        if jobs != 1:
            pool.close()
            pool.join()
    return anns
