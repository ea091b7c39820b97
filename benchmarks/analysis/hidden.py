"""What each mask hides of the moving object, on the synthetic benchmark where its position is known.

    ./run bench hidden [--data runs/exp_small/data/base] [--split dev] [--ratios 0.75,0.9 | --arms NAME...]

The experiment's question is whether hiding the moving object (MGM) teaches more than hiding
random tubes. This measures how much more MGM hides, with the ground truth `mgm synth` records
(the main object's centre and radius per frame), at the `small` experiment's geometry (48 px
frames, 8 px patches, 8 frames at stride 4: 4 slots of 6x6 tokens), with the masks drawn exactly
as pre-training draws them (same motion on the patch grid, same generators). Per strategy and
ratio, means over the clips and --seeds mask seeds:
  object hidden   share of the object's tokens that are masked (an object token: a patch at least
                  half covered by the object's disc in one of the slot's frames)
  object gone     share of slots in which every object token is masked (the model sees no part
                  of the object in that slot and must infer it from the other slots)
  copyable        share of masked object tokens whose patch is visible and on the object in a
                  neighbouring slot (what a model can copy across time instead of predicting)
Writes --out (JSON) and prints the table. With --experiment DIR (an `mgm experiment masking`
folder), each arm's final fine-tune top-1 there (all labels; mean, std, seeds) is set beside what
its masks hide, printed and plotted (--plot, PNG): does hiding more of the object teach more,
and does leaving it copyable across time teach less?
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from benchmarks import ROOT
from mgm.config import Geometry
from mgm.data.memory import MemoryClips, clip_indices, decode_split
from mgm.experiment import Arm
from mgm.masking import build_mask_generator
from mgm.experiment.report import seed_std

ROWS = (  # (strategy, params): the experiment's main and ablation arms, named as it names them
    ("random", ()), ("tube", ()), ("mgm", ()), ("mgm", (("focus", 0.5),)), ("mgm", (("sigma", 1.0),)),
    ("mgm", (("sigma", 4.0),)), ("mgm", (("camera_comp", False),)), ("motion-topk", ()), ("mgm-warp", ()),
)


def object_tokens(record: dict, idx: np.ndarray, geometry: Geometry, source_size: int) -> np.ndarray:
    """bool [T', H', W']: tokens at least half covered by the main object's disc in a slot frame."""
    t_slots, gh, gw = geometry.grid
    k = 4  # sub-samples per patch side to measure coverage
    scale = geometry.size / source_size
    sub = (np.arange(gh * k) + 0.5) * geometry.patch / k  # sub-sample centres, px
    out = np.zeros(geometry.grid, bool)
    for f, frame in enumerate(idx):
        cx, cy = (np.asarray(record["centre"][frame]) * scale)
        r = record["radius"] * record["scale"][frame] * scale
        inside = (sub[None, :] - cx) ** 2 + (sub[:, None] - cy) ** 2 <= r * r
        cover = inside.reshape(gh, k, gw, k).mean((1, 3))
        out[f // geometry.tubelet] |= cover >= 0.5
    return out


def measure(masks: np.ndarray, objects: np.ndarray) -> dict:
    """masks, objects: bool [N, T', H', W'] -> the three shares."""
    hidden = masks & objects
    per_slot = objects.any((2, 3))
    gone = (objects & ~masks).sum((2, 3)) == 0
    seen = objects & ~masks  # object visible at this token
    neighbour = np.zeros_like(seen)
    neighbour[:, 1:] |= seen[:, :-1]
    neighbour[:, :-1] |= seen[:, 1:]
    return {"object hidden": float(hidden.sum() / max(objects.sum(), 1)),
            "object gone": float((gone & per_slot).sum() / max(per_slot.sum(), 1)),
            "copyable": float((hidden & neighbour).sum() / max(hidden.sum(), 1))}


def join(table: dict, summary: dict) -> dict:
    """{arm: (its row of `table`, [top-1 per seed])} for the arms of `table` that the experiment's
    summary fine-tuned with all labels, at their last pre-training checkpoint; plus
    "scratch": (None, [...])."""
    last = {}
    for key, values in summary["finetune"].items():
        variant, arm, steps, frac = key.split("|")
        if variant != "base" or float(frac) != 1.0:
            continue
        if arm == "scratch":
            last[arm] = (0, None, values)
        elif arm in table and (arm not in last or int(steps) > last[arm][0]):
            last[arm] = (int(steps), table[arm], values)
    return {arm: (row, values) for arm, (_, row, values) in sorted(last.items())}


PLOTTED = {"object gone": "slots in which the mask hides the whole object (%)",
           "copyable": "masked object tokens visible in a neighbouring slot (%)"}


def plot(joined: dict, path: str, title: str):
    """Top-1 (mean +- std over seeds) against each PLOTTED share, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(11, 4.4), sharey=True)
    for ax, (measure, label) in zip(axes, PLOTTED.items()):
        for arm, (row, values) in joined.items():
            mean, std = float(np.mean(values)), seed_std(values)
            if row is None:
                ax.axhline(mean, color="grey", ls="--", lw=1)
                ax.text(0.01, mean, f" scratch ({len(values)})", va="bottom", color="grey",
                        transform=ax.get_yaxis_transform())
                continue
            colour = "tab:red" if arm.startswith(("mgm", "motion")) else "tab:blue"
            x = 100 * row[measure]
            ax.errorbar(x, mean, yerr=std, fmt="o", color=colour, capsize=3)
            ax.annotate(f"{arm} ({len(values)})", (x, mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.margins(x=0.25)  # room for the labels
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fine-tune top-1 (%)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "runs", "exp_small", "data", "base"),
                    help="an `mgm synth` folder (the experiment writes one to OUT/data/base)")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--ratios", default="0.75,0.9", help="the main and ablation arms at these ratios")
    ap.add_argument("--arms", nargs="+", help="these arms instead, by name (e.g. mgm-0.75-focus0.75)")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=4, help="mask seeds per clip")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "bench", "hidden.json"))
    ap.add_argument("--experiment", help="an experiment folder: set its fine-tune top-1 beside each arm")
    ap.add_argument("--summary", help="with --experiment: the top-1 from this file instead of its summary.json, "
                                      "e.g. OUT/rescore/dev_fresh-dev.json (`./run bench rescore`)")
    ap.add_argument("--plot", help="with --experiment: write top-1 against 'object gone' and 'copyable' here (PNG)")
    args = ap.parse_args(argv)
    summary_path = args.experiment and (args.summary or os.path.join(args.experiment, "summary.json"))
    if summary_path and not os.path.exists(summary_path):
        raise SystemExit(f"{summary_path}: no such file (`mgm experiment masking --out {args.experiment} "
                         f"--report-only` writes summary.json, `./run bench rescore` the rescored ones)")
    if not os.path.exists(os.path.join(args.data, f"{args.split}.jsonl")):
        raise SystemExit(f"{args.data}: no {args.split}.jsonl (make one with `mgm synth {args.data} --preset small`)")
    try:
        arms = ([Arm.from_name(n) for n in args.arms] if args.arms else
                [Arm(strategy, float(r), params) for r in args.ratios.split(",") for strategy, params in ROWS])
    except ValueError as e:
        raise SystemExit(f"--arms / --ratios: {e}")
    geometry = Geometry(num_frames=args.frames, size=args.size, patch=args.patch)
    split = decode_split(os.path.join(args.data, f"{args.split}.txt"), root=args.data,
                         cache=os.path.join(args.data, "cache", args.split), size=args.size)
    clips = MemoryClips(split, geometry, args.stride, train=False)
    meta = json.load(open(os.path.join(args.data, "meta.json")))
    records = [json.loads(line) for line in open(os.path.join(args.data, f"{args.split}.jsonl"))]
    idx = clip_indices(split.video.shape[1], geometry, args.stride, None)
    motions = np.stack([clips.motion(i, idx) for i in range(len(records))])
    objects = np.stack([object_tokens(r, idx, geometry, meta["size"]) for r in records])
    table = {}
    print(f"{len(records)} {args.split} clips of {args.data}, {geometry.grid} tokens, {args.seeds} mask seeds")
    print(f"{'arm':<26} {'object hidden':>14} {'object gone':>12} {'copyable':>9}")
    for arm in arms:
        gen = build_mask_generator(arm.strategy, geometry, arm.ratio, **dict(arm.params))
        masks = np.stack([gen(motions[i], np.random.default_rng([seed, i]))
                          for seed in range(args.seeds) for i in range(len(records))])
        row = measure(masks, np.tile(objects, (args.seeds, 1, 1, 1)))
        table[arm.name] = row
        print(f"{arm.name:<26} {row['object hidden']:>14.3f} {row['object gone']:>12.3f} {row['copyable']:>9.3f}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"data": args.data, "split": args.split, "grid": geometry.grid, "table": table}, f, indent=1)
    print(f"wrote {args.out}")
    if summary_path:
        summary = json.load(open(summary_path))
        scored_on = summary.get("list") or json.load(open(os.path.join(args.experiment, "recipe.json")))["eval_split"]
        joined = join(table, summary)
        print(f"\nfine-tune top-1 on {scored_on} ({args.experiment}), all labels, last checkpoint:")
        print(f"{'arm':<26} {'object hidden':>14} {'object gone':>12} {'copyable':>9} {'top-1':>7} {'std':>5} {'seeds':>5}")
        for arm, (row, values) in joined.items():
            std = f"{seed_std(values):5.1f}" if len(values) > 1 else "    —"
            shares = " ".join(f"{'—' if row is None else f'{row[m]:.3f}':>{w}}" for m, w in
                              (("object hidden", 14), ("object gone", 12), ("copyable", 9)))
            print(f"{arm:<26} {shares} {np.mean(values):7.1f} {std} {len(values):>5}")
        if args.plot:
            plot(joined, args.plot, f"what the mask hides vs what fine-tuning reaches "
                                    f"(top-1 on {scored_on}; masks on {args.split} clips)")
            print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
