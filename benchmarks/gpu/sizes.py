"""The two sizes of `./run bench gpu`: FULL on a CUDA GPU and SMOKE on a CPU (the same code, tiny).

Every difference between a GPU run and the smoke run is a field here; the code paths are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sizes:
    name: str
    budget_s: float                 # the whole bench, inputs generated included
    # seconds each section may take at most, in the order they run; a section that would start with
    # less than its `min_s` left is skipped with a note (later sections still get their turn)
    caps: dict = field(default_factory=dict)
    min_s: dict = field(default_factory=dict)
    # step speed
    model: str = "base"             # ModelConfig preset: ViT-B/16 (768-d, depth 12; decoder 384-d, depth 4)
    model_overrides: dict = field(default_factory=dict)
    num_frames: int = 16
    img_size: int = 224
    num_classes: int = 400          # fine-tuning head (Kinetics-400)
    max_batch: int = 64             # the batch search starts here and halves down on OOM
    warmup: int = 3                 # untimed steps (the first one compiles)
    steps: int = 10                 # timed steps per row
    compile_backend: str = "inductor"
    compile_min_s: float = 60.0     # a compiled row starts only with this much of its section left
    matmul_n: int = 8192            # n x n x n bf16 products for the chip's matrix rate
    # loader
    clip_size: int = 256            # generated clips: clip_size^2 pixels, clip_frames frames
    clip_frames: int = 64           # 16 frames at stride 4
    num_clips: int = 48
    loader_stride: int = 4
    loader_batch: int = 8
    loader_rounds: int = 4          # clips per measurement = workers x batch x rounds
    workers: int = 0                # 0: one DataLoader worker per core (os.cpu_count())
    # experiment (`mgm experiment masking --preset gpu`): Preset.replace arguments
    experiment: str = "gpu"
    experiment_overrides: dict = field(default_factory=dict)
    experiment_stages: dict = field(default_factory=dict)  # --set keys added to both stages' dicts


FULL = Sizes(
    name="full", budget_s=480,
    caps={"tests": 120, "matmul": 15, "steps": 220, "loader": 60, "experiment": 240},
    min_s={"tests": 30, "matmul": 5, "steps": 30, "loader": 20, "experiment": 90},
)

# CPU, from a fresh clone, inside `./run test`: the same sections at toy sizes. torch.compile uses
# the aot_eager backend here (dynamo + AOT autograd, no code generation): inductor's C++ build takes
# ~40 s per model on 2 cores.
SMOKE = Sizes(
    name="smoke", budget_s=240,
    caps={"tests": 60, "matmul": 10, "steps": 90, "loader": 40, "experiment": 120},
    min_s={"tests": 5, "matmul": 1, "steps": 5, "loader": 5, "experiment": 5},
    model="nano", model_overrides=dict(depth=2, decoder_depth=1, patch=8),
    num_frames=4, img_size=32, num_classes=10, max_batch=2, warmup=1, steps=2,
    compile_backend="aot_eager", compile_min_s=5, matmul_n=256,
    clip_size=64, clip_frames=16, num_clips=4, loader_stride=2, loader_batch=2, loader_rounds=2, workers=2,
    experiment="gpu",
    experiment_overrides=dict(synth="tiny", num_frames=4, stride=4, size=32, patch=8, model="nano",
                              pretrain_steps=2, finetune_steps=2),
    experiment_stages={"data.batch_size": 4, "data.num_workers": 2, "run.device": "cpu"},
)

SIZES = {"full": FULL, "smoke": SMOKE}
