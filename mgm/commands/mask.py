"""Make the mask of one clip, as training would, and write it to OUT.npy.

Samples num-frames frames start, start+stride, ..., resizes them without cropping to size x size,
reads each sampled frame's motion from the video's motion vectors (summed over the `stride` decoded
frames up to it, averaged onto the patch grid), and writes the mask: numpy bool
[num_frames/tubelet, size/patch, size/patch], True = masked, masked fraction = ratio within one
patch (the `frame` strategy masks round(ratio * slots) whole time slots).

Strategy constants (mgm: --sigma --focus --jitter --smooth --min-motion --no-camera-comp --no-track
--reach --lost) are
passed only to the strategies that have them; giving one to another strategy is an error.
A clip without motion (static scene, all-intra video) still gets a valid mask by the strategy's
documented fallback, with a warning on stderr. Past the end of a short video the last frame repeats.
"""

from __future__ import annotations

import sys

from mgm.config import Geometry

NAME = "mask"
HELP = "write the mask (bool [T/tubelet, size/patch, size/patch], True = masked) of one clip to .npy"

# masking parameter -> its command-line flag (argparse stores each under the parameter's name).
STRATEGY_FLAGS = {"sigma": "--sigma", "focus": "--focus", "jitter": "--jitter", "smooth": "--smooth",
                  "min_motion": "--min-motion", "camera_comp": "--no-camera-comp", "track": "--no-track",
                  "reach": "--reach", "lost": "--lost"}


class _LazyStrategies:
    """argparse `choices` that imports mgm.masking (and numpy) only when used, keeping `mgm --help` fast."""

    def _names(self):
        from mgm.masking import STRATEGIES
        return STRATEGIES

    def __contains__(self, name):
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def add_sampling_arguments(p) -> None:
    """Clip sampling and geometry options shared by `mgm mask` and `mgm show`."""
    d = Geometry()
    p.add_argument("video", help="input video with motion vectors (H.264, MPEG-4 Part 2, ...)")
    p.add_argument("--strategy", default="mgm", choices=_LazyStrategies(), metavar="S",
                   help="one of: %(choices)s (default %(default)s)")
    p.add_argument("--ratio", type=float, default=0.75, help="masking ratio in [0, 1) (default 0.75)")
    # Geometry flags default to None: `show --checkpoint` then takes the checkpoint's geometry.
    p.add_argument("--num-frames", type=int, help=f"frames per clip (default {d.num_frames})")
    p.add_argument("--stride", type=int, default=4, help="sampling stride in decoded frames (default 4)")
    p.add_argument("--size", type=int, help=f"frames resized (no crop) to size x size (default {d.size})")
    p.add_argument("--start", type=int, default=0, help="first sampled frame (default 0)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the mask (default 0)")
    p.add_argument("--tubelet", type=int, help=f"frames per token (default {d.tubelet})")
    p.add_argument("--patch", type=int, help=f"pixels per token side (default {d.patch})")
    g = p.add_argument_group("strategy constants (defaults: the strategy's own, see mgm.masking)")
    g.add_argument("--sigma", type=float, help="mgm: Gaussian width around the motion centre, in patches")
    g.add_argument("--focus", type=float, help="mgm: share of the masked patches placed by the Gaussian (1 = all)")
    g.add_argument("--jitter", type=float, help="mgm: std of the random shift of the centre, in patches")
    g.add_argument("--smooth", type=float, help="mgm, motion-topk: blur of the magnitude map, in patches (0 = off)")
    g.add_argument("--min-motion", type=float, help="mgm, motion-topk, mgm-warp: px per slot below which a slot has no motion")
    g.add_argument("--no-camera-comp", dest="camera_comp", action="store_const", const=False,
                   help="mgm, motion-topk: keep camera motion (default: subtract each frame's median vector)")
    g.add_argument("--no-track", dest="track", action="store_const", const=False,
                   help="mgm: a new motion argmax per time slot (default: carry the mask along the motion)")
    g.add_argument("--reach", type=float, help="mgm: radius in patches of the carry and of the search around it")
    g.add_argument("--lost", type=float, help="mgm: re-anchor where the motion under the mask falls below this "
                                               "share of the slot's strongest")


