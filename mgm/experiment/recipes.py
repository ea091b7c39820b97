"""The experiment's recipes: an `Arm` (mask strategy, ratio, constants) and a `Preset` (the
benchmark, a clip geometry, the model, each stage's budget and training-config overrides, which
evaluations), and the named presets of `mgm experiment masking --preset`. Why each preset is what
it is: docs/RECIPES.md."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace

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


# A preset's stage settings under the names recipe.json has always stored them by (and that
# `Preset.replace` still takes): name -> (stage, training-config key).
_RECORD_NAMES = {"pretrain_batch": ("pretrain", "data.batch_size"), "pretrain_lr": ("pretrain", "optim.base_lr"),
                 "norm_pix": ("pretrain", "model.norm_pix_loss"),
                 "finetune_batch": ("finetune", "data.batch_size"), "finetune_lr": ("finetune", "optim.base_lr"),
                 "finetune_layer_decay": ("finetune", "optim.layer_decay"),
                 "finetune_pooling": ("finetune", "model.pooling")}
_GEOMETRY_NAMES = ("num_frames", "size", "tubelet", "patch")

# Every stage sets at least these (a preset's own dict is merged over them).
_PRETRAIN = {"data.batch_size": 32,
             "optim.base_lr": 2e-3,           # x batch / 256: short schedules need MAE's full-batch lr
             "model.norm_pix_loss": True}     # VideoMAE's normalised-pixel target (False: plain pixels)
_FINETUNE = {"data.batch_size": 32, "optim.base_lr": 4e-3,
             "optim.layer_decay": 0.75,       # VideoMAE's; 1.0 = none
             "model.pooling": "mean"}         # the head's input: "mean" (VideoMAE) or "slots" (order-aware)


@dataclass(frozen=True)
class Preset:
    """One experiment: the benchmark, the clip geometry, the model, each stage's budget and its
    training-config overrides (`--set` keys, over the command's defaults), and which runs and
    evaluations exist. Why each named preset is what it is: docs/RECIPES.md."""

    synth: str                      # `mgm synth` preset of the data
    arms: tuple
    seeds: tuple = (0, 1, 2)
    # 8 sampled frames at `stride` 4 cover the 32-frame clips; 6 x 6 patches x 4 time slots = 144
    # tokens: affordable on a CPU
    geometry: Geometry = Geometry(num_frames=8, size=96, patch=16)
    stride: int = 4
    model: str = "tiny"
    pretrain_steps: int = 2400
    finetune_steps: int = 450       # the same optimizer steps for every label fraction
    pretrain: dict = field(default_factory=dict)   # overrides of the pre-training config, over _PRETRAIN
    finetune: dict = field(default_factory=dict)   # overrides of the fine-tuning config, over _FINETUNE
    curve: tuple = (1 / 3, 2 / 3, 1.0)  # fractions of pre-training whose checkpoints are fine-tuned
    label_fractions: tuple = (1.0, 0.1)
    curve_labels: float = 0.1       # label fraction used for the intermediate checkpoints
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

    def __post_init__(self):
        object.__setattr__(self, "pretrain", {**_PRETRAIN, **self.pretrain})
        object.__setattr__(self, "finetune", {**_FINETUNE, **self.finetune})

    def replace(self, **changes) -> "Preset":
        """A copy with `changes`: fields, the geometry's own names (patch=8) and the record names
        of stage settings (pretrain_batch=8, finetune_pooling="slots", norm_pix=False)."""
        geometry = {k: changes.pop(k) for k in _GEOMETRY_NAMES if k in changes}
        stages = {"pretrain": dict(self.pretrain), "finetune": dict(self.finetune)}
        for name in [n for n in changes if n in _RECORD_NAMES]:
            stage, key = _RECORD_NAMES[name]
            stages[stage][key] = changes.pop(name)
        if geometry:
            changes["geometry"] = replace(changes.get("geometry", self.geometry), **geometry)
        return replace(self, **{**stages, **changes})

    def record(self) -> dict:
        """The recipe as recipe.json stores it: JSON types, the geometry and the stages' settings
        flat under their record names; a stage key without one as "<stage>.<key>"."""
        d = json.loads(json.dumps(asdict(self)))  # tuples as lists, arms as dicts
        out = {}
        for name, value in d.items():
            if name == "geometry":
                out.update(value)
            elif name in ("pretrain", "finetune"):
                named = {key: n for n, (stage, key) in _RECORD_NAMES.items() if stage == name}
                out.update({named.get(key, f"{name}.{key}"): v for key, v in value.items()})
            else:
                out[name] = value
        return out


MAIN = (Arm("tube", 0.75), Arm("mgm", 0.75), Arm("tube", 0.9), Arm("mgm", 0.9), Arm("random", 0.9))
# Why each CPU preset is what it is (grid, model, target, head, budgets): docs/RECIPES.md.
LONG = Preset(synth="small", arms=MAIN, geometry=Geometry(num_frames=8, size=48, patch=8), model="micro",
              pretrain_steps=4000, finetune_steps=2000, pretrain={"model.norm_pix_loss": False},
              curve=(1 / 3, 1.0), curve_labels=1.0)
SMALL = LONG.replace(synth="small-large", model="nano", pretrain_steps=1344, finetune_steps=1000,
                     label_fractions=(1.0, 0.1), full_arms=("tube-0.75", "mgm-0.75"), transfer=False,
                     finetune_pooling="slots")
PRESETS = {
    # CI: every stage once, tiny everything (<= 3 minutes on 2 cores)
    "smoke": Preset(synth="tiny", arms=(Arm("tube", 0.75), Arm("mgm", 0.75)), seeds=(0,),
                    geometry=Geometry(num_frames=4, size=64, patch=16), stride=8, pretrain_steps=12,
                    pretrain={"data.batch_size": 8}, finetune_steps=4, finetune={"data.batch_size": 8},
                    curve=(0.5, 1.0), label_fractions=(1.0, 0.5), curve_labels=0.5),
    # `./run demo`: a few minutes on 2 cores, set-up included
    "demo": Preset(synth="tiny", arms=(Arm("tube", 0.75), Arm("mgm", 0.75)), seeds=(0,),
                   geometry=Geometry(num_frames=8, size=64, patch=16), stride=4, pretrain_steps=300,
                   pretrain={"data.batch_size": 16}, finetune_steps=150, finetune={"data.batch_size": 16},
                   curve=(1.0,), label_fractions=(1.0,), curve_labels=1.0, transfer=False,
                   keep_every_epoch=False),
    "small": SMALL,
    "long": LONG,
    "large": LONG.replace(synth="small-large", arms=MAIN[:2], curve=(1.0,), label_fractions=(1.0,), transfer=False),
    "ablation": LONG.replace(seeds=(0,), curve=(1.0,), transfer=False, probe=False,
                             arms=(Arm("motion-topk", 0.75), Arm("mgm-warp", 0.75),
                                   Arm("mgm", 0.75, (("camera_comp", False),)),
                                   Arm("mgm", 0.75, (("focus", 0.5),)),
                                   Arm("mgm", 0.75, (("sigma", 1.0),)), Arm("mgm", 0.75, (("sigma", 4.0),)))),
    # `./run bench gpu`'s last section (docs/GPU.md): small's benchmark and target at 16 frames, ViT-S,
    # batch 64, eager (7 runs would each pay a compilation), 8 loader workers per run. Sized for 4
    # minutes on one H200 by an estimate (eager steps of ~20 ms); the first run (2026-12-04) measured
    # ~0.15 s a step instead (scratch's unit 96 s, its splits' decoding included), so it takes ~12
    # minutes there: step counts kept (fewer would leave every arm near chance) until the next GPU run's
    # per-run step and data-wait times (gpu.json experiment.runs; float32 clips then, uint8 now) say
    # where those seconds go.
    "gpu": SMALL.replace(arms=(Arm("tube", 0.9), Arm("tube", 0.75), Arm("mgm", 0.75)), seeds=(0,),
                         geometry=Geometry(num_frames=16, size=96, patch=16), stride=2, model="small",
                         pretrain_steps=1000, finetune_steps=400,
                         pretrain={**SMALL.pretrain, "data.batch_size": 64, "data.num_workers": 8},
                         finetune={**SMALL.finetune, "data.batch_size": 64, "data.num_workers": 8},
                         curve=(1.0,), label_fractions=(1.0,), curve_labels=1.0, full_arms=None, probe=False,
                         keep_every_epoch=False),
}
