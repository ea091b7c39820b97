"""Pre-training step: ours vs transformers' VideoMAEForPreTraining, the AdamW kernels, and the floor.

    ./run bench train [--steps 20] [--warmup 3] [--threads N] [--configs small,tiny]
                      [--compile] [--bf16] [--dual] [--out runs/bench/train.json]

By default ViT-S (384-d, depth 12, 6 heads; decoder 192-d, depth 4), batch 2 of 16x112x112, tubelet 2,
patch 16, tube masks at 0.9 (40 of 392 tokens visible), fp32, SDPA attention in both models; the
same clips and masks for both. One step of each:
  transformers     VideoMAEForPreTraining (same config, its default SDPA attention) in a plain loop:
                   forward, backward, torch.optim.AdamW with torch's default kernel (the for-loop on CPU),
                   zero_grad
  ours             VideoMAEPretrain through mgm's engine (mgm.train.loop.train_one_epoch, one step):
                   forward, backward, gradient norm and finite checks, build_optimizer's AdamW (fused
                   where torch has it), zero_grad
  ours-plain       VideoMAEPretrain with build_optimizer's AdamW in transformers' plain loop (no norm,
                   no checks): the like-for-like comparison of model and optimizer
  optional rows    --compile: ours under torch.compile; --bf16: both under CPU bf16 autocast;
                   --dual: ours with VideoMAE V2's dual masking (running-cell decoder mask, 0.5)
Rounds interleave every row (and the two samples below) so that other processes' load hits all alike;
ratios are transformers' time per step over a row's (> 1: the row is faster): "x transf." the median over
rounds of each round's ratio, "x (min)" the ratio of the minima.
"cpu ms" is the process CPU time of a step (all threads).

Also, in the same rounds: the AdamW step alone on our model's weights with fixed gradients, fused vs
for-loop; the fp32 matrix rate (an n x n x n matmul, --matmul n); and the step's FLOPs, counted with
torch.utils.flop_counter (matmuls and attention; forward + backward) next to the textbook count of the
forward (encoder on the visible tokens, decoder on all). FLOPs / best matrix rate is the floor: no step
can be faster, since it ignores all memory traffic. Table on stdout, JSON to --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time

import torch

from benchmarks import ROOT
from mgm import interop
from mgm.model import ModelConfig, VideoMAEPretrain
from mgm.train.loop import train_one_epoch
from mgm.train.optim import build_optimizer, param_groups

MASK = ("tube", 0.9)
DECODER_MASK = ("running-cell", 0.5)  # VideoMAE V2's decoder mask, --dual only
LR, WEIGHT_DECAY, BETAS = 1.5e-4, 0.05, (0.9, 0.95)
CPU = torch.device("cpu")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="small", help="comma list of: small (ViT-S), tiny")
    p.add_argument("--steps", type=int, default=20, help="timed rounds (one step of every row each)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of every row first")
    p.add_argument("--batch", type=int, default=2, help="ViT-S batch")
    p.add_argument("--size", type=int, default=112, help="ViT-S frame size")
    p.add_argument("--tiny-batch", type=int, default=8)
    p.add_argument("--matmul", type=int, default=2048, help="size of the matmul that measures the matrix rate")
    p.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast rows (transformers and ours)")
    p.add_argument("--dual", action="store_true", help="also time ours with V2's running-cell decoder mask")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-compile", action="store_true", help=argparse.SUPPRESS)  # older commands: now the default
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "bench", "train.json"))
    return p.parse_args(argv)


def make_inputs(cfg: ModelConfig, batch: int, steps: int, seed: int = 0) -> list[tuple]:
    """Per step: (video `[B, C, T, H, W]` (normalised-pixel noise), tube mask bool `[B, N]`, the
    running-cell decoder mask bool `[B, N]` that only the --dual row reads)."""
    from mgm.masking import build_mask_generator

    g = torch.Generator().manual_seed(seed)
    masks = build_mask_generator(MASK[0], cfg.geometry, MASK[1])
    decoder = build_mask_generator(DECODER_MASK[0], cfg.geometry, DECODER_MASK[1])
    n = cfg.geometry.num_tokens
    return [(torch.randn(batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g),
             torch.from_numpy(masks.batch(None, seed + i, batch).reshape(batch, n)),
             torch.from_numpy(decoder.batch(None, seed + i, batch).reshape(batch, n)))
            for i in range(steps)]


# call(model, video, mask, decoder_mask) -> loss (benchmarks/gpu/steps.py uses these and Runner too)
def hf_loss(m, v, k, d):
    # transformers wants [B, T, C, H, W]; the transpose is a view (it copies internally)
    return m(v.transpose(1, 2), bool_masked_pos=k).loss


def our_loss(m, v, k, d):
    return m(v, k)[0]


def dual_loss(m, v, k, d):
    return m(v, k, d)[0]


def bf16(call):
    def autocast_call(m, v, k, d):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return call(m, v, k, d)
    return autocast_call


class Runner:
    """One implementation in a plain loop: forward, backward, AdamW step (torch's default kernel
    unless `optimizer` is given), zero_grad. Keeps each step's wall and process CPU seconds."""

    def __init__(self, name: str, model: torch.nn.Module, call, optimizer=None):
        self.name, self.model, self.call = name, model.train(), call
        self.opt = optimizer or torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.first_step_s = 0.0
        self.losses: list[float] = []

    def step(self, video, mask, decoder_mask) -> float:
        """One training step; returns its wall time (s) and records its process CPU time."""
        t0, c0 = time.perf_counter(), time.process_time()
        self.losses.append(self._step({"video": video, "mask": mask, "decoder_mask": decoder_mask}))
        self.cpu_times.append(time.process_time() - c0)
        return time.perf_counter() - t0

    def _step(self, batch: dict) -> float:
        loss = self.call(self.model, batch["video"], batch["mask"], batch["decoder_mask"])
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()


