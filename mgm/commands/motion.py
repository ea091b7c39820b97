"""Read the motion of every frame from the video's own motion vectors (no optical flow).

Writes OUT.npz with, for every decoded frame in display order (F frames):
  dx, dy      float32 [F, ceil(H/16), ceil(W/16)]: forward motion of each 16x16 block's content
              from the previous frame to this one, pixels per frame, x right, y down;
              0 where a frame or block has no motion vector (I-frames, intra blocks).
  frame_type  [F] strings "I", "P", "B".
Exact for videos encoded with one reference frame and no B-frames (`mgm transcode` default);
with several references or B-frames a vector may span 1-3 frames: rank magnitudes, don't read speeds.
An all-intra video has no motion: every value is 0 and a warning says so.
"""

import sys

from mgm.config import CODEC_BLOCK

NAME = "motion"
HELP = "write per-frame block motion (dx, dy, frame_type) of a video to .npz"


def add_arguments(p):
    p.add_argument("video", help="input video (H.264, MPEG-4 Part 2, MPEG-2, ...)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--block", type=int, default=CODEC_BLOCK,
                   help=f"block size in pixels (default {CODEC_BLOCK})")
    p.add_argument("--camera", choices=["none", "median", "affine"], default="none",
                   help="subtract camera motion: per-frame median vector or affine fit (default none)")
    p.add_argument("--jobs", type=int, default=None,
                   help="decoders reading segments of whole GOPs at once (default: one per CPU; "
                        "1 = serial); the output is identical for any value")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    import os

    if "numpy" not in sys.modules:
        # Set only in a fresh `mgm motion` process, before numpy loads, so that a library caller's
        # numpy keeps its own: numpy's OpenBLAS starts a thread per core on import (+50 ms measured
        # on a loaded machine), and this command does no linear algebra that needs them; numpy
        # backs arrays of 4 MiB and more with 2 MiB huge pages where the kernel lets it (THP
        # "madvise"), so that the result, which parallel segments write at several rows at once,
        # grows in 2 MiB steps at each (720p: peak RSS 2-3 MiB higher, measured).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    from mgm import codec
    from mgm.errors import MGMError
    from mgm.motion import remove_camera_motion

    if args.block <= 0:
        raise MGMError(f"--block must be positive, got {args.block}")
    if args.jobs is not None and args.jobs <= 0:
        raise MGMError(f"--jobs must be positive, got {args.jobs}")
    field = codec.read_motion(args.video, block=args.block, progress=not args.quiet, jobs=args.jobs)
    if args.camera != "none":
        field.dx, field.dy = remove_camera_motion(field.dx, field.dy, field.known, args.camera)
    if not field.known.any():
        print(f"mgm motion: warning: {args.video}: no motion vectors in any of its "
              f"{field.num_frames} frames (all-intra video?); dx, dy are all 0", file=sys.stderr)
    out = args.out if args.out.endswith(".npz") else args.out + ".npz"
    field.save_npz(out)
    if not args.quiet:
        counts = {t: int((field.frame_type == t).sum()) for t in "IPB"}
        print(f"{out}: {field.num_frames} frames {counts}, grid {field.dx.shape[1]}x{field.dx.shape[2]}",
              file=sys.stderr)
