"""The shipped configs/ (the README's Kinetics / SSv2 recipes) are valid and say what they claim."""

from pathlib import Path

import numpy as np
import pytest

from mgm.train.config import load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_there_are_pretrain_and_finetune_configs_for_both_datasets():
    assert {p.stem for p in CONFIGS} >= {"k400_pretrain", "k400_finetune", "ssv2_pretrain", "ssv2_finetune"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_builds_its_model_and_masks(path):
    from mgm.masking import build_mask_generator
    from mgm.train.tasks import model_config

    command = "pretrain" if path.stem.endswith("pretrain") else "finetune"
    cfg = load_config(command, path)  # every key must exist
    m = model_config(cfg, num_classes=0 if command == "pretrain" else 400)
    assert (m.embed_dim, m.depth, m.img_size, m.num_frames) == (768, 12, 224, 16)  # ViT-B, 16 x 224^2
    if command == "pretrain":
        # MGM at its ratio, on VideoMAE's normalised pixels, 2048 clips per step on 64 GPUs
        assert (cfg.data.mask, cfg.data.mask_ratio, m.norm_pix_loss) == ("mgm", 0.75, True)
        assert cfg.data.batch_size * 64 == 2048 and cfg.optim.warmup_epochs == 40
        gen = build_mask_generator(cfg.data.mask, cfg.data.geometry, cfg.data.mask_ratio, **cfg.data.mask_params)
        motion = np.random.default_rng(0).normal(size=(16, 2, 14, 14)).astype(np.float32)
        mask = gen(motion, np.random.default_rng(0))
        assert mask.shape == (8, 14, 14) and (mask.sum((1, 2)) == int(0.75 * 14 * 14)).all()
    else:
        assert cfg.optim.layer_decay == 0.75 and m.drop_path == 0.1 and cfg.optim.label_smoothing == 0.1
    if path.stem.startswith("ssv2"):
        assert not cfg.data.flip  # flips swap SSv2's left / right classes
        assert cfg.data.stride == 2 or cfg.data.sampling == "segment"
