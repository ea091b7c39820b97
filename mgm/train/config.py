"""Typed training configuration: dataclass defaults < per-command defaults < YAML file < --set overrides.

A config is four sections (model, data, optim, run) of plain fields. Every key anywhere -- in the
YAML file or on the command line -- must name an existing field; an unknown key is an MGMError that
names it and lists the valid ones, so a typo never silently trains with a default.

    cfg = load_config("pretrain", path="cfg.yaml", overrides=["optim.base_lr=3e-4", "run.seed=1"])
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

from mgm.config import Geometry
from mgm.errors import MGMError
from mgm.masking import STRATEGIES


@dataclass
class ModelSection:
    preset: str = "tiny"              # ModelConfig preset: tiny, small, base, large (see mgm.model)
    drop_path: float = 0.0
    grad_checkpointing: bool = False
    init: str = ""                    # checkpoint whose encoder initialises fine-tuning / probing
    pooling: str = "mean"             # fine-tune head / linear probe input: "mean" [B,D] or "slots" [B,T'*D]
    norm_pix_loss: bool = True        # pre-training target: per-tubelet normalised pixels (VideoMAE) or plain


@dataclass
class DataSection:
    source: str = "list"              # "list": list files of videos; "random": random tensors (smoke tests)
    train_list: str = ""
    val_list: str = ""
    root: str = ""                    # prefix for relative paths in the list files
    num_classes: int = 0              # 0 = infer from the labels of the training list
    num_frames: int = 16
    size: int = 224
    tubelet: int = 2
    patch: int = 16
    stride: int = 4                   # frames between sampled frames
    sampling: str = "dense"           # "dense" (stride) or "segment" (TSN, SSv2 fine-tuning)
    flip: bool = False                # horizontal flips when training (wrong for direction classes)
    bad_videos: str = "error"         # "error" stops at an unreadable video; "skip" logs and skips it
    in_memory: bool = False           # decode the whole split once into RAM (small CPU experiments)
    cache: str = ""                   # in_memory: directory for the decoded arrays (<list name>/*.npy, memory-mapped)
    motion_cache: str = ""            # directory: each video's motion read once, then only pixels are decoded
    mask: str = "tube"                # masking strategy (mgm.masking.STRATEGIES)
    mask_ratio: float = 0.9
    mask_params: dict = field(default_factory=dict)
    # VideoMAE V2's dual masking: the decoder reconstructs only the masked tokens this second mask
    # keeps (running-cell at 0.5 in V2); "" = off, the decoder sees every token
    decoder_mask: str = ""
    decoder_ratio: float = 0.5        # share of the tokens the decoder mask drops
    # Fine-tuning augmentations (VideoMAE's recipe: rand-m7-n4-mstd0.5-inc1, erase_prob 0.25, num_sample 2);
    # all off by default. See mgm.data.augment.
    rand_augment: str = ""            # timm-style RandAugment spec, one draw per clip; "" = off
    erase_prob: float = 0.0           # random erasing: probability per clip (the same box on every frame)
    erase_mode: str = "pixel"         # pixel (per-pixel normal noise), rand (one value per channel), const (0)
    num_sample: int = 1               # repeated augmentation: views per video read (each step sees batch x N
                                      # clips; lr and steps per epoch count videos, as in VideoMAE)
    test_clips: int = 1               # evaluation views: temporal clips x spatial crops per video
    test_crops: int = 1
    batch_size: int = 8               # per process and per micro-batch
    num_workers: int = 0
    # What the loader hands the training loop: uint8 clips, normalised on the device (a quarter of the
    # bytes through worker memory, pinning and the host-to-device copy; the same numbers bit for bit),
    # or float32 clips normalised in the workers. auto: uint8 on CUDA unless random erasing (which
    # works on the normalised video) is on; float32 on the CPU, where the main process would do the work.
    video_dtype: str = "auto"         # auto, uint8, float32
    random_len: int = 64              # source=random: number of clips

    @property
    def geometry(self) -> Geometry:
        return Geometry(num_frames=self.num_frames, size=self.size, tubelet=self.tubelet, patch=self.patch)


@dataclass
class OptimSection:
    epochs: int = 1
    max_steps: int = 0                # > 0: stop after this many optimizer steps (schedule still spans epochs)
    base_lr: float = 1.5e-4           # lr = base_lr * effective_batch / 256
    min_lr: float = 1e-6
    warmup_epochs: float = 0.0
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.95)
    accum_steps: int = 1              # micro-batches per optimizer step
    clip_grad: float = 0.0            # max gradient norm; 0 = no clipping
    layer_decay: float = 1.0          # lr multiplier per layer below the head; 1 = off
    label_smoothing: float = 0.0
    mixup: float = 0.0                # Beta(alpha, alpha) for mixup; 0 = off
    cutmix: float = 0.0               # Beta(alpha, alpha) for cutmix; 0 = off
    mix_prob: float = 1.0             # probability that a batch is mixed at all


@dataclass
class RunSection:
    name: str = "run"
    out_dir: str = "runs"             # the run directory is out_dir/name
    seed: int = 0
    device: str = "auto"              # auto = cuda:LOCAL_RANK if available else cpu
    precision: str = "auto"           # auto (bf16 on GPUs that support it, fp32 on CPU), bf16, fp16, fp32
    threads: int = 0                  # > 0: torch.set_num_threads
    compile: bool = False             # torch.compile the model (first steps pay 10-30 s of compilation)
    ckpt_every: int = 0               # optimizer steps between checkpoints; 0 = at the end of each epoch
    keep_ckpts: int = 2               # keep the newest N step checkpoints
    keep_steps: list = field(default_factory=list)  # and never delete those of these steps (curve points)
    eval_every: int = 1               # epochs between evaluations; 0 = only at the end
    log_every: int = 10               # optimizer steps between log lines
    resume: str = ""                  # "" = start fresh, "auto" = newest checkpoint in the run dir, or a path
    overwrite: bool = False           # a fresh run may replace another run's checkpoints and log in its run dir
    progress: bool = True             # tqdm bars on rank 0


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict:
        """Plain dict of str/int/float/bool/list/dict (storable with torch.load(weights_only=True))."""
        d = dataclasses.asdict(self)
        d["optim"]["betas"] = list(d["optim"]["betas"])
        return d

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name


# Recipes that differ from the dataclass defaults (VideoMAE's fine-tuning recipe: betas 0.999,
# layer decay 0.75, drop path 0.1, label smoothing 0.1; MAE's linear probe: no weight decay).
COMMAND_DEFAULTS: dict[str, dict] = {
    "pretrain": {},
    "finetune": {"optim": {"base_lr": 1e-3, "betas": [0.9, 0.999], "layer_decay": 0.75,
                           "label_smoothing": 0.1, "warmup_epochs": 0.0},
                 "model": {"drop_path": 0.1}},
    "linprobe": {"optim": {"base_lr": 0.1, "weight_decay": 0.0, "betas": [0.9, 0.999]}},
    "eval": {},
    "features": {},
}


def _coerce(key: str, value, typ):
    """Check / convert one value to the field's annotated type; the error names the key."""
    origin = typing.get_origin(typ) or typ
    try:
        if origin is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise TypeError
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if origin is str:
            return "" if value is None else str(value)
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(float(v) for v in value)
        if origin is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise MGMError(f"config key '{key}': {value!r} is not a valid {getattr(origin, '__name__', origin)}")


