"""The bench's last section: `mgm experiment masking --preset gpu` (scratch, tube 0.9, tube 0.75,
MGM 0.75; one seed), printed as the command prints it. `--smoke`: the same preset at the toy sizes of
sizes.SMOKE, on the CPU. The bench runs this in a subprocess, so it can stop it at its time cap.

    python -m benchmarks.gpu.experiment OUT [--smoke]
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.gpu.sizes import SIZES


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the experiment's folder (its results are reused by a later run)")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    from mgm.experiment import PRESETS, Runner

    sizes = SIZES["smoke" if args.smoke else "full"]
    base = PRESETS[sizes.experiment]
    stages = {stage: {**getattr(base, stage), **sizes.experiment_stages} for stage in ("pretrain", "finetune")}
    preset = base.replace(**sizes.experiment_overrides, **stages)
    summary = Runner(args.out, preset).run()
    print(summary["markdown"])
    print(f"\nwrote {args.out}/results.md, {args.out}/summary.json, {args.out}/curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
