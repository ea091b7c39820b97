"""Masked-autoencoder pre-training (VideoMAE) with any mask strategy.

  mgm pretrain --config cfg.yaml --set data.mask=mgm --set data.mask_ratio=0.75 --name k400-mgm
  mgm pretrain --config cfg.yaml --name k400-mgm --resume auto      # continue after a crash
  torchrun --nproc_per_node 8 -m mgm.cli pretrain --config cfg.yaml  # all GPUs of a node

Config: sections model, data, optim, run (see mgm/train/config.py); defaults < --config < --set.
Writes runs/<name>/ckpt-<step>.pt and runs/<name>/log.jsonl.
"""

NAME = "pretrain"
HELP = "pre-train a VideoMAE encoder with a mask strategy (random, tube, mgm, ...)"


def add_arguments(parser):
    from mgm.train.config import add_config_arguments

    add_config_arguments(parser)


def run(args):
    from mgm.train.stopping import exit_code
    from mgm.train.tasks import run_training
    from mgm.train.config import config_from_args

    return exit_code(run_training(NAME, config_from_args(NAME, args))["stopped"])
