"""Clip embeddings of a trained encoder to .npy, for probes, retrieval or plots.

  mgm features runs/k400-mgm/ckpt-00100000.pt --set data.val_list=ucf_train.csv --out feats.npy
  mgm features CKPT ... --pooling slots      # [N, T', D] per-time-slot embeddings

Reads the videos of data.val_list (evaluation transform, data.test_clips x data.test_crops views,
averaged). Writes OUT (float32 [N, D] or [N, T', D], list order) and OUT with suffix .labels.npy
(int64 [N]). Any checkpoint with an encoder works: pretrain, finetune, linprobe, MCG-NJU VideoMAE
(a foreign checkpoint carries no config: give the geometry and --set model.preset=base etc.).
"""

NAME = "features"
HELP = "write clip embeddings of an encoder checkpoint to .npy"


def add_arguments(parser):
    parser.add_argument("checkpoint", help="checkpoint with an encoder (ours or MCG-NJU VideoMAE)")
    parser.add_argument("--out", required=True, metavar="OUT.npy")
    parser.add_argument("--pooling", choices=("mean", "slots"), default="mean",
                        help="mean over all tokens [D] or per tubelet slot [T', D]")
    parser.add_argument("--config", metavar="FILE", help="YAML config (data section: list, root, geometry)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args):
    from pathlib import Path

    import numpy as np

    from mgm.train.checkpoint import load_checkpoint
    from mgm.train.loop import extract_features, resolve_precision
    from mgm.files import atomic_write
    from mgm.errors import MGMError
    from mgm.model import VideoMAEClassifier
    from mgm.train.tasks import init_encoder, model_config, restore_classifier
    from mgm.train.config import load_config
    from mgm.train.datasets import build_dataset
    from mgm.train.fit import make_loader, setup

    state = load_checkpoint(args.checkpoint)
    if state.get("task") in ("finetune", "linprobe"):
        # the trained classifier as it is, fc_norm included
        cfg, task = restore_classifier(args.checkpoint, args.config, args.overrides)
        model = task.model.backbone if state["task"] == "linprobe" else task.model
    else:  # a pre-training checkpoint (ours or MCG-NJU's): its encoder in a classifier without head
        stored = state.get("config")
        base = stored if isinstance(stored, dict) and "data" in stored else None
        cfg = load_config("features", args.config, args.overrides, base=base)
        model = VideoMAEClassifier(model_config(cfg, 0))
        init_encoder(model, args.checkpoint)
    del state
    info = setup(cfg)
    if info.distributed:
        raise MGMError("mgm features runs in one process (the output keeps list order)")
    data = build_dataset(cfg, "val", masks=False)
    if data is None:
        raise MGMError("config data.val_list is empty: --set data.val_list=LIST (the videos to embed)")
    loader, _ = make_loader(data, cfg, info, train=False)
    embed = (lambda m, v: m.features_per_slot(v)) if args.pooling == "slots" else (lambda m, v: m.features(v))
    feats, labels, _ = extract_features(embed, model.to(info.device), loader, device=info.device,
                                        precision=resolve_precision(cfg.run.precision, info.device),
                                        progress=cfg.run.progress)
    out = Path(args.out)
    labels_path = out.with_suffix(".labels.npy")
    for path, array in ((out, feats), (labels_path, labels)):
        with atomic_write(path) as f:
            np.save(f, array.numpy())
    print(f"{out}: {tuple(feats.shape)} float32 embeddings of {len(data)} clips; labels in {labels_path}")
