"""List training runs: one line each with the command, the recipe's essentials (model, mask and
ratio, effective batch, lr), steps done / planned, the last loss, the best and last evaluation
top-1, the state (running / finished / stopped / diverged / failed) and when it last wrote.

  mgm runs                         # every run under runs/
  mgm runs runs/k400 --plot k400.png   # also their loss and top-1 curves in one PNG
  mgm runs --json                  # for scripts

A run directory is any folder with a log.jsonl (written by pretrain / finetune / linprobe); every
command that takes a checkpoint also takes a run directory (its last.pt; best.pt is the best
evaluated checkpoint).
"""

NAME = "runs"
HELP = "list training runs with their recipe, progress, losses and scores; --plot their curves"


def add_arguments(p):
    p.add_argument("dir", nargs="?", default="runs", help="folder to search for runs (default runs/)")
    p.add_argument("--plot", metavar="OUT.png", help="write the runs' loss and top-1 curves to one PNG")
    p.add_argument("--json", action="store_true", help="print the summaries as JSON")


def run(args):
    import json
    import sys

    from mgm import runs
    from mgm.errors import MGMError

    found, unreadable = [], []
    for run_dir in runs.find_runs(args.dir):
        try:
            found.append(runs.summarise(run_dir))
        except MGMError as e:  # one damaged log (a run killed mid-write) must not hide the others
            unreadable.append(str(e))
    if args.json:
        print(json.dumps(runs.as_json(found), indent=1))
    elif not found:
        print(f"{args.dir}: no runs (no log.jsonl below it)")
    else:
        print(runs.table(found, args.dir))
    for message in unreadable:
        print(f"mgm runs: warning: {message}; not listed", file=sys.stderr)
    if args.plot:
        if not found:
            raise MGMError(f"{args.dir}: no runs to plot")
        print(f"{runs.plot(found, args.plot, args.dir)}: loss and top-1 curves of {len(found)} runs",
              file=sys.stderr if args.json else sys.stdout)
    return 1 if unreadable else 0
