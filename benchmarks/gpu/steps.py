"""Training-step speed on one device: ours vs transformers' VideoMAE, bf16 autocast, SDPA attention.

One row = one `Case`: a task (pre-training on masked clips, or fine-tuning on every token), an
implementation, the encoder mask, dual masking, torch.compile. A step is forward + loss + backward +
AdamW step (benchmarks.speed.train.Runner: its `loss.item()` waits for the device, so the wall
time of a step is the device's time), on one batch kept on the device: the loader's cost is
measured apart (loader.py), the host-to-device copy too (`h2d`).

Per row: the largest batch that fits, from `max_batch` down on CUDA's out-of-memory error; ms per
step (median and minimum of the timed steps, after the untimed warm-up in which torch.compile
compiles); clips/s; peak device memory; the step's matrix FLOPs (torch.utils.flop_counter counts
matmuls, convolutions and fused attention, fwd + bwd; the optimizer's elementwise work is not
counted) and the share of the chip's measured bf16 matrix rate that *ours'* FLOPs for the same
clips reach in that time (`mfu`: so a faster implementation scores higher, whatever extra work it
does; transformers' own count, which convolves every tubelet including masked ones, is `gflop_per_clip`).

Masks: "tube-0.9" is mgm's tube mask at 0.9; "mgm-0.75" has the visible-token count of MGM at 0.75
(2.5x tube 0.9's), at random positions: the step's work depends on the count only.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.speed.train import Runner, dual_loss, hf_loss, our_loss
from mgm import interop
from mgm.masking import build_mask_generator
from mgm.model import ModelConfig, VideoMAEClassifier, VideoMAEPretrain

DECODER_RATIO = 0.5  # VideoMAE V2's running-cell decoder mask (dual masking)
BATCHES = (64, 48, 32, 24, 16, 12, 8, 6, 4, 2, 1)  # the OOM search, from the top down


@dataclass(frozen=True)
class Case:
    task: str                # "pretrain" | "finetune"
    impl: str                # "ours" | "transformers"
    mask: str = ""           # pretrain: "tube-0.9" | "mgm-0.75"; finetune: "" (every token)
    dual: bool = False       # VideoMAE V2's decoder mask (ours only)
    compiled: bool = False

    @property
    def strategy(self) -> str:
        return self.mask.rpartition("-")[0]

    @property
    def ratio(self) -> float:
        return float(self.mask.rpartition("-")[2]) if self.mask else 0.0

    @property
    def name(self) -> str:
        return " ".join(filter(None, (self.task, self.impl, self.mask, "dual" if self.dual else "",
                                      "compiled" if self.compiled else "")))


# In the order they run: when the section's time runs out, the last ones are skipped. Eager rows
# first (seconds each), then the compiled ones (each pays a compilation first).
CASES = (
    [Case("pretrain", impl, mask) for mask in ("tube-0.9", "mgm-0.75") for impl in ("transformers", "ours")]
    + [Case("pretrain", "ours", mask, dual=True) for mask in ("tube-0.9", "mgm-0.75")]
    + [Case("finetune", impl) for impl in ("transformers", "ours")]
    + [Case("pretrain", "ours", "tube-0.9", compiled=True), Case("pretrain", "ours", "mgm-0.75", compiled=True),
       Case("finetune", "ours", compiled=True), Case("pretrain", "transformers", "tube-0.9", compiled=True),
       Case("finetune", "transformers", compiled=True)]
)


def model_config(sizes, case: Case) -> ModelConfig:
    classes = sizes.num_classes if case.task == "finetune" else 0
    return ModelConfig.from_preset(sizes.model, img_size=sizes.img_size, num_frames=sizes.num_frames,
                                   num_classes=classes, **sizes.model_overrides)


def build_model(case: Case, cfg: ModelConfig) -> torch.nn.Module:
    """The case's model on the CPU, its weights drawn from seed 0; transformers' with SDPA attention."""
    torch.manual_seed(0)
    if case.impl == "ours":
        return VideoMAEPretrain(cfg) if case.task == "pretrain" else VideoMAEClassifier(cfg)
    import transformers

    hf_config = transformers.VideoMAEConfig(**interop.hf_config_kwargs(cfg, pretrain=case.task == "pretrain"),
                                            attn_implementation="sdpa")
    # set now, not by the first forward: under torch.compile that write costs a recompilation
    hf_config.problem_type = "single_label_classification"
    cls = transformers.VideoMAEForPreTraining if case.task == "pretrain" else transformers.VideoMAEForVideoClassification
    return cls(hf_config)


def _ours_finetune(m, video, labels, _):
    return F.cross_entropy(m(video), labels)


def _hf_finetune(m, video, labels, _):
    return m(pixel_values=video.transpose(1, 2), labels=labels).loss


def loss_call(case: Case, device: torch.device):
    """call(model, video, mask_or_labels, decoder_mask) -> loss, under bf16 autocast on `device`."""
    if case.task == "pretrain":
        fn = hf_loss if case.impl == "transformers" else dual_loss if case.dual else our_loss
    else:
        fn = _hf_finetune if case.impl == "transformers" else _ours_finetune

    def call(m, v, k, d):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return fn(m, v, k, d)
    return call


def make_inputs(case: Case, cfg: ModelConfig, batch: int, device: torch.device, seed: int = 0):
    """(video float32 `[B, 3, T, S, S]`, mask bool `[B, N]` or labels int64 `[B]`, decoder mask bool
    `[B, N]` or None), made on `device`. Masks mask the same count in every clip (model contract)."""
    g = torch.Generator(device=device).manual_seed(seed)
    video = torch.randn(batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g, device=device)
    if case.task == "finetune":
        return video, torch.randint(0, cfg.num_classes, (batch,), generator=g, device=device), None
    geo, rng = cfg.geometry, np.random.default_rng(seed)
    n = geo.num_tokens
    if case.strategy == "tube":
        mask = torch.from_numpy(build_mask_generator("tube", geo, case.ratio).batch(None, rng, batch).reshape(batch, n))
    else:  # MGM's count, random positions (MGM itself needs motion; the work depends on the count only)
        k = build_mask_generator(case.strategy, geo, case.ratio).num_masked
        order = torch.from_numpy(rng.random((batch, n))).argsort(1)
        mask = torch.zeros(batch, n, dtype=torch.bool).scatter_(1, order[:, :k], True)
    dec = None
    if case.dual:
        dec = torch.from_numpy(build_mask_generator("running-cell", geo, DECODER_RATIO)
                               .batch(None, rng, batch).reshape(batch, n)).to(device)
    return video, mask.to(device), dec


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    """Return cached blocks to the driver and restart the peak counter (between rows / OOM tries)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def step_flops(model: torch.nn.Module, call, inputs) -> int:
    """Matrix FLOPs of one forward + backward (FlopCounterMode), gradients discarded."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        call(model, *inputs).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def measure(case: Case, sizes, batch: int, device: torch.device) -> dict:
    """Time `sizes.steps` steps of `case` at `batch` after `sizes.warmup` untimed ones. Raises
    torch.cuda.OutOfMemoryError if the batch does not fit."""
    cfg = model_config(sizes, case)
    model = build_model(case, cfg).to(device)
    call = loss_call(case, device)
    if case.compiled:
        # Dynamo's caches belong to the code (forward), not to the model: a retry at a smaller batch
        # after an OOM would otherwise recompile the last try's graphs with a dynamic batch size.
        # Reset, each try compiles afresh for its own batch; its cost is the row's first_step_s.
        torch._dynamo.reset()
    net = torch.compile(model, backend=sizes.compile_backend) if case.compiled else model
    runner = Runner(case.name, net, call)
    inputs = make_inputs(case, cfg, batch, device)
    sync(device)
    t0 = time.perf_counter()
    runner.step(*inputs)  # compiles (compiled rows), allocates the optimizer state
    first_step_s = time.perf_counter() - t0
    for _ in range(sizes.warmup - 1):
        runner.step(*inputs)
    flops = step_flops(model, call, inputs)  # eager, also for compiled rows: the same arithmetic
    free_memory(device)  # the peak below is the timed steps' own
    sync(device)  # the counted backward's kernels finish before the first timed step starts
    times = [runner.step(*inputs) for _ in range(sizes.steps)]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    med = statistics.median(times)
    tokens = cfg.geometry.num_tokens
    visible = int((~inputs[1][0]).sum()) if case.task == "pretrain" else tokens
    return dict(
        task=case.task, impl=case.impl, mask=case.mask, dual=case.dual, compiled=case.compiled, status="ok",
        batch=batch, visible_tokens=visible, tokens=tokens, steps=len(times),
        ms_per_step=1000 * med, ms_min=1000 * min(times), clips_per_s=batch / med,
        peak_gb=peak, gflop_per_clip=flops / batch / 1e9, first_step_s=first_step_s,
        final_loss=runner.losses[-1],
        attention=getattr(getattr(model, "config", None), "_attn_implementation", "sdpa"),
    )


def largest_batch(try_batch, candidates, device: torch.device) -> dict:
    """try_batch(b) for b in `candidates` (descending) until one does not run out of device memory;
    its row, with the batches that did not fit in `oom_batches`."""
    too_big = []
    for b in candidates:
        try:
            return {**try_batch(b), "oom_batches": too_big}
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
        # Out of the except block: the traceback, and the tensors its frames hold, are gone now.
        too_big.append(b)
        free_memory(device)
    return {"status": "oom", "oom_batches": too_big}


# How a full device shows itself besides torch's OutOfMemoryError: a library allocating its own
# workspace (cuBLAS's handle at the first matmul of a new shape, cuDNN's) fails with a RuntimeError
# naming its status; these leave the CUDA context usable, so a smaller batch may still run.
_OOM_MARKS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed",
              "cusolver_status_alloc_failed")


def is_oom(e: BaseException) -> bool:
    """CUDA's out-of-memory error (torch's, or a CUDA library's allocation failure), also when
    torch.compile wraps it in its own exception."""
    text = str(e).lower()
    return isinstance(e, torch.cuda.OutOfMemoryError) or any(m in text for m in _OOM_MARKS)


def candidates(top: int) -> list[int]:
    return [b for b in BATCHES if b <= top] or [1]


def run_cases(sizes, device: torch.device, deadline: float, peak_tflops: float | None, log=print,
              on_row=None) -> list[dict]:
    """Every case in CASES order while time is left before `deadline` (time.perf_counter()); the
    rest get a row with status "skipped" and a note. An error in one row is recorded, not raised;
    so is a row stopped by `cap_at`'s SectionTimeout (status "timeout"). `on_row(rows)` is called
    after every row (the bench rewrites its JSON: a run killed from outside keeps the rows done)."""
    rows, fits = [], {}  # fits: the batch the eager twin of a compiled case found (no re-search)

    def done(row):
        rows.append(row)
        add_mfu(rows, peak_tflops)
        if on_row is not None:
            on_row(rows)

    for case in CASES:
        left = deadline - time.perf_counter()
        need = sizes.compile_min_s if case.compiled else 0.0
        base = dict(task=case.task, impl=case.impl, mask=case.mask, dual=case.dual, compiled=case.compiled)
        if left <= need or left <= 0:
            done({**base, "status": "skipped", "note": f"{left:.0f} s left in the section, needs {need:.0f}"})
            log(f"  {case.name}: skipped ({left:.0f} s left)")
            continue
        top = fits.get(replace(case, compiled=False), sizes.max_batch)
        try:
            row = largest_batch(lambda b: measure(case, sizes, b, device), candidates(top), device)
        except SectionTimeout:
            row = {"status": "timeout", "note": "stopped at the section's cap"}
        except Exception as e:  # noqa: BLE001 -- one broken row must not lose the others
            row = {"status": "error", "note": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
        free_memory(device)
        row = {**base, **row}
        if row["status"] == "ok":
            fits[case] = row["batch"]
        done(row)
        log(f"  {case.name}: " + (f"batch {row['batch']}, {row['ms_per_step']:.1f} ms/step" if row["status"] == "ok"
                                  else f"{row['status']} {row.get('note', '')}"))
    return rows


class SectionTimeout(BaseException):
    """Raised in the main thread when an in-process section reaches its cap (`cap_at`). Not an
    Exception, so that no `except Exception` on its way (torch.compile's own, which may fall back to
    eager) takes it for an error of the code it interrupted and carries on."""


@contextlib.contextmanager
def cap_at(end: float):
    """Raise SectionTimeout in the main thread at time.perf_counter() `end` (SIGALRM), wherever it
    is: a row compiling or measuring past the section's cap is stopped, not left to overrun the
    bench's budget. (Python code only: a C call that never returns, a hung collective say, is not
    interrupted.)"""
    def fire(signum, frame):
        raise SectionTimeout("the section reached its cap")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(end - time.perf_counter(), 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def add_mfu(rows: list[dict], peak_tflops: float | None) -> None:
    """rows[i]["mfu"]: ours' FLOPs for the row's clips per second over the chip's matrix rate."""
    ours = {(r["task"], r["mask"], r["dual"]): r["gflop_per_clip"] for r in rows
            if r["status"] == "ok" and r["impl"] == "ours" and not r["compiled"]}
    for r in rows:
        ref = ours.get((r["task"], r["mask"], r["dual"]))
        ok = r["status"] == "ok" and ref is not None and peak_tflops
        r["tflops"] = r["gflop_per_clip"] * r["clips_per_s"] / 1e3 if r["status"] == "ok" else None
        r["mfu"] = ref * r["clips_per_s"] / 1e3 / peak_tflops if ok else None


