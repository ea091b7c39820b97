"""Reconstructions from a pre-training checkpoint, for pictures (`mgm show --checkpoint`, the demo)."""

from __future__ import annotations

import numpy as np

from mgm.errors import MGMError


def load_pretrained(path):
    """(VideoMAEPretrain in eval mode, its Geometry) from one of our pre-training checkpoints."""
    from mgm.model import VideoMAEPretrain
    from mgm.train.tasks import model_config, state_dict_of
    from mgm.train.config import load_config
    from mgm.train.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    if state.get("task") != "pretrain" or "config" not in state:
        raise MGMError(f"{path}: not a pre-training checkpoint of `mgm pretrain` (no decoder to reconstruct with)")
    cfg = load_config("pretrain", base=state["config"])
    model = VideoMAEPretrain(model_config(cfg))
    model.load_state_dict(state_dict_of(path))
    return model.eval(), cfg.data.geometry


def reconstruct_frames(model, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """frames: uint8 [T, S, S, 3]; mask: bool [T', H', W'] -> the reconstruction, float [T, S, S, 3]
    in [0, 1] (visible tubelets copied, masked ones predicted)."""
    import torch

    from mgm.config import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    video = (torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        recon = model.reconstruct(video[None], torch.from_numpy(mask.reshape(1, -1)))[0]
    return recon.permute(1, 2, 3, 0).clamp(0, 1).numpy()
