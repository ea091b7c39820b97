"""The three training tasks as `trainer.Task`s: pre-training, fine-tuning, linear probing.

Each builds its model from the config (geometry from the data section, widths from the model
preset) and says how a batch becomes a loss and a video becomes logits.
"""

from __future__ import annotations

import torch
from torch import nn

from mgm.errors import MGMError
from mgm.interop import load_encoder_weights, stored_geometry
from mgm.model import ModelConfig, VideoMAEClassifier, VideoMAEPretrain
from mgm.train import distributed as D
from mgm.train.checkpoint import load_checkpoint
from mgm.train.config import TrainConfig, config_from_args, load_config
from mgm.train.datasets import build_dataset, check_labels, num_classes_of
from mgm.train.fit import Task, fit, setup
from mgm.train.mixup import mix_batch, soft_cross_entropy
from mgm.train.optim import layer_id
from mgm.train.stopping import exit_code


def model_config(cfg: TrainConfig, num_classes: int = 0):
    """ModelConfig of the preset, with the data section's geometry and the model section's options."""
    d = cfg.data
    try:
        return ModelConfig.from_preset(cfg.model.preset, geometry=d.geometry, drop_path=cfg.model.drop_path,
                                       grad_checkpointing=cfg.model.grad_checkpointing,
                                       norm_pix_loss=cfg.model.norm_pix_loss,
                                       num_classes=num_classes,
                                       # the head's input; a probe's backbone (no head) pools itself
                                       pooling=cfg.model.pooling if num_classes else "mean")
    except ValueError as e:
        raise MGMError(f"config model: {e}") from None


def state_dict_of(path) -> dict:
    """The model weights inside a checkpoint file: ours ({"model": ...}), MCG-NJU's / VideoMAE V2's
    ({"model"} or {"module"}), a bare state dict (e.g. a hub pytorch_model.bin / .safetensors)."""
    return _weights_of(load_checkpoint(path), path)


def _weights_of(state, path) -> dict:
    if not isinstance(state, dict):
        raise MGMError(f"{path}: checkpoint holds a {type(state).__name__}, not a dict of weights")
    for key in ("model", "module", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if any(k.startswith("backbone.") for k in state):
        # a linear-probe checkpoint: the encoder sits under the probe's backbone
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return state


def init_encoder(model: nn.Module, path: str) -> None:
    """Load the encoder of checkpoint `path` into model (VideoMAEClassifier); the head stays fresh.

    Any layout of mgm.interop. A checkpoint of ours carries its clip geometry (stored config), so a
    position table for another frame count / size is resampled from that grid; for foreign files
    the grid is inferred and reported. Every failure is one MGMError line naming the file."""
    state = load_checkpoint(path)
    weights, geometry = _weights_of(state, path), stored_geometry(state)
    try:
        skipped = load_encoder_weights(model, weights, old_grid=geometry.grid if geometry else None,
                                       say=lambda message: D.print0(f"{path}: {message}"))
    except ValueError as e:
        raise MGMError(f"{path}: {e}") from None
    D.print0(f"initialised the encoder from {path} ({len(skipped)} tensors of the checkpoint unused: "
             f"decoder / head)")


def pretrain_task(cfg: TrainConfig) -> Task:
    def loss(model, batch):
        # "decoder_mask" only with data.decoder_mask (VideoMAE V2's dual masking)
        return model(batch["video"], batch["mask"], batch.get("decoder_mask"))[0]

    return Task("pretrain", VideoMAEPretrain(model_config(cfg)), loss)


def finetune_task(cfg: TrainConfig, num_classes: int) -> Task:
    """Classifier with layer-wise lr decay, drop path, label smoothing and optional mixup / cutmix."""
    model = VideoMAEClassifier(model_config(cfg, num_classes))
    if cfg.model.init:
        init_encoder(model, cfg.model.init)
    o = cfg.optim

    def loss(model, batch):
        video, targets = mix_batch(batch["video"], batch["label"], num_classes, mixup=o.mixup,
                                   cutmix=o.cutmix, prob=o.mix_prob, smoothing=o.label_smoothing)
        return soft_cross_entropy(model(video), targets)

    group_kw = {"layer_decay": o.layer_decay, "num_layers": model.cfg.depth, "layer_id": layer_id,
                "no_weight_decay": model.no_weight_decay()}
    return Task("finetune", model, loss, predict=lambda m, v: m(v), group_kw=group_kw)


class LinearProbe(nn.Module):
    """Frozen encoder -> features -> BatchNorm1d(affine=False) -> Linear (MAE's linear probe).

    pooling "mean": clip features [B, D]; "slots": per-tubelet-slot features flattened [B, T'*D]
    (keeps temporal order, which mean pooling throws away). The BatchNorm without affine only
    standardises the features, so the classifier stays linear in them.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, pooling: str = "mean"):
        super().__init__()
        self.backbone, self.pooling = backbone, pooling
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        dim = backbone.cfg.embed_dim * (backbone.cfg.geometry.grid[0] if pooling == "slots" else 1)
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: no dropout / drop path in the features
        return self

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, C, T, H, W] -> [B, D] or [B, T'*D]."""
        with torch.no_grad():
            if self.pooling == "slots":
                return self.backbone.features_per_slot(video).flatten(1)
            return self.backbone.features(video)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.features(video).float()))


