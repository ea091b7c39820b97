"""Draw a clip's motion and its mask, to check by eye that the mask follows the motion.

Samples and masks the clip exactly as `mgm mask` does (same options), then writes
  FILE.png  a montage, one column per time slot (its last frame): top row the motion
            (heat map of the magnitude and arrows of the displacement over the slot, camera motion
            removed unless --no-camera-comp), bottom row the mask (masked patches dark blue, a
            yellow ring at the centre MGM uses: carried along the motion, or the smoothed argmax
            with --no-track; without jitter);
  FILE.gif  an animation of every sampled frame: its own motion beside its slot's mask.
"""

from __future__ import annotations

import sys

from mgm.commands.mask import add_sampling_arguments

NAME = "show"
DISPLAY = 160  # smallest tile side drawn, px
HELP = "draw a clip's motion and mask as a PNG montage or an animated GIF"


def add_arguments(p):
    add_sampling_arguments(p)
    p.add_argument("--out", required=True, help="output FILE.png (montage) or FILE.gif (animation)")
    p.add_argument("--ms", type=int, default=250, help="GIF: milliseconds per frame (default 250)")
    p.add_argument("--checkpoint", default=None,
                   help="PNG: a `mgm pretrain` checkpoint (or its run folder); adds its reconstruction of "
                        "the masked clip, in the geometry it was trained on (no need to repeat the flags)")


def run(args):
    import os

    import numpy as np
    from PIL import Image

    from mgm import viz
    from mgm.commands.mask import make_mask
    from mgm.errors import MGMError

    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".png", ".gif"):
        raise MGMError(f"{args.out}: --out must end in .png or .gif")
    model = None
    if args.checkpoint:
        from mgm.commands.mask import geometry_of
        from mgm.reconstruct import load_pretrained

        model, trained = load_pretrained(args.checkpoint)
        geometry_of(args, trained)  # flags not given take the checkpoint's geometry
    geometry, frames, motion, mask = make_mask(args, NAME)
    size, tubelet, patch = geometry.size, geometry.tubelet, geometry.patch
    frames = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in frames])
    # Small clips (e.g. 48 px) are drawn k times larger, each pixel a k x k block: the pictures
    # stay readable and the patch grid stays exact.
    k = -(-DISPLAY // size)
    shown = np.repeat(np.repeat(frames, k, 1), k, 2)
    comp = getattr(args, "camera_comp", None) is not False
    centres = motion_centres(geometry, motion, args)
    name = os.path.basename(args.video)
    title = (f"{name}  {args.strategy} {args.ratio:g}  frames {args.start}+{args.stride}k, "
             f"{size}x{size}, {int(mask.sum())}/{mask.size} tokens masked")
    if ext == ".png":
        motion_tiles, mask_tiles = viz.clip_views(shown, motion, mask, tubelet, patch * k, comp, centres)
        labels = [f"t={args.start + args.stride * (s * tubelet + tubelet - 1)}" for s in range(len(mask_tiles))]
        rows, row_labels = [motion_tiles, mask_tiles], ["motion", "mask"]
        if args.checkpoint:
            rows.append(reconstruction_tiles(args.checkpoint, model, geometry, frames, mask, scale=k))
            row_labels.append("recon.")
        image = viz.montage(rows, row_labels, labels, title)
        save = lambda path: viz.save_png(path, image)  # noqa: E731
    else:
        save = lambda path: viz.save_mask_gif(  # noqa: E731
            path, shown, motion, mask, centres, tubelet, patch * k,
            lambda i: f"{name} {args.strategy}  t={args.start + args.stride * i}", comp, args.ms)
    save(args.out)
    print(f"{args.out}: {args.strategy} mask of {name}", file=sys.stderr)


def reconstruction_tiles(checkpoint, model, geometry, frames, mask, scale: int = 1):
    """The checkpoint's reconstruction of the masked clip: T' tiles (each slot's last frame,
    `scale` times the clip size)."""
    from mgm import viz
    from mgm.errors import MGMError
    from mgm.reconstruct import reconstruct_frames

    trained = model.cfg.geometry
    if trained != geometry:  # a flag overrode the checkpoint's geometry
        raise MGMError(f"{checkpoint}: trained on --num-frames {trained.num_frames} --size {trained.size} "
                       f"--tubelet {trained.tubelet} --patch {trained.patch}; leave out the geometry flags to "
                       f"use those")
    recon = reconstruct_frames(model, frames, mask)
    rows, _ = viz.reconstruction_rows(frames / 255.0, recon, mask, geometry.tubelet, geometry.patch, scale=scale)
    return rows[2]


def motion_centres(geometry, motion, args):
    """[T', 2] the centres MGM would use for this clip (its smoothing and camera options, no jitter)."""
    import warnings

    from mgm.data.clip import clip_rng
    from mgm.masking import build_mask_generator

    params = {k: getattr(args, k) for k in ("smooth", "min_motion", "camera_comp", "track", "reach", "lost")
              if getattr(args, k) is not None}
    mgm = build_mask_generator("mgm", geometry, 0.5, jitter=0.0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # make_mask already warned about a motionless clip
        return mgm.centres(motion[None], clip_rng(args.seed))[0]  # the generator of `mgm mask --seed`
