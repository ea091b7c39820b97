"""Run the masking experiment: pre-train the same ViT with each mask strategy on the synthetic
motion benchmark, fine-tune (all labels and a fraction), compare with training from scratch,
linear probes, an untrained encoder and the raw codec motion maps.

  mgm experiment masking --preset smoke      # every stage once, ~2 minutes (CI)
  mgm experiment masking --preset small      # the headline: tube / mgm at 0.75 and 0.9, random 0.9, 3 seeds,
                                             # <= 3 hours on 2 cores with two runners (see below)
  mgm experiment masking --preset long       # the same arms: a larger ViT, 3x the pre-training, 2x the fine-tuning,
                                             # smaller objects (~23 core-hours)
  mgm experiment masking --preset ablation   # motion-topk, mgm-warp, no camera removal, focus, sigma (long's recipe)
  mgm experiment masking --preset large      # long's recipe on small's larger objects (tube / mgm 0.75)

Two cores: start one runner per core (--threads 1) on the same --out; one generates the data while
the other waits, then each claims the next unit nobody holds.

Another fine-tuning recipe on finished pre-trainings: a new --out with --pretrained OLD_OUT, e.g.
  mgm experiment masking --preset small --pooling mean --out runs/small_mean --pretrained runs/small

Resumable: every finished run is stored in OUT/results/ and skipped next time; run the same
command again to continue. Writes OUT/results.md (tables), OUT/summary.json and, with more than one
curve point, OUT/curve.png.
"""

NAME = "experiment"
HELP = "the MGM vs tube vs random masking experiment (resumable)"


def add_arguments(p):
    p.add_argument("which", choices=["masking"], help="the experiment to run")
    p.add_argument("--preset", default="smoke", choices=["smoke", "small", "long", "ablation", "large", "gpu"])
    p.add_argument("--out", default=None, help="output directory (default runs/experiment/PRESET)")
    p.add_argument("--data", default=None,
                   help="where the benchmark is generated or found (default OUT/data); give another "
                   "folder's, e.g. runs/exp_large/data, to run a second recipe (--steps ...) on the same clips")
    p.add_argument("--pretrained", default=None, metavar="FOLDER",
                   help="reuse the finished pre-trainings of another experiment folder with the same "
                   "pre-training recipe (and its clips, unless --data), e.g. to try another fine-tuning "
                   "recipe such as --pooling slots; the others are pre-trained here")
    p.add_argument("--pooling", choices=["mean", "slots"], default=None,
                   help="the fine-tuning head's input: the mean of all tokens (VideoMAE's) or the per-time-"
                   "slot features concatenated (order-aware); default: the preset's")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="override the preset's seeds")
    p.add_argument("--arms", nargs="+", default=None,
                   help="only these arms, by name: any preset's (e.g. tube-0.75 mgm-0.75-focus0.5) or any "
                   "STRATEGY-RATIO[-PARAMVALUE...] (e.g. mgm-0.75-focus0.75, mgm-0.9-camera_compoff)")
    p.add_argument("--eval-split", choices=["dev", "val"], default=None,
                   help="evaluate on dev while choosing settings; the reported table uses val")
    p.add_argument("--steps", type=int, default=None, help="override the pre-training steps")
    p.add_argument("--finetune-steps", type=int, default=None, help="override the fine-tuning steps")
    p.add_argument("--fractions", type=float, nargs="+", default=None,
                   help="override the label fractions (the last is also used for the curve, the "
                   "transfer and the running table)")
    p.add_argument("--curve", type=float, nargs="+", default=None,
                   help="override the pre-training fractions whose checkpoints are fine-tuned")
    p.add_argument("--patch", type=int, default=None,
                   help="override the patch side in pixels, i.e. the token grid (small / large: 8 px "
                   "patches of 48 px frames = 6x6; 6 px = 8x8); must divide the frame size")
    p.add_argument("--plain-pixels", action="store_true",
                   help="pre-train on plain pixels instead of per-tubelet normalised pixels")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probes")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--no-transfer", action="store_true", help="skip the shifted-variant fine-tunes")
    t.add_argument("--transfer", action="store_true",
                   help="add them (off in `small` to keep it within 3 hours; run again with --transfer on "
                   "the same --out: only the shifted variant's data and fine-tunes are new)")
    p.add_argument("--no-scratch", action="store_true",
                   help="skip the from-scratch baselines (e.g. adding seeds of some arms only)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the tables and plot")
    p.add_argument("--verbose", action="store_true", help="progress bars of every training run")


def run(args):
    from dataclasses import replace

    from mgm.errors import MGMError
    from mgm.experiment import PRESETS, Arm, Runner

    preset = PRESETS[args.preset]
    changes = {}
    if args.seeds:
        changes["seeds"] = tuple(args.seeds)
    if args.eval_split:
        changes["eval_split"] = args.eval_split
    if args.steps:
        changes["pretrain_steps"] = args.steps
    if args.finetune_steps:
        changes["finetune_steps"] = args.finetune_steps
    if args.fractions:
        changes["label_fractions"] = tuple(args.fractions)
        changes["curve_labels"] = args.fractions[-1]
    if args.curve:
        changes["curve"] = tuple(args.curve)
    if args.patch is not None:
        try:  # Geometry holds the rule (a positive divisor of the frame size)
            replace(preset.geometry, patch=args.patch)
        except ValueError as e:
            size = preset.geometry.size
            divisors = [d for d in range(2, size) if size % d == 0]
            raise MGMError(f"--patch {args.patch}: {e} (the frames of preset {args.preset}); "
                           f"choose one of {', '.join(map(str, divisors))}")
        changes["patch"] = args.patch
    if args.pooling:
        changes["finetune_pooling"] = args.pooling
    if args.plain_pixels:
        changes["norm_pix"] = False
    if args.no_probe:
        changes["probe"] = False
    if args.no_transfer or args.transfer:
        changes["transfer"] = args.transfer
    if args.no_scratch:
        changes["scratch"] = False
    if args.threads is not None:
        changes["threads"] = args.threads
    if args.arms:
        # a preset's arm, or any strategy / ratio / setting by name, runs with any recipe: e.g. the
        # ablation's settings on the `large` data
        try:
            changes["arms"] = tuple(Arm.from_name(name) for name in args.arms)  # presets' arms included
        except ValueError as e:
            own = {a.name for a in preset.arms}
            others = sorted({a.name for p in PRESETS.values() for a in p.arms} - own)
            raise MGMError(f"--arms: {e}; preset {args.preset} has {', '.join(sorted(own))}; "
                           f"other presets' arms: {', '.join(others)}")
    preset = preset.replace(**changes)
    out = args.out or f"runs/experiment/{args.preset}"
    runner = Runner(out, preset, verbose=args.verbose, data=args.data, pretrained=args.pretrained)
    if args.report_only:
        summary = runner.report()
    else:
        summary = runner.run()
    print(summary["markdown"])
    print(f"\nwrote {out}/results.md, {out}/summary.json, {out}/curve.png")
