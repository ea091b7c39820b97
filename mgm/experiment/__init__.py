"""The masking experiment: does motion-guided masking train a better encoder than random tubes?

For each arm (strategy, ratio, constants) and seed, pre-train the same ViT on the synthetic
motion benchmark (`mgm synth`) for the same number of steps, keeping checkpoints along the way;
fine-tune every checkpoint on the labelled clips (all labels, and a small fraction of them), and
compare with the same network trained from scratch. Secondary views: linear probes on frozen
features (mean-pooled, and per time slot), an untrained encoder, and a probe on the raw codec
motion maps (nothing learned). Optionally fine-tune on a shifted variant of the benchmark (new
backgrounds, shapes, colours, speeds): transfer in miniature.

Every unit of work (a pre-training run, a fine-tuning run, a probe) stores its result as JSON under
OUT/results/ and is skipped when that file exists, so an interrupted experiment continues where it
stopped (`mgm experiment masking --preset small` again). Training uses mgm's own engine
(mgm.train.tasks.run_training), on clips decoded once into memory (mgm.data.memory).

Choices are made on the benchmark's `dev` split; the table reports the `val` split.
"""

# The package's public API (the CLI, the demo, the benchmarks and the tests use these names).
from mgm.experiment.recipes import LONG, MAIN, PRESETS, SMALL, Arm, Preset
from mgm.experiment.records import FineTune, Pretraining, Probe, Record, Tag
from mgm.experiment.runner import Runner
from mgm.experiment.store import (finetune_run_name, prepare_data, read_result, read_results, run_losses,
                                  train_list, write_result)

__all__ = ["LONG", "MAIN", "PRESETS", "SMALL", "Arm", "FineTune", "Preset", "Pretraining", "Probe", "Record",
           "Runner", "Tag", "finetune_run_name", "prepare_data", "read_result", "read_results", "run_losses",
           "train_list", "write_result"]