def linprobe_task(cfg: TrainConfig, num_classes: int) -> Task:
    backbone = VideoMAEClassifier(model_config(cfg, 0))
    if cfg.model.init:
        init_encoder(backbone, cfg.model.init)
    model = LinearProbe(backbone, num_classes, cfg.model.pooling)

    def loss(model, batch):
        return nn.functional.cross_entropy(model(batch["video"]).float(), batch["label"],
                                           label_smoothing=cfg.optim.label_smoothing)

    return Task("linprobe", model, loss, predict=lambda m, v: m(v))


def build_task(name: str, cfg: TrainConfig, num_classes: int = 0) -> Task:
    if name == "pretrain":
        return pretrain_task(cfg)
    if name == "finetune":
        return finetune_task(cfg, num_classes)
    if name == "linprobe":
        return linprobe_task(cfg, num_classes)
    raise MGMError(f"unknown task {name!r} (pretrain, finetune, linprobe)")


def run_training(command: str, cfg: TrainConfig) -> dict:
    """What `mgm pretrain|finetune|linprobe` do: datasets, task, fit, clean up the process group."""
    info = setup(cfg)
    try:
        if command != "pretrain":
            check_labels(cfg)
        train_set = build_dataset(cfg, "train", masks=command == "pretrain")
        val_set = None if command == "pretrain" else build_dataset(cfg, "val", masks=False)
        classes = 0 if command == "pretrain" else num_classes_of(cfg, train_set)
        return fit(cfg, build_task(command, cfg, classes), train_set, val_set, info)
    finally:
        D.cleanup()


def restore_classifier(path, config_path=None, overrides=()) -> tuple[TrainConfig, Task]:
    """A fine-tuned or linear-probe checkpoint as (config, task with its weights loaded).

    The stored config is the base; `config_path` and `overrides` change e.g. the val list or views.
    """
    state = load_checkpoint(path)
    name = state.get("task")
    if name not in ("finetune", "linprobe"):
        raise MGMError(f"{path}: not a finetune / linprobe checkpoint (task {name!r}); "
                       f"evaluation needs a classifier")
    cfg = load_config(name, config_path, overrides, base=state["config"])
    cfg.model.init = ""  # every weight comes from this checkpoint
    num_classes = int(state["model"]["head.weight"].shape[0])
    task = build_task(name, cfg, num_classes)
    task.model.load_state_dict(state["model"])
    return cfg, task


def command_main(command: str, args) -> int:
    """What `mgm pretrain|finetune|linprobe` run: the config from the command line, training, and
    the exit status (128 + the signal when SIGTERM / SIGUSR1 stopped the run)."""
    return exit_code(run_training(command, config_from_args(command, args))["stopped"])
