"""One clip Geometry: the model config and the experiment's presets hold it, the data section's
keys (data.num_frames, data.size, data.tubelet, data.patch) are its spelling in config files, and
the transformers-style names (img_size, ...) still build one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mgm.config import Geometry
from mgm.model_config import ModelConfig


def test_model_config_holds_the_geometry_and_reads_it_under_the_transformers_names():
    g = Geometry(num_frames=8, size=64, tubelet=4, patch=8)
    cfg = ModelConfig.from_preset("tiny", geometry=g)
    assert cfg.geometry is g
    assert (cfg.img_size, cfg.num_frames, cfg.tubelet, cfg.patch) == (64, 8, 4, 8)
    assert cfg.patch_dim == 4 * 8 * 8 * 3
    # the old spelling replaces the geometry's fields, over the preset's own size (tiny: 112)
    old = ModelConfig.from_preset("tiny", img_size=64, num_frames=8, tubelet=4, patch=8)
    assert old == cfg and old.geometry == g
    assert ModelConfig.from_preset("tiny").geometry == Geometry(size=112)
    assert ModelConfig.from_preset("giant").geometry.patch == 14
    assert replace(cfg, pooling="slots").geometry == g  # dataclasses.replace keeps it
    with pytest.raises(ValueError, match="not a multiple of patch"):
        ModelConfig(img_size=60, patch=16)
    with pytest.raises(TypeError, match="unknown fields: img_sise"):
        ModelConfig(img_sise=60)


def test_the_training_config_passes_its_data_geometry_to_the_model():
    from mgm.train.config import load_config
    from mgm.train.tasks import model_config

    cfg = load_config("pretrain", overrides=["data.num_frames=4", "data.size=32", "data.patch=8", "model.preset=tiny"])
    assert model_config(cfg).geometry == cfg.data.geometry == Geometry(num_frames=4, size=32, patch=8)


def test_a_presets_geometry_reaches_the_runs_config(tmp_path):
    from mgm.experiment import PRESETS, Runner

    preset = PRESETS["smoke"].replace(geometry=Geometry(num_frames=8, size=64, tubelet=4, patch=8))
    runner = Runner(tmp_path, preset)
    cfg = runner._config("pretrain", "x", tmp_path, tmp_path / "train.txt", 0)
    assert cfg.data.geometry == preset.geometry
