"""Training config: precedence defaults < command defaults < YAML < --set, typing, unknown keys."""

from __future__ import annotations

import pytest

from mgm.errors import MGMError
from mgm.train.config import TrainConfig, load_config, parse_override


def test_precedence_defaults_then_command_then_yaml_then_set(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("optim:\n  base_lr: 0.002\n  epochs: 30\nrun:\n  name: from-yaml\n  seed: 4\n")
    cfg = load_config("finetune", cfg_file, ["optim.epochs=50", "run.seed=9"])
    assert cfg.optim.epochs == 50 and cfg.run.seed == 9          # --set beats YAML
    assert cfg.optim.base_lr == 0.002 and cfg.run.name == "from-yaml"  # YAML beats command defaults
    assert cfg.optim.layer_decay == 0.75 and cfg.optim.betas == (0.9, 0.999)  # finetune recipe
    assert cfg.optim.weight_decay == 0.05                          # dataclass default
    pre = load_config("pretrain")
    assert pre.optim.betas == (0.9, 0.95) and pre.optim.layer_decay == 1.0 and pre.optim.weight_decay == 0.05
    assert load_config("linprobe").optim.weight_decay == 0.0


def test_set_values_are_parsed_as_yaml_and_typed():
    cfg = load_config("pretrain", overrides=[
        "optim.base_lr=3e-4", "data.mask_params={sigma: 1.5, focus: 0.5}", "optim.betas=[0.9, 0.99]",
        "run.progress=false", "data.batch_size=16", "run.name=123", "optim.warmup_epochs=5"])
    assert cfg.optim.base_lr == pytest.approx(3e-4) and isinstance(cfg.optim.base_lr, float)
    assert cfg.data.mask_params == {"sigma": 1.5, "focus": 0.5}
    assert cfg.optim.betas == (0.9, 0.99) and cfg.run.progress is False
    assert cfg.data.batch_size == 16 and cfg.run.name == "123"
    assert cfg.optim.warmup_epochs == 5.0 and isinstance(cfg.optim.warmup_epochs, float)
    assert parse_override("run.resume=auto") == {"run": {"resume": "auto"}}


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'"),
    ("optimizer.base_lr=1", "unknown config section 'optimizer'"),
    ("base_lr=1", "expected section.key=value"),
    ("data.batch_size=2.5", "'data.batch_size': 2.5 is not a valid int"),
    ("run.progress=maybe", "'run.progress': 'maybe' is not a valid bool"),
    ("data.batch_size=0", "'data.batch_size': must be >= 1"),
    ("data.size=100", "not a multiple of patch"),
    ("run.precision=fp8", "'run.precision'"),
])
def test_bad_overrides_are_errors_naming_the_key(override, message):
    with pytest.raises(MGMError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config("pretrain", overrides=[override])


def test_unknown_yaml_key_is_an_error_naming_file_and_key(tmp_path):
    cfg_file = tmp_path / "typo.yaml"
    cfg_file.write_text("data:\n  num_frame: 8\n")
    with pytest.raises(MGMError) as e:
        load_config("pretrain", cfg_file)
    assert str(cfg_file) in str(e.value) and "'data.num_frame'" in str(e.value) and "num_frames" in str(e.value)
    with pytest.raises(MGMError, match="config file not found"):
        load_config("pretrain", tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("optim: [1, 2\n")
    with pytest.raises(MGMError, match="not valid YAML"):
        load_config("pretrain", tmp_path / "bad.yaml")


def test_to_dict_round_trips_through_base():
    cfg = load_config("finetune", overrides=["data.mask_params={sigma: 2}", "optim.epochs=7"])
    again = load_config("pretrain", base=cfg.to_dict())
    assert again == cfg and isinstance(again, TrainConfig)
    assert again.data.geometry.grid == (8, 14, 14)


def test_cli_reports_unknown_key_in_one_line(capsys):
    from mgm.cli import main

    assert main(["pretrain", "--set", "optim.lrr=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown config key 'optim.lrr'" in err[0]