def matmul_tflops(n: int, device: torch.device, reps: int = 50, warmup: int = 20) -> float:
    """The device's bf16 matrix rate: `reps` n x n x n products after `warmup` untimed ones (which
    also raise an idle GPU's clocks), TFLOP/s."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device).to(torch.bfloat16)
    b = torch.randn(n, n, generator=g, device=device).to(torch.bfloat16)
    for _ in range(warmup):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def h2d(sizes, batch: int, device: torch.device) -> dict | None:
    """Host-to-device copy of one clip batch from pinned memory (what the loader hands the training
    loop with pin_memory=True), non_blocking, timed to the synchronize: float32 clips, and uint8 ones
    copied and then normalised on the device (data.video_dtype, mgm.train.loop.video_to_device);
    None off CUDA."""
    if device.type != "cuda":
        return None
    from mgm.train.loop import video_to_device

    shape = (batch, 3, sizes.num_frames, sizes.img_size, sizes.img_size)
    out = {"batch": batch}
    for dtype in (torch.float32, torch.uint8):
        host = torch.empty(shape, dtype=dtype, pin_memory=True).fill_(100)
        dst = torch.empty(shape, dtype=dtype, device=device)
        copy, full = [], []
        for _ in range(5):
            sync(device)
            t0 = time.perf_counter()
            dst.copy_(host, non_blocking=True)
            sync(device)
            copy.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            video_to_device(host, device)  # the loop's whole path: copy (+ normalise, for uint8)
            sync(device)
            full.append(time.perf_counter() - t0)
        s = statistics.median(copy[1:])
        out[str(dtype).removeprefix("torch.")] = {
            "mb_per_clip": host[0].nbytes / 2**20, "ms_per_batch": 1000 * s, "gb_per_s": host.nbytes / s / 1e9,
            "ms_to_normalised": 1000 * statistics.median(full[1:])}
    return out
