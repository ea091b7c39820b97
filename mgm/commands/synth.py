"""Generate the synthetic motion benchmark: 12 classes defined by motion alone, encoded to H.264.

Presets (12 classes, 32 frames per clip, H.264 without B-frames, one reference frame):
  tiny   64x64,  train 4 + val 2 clips per class (72 clips, ~1 MB, ~2 s; tests and the demo)
  small  96x96,  train 300 + val 50 + dev 20 clips per class (4,440 clips, ~75 MB, ~5 min on
         2 cores; the experiment)
  small-large  as small, main object 1.5x larger (radius 0.165-0.27 of the frame side instead
         of 0.11-0.18; the experiment's `large` preset)
Writes OUT/<split>.txt VideoMAE lists (root = OUT), OUT/<split>.jsonl ground truth per clip,
OUT/classes.txt and OUT/meta.json. Same --seed, same frames. Re-running resumes.
--variant shifted draws shapes, textures, palettes, backgrounds and speeds from disjoint
families (for transfer experiments). --clips dev=200 writes only the splits named, with that many
clips per class: e.g. a large fresh dev set (another --seed) to choose settings on.
"""

from __future__ import annotations

NAME = "synth"
HELP = "generate the synthetic motion-only video benchmark (H.264 + VideoMAE lists)"


def add_arguments(parser):
    parser.add_argument("out", help="output folder")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "small", "small-large"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", default="base", choices=("base", "shifted"))
    parser.add_argument("--jobs", type=int, default=None, help="parallel processes (default: all cores)")
    parser.add_argument("--clips", action="append", metavar="SPLIT=N",
                        help="only these splits, N clips per class each (repeatable), e.g. dev=200")


def _per_class(items: list[str] | None) -> dict | None:
    from mgm.errors import MGMError

    if not items:
        return None
    out = {}
    for item in items:
        split, _, n = item.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise MGMError(f"--clips {item}: expected SPLIT=N with N >= 1 clips per class, e.g. dev=200")
        out[split] = int(n)
    return out


def run(args):
    import time

    from mgm.data import synth

    t0 = time.perf_counter()
    meta = synth.generate(args.out, preset=args.preset, seed=args.seed, variant=args.variant, jobs=args.jobs,
                          per_class=_per_class(args.clips))
    n = sum(meta["per_class"].values()) * len(meta["classes"])
    print(f"{args.out}: {n} clips, {len(meta['classes'])} classes, {meta['size']}x{meta['size']}x"
          f"{meta['num_frames']}, splits {meta['per_class']} per class, {time.perf_counter() - t0:.1f} s")
