"""The end-to-end demo (what `./run demo` runs): build the tiny synthetic benchmark, pre-train tube
and MGM briefly, fine-tune each and a from-scratch baseline, print a table and the top-1 line,
and write runs/demo/mask_mgm.gif and runs/demo/reconstruction_mgm.png. Re-running reuses finished
runs (delete the output folder to start over)."""

NAME = "demo"
HELP = "end-to-end demo on the tiny synthetic benchmark (a few minutes on a CPU)"


def add_arguments(p):
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")


def run(args):
    from mgm.demo import run_demo

    run_demo(args.out, args.threads)
