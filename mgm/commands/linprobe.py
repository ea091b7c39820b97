"""Linear probe: frozen encoder -> features -> BatchNorm1d(affine=False) -> Linear.

  mgm linprobe --config ucf101.yaml --set model.init=runs/k400-mgm/ckpt-00100000.pt --name probe
  mgm linprobe ... --set model.pooling=slots     # per-time-slot features [T' x D], keeps order

MAE features are known to be weak under linear probes: compare strategies by fine-tuning too.
"""

from mgm.train.config import add_config_arguments as add_arguments  # noqa: F401  (the shared flags)

NAME = "linprobe"
HELP = "train a linear classifier on frozen encoder features"


def run(args):
    from mgm.train.tasks import command_main

    return command_main(NAME, args)
