"""The training side: config (typed, validated), datasets (config -> data), tasks (what differs
between pre-training, fine-tuning and probing), fit (run directory, resume, checkpoints,
evaluation), loop (one epoch, evaluation), optim, mixup, log, distributed, checkpoint, rundir,
stopping. See docs/DESIGN.md (layers) and docs/TRAINING.md (use)."""
