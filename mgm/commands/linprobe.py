"""Linear probe: frozen encoder -> features -> BatchNorm1d(affine=False) -> Linear.

  mgm linprobe --config ucf101.yaml --set model.init=runs/k400-mgm/ckpt-00100000.pt --name probe
  mgm linprobe ... --set model.pooling=slots     # per-time-slot features [T' x D], keeps order

MAE features are known to be weak under linear probes: compare strategies by fine-tuning too.
"""

NAME = "linprobe"
HELP = "train a linear classifier on frozen encoder features"


def add_arguments(parser):
    from mgm.train.config import add_config_arguments

    add_config_arguments(parser)


def run(args):
    from mgm.train.stopping import exit_code
    from mgm.train.tasks import run_training
    from mgm.train.config import config_from_args

    return exit_code(run_training(NAME, config_from_args(NAME, args))["stopped"])
