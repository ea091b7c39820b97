"""Fine-tune a pre-trained encoder end to end (VideoMAE recipe: layer-wise lr decay 0.75, drop
path 0.1, label smoothing 0.1, AdamW betas 0.9/0.999; mixup / cutmix optional).

  mgm finetune --config ucf101.yaml --set model.init=runs/k400-mgm/ckpt-00100000.pt --name ucf-mgm
  mgm finetune --config ucf101.yaml --name ucf-scratch              # from scratch, for comparison

Evaluates on data.val_list after every run.eval_every epochs (multi-view: data.test_clips x
data.test_crops views per video, softmax averaged; top-1 / top-5).
"""

from mgm.train.config import add_config_arguments as add_arguments  # noqa: F401  (the shared flags)

NAME = "finetune"
HELP = "fine-tune an encoder with a classification head (layer decay, label smoothing, mixup)"


def run(args):
    from mgm.train.tasks import command_main

    return command_main(NAME, args)