def _apply(cfg: TrainConfig, tree: dict, origin: str) -> None:
    """Merge a nested {section: {field: value}} dict into cfg; unknown keys are errors."""
    if not isinstance(tree, dict):
        raise MGMError(f"{origin}: expected a mapping of sections, got {type(tree).__name__}")
    sections = {f.name: f for f in dataclasses.fields(cfg)}
    for name, values in tree.items():
        if name not in sections:
            raise MGMError(f"{origin}: unknown config section '{name}' (valid: {', '.join(sections)})")
        section = getattr(cfg, name)
        if not isinstance(values, dict):
            raise MGMError(f"{origin}: section '{name}' must be a mapping")
        hints = typing.get_type_hints(type(section))
        for key, value in values.items():
            if key not in hints:
                raise MGMError(f"{origin}: unknown config key '{name}.{key}' "
                               f"(valid in '{name}': {', '.join(hints)})")
            setattr(section, key, _coerce(f"{name}.{key}", value, hints[key]))


def parse_override(text: str) -> dict:
    """'optim.base_lr=3e-4' -> {'optim': {'base_lr': 3e-4}}; the value is parsed as YAML."""
    import yaml

    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise MGMError(f"--set {text!r}: expected section.key=value, e.g. optim.base_lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise MGMError(f"--set {text!r}: cannot parse the value ({e.__class__.__name__})") from None
    return {parts[0]: {parts[1]: value}}


def load_config(command: str = "pretrain", path: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = (), base: dict | None = None,
                inherit: bool = False) -> TrainConfig:
    """Build a TrainConfig: dataclass defaults < COMMAND_DEFAULTS[command] < base < YAML < overrides.

    `base` is a stored config dict (e.g. from a checkpoint) to start from instead of the defaults.
    inherit: a fine-tune or probe takes what the YAML and the overrides leave unset of INHERITED
    from its model.init checkpoint (the command line's behaviour).
    """
    import yaml

    cfg = TrainConfig()
    _apply(cfg, COMMAND_DEFAULTS.get(command, {}), f"defaults for {command}")
    if base:
        _apply(cfg, base, "stored config")
    if path:
        path = Path(path)
        if not path.is_file():
            raise MGMError(f"{path}: config file not found")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise MGMError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        _apply(cfg, tree, str(path))
        explicit = _keys(tree)
    else:
        explicit = set()
    for text in overrides:
        tree = parse_override(text)
        _apply(cfg, tree, f"--set {text}")
        explicit |= _keys(tree)
    validate(cfg)
    if inherit and cfg.model.init and command in ("finetune", "linprobe"):
        inherit_from_init(cfg, explicit)
    return cfg


def _keys(tree: dict) -> set[str]:
    """The 'section.key' names a config tree sets."""
    return {f"{s}.{k}" for s, values in tree.items() if isinstance(values, dict) for k in values}


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks that would otherwise fail deep inside training."""
    try:
        cfg.data.geometry
    except ValueError as e:
        raise MGMError(f"config data: {e}") from None
    if cfg.data.source not in ("list", "random"):
        raise MGMError(f"config key 'data.source': {cfg.data.source!r} is not one of list, random")
    if cfg.data.sampling not in ("dense", "segment"):
        raise MGMError(f"config key 'data.sampling': {cfg.data.sampling!r} is not one of dense, segment")
    if cfg.data.bad_videos not in ("error", "skip"):
        raise MGMError(f"config key 'data.bad_videos': {cfg.data.bad_videos!r} is not one of error, skip")
    if cfg.run.precision not in ("auto", "bf16", "fp16", "fp32"):
        raise MGMError(f"config key 'run.precision': {cfg.run.precision!r} is not one of auto, bf16, fp16, fp32")
    if cfg.model.pooling not in ("mean", "slots"):
        raise MGMError(f"config key 'model.pooling': {cfg.model.pooling!r} is not one of mean, slots")
    if len(cfg.optim.betas) != 2:
        raise MGMError("config key 'optim.betas': expected two numbers")
    for key, ok, rule in _RANGES:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise MGMError(f"config key '{key}': must be {rule}, got {value!r}")
    if cfg.data.erase_mode not in ("pixel", "rand", "const"):
        raise MGMError(f"config key 'data.erase_mode': {cfg.data.erase_mode!r} is not one of pixel, rand, const")
    if cfg.data.video_dtype not in ("auto", "uint8", "float32"):
        raise MGMError(f"config key 'data.video_dtype': {cfg.data.video_dtype!r} is not one of auto, uint8, float32")
    if cfg.data.video_dtype == "uint8" and cfg.data.erase_prob > 0:
        raise MGMError("config key 'data.video_dtype': uint8 clips cannot take random erasing (data.erase_prob > 0), "
                       "which works on the normalised video; use auto or float32")
    if cfg.data.rand_augment:
        from mgm.data.augment import RandAugment  # deferred: it loads torch, which `mgm --help` must not

        try:
            RandAugment.from_string(cfg.data.rand_augment)
        except ValueError as e:
            raise MGMError(f"config key 'data.rand_augment': {e}") from None
    if cfg.data.decoder_mask and cfg.data.decoder_mask not in STRATEGIES:
        raise MGMError(f"config key 'data.decoder_mask': {cfg.data.decoder_mask!r} is not one of "
                       f"{', '.join(STRATEGIES)} (or empty: off)")
    if cfg.data.mask not in STRATEGIES:
        raise MGMError(f"config key 'data.mask': {cfg.data.mask!r} is not one of {', '.join(STRATEGIES)}")


def _at_least_one(v):
    return v >= 1


def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


def _fraction(v):
    return 0 <= v < 1


# (key, check, rule in words): settings that are impossible, or that would fail deep inside training
# (or, worse, train silently with nonsense), refused before the first step.
_RANGES = [
    ("data.batch_size", _at_least_one, ">= 1"), ("optim.accum_steps", _at_least_one, ">= 1"),
    ("optim.epochs", _at_least_one, ">= 1"), ("data.num_frames", _at_least_one, ">= 1"),
    ("data.size", _at_least_one, ">= 1"), ("data.tubelet", _at_least_one, ">= 1"), ("data.patch", _at_least_one, ">= 1"),
    ("data.stride", _at_least_one, ">= 1"), ("data.num_classes", _non_negative, ">= 0"),
    ("data.test_clips", _at_least_one, ">= 1"), ("data.test_crops", _at_least_one, ">= 1"),
    ("data.num_workers", _non_negative, ">= 0"), ("data.random_len", _at_least_one, ">= 1"),
    ("data.num_sample", _at_least_one, ">= 1"), ("data.decoder_ratio", lambda v: 0 <= v < 1, "in [0, 1)"), ("data.erase_prob", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("data.mask_ratio", lambda v: 0 < v < 1, "strictly between 0 and 1"),
    ("optim.max_steps", _non_negative, ">= 0; 0 = no limit"),
    ("optim.base_lr", _positive, "> 0"), ("optim.min_lr", _non_negative, ">= 0"),
    ("optim.warmup_epochs", _non_negative, ">= 0"), ("optim.weight_decay", _non_negative, ">= 0"),
    ("optim.betas", lambda b: all(0 <= x < 1 for x in b), "two numbers in [0, 1)"),
    ("optim.clip_grad", _non_negative, ">= 0; 0 = no clipping"),
    ("optim.layer_decay", lambda v: 0 < v <= 1, "in (0, 1]; 1 = off"),
    ("optim.label_smoothing", _fraction, "in [0, 1)"), ("optim.mixup", _non_negative, ">= 0"),
    ("optim.cutmix", _non_negative, ">= 0"), ("optim.mix_prob", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("model.drop_path", _fraction, "in [0, 1)"), ("run.threads", _non_negative, ">= 0"),
    ("run.ckpt_every", _non_negative, ">= 0; 0 = at the end of each epoch"),
    ("run.eval_every", _non_negative, ">= 0"), ("run.log_every", _non_negative, ">= 0"),
]


def add_config_arguments(parser) -> None:
    """The flags every training command shares (everything else goes through --set)."""
    parser.add_argument("--config", metavar="FILE", help="YAML file with sections model, data, optim, run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set optim.base_lr=3e-4 (repeatable)")
    parser.add_argument("--name", help="run name (= --set run.name=NAME); the run dir is run.out_dir/NAME")
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="resume from a checkpoint; 'auto' = newest good one in the run dir (if any)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start fresh even if the run dir holds another run: its checkpoints and "
                             "log are deleted first (= --set run.overwrite=true)")


def config_from_args(command: str, args) -> TrainConfig:
    overrides = list(args.overrides)
    if getattr(args, "name", None):
        overrides.append(f"run.name={args.name}")
    if getattr(args, "resume", None):
        overrides.append(f"run.resume={args.resume}")
    if getattr(args, "overwrite", False):
        overrides.append("run.overwrite=true")
    return load_config(command, args.config, overrides, inherit=True)


# What a fine-tune or probe takes from its model.init checkpoint unless the user sets it: the model
# and the clip geometry it was trained at (typed twice, they were a source of "grid" errors).
INHERITED = ("model.preset", "data.num_frames", "data.size", "data.tubelet", "data.patch")


def inherit_from_init(cfg: TrainConfig, explicit: set[str]) -> list[str]:
    """Take INHERITED settings from the stored config of cfg.model.init (one of our checkpoints,
    or a run folder) where `explicit` does not name them; says which. Foreign files carry none."""
    from mgm.train.checkpoint import load_checkpoint

    state = load_checkpoint(cfg.model.init)
    stored = state.get("config") if isinstance(state, dict) else None
    taken = []
    for key in INHERITED if isinstance(stored, dict) else ():
        section, name = key.split(".")
        value = stored.get(section, {}).get(name)
        if key not in explicit and value is not None and value != getattr(getattr(cfg, section), name):
            setattr(getattr(cfg, section), name, value)
            taken.append(f"{key}={value}")
    validate(cfg)
    if taken and os.environ.get("RANK", "0") == "0":
        print(f"model.init {cfg.model.init}: took {', '.join(taken)} from the checkpoint "
              f"(--set them to override)", flush=True)
    return taken