def add_arguments(p):
    add_sampling_arguments(p)
    p.add_argument("--out", required=True, help="output .npy file")
    p.add_argument("--quiet", action="store_true", help="no summary line")


GEOMETRY_FLAGS = ("num_frames", "size", "tubelet", "patch")


def geometry_of(args, base: Geometry | None = None) -> Geometry:
    """The clip geometry of the flags; a flag not given takes `base`'s value (a checkpoint's), else
    the default Geometry's. Fills the flags in `args` too."""
    from mgm.errors import MGMError

    base = base or Geometry()
    for name in GEOMETRY_FLAGS:
        if getattr(args, name) is None:
            setattr(args, name, getattr(base, name))

    if args.num_frames <= 0 or args.size <= 0 or args.tubelet <= 0 or args.patch <= 0:
        raise MGMError("--num-frames, --size, --tubelet and --patch must be positive")
    if args.stride <= 0 or args.start < 0:
        raise MGMError(f"--stride must be positive and --start >= 0, got {args.stride} and {args.start}")
    try:
        return Geometry(num_frames=args.num_frames, size=args.size, tubelet=args.tubelet, patch=args.patch)
    except ValueError as e:
        raise MGMError(str(e)) from None


def generator_of(args, geometry: Geometry):
    """The MaskGenerator the options describe; constants given for another strategy are an error."""
    from mgm.errors import MGMError
    from mgm.masking import build_mask_generator, strategy_parameters

    params = {p: getattr(args, p) for p in STRATEGY_FLAGS if getattr(args, p) is not None}
    accepted = strategy_parameters(args.strategy)
    wrong = [STRATEGY_FLAGS[p] for p in params if p not in accepted]
    if wrong:
        own = " ".join(STRATEGY_FLAGS[p] for p in accepted if p in STRATEGY_FLAGS) or "none"
        raise MGMError(f"{' '.join(wrong)} does not apply to --strategy {args.strategy} (its options: {own})")
    try:
        return build_mask_generator(args.strategy, geometry, args.ratio, **params)
    except ValueError as e:
        raise MGMError(str(e)) from None


def make_mask(args, prog: str = NAME):
    """Shared by `mgm mask` and `mgm show`: (geometry, frames [T, H, W, 3], motion [T, 2, H', W'], mask [T', H', W']).

    The clip path of training (mgm/data/clip.py: `sample_clip`, `clip_masks`); the mask's generator
    is `clip_rng(--seed)`, which is np.random.default_rng(seed), as it always was."""
    import warnings

    from mgm.data.clip import clip_masks, clip_rng, sample_clip

    geometry = geometry_of(args)
    generator = generator_of(args, geometry)
    clip, motion = sample_clip(args.video, geometry, args.stride, args.start)
    if clip.indices[-1] > clip.last:
        warn(prog, f"{args.video}: only {clip.last - args.start + 1} frames from --start {args.start}, the clip "
                   f"needs {(geometry.num_frames - 1) * args.stride + 1}; the last frame repeats")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = clip_masks(generator, motion, clip_rng(args.seed), where=args.video)["mask"]
    for w in caught:
        warn(prog, str(w.message))
    return geometry, clip.frames, motion, mask


def warn(prog: str, message: str) -> None:
    print(f"mgm {prog}: warning: {message}", file=sys.stderr)


def run(args):
    import numpy as np

    from mgm.files import atomic_write

    geometry, _, _, mask = make_mask(args)
    out = args.out if args.out.endswith(".npy") else args.out + ".npy"
    with atomic_write(out) as f:
        np.save(f, mask)
    if not args.quiet:
        print(f"{out}: {args.strategy} mask {list(mask.shape)}, {int(mask.sum())} of {mask.size} tokens "
              f"masked ({mask.mean():.3f})", file=sys.stderr)
