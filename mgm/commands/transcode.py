"""Re-encode videos to H.264 with fixed settings so that their motion vectors can be read.

Defaults: libx264, one reference frame and no B-frames (exact per-frame motion vectors), a fixed
GOP of 32 frames, crf 18, yuv420p, source frame rate and height. Folders are searched recursively
and their layout is kept under --out; outputs are <name>.mp4. Finished outputs are skipped, so an
interrupted run resumes. Each file gets a line in OUT/manifest.jsonl (manifest-<i>of<n>.jsonl with
--shard): source, output, settings, frame count, status. A video that cannot be read is reported
and skipped; a full disk, an unwritable --out or a crashed or killed encoder stops the run (exit 1)
with one line naming the file, leaving no partial file.

Cluster array job:  mgm transcode ssv2/ --out ssv2_h264 --shard $SLURM_ARRAY_TASK_ID/16 --jobs 4
"""

from __future__ import annotations

NAME = "transcode"
HELP = "re-encode videos to H.264 (1 reference, no B-frames, fixed GOP) in parallel, resumable"


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", help="video files and/or folders")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--height", type=int, default=None, help="output height (default: the source's)")
    parser.add_argument("--gop", type=int, default=32, help="keyframe interval, fixed (default 32)")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--preset", default="medium", help="x264 preset (default medium)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="files encoded at once, each in a worker process (default: all cores)")
    parser.add_argument("--shard", default="0/1", help="i/n: only the files at positions i, i+n, ... (0-based)")


def run(args):
    import os

    from mgm.data.transcode import Settings, parse_shard, transcode_all
    from mgm.errors import MGMError

    if args.jobs is not None and args.jobs < 1:
        raise MGMError(f"--jobs must be >= 1, got {args.jobs}")
    if args.height is not None and args.height < 2:
        raise MGMError(f"--height must be >= 2, got {args.height}")
    settings = Settings(height=args.height, gop=args.gop, crf=args.crf, preset=args.preset)
    summary = transcode_all(args.inputs, args.out, settings, jobs=args.jobs or os.cpu_count() or 1,
                            shard=parse_shard(args.shard))
    errors = summary["errors"]
    print(f"{args.out}: {summary['ok']} transcoded, {summary['exists']} already done, {len(errors)} failed; "
          f"manifest {summary['manifest']}")
    for rec in errors:
        print(f"  {rec['source']}: {rec['status']}")
    return 1 if errors else 0
