"""Score every fine-tuned model of a masking experiment on another list of clips.

    ./run bench rescore runs/exp_dev runs/dev_fresh/dev.txt

Why: the experiment's dev split (20 clips per class, 240 in all) has a standard error of ~2.9
points near 28% top-1, too coarse to choose between settings a few points apart. A large freshly
generated set (`mgm synth runs/dev_fresh --preset small --seed 7 --clips dev=200`: 2,400 clips,
~0.9 points) scores the same fine-tuned checkpoints far more precisely, and is still not the split
the experiment reports (val).

For each stored all-label fine-tune of the base benchmark (OUT/results/finetune__base__*__f1__*.json)
it runs `mgm eval` on the run's last checkpoint with the list as the val list (cached in
OUT/rescore/<FOLDER-LIST>/<run>.json, e.g. rescore/dev_fresh-dev/ for runs/dev_fresh/dev.txt, so a
second call only scores new runs), and passes the rescored records through the experiment's own
report (mgm.experiment.report.summarise): the printed table and differences, and OUT/rescore/<FOLDER-LIST>.json
in the layout of the experiment's summary.json
({"finetune": {"base|ARM|STEPS|1.0": [top-1 per seed]}, ...}), which `./run bench hidden
--experiment OUT --summary ...` reads.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path


def all_label_finetunes(out: Path) -> list[tuple["FineTune", Path]]:
    """The experiment's stored all-label fine-tunes of the base benchmark, in seed order, each with
    its run folder: [(record, OUT/runs/<run>)]."""
    from mgm.experiment import FineTune, finetune_run_name, read_result

    recs = [read_result(f) for f in sorted((out / "results").glob("finetune__base__*.json"))]
    recs = sorted((r for r in recs if isinstance(r, FineTune) and r.fraction >= 1),
                  key=lambda r: (r.seed, str(r.tag)))
    return [(r, out / "runs" / finetune_run_name(r.tag, r.fraction, r.seed, r.variant)) for r in recs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", help="an `mgm experiment masking` output folder")
    ap.add_argument("list", help="a list of clips to score on (VideoMAE format; its folder is the root)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from mgm.cli import main as mgm
    from mgm.experiment.report import summarise

    out, lst = Path(args.experiment), Path(args.list)
    if not lst.exists():
        raise SystemExit(f"{lst}: no such list (make one with `mgm synth DIR --preset small --seed 7 --clips dev=200`)")
    from mgm.errors import MGMError

    try:
        runs = all_label_finetunes(out)
    except MGMError as err:  # a damaged record: one line naming it
        raise SystemExit(str(err))
    if not runs:
        raise SystemExit(f"{out}: no all-label fine-tuning results under {out / 'results'}")
    # folder and list name: a benchmark's dev.txt and val.txt share a folder but not their scores
    cache = out / "rescore" / f"{lst.parent.name}-{lst.stem}"
    cache.mkdir(parents=True, exist_ok=True)
    rescored = []
    for rec, run in runs:
        path = cache / f"{run.name}.json"
        ckpts = sorted(run.glob("ckpt-*.pt"))
        if not path.exists() and ckpts:
            code = mgm(["eval", str(ckpts[-1]), "--set", f"data.val_list={lst}", "--set", f"data.root={lst.parent}",
                        "--set", f"data.cache={lst.parent / 'cache'}", "--set", f"run.threads={args.threads}",
                        "--set", "run.progress=false", "--out", str(path)])
            if code:
                raise SystemExit(f"{run}: mgm eval failed")
        if path.exists():
            rescored.append(replace(rec, top1=json.loads(path.read_text())["top1"]))
        else:
            print(f"{run}: no checkpoint, not scored")
    summary = summarise(rescored, curve_labels=1.0)
    print(f"top-1 (%) on {lst} ({sum(1 for _ in open(lst))} clips), all-label fine-tunes of {out}\n")
    print(summary["markdown"])
    path = cache.parent / f"{cache.name}.json"
    path.write_text(json.dumps({"list": str(lst), **summary}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
