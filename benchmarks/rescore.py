"""Score every fine-tuned model of a masking experiment on another list of clips.

    ./run bench rescore runs/exp_dev runs/dev_fresh/dev.txt

Why: the experiment's dev split (20 clips per class, 240 in all) has a standard error of ~2.9
points near 28% top-1, too coarse to choose between settings a few points apart. A large freshly
generated set (`mgm synth runs/dev_fresh --preset small --seed 7 --clips dev=200`: 2,400 clips,
~0.9 points) scores the same fine-tuned checkpoints far more precisely, and is still not the split
the experiment reports (val).

For each OUT/runs/finetune-base-*-f1-s* run (all labels, base benchmark) it runs `mgm eval` on the
run's last checkpoint with the list as the val list (cached in OUT/rescore/<list name>/<run>.json,
so a second call only scores new runs), prints a table and writes OUT/rescore/<list name>.json in
the layout of the experiment's summary.json ({"finetune": {"base|ARM|STEPS|1.0": [top-1 per
seed]}}), which `./run bench hidden --experiment OUT --summary ...` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RUN = re.compile(r"finetune-base-(?P<arm>.+?)(?:@(?P<steps>\d+))?-f1-s(?P<seed>\d+)$")


def parse_run(name: str) -> tuple[str, str, int] | None:
    """'finetune-base-mgm-0.75-focus0.5@4000-f1-s0' -> ('mgm-0.75-focus0.5', '4000', 0);
    scratch runs have steps 'None' (as in summary.json); other runs -> None."""
    m = RUN.match(name)
    return (m["arm"], m["steps"] or "None", int(m["seed"])) if m else None


def collect(scores: dict[str, float]) -> dict:
    """{run name: top-1} -> {"base|ARM|STEPS|1.0": [top-1 in seed order]}."""
    by_key: dict[str, list] = {}
    for name, top1 in scores.items():
        arm, steps, seed = parse_run(name)
        by_key.setdefault(f"base|{arm}|{steps}|1.0", []).append((seed, top1))
    return {k: [t for _, t in sorted(v)] for k, v in sorted(by_key.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", help="an `mgm experiment masking` output folder")
    ap.add_argument("list", help="a list of clips to score on (VideoMAE format; its folder is the root)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from mgm.cli import main as mgm

    out, lst = Path(args.experiment), Path(args.list)
    if not lst.exists():
        raise SystemExit(f"{lst}: no such list (make one with `mgm synth DIR --preset small --seed 7 --clips dev=200`)")
    runs = sorted(r for r in (out / "runs").glob("finetune-base-*") if parse_run(r.name))
    if not runs:
        raise SystemExit(f"{out}: no all-label fine-tuning runs under {out / 'runs'}")
    cache = out / "rescore" / lst.parent.name
    cache.mkdir(parents=True, exist_ok=True)
    scores = {}
    for run in runs:
        path = cache / f"{run.name}.json"
        ckpts = sorted(run.glob("ckpt-*.pt"))
        if not path.exists() and ckpts:
            code = mgm(["eval", str(ckpts[-1]), "--set", f"data.val_list={lst}", "--set", f"data.root={lst.parent}",
                        "--set", f"data.cache={lst.parent / 'cache'}", "--set", f"run.threads={args.threads}",
                        "--set", "run.progress=false", "--out", str(path)])
            if code:
                raise SystemExit(f"{run}: mgm eval failed")
        if path.exists():
            scores[run.name] = json.loads(path.read_text())["top1"]
    table = collect(scores)
    print(f"top-1 (%) on {lst} ({sum(1 for _ in open(lst))} clips), all-label fine-tunes of {out}")
    print(f"{'arm':<28} {'steps':>5} {'mean':>6} {'std':>5}  per seed")
    for key, values in table.items():
        _, arm, steps, _ = key.split("|")
        print(f"{arm:<28} {steps:>5} {np.mean(values):6.1f} {np.std(values):5.1f}  "
              + " ".join(f"{v:.1f}" for v in values))
    summary = cache.parent / f"{lst.parent.name}.json"
    summary.write_text(json.dumps({"list": str(lst), "finetune": table}, indent=1))
    print(f"wrote {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