class EngineRunner(Runner):
    """Ours as mgm trains: one step of mgm.train.loop.train_one_epoch (forward, backward, gradient norm,
    finite checks, AdamW step, zero_grad) with build_optimizer's AdamW (fused where torch has it)."""

    def __init__(self, name: str, model: torch.nn.Module, call, precision: str = "fp32"):
        super().__init__(name, model, call, build_optimizer(model, LR, WEIGHT_DECAY, betas=BETAS))
        self.precision = precision

    def _step(self, batch: dict) -> float:
        return train_one_epoch(self.model, lambda m, b: self.call(m, b["video"], b["mask"], b["decoder_mask"]),
                               [batch], self.opt, None, device=CPU, steps=1, precision=self.precision,
                               progress=False)["loss"]


def build_runners(cfg: ModelConfig, compile_: bool, with_bf16: bool, dual: bool) -> list[Runner]:
    import transformers

    def hf_model():
        torch.manual_seed(0)
        return transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(
            **interop.hf_config_kwargs(cfg, pretrain=True), attn_implementation="sdpa"))

    def ours():
        torch.manual_seed(0)
        return VideoMAEPretrain(cfg)

    plain = ours()
    runners = [Runner("transformers", hf_model(), hf_loss), EngineRunner("ours", ours(), our_loss),
               Runner("ours-plain", plain, our_loss, build_optimizer(plain, LR, WEIGHT_DECAY, betas=BETAS))]
    if dual:
        runners.append(EngineRunner("ours-dual", ours(), dual_loss))
    if compile_:
        runners.append(EngineRunner("ours-compiled", torch.compile(ours()), our_loss))
    if with_bf16:
        runners += [Runner("transformers-bf16", hf_model(), bf16(hf_loss)),
                    EngineRunner("ours-bf16", ours(), our_loss, precision="bf16")]
    return runners


class AdamWKernels:
    """The AdamW step alone, fused and for-loop, each on its own copy of a model's weights with the
    same fixed gradients (the model's parameter groups, as build_optimizer makes them)."""

    def __init__(self, model: torch.nn.Module):
        g = torch.Generator().manual_seed(0)
        self.opts = {}
        for name, kw in (("fused", dict(fused=True)), ("for-loop", dict(foreach=False))):
            twin = copy.deepcopy(model)
            for p in twin.parameters():
                p.grad = torch.randn(p.shape, generator=g) * 1e-3
            self.opts[name] = torch.optim.AdamW(param_groups(twin, WEIGHT_DECAY), lr=LR, betas=BETAS,
                                                weight_decay=WEIGHT_DECAY, **kw)
        self.times = {name: [] for name in self.opts}
        self.weights = sum(p.numel() for p in model.parameters())

    def sample(self) -> None:
        for name, opt in self.opts.items():
            t0 = time.perf_counter()
            opt.step()
            self.times[name].append(time.perf_counter() - t0)


