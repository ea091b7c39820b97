"""Write VideoMAE list files (`path label`, 0-based) from a dataset's official split files.

Examples:
  mgm lists ucf101 ucfTrainTestlist/ --out lists/ucf101 [--split 1] [--ext .mp4]
  mgm lists hmdb51 testTrainMulti_7030_splits/ --out lists/hmdb51 [--split 1]
  mgm lists ssv2 labels.json train.json validation.json --out lists/ssv2 [--ext .mp4]
  mgm lists kinetics train.csv validate.csv --out lists/k400 [--by-class]

Writes one `<split>.txt` per split and `classes.txt` (line i = label i) into --out. With --root,
entries whose file does not exist under the root are dropped and counted (never silently).
"""

from __future__ import annotations

NAME = "lists"
HELP = "write VideoMAE list files from UCF101 / HMDB51 / SSv2 / Kinetics split files"


def add_arguments(parser):
    parser.add_argument("dataset", choices=("ucf101", "hmdb51", "ssv2", "kinetics"))
    parser.add_argument("inputs", nargs="+", help="split files / folder (see examples)")
    parser.add_argument("--out", required=True, help="output folder for <split>.txt and classes.txt")
    parser.add_argument("--split", type=int, default=1, help="UCF101 / HMDB51 split number (1-3)")
    parser.add_argument("--ext", default=None, help="replace video extensions (e.g. .mp4 after transcode)")
    parser.add_argument("--by-class", action="store_true", help="Kinetics videos live in <label>/ folders")
    parser.add_argument("--root", default=None, help="drop (and count) entries missing under this root")


def run(args):
    from pathlib import Path

    from mgm.data import lists
    from mgm.errors import MGMError

    def need(n):
        if len(args.inputs) != n:
            raise MGMError(f"{args.dataset} needs {n} input(s), got {len(args.inputs)}")

    if args.dataset == "ucf101":
        need(1)
        classes, splits = lists.ucf101(args.inputs[0], args.split, args.ext)
    elif args.dataset == "hmdb51":
        need(1)
        classes, splits = lists.hmdb51(args.inputs[0], args.split, args.ext)
    elif args.dataset == "ssv2":
        need(3)
        classes, splits = lists.ssv2(*args.inputs, ext=args.ext or ".webm")
    else:
        classes, splits = lists.kinetics(args.inputs, ext=args.ext or ".mp4", by_class=args.by_class)

    out = Path(args.out)
    lists.write_classes(out / "classes.txt", classes)
    for name, rows in splits.items():
        missing = []
        if args.root:
            rows, missing = lists.filter_existing(rows, args.root)
        lists.write_list(out / f"{name}.txt", rows)
        note = f" ({len(missing)} missing under {args.root}, dropped)" if missing else ""
        print(f"{out / f'{name}.txt'}: {len(rows)} videos{note}")
    print(f"{out / 'classes.txt'}: {len(classes)} classes")
