"""Evaluate a fine-tuned or linear-probe checkpoint: multi-view top-1 / top-5.

  mgm eval runs/ucf-mgm/ckpt-00004000.pt --set data.test_clips=5 --set data.test_crops=3
  torchrun --nproc_per_node 4 -m mgm.cli eval CKPT     # shards the videos over 4 processes

The checkpoint's stored config is the base; --config / --set change it (val list, views, batch).
"""

NAME = "eval"
HELP = "multi-view top-1/top-5 of a finetune or linprobe checkpoint on data.val_list"


def add_arguments(parser):
    parser.add_argument("checkpoint", help="ckpt-*.pt written by mgm finetune or mgm linprobe")
    parser.add_argument("--config", metavar="FILE", help="YAML overriding the stored config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set data.val_list=val.csv (repeatable)")
    parser.add_argument("--out", metavar="JSON", help="also write the metrics to this JSON file")


def run(args):
    import json

    from mgm.train import distributed as D
    from mgm.train.loop import resolve_precision
    from mgm.errors import MGMError
    from mgm.files import write_text
    from mgm.train.tasks import restore_classifier
    from mgm.train.datasets import build_dataset
    from mgm.train.fit import format_scores, run_evaluation, setup

    cfg, task = restore_classifier(args.checkpoint, args.config, args.overrides)
    info = setup(cfg)
    try:
        val = build_dataset(cfg, "val", masks=False)
        if val is None:
            raise MGMError("config data.val_list is empty: --set data.val_list=LIST")
        task.model.to(info.device)
        metrics = run_evaluation(task, task.model, val, cfg, info, resolve_precision(cfg.run.precision, info.device))
    finally:
        D.cleanup()
    if info.is_main:
        print(f"{args.checkpoint}: {format_scores(metrics)}, loss {metrics['loss']:.4f}")
        if args.out:
            write_text(args.out, json.dumps({"checkpoint": args.checkpoint, **metrics}, indent=2) + "\n")
