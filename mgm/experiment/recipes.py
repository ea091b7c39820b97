"""The experiment's recipes: an `Arm` (mask strategy, ratio, constants) and a `Preset` (the
benchmark, the model, the pre-training and fine-tuning budgets, which evaluations), and the named
presets of `mgm experiment masking --preset`. Commentary on why each preset is what it is:
docs/RESULTS.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from mgm.config import Geometry
from mgm.masking import STRATEGIES, build_mask_generator, strategy_parameters


@dataclass(frozen=True)
class Arm:
    """One pre-training recipe: a mask strategy, its ratio and its constants."""

    strategy: str
    ratio: float
    params: tuple = ()  # ((name, value), ...), e.g. (("focus", 0.5),)

    @property
    def name(self) -> str:
        extra = "".join(f"-{k}{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool)
                        else f"-{k}{'on' if v else 'off'}" for k, v in self.params)
        return f"{self.strategy}-{self.ratio:g}{extra}"

    @classmethod
    def from_name(cls, name: str) -> "Arm":
        """The arm a name stands for: STRATEGY-RATIO[-PARAMVALUE...], e.g. mgm-0.75-focus0.75 or
        mgm-0.75-camera_compoff (the inverse of `name`). ValueError, naming the reason, if it is none."""
        strategy = max((s for s in STRATEGIES if name.startswith(s + "-")), key=len, default=None)
        if strategy is None:
            raise ValueError(f"{name}: no mask strategy of {', '.join(STRATEGIES)} followed by -RATIO")
        ratio, *rest = name[len(strategy) + 1:].split("-")
        defaults, params = strategy_parameters(strategy), []
        number = r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+"
        for part in rest:
            m = re.fullmatch(rf"([a-z_]+?)(on|off|{number})", part)
            if not m or m[1] not in defaults:
                raise ValueError(f"{name}: {part!r} is not PARAMVALUE with a parameter of {strategy} "
                                 f"({', '.join(defaults) or 'none'})")
            key, value = m[1], m[2]
            if isinstance(defaults[key], bool) != (value in ("on", "off")):
                raise ValueError(f"{name}: {key} takes {'on/off' if isinstance(defaults[key], bool) else 'a number'}")
            params.append((key, value == "on" if value in ("on", "off") else type(defaults[key])(float(value))))
        if not re.fullmatch(number, ratio):
            raise ValueError(f"{name}: the ratio {ratio!r} is not a number")
        try:
            arm = cls(strategy, float(ratio), tuple(params))
            build_mask_generator(strategy, Geometry(), arm.ratio, **dict(arm.params))  # the class's own checks
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name}: {e}") from None
        return arm


@dataclass(frozen=True)
class Preset:
    synth: str                      # `mgm synth` preset of the data
    arms: tuple
    seeds: tuple = (0, 1, 2)
    num_frames: int = 8             # sampled frames per clip, at `stride` (covers the 32-frame clips)
    stride: int = 4
    size: int = 96
    patch: int = 16                 # 6 x 6 patches x 4 time slots = 144 tokens: affordable on a CPU
    model: str = "tiny"
    pretrain_steps: int = 2400
    pretrain_batch: int = 32
    pretrain_lr: float = 2e-3       # base lr (x batch / 256): short schedules need MAE's full-batch lr
    norm_pix: bool = True           # VideoMAE's normalised-pixel target (False: plain pixels)
    curve: tuple = (1 / 3, 2 / 3, 1.0)  # fractions of pre-training whose checkpoints are fine-tuned
    label_fractions: tuple = (1.0, 0.1)
    curve_labels: float = 0.1       # label fraction used for the intermediate checkpoints
    finetune_steps: int = 450       # the same optimizer steps for every label fraction
    finetune_batch: int = 32
    finetune_lr: float = 4e-3
    finetune_layer_decay: float = 0.75  # VideoMAE's; 1.0 = none
    finetune_pooling: str = "mean"  # the head's input: "mean" (VideoMAE) or "slots" (order-aware; see model.py)
    probe: bool = True
    transfer: bool = True
    scratch: bool = True            # the from-scratch baselines (off: e.g. more seeds of some arms only)
    # The arms evaluated every way (curve checkpoints, every label fraction, probes, transfer); the
    # others get their final checkpoint fine-tuned on `curve_labels` only. None: every arm.
    full_arms: tuple | None = None
    eval_split: str = "val"         # "dev" while choosing settings, "val" for the reported table
    threads: int = 0                # torch threads (0: torch's default)
    # Pre-training checkpoints kept: every epoch end (a new curve point reuses a finished
    # pre-training) or only the curve's (the demo: one per epoch came to 5.7 GB).
    keep_every_epoch: bool = True


MAIN = (Arm("tube", 0.75), Arm("mgm", 0.75), Arm("tube", 0.9), Arm("mgm", 0.9), Arm("random", 0.9))
# Why each CPU preset is what it is (grid, model, target, head, budgets): docs/RECIPES.md.
LONG = Preset(synth="small", arms=MAIN, size=48, patch=8, model="micro", norm_pix=False,
              pretrain_steps=4000, finetune_steps=2000, curve=(1 / 3, 1.0), curve_labels=1.0)
SMALL = replace(LONG, synth="small-large", model="nano", pretrain_steps=1344, finetune_steps=1000,
                label_fractions=(1.0, 0.1), full_arms=("tube-0.75", "mgm-0.75"), transfer=False,
                finetune_pooling="slots")
PRESETS = {
    # CI: every stage once, tiny everything (<= 3 minutes on 2 cores)
    "smoke": Preset(synth="tiny", arms=(Arm("tube", 0.75), Arm("mgm", 0.75)), seeds=(0,),
                    num_frames=4, stride=8, size=64, patch=16, pretrain_steps=12, pretrain_batch=8,
                    curve=(0.5, 1.0), label_fractions=(1.0, 0.5), curve_labels=0.5,
                    finetune_steps=4, finetune_batch=8),
    # `./run demo`: a few minutes on 2 cores, set-up included
    "demo": Preset(synth="tiny", arms=(Arm("tube", 0.75), Arm("mgm", 0.75)), seeds=(0,),
                   num_frames=8, stride=4, size=64, patch=16, pretrain_steps=300, pretrain_batch=16,
                   curve=(1.0,), label_fractions=(1.0,), curve_labels=1.0, finetune_steps=150,
                   finetune_batch=16, transfer=False, keep_every_epoch=False),
    "small": SMALL,
    "long": LONG,
    "large": replace(LONG, synth="small-large", arms=MAIN[:2], curve=(1.0,), label_fractions=(1.0,),
                     transfer=False),
    "ablation": replace(LONG, seeds=(0,), curve=(1.0,), transfer=False, probe=False,
                        arms=(Arm("motion-topk", 0.75), Arm("mgm-warp", 0.75),
                              Arm("mgm", 0.75, (("camera_comp", False),)),
                              Arm("mgm", 0.75, (("focus", 0.5),)),
                              Arm("mgm", 0.75, (("sigma", 1.0),)), Arm("mgm", 0.75, (("sigma", 4.0),)))),
}
