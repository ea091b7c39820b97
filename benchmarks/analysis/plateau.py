"""When did each fine-tune of a masking experiment leave the chance plateau?

    ./run bench plateau runs/exp_small3h

Why: at CPU scale a fine-tune's training loss sits at chance (ln 12 = 2.48 for the benchmark's 12
classes) for hundreds of steps before it starts to learn, and whether it leaves in time decides
its top-1 more than anything else. This reads every stored fine-tune of the base benchmark
(OUT/results/finetune__base__*.json) and its run's log.jsonl, and reports the first step at which
the training loss, averaged over the last `--window` steps, is `--drop` below ln(classes).
Prints a table (run, seed, labels, top-1, step) and writes OUT/plateau.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def left_chance(losses: list[tuple[int, float]], chance: float, drop: float, window: int) -> int | None:
    """losses: [(step, training loss)] in step order -> the first step whose mean over the last
    `window` logged losses is below `chance - drop`; None if none is."""
    for i in range(window - 1, len(losses)):
        if sum(loss for _, loss in losses[i - window + 1:i + 1]) / window < chance - drop:
            return losses[i][0]
    return None


def plateau(out: Path, classes: int = 12, drop: float = 0.15, window: int = 5) -> list[dict]:
    from mgm.experiment import FineTune, finetune_run_name, read_result, run_losses

    rows = []
    for f in sorted((out / "results").glob("finetune__base__*.json")):
        r = read_result(f)
        if not isinstance(r, FineTune):
            continue
        run = out / "runs" / finetune_run_name(r.tag, r.fraction, r.seed, r.variant)
        if not (run / "log.jsonl").exists():
            print(f"{run / 'log.jsonl'}: missing, skipped", file=sys.stderr)
            continue
        rows.append({"tag": str(r.tag), "seed": r.seed, "fraction": r.fraction, "top1": r.top1,
                     "left_chance_at": left_chance(run_losses(run), math.log(classes), drop, window)})
    return sorted(rows, key=lambda x: (x["fraction"] < 1, x["seed"], x["tag"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the experiment's folder (--out of mgm experiment masking)")
    p.add_argument("--classes", type=int, default=12)
    p.add_argument("--drop", type=float, default=0.15, help="how far below ln(classes) counts as learning")
    p.add_argument("--window", type=int, default=5, help="logged steps averaged (10 steps apart by default)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not (out / "results").is_dir():
        sys.exit(f"{out}: not an experiment folder (no results/)")
    from mgm.errors import MGMError

    try:
        rows = plateau(out, args.classes, args.drop, args.window)
    except MGMError as err:  # a damaged record: one line naming it
        sys.exit(str(err))
    print(f"| run | seed | labels | top-1 | left chance at step (loss < ln {args.classes} - {args.drop:g}) |")
    print("|---|---|---|---|---|")
    for r in rows:
        step = r["left_chance_at"]
        print(f"| {r['tag']} | {r['seed']} | {r['fraction']:g} | {r['top1']:.1f} | {'never' if step is None else step} |")
    (out / "plateau.json").write_text(json.dumps(rows, indent=1))
    print(f"\nwrote {out / 'plateau.json'}")


if __name__ == "__main__":
    main()
