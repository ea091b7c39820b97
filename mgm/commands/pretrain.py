"""Masked-autoencoder pre-training (VideoMAE) with any mask strategy.

  mgm pretrain --config cfg.yaml --set data.mask=mgm --set data.mask_ratio=0.75 --name k400-mgm
  mgm pretrain --config cfg.yaml --name k400-mgm --resume auto      # continue after a crash
  torchrun --nproc_per_node 8 -m mgm.cli pretrain --config cfg.yaml  # all GPUs of a node

Config: sections model, data, optim, run (see mgm/train/config.py); defaults < --config < --set.
Writes runs/<name>/ckpt-<step>.pt and runs/<name>/log.jsonl.
"""

from mgm.train.config import add_config_arguments as add_arguments  # noqa: F401  (the shared flags)

NAME = "pretrain"
HELP = "pre-train a VideoMAE encoder with a mask strategy (random, tube, mgm, ...)"


def run(args):
    from mgm.train.tasks import command_main

    return command_main(NAME, args)