class MatmulRate:
    """fp32 GFLOP/s of one n x n x n matmul per sample; the best sample is the rate the floor uses."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.n, self.a, self.b = n, torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        self.rates: list[float] = []
        self.a @ self.b  # warm-up

    def sample(self) -> None:
        t0 = time.perf_counter()
        self.a @ self.b
        self.rates.append(2 * self.n ** 3 / (time.perf_counter() - t0) / 1e9)


def counted_flops(model: torch.nn.Module, call, inputs: tuple) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs of one step, counted by torch.utils.flop_counter: matmuls
    and attention (torch counts its CPU attention kernels only through this mapping)."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    cpu_attention = {  # same formulas as torch's own for the CUDA attention kernels
        aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *args, **kw: fc.sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda grad, q, k, v, *args, **kw: fc.sdpa_backward_flop_count(grad, q, k, v),
    }
    with fc.FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        loss = call(model, *inputs)
        forward = counter.get_total_flops()
        loss.backward()
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops()


def textbook_forward_flops(cfg: ModelConfig, batch: int, visible: int, predicted: int) -> int:
    """Forward FLOPs (2 per multiply-add) of VideoMAE pre-training: patch embedding and encoder on the
    `visible` tokens, the encoder-to-decoder map, decoder blocks on all N tokens, head on `predicted`.
    A block of width d over n tokens: qkv 3 d^2 + proj d^2 + MLP 2 r d^2 per token, attention 2 n^2 d."""
    def blocks(depth, d, n):
        return depth * (2 * n * (4 + 2 * cfg.mlp_ratio) * d * d + 4 * n * n * d)

    n, d, dd = cfg.geometry.num_tokens, cfg.embed_dim, cfg.decoder_embed_dim
    per_clip = (2 * visible * cfg.patch_dim * d + blocks(cfg.depth, d, visible) + 2 * visible * d * dd
                + blocks(cfg.decoder_depth, dd, n) + 2 * predicted * dd * cfg.patch_dim)
    return int(batch * per_clip)


def bench_config(label: str, cfg: ModelConfig, batch: int, args) -> dict:
    from tqdm import tqdm

    rows = build_runners(cfg, args.compile, args.bf16, args.dual)
    ours = next(r for r in rows if r.name == "ours")
    inputs = make_inputs(cfg, batch, args.warmup + args.steps + 1)
    forward, total = counted_flops(ours.model, our_loss, inputs[0])
    visible = int((~inputs[0][1][0]).sum())
    textbook = textbook_forward_flops(cfg, batch, visible, cfg.geometry.num_tokens - visible)
    kernels, matmul = AdamWKernels(ours.model), MatmulRate(args.matmul)
    for r in rows:  # the first step includes torch.compile's compilation
        r.first_step_s = r.step(*inputs[0])
        for inp in inputs[1:1 + args.warmup]:
            r.step(*inp)
    for i, inp in enumerate(tqdm(inputs[1 + args.warmup:], desc=f"{label} rounds", leave=False)):
        # Interleaved, the order reversed every other round: load from other processes and the
        # cache each row leaves to the next hit every row alike.
        for r in rows if i % 2 == 0 else rows[::-1]:
            r.times.append(r.step(*inp))
        kernels.sample()
        matmul.sample()

    rate = max(matmul.rates)
    floor_s = total / (rate * 1e9)
    out_rows = []
    for r in rows:
        # Compare with transformers at the same precision.
        ref = next(q for q in rows if q.name == ("transformers-bf16" if r.name.endswith("bf16") else "transformers"))
        med = statistics.median(r.times)
        out_rows.append(dict(
            impl=r.name, steps=len(r.times), ms_per_step_median=1000 * med, ms_per_step_min=1000 * min(r.times),
            cpu_ms_per_step_median=1000 * statistics.median(r.cpu_times[-len(r.times):]), clips_per_s=batch / med,
            # the median over rounds of the round's ratio: a burst of load hits both steps of a pair
            speedup_vs_transformers=statistics.median(a / b for a, b in zip(ref.times, r.times)),
            speedup_vs_transformers_min=min(ref.times) / min(r.times),
            first_step_s=r.first_step_s, final_loss=r.losses[-1],
            # the floor is that of our fp32 step: no ratio for rows doing other arithmetic
            **({} if r.name.endswith(("bf16", "dual")) else
               dict(over_floor_median=med / floor_s, over_floor_min=min(r.times) / floor_s))))
    adamw = {name: dict(ms_median=1000 * statistics.median(t), ms_min=1000 * min(t))
             for name, t in kernels.times.items()}
    return dict(
        config=label, batch=batch, frames=cfg.num_frames, size=cfg.img_size, tubelet=cfg.tubelet, patch=cfg.patch,
        embed_dim=cfg.embed_dim, depth=cfg.depth, decoder_embed_dim=cfg.decoder_embed_dim,
        decoder_depth=cfg.decoder_depth, mask=f"{MASK[0]} {MASK[1]}", visible_tokens=visible,
        tokens=cfg.geometry.num_tokens, rows=out_rows,
        adamw=dict(weights=kernels.weights, **adamw),
        flops=dict(forward=forward, forward_backward=total, textbook_forward=textbook),
        matmul=dict(n=args.matmul, gflops_best=rate, gflops_median=statistics.median(matmul.rates)),
        floor_ms=1000 * floor_s)


def report(res: dict) -> None:
    clip = f"{res['frames']}x{res['size']}x{res['size']}"
    print(f"\n{res['config']}: {res['embed_dim']}-d depth {res['depth']}, decoder {res['decoder_embed_dim']}-d depth "
          f"{res['decoder_depth']}; batch {res['batch']} of {clip}, tubelet {res['tubelet']}, patch {res['patch']}, "
          f"{res['mask']} mask ({res['visible_tokens']} of {res['tokens']} tokens visible)")
    header = (f"{'impl':<17} {'ms/step':>8} {'min ms':>8} {'cpu ms':>8} {'clips/s':>8} {'x transf.':>9} "
              f"{'x (min)':>8} {'/ floor':>8} {'1st step s':>10}")
    print(header + "\n" + "-" * len(header))
    for r in res["rows"]:
        floor = f"{r['over_floor_median']:>8.2f}" if "over_floor_median" in r else f"{'-':>8}"
        print(f"{r['impl']:<17} {r['ms_per_step_median']:>8.1f} {r['ms_per_step_min']:>8.1f} "
              f"{r['cpu_ms_per_step_median']:>8.1f} {r['clips_per_s']:>8.2f} {r['speedup_vs_transformers']:>9.2f} "
              f"{r['speedup_vs_transformers_min']:>8.2f} {floor} {r['first_step_s']:>10.1f}")
    a, f, m = res["adamw"], res["flops"], res["matmul"]
    print(f"AdamW step on our {a['weights'] / 1e6:.1f} M weights: for-loop {a['for-loop']['ms_median']:.1f} ms, "
          f"fused {a['fused']['ms_median']:.1f} ms (median; min {a['for-loop']['ms_min']:.1f} / "
          f"{a['fused']['ms_min']:.1f})")
    print(f"FLOPs per step (ours, counted): forward {f['forward'] / 1e9:.2f} G (textbook "
          f"{f['textbook_forward'] / 1e9:.2f} G), forward + backward {f['forward_backward'] / 1e9:.2f} G "
          f"({f['forward_backward'] / f['forward']:.2f}x the forward)")
    print(f"fp32 matmul {m['n']}^3: best {m['gflops_best']:.1f} GFLOP/s (median {m['gflops_median']:.1f})")
    print(f"floor = FLOPs / best matrix rate = {res['floor_ms']:.1f} ms per step; the '/ floor' column is "
          f"measured / floor")
    rows = {r["impl"]: r for r in res["rows"]}
    if "ours-dual" in rows:
        plain, dual = rows["ours"], rows["ours-dual"]
        print(f"dual masking ({DECODER_MASK[0]} decoder mask at {DECODER_MASK[1]}): "
              f"{plain['ms_per_step_median']:.1f} -> {dual['ms_per_step_median']:.1f} ms/step, "
              f"x{plain['ms_per_step_median'] / dual['ms_per_step_median']:.2f} median, "
              f"x{plain['ms_per_step_min'] / dual['ms_per_step_min']:.2f} min")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = {
        "small": (ModelConfig.from_preset("small", img_size=args.size, num_frames=16), args.batch),
        "tiny": (ModelConfig.from_preset("tiny", img_size=112, num_frames=16), args.tiny_batch),
    }
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in configs]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; choose from {list(configs)}")
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), load average {load:.2f} at the start")
    results = []
    for name in names:
        cfg, batch = configs[name]
        results.append(bench_config(name, cfg, batch, args))
        report(results[-1])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(torch=torch.__version__, threads=torch.get_num_threads(), cpus=os.cpu_count(),
                       load_average_start=load, load_average_end=os.getloadavg()[0], argv=sys.argv[1:],
                       configs=results), f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
