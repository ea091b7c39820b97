"""Pre-training step throughput: our VideoMAEPretrain vs transformers' VideoMAEForPreTraining.

    ./run bench train [--configs tiny,small] [--steps 10] [--small-steps 3] [--no-compile] [--bf16]
                      [--dual] [--out runs/bench/train.json]

One step = forward + loss + backward + AdamW step, on the same configuration, batch, clips and
masks (90% masked, the same count per clip) for every implementation. Side by side in one run,
interleaved step by step so that load from other processes hits all of them alike:
  transformers     VideoMAEForPreTraining built from the same config (its default SDPA attention)
  ours             VideoMAEPretrain, eager
  ours-compiled    VideoMAEPretrain under torch.compile (compile time reported separately)
  *-bf16           with --bf16: the same under CPU bf16 autocast
  ours-dual        with --dual: VideoMAEPretrain, eager, with VideoMAE V2's dual masking (a running-cell
                   decoder mask dropping DECODER_RATIO of the tokens; same encoder masks)
Configurations: tiny (192-d, depth 4, batch 8 of 16x112x112) and ViT-S (384-d, depth 12,
decoder 192-d depth 4; batch 2 of 16x224x224 by default). Ratios are transformers' ms per step
divided by ours at the same precision (> 1: ours is faster), of the medians and of the minima (the minimum is the better
estimate when other processes share the CPU); "cpu ms" is the process CPU time of a step (all
threads), which other jobs inflate less than wall time.
"""

from __future__ import annotations

import argparse
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

MASK_RATIO = 0.9
DECODER_RATIO = 0.5  # VideoMAE V2's running-cell decoder mask


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="tiny,small", help="comma list of: tiny, small")
    p.add_argument("--steps", type=int, default=10, help="timed steps per implementation, tiny config")
    p.add_argument("--small-steps", type=int, default=3, help="timed steps per implementation, ViT-S config")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (after compilation)")
    p.add_argument("--batch", type=int, default=8, help="tiny config batch")
    p.add_argument("--small-batch", type=int, default=2)
    p.add_argument("--small-size", type=int, default=224)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast rows (transformers and ours)")
    p.add_argument("--dual", action="store_true", help="also time ours with V2's running-cell decoder mask")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default); 1 is steadier on a CPU shared with other jobs")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "bench", "train.json"))
    return p.parse_args(argv)


def make_inputs(cfg: ModelConfig, batch: int, steps: int, seed: int = 0):
    """Per step: a clip batch `[B, C, T, H, W]`, a bool mask `[B, N]` with exactly floor(0.9 N)
    masked tokens per clip and a running-cell decoder mask `[B, N]` (only ours-dual reads it)."""
    from mgm.masking import build_mask_generator

    g = torch.Generator().manual_seed(seed)
    decoder = build_mask_generator("running-cell", cfg.geometry, DECODER_RATIO)
    n = cfg.geometry.num_tokens
    k = int(MASK_RATIO * n)
    out = []
    for _ in range(steps):
        video = torch.randn(batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g)
        order = torch.rand(batch, n, generator=g).argsort(1)
        mask = torch.zeros(batch, n, dtype=torch.bool).scatter_(1, order[:, :k], True)
        dec = torch.from_numpy(decoder.batch(None, seed + len(out), batch).reshape(batch, n))
        out.append((video, mask, dec))
    return out


class Runner:
    """One implementation: its model, optimizer and how it is called."""

    def __init__(self, name: str, model: torch.nn.Module, call):
        self.name, self.model, self.call = name, model.train(), call
        self.opt = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.first_step_s = 0.0
        self.losses: list[float] = []

    def step(self, video, mask, decoder_mask) -> float:
        """One training step; returns its wall time (s) and records its process CPU time."""
        t0, c0 = time.perf_counter(), time.process_time()
        loss = self.call(self.model, video, mask, decoder_mask)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.losses.append(loss.item())
        self.cpu_times.append(time.process_time() - c0)
        return time.perf_counter() - t0


def hf_loss(m, v, k, d):
    # transformers wants [B, T, C, H, W]; the transpose is a view, it copies internally
    return m(v.transpose(1, 2), bool_masked_pos=k).loss


def our_loss(m, v, k, d):
    return m(v, k)[0]


def dual_loss(m, v, k, d):
    return m(v, k, d)[0]


def bf16(loss_fn):
    def call(m, v, k, d):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return loss_fn(m, v, k, d)
    return call


def build_runners(cfg: ModelConfig, compile_: bool, with_bf16: bool = False, dual: bool = False) -> list[Runner]:
    import transformers

    def hf_model():
        torch.manual_seed(0)
        return transformers.VideoMAEForPreTraining(
            transformers.VideoMAEConfig(**interop.hf_config_kwargs(cfg, pretrain=True)))

    def ours():
        torch.manual_seed(0)
        return VideoMAEPretrain(cfg)

    runners = [Runner("transformers", hf_model(), hf_loss), Runner("ours", ours(), our_loss)]
    if dual:  # next to "ours": the same weights, batches and encoder masks
        runners.append(Runner("ours-dual", ours(), dual_loss))
    if compile_:
        runners.append(Runner("ours-compiled", torch.compile(ours()), our_loss))
    if with_bf16:
        runners += [Runner("transformers-bf16", hf_model(), bf16(hf_loss)), Runner("ours-bf16", ours(), bf16(our_loss))]
    return runners


def bench_config(label: str, cfg: ModelConfig, batch: int, steps: int, warmup: int, compile_: bool,
                 with_bf16: bool, dual: bool = False) -> list[dict]:
    from tqdm import tqdm

    runners = build_runners(cfg, compile_, with_bf16, dual)
    inputs = make_inputs(cfg, batch, warmup + steps + 1)
    for r in runners:  # first step includes torch.compile's compilation
        r.first_step_s = r.step(*inputs[0])
        for inp in inputs[1:1 + warmup]:
            r.step(*inp)
    for inp in tqdm(inputs[1 + warmup:], desc=f"{label} steps", leave=False):
        for r in runners:  # interleaved: background load hits every implementation alike
            r.times.append(r.step(*inp))
    rows = []
    for r in runners:
        # Compare with transformers at the same precision.
        ref = next(q for q in runners if q.name == ("transformers-bf16" if r.name.endswith("bf16") else "transformers"))
        med = statistics.median(r.times)
        rows.append(dict(
            config=label, impl=r.name, batch=batch, frames=cfg.num_frames, size=cfg.img_size,
            embed_dim=cfg.embed_dim, depth=cfg.depth, decoder_embed_dim=cfg.decoder_embed_dim,
            decoder_depth=cfg.decoder_depth, steps=len(r.times),
            ms_per_step_median=1000 * med, ms_per_step_min=1000 * min(r.times),
            cpu_ms_per_step_median=1000 * statistics.median(r.cpu_times[-len(r.times):]),
            clips_per_s=batch / med,
            speedup_vs_transformers=statistics.median(ref.times) / med,
            speedup_vs_transformers_min=min(ref.times) / min(r.times),
            first_step_s=r.first_step_s, final_loss=r.losses[-1],
        ))
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = {
        "tiny": (ModelConfig.from_preset("tiny", img_size=112, num_frames=16), args.batch, args.steps),
        "small": (ModelConfig.from_preset("small", img_size=args.small_size, num_frames=16),
                  args.small_batch, args.small_steps),
    }
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in configs]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; choose from {list(configs)}")
    rows = []
    for name in names:
        cfg, batch, steps = configs[name]
        rows += bench_config(name, cfg, batch, steps, args.warmup, not args.no_compile, args.bf16, args.dual)

    header = (f"{'config':<7} {'impl':<17} {'batch':>5} {'clip':>11} {'ms/step':>9} {'min ms':>8} {'cpu ms':>8} "
              f"{'clips/s':>8} {'x transf.':>9} {'x (min)':>8} {'1st step s':>10}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, mask ratio {MASK_RATIO}")
    print(header)
    print("-" * len(header))
    for r in rows:
        clip = f"{r['frames']}x{r['size']}x{r['size']}"
        print(f"{r['config']:<7} {r['impl']:<17} {r['batch']:>5} {clip:>11} {r['ms_per_step_median']:>9.1f} "
              f"{r['ms_per_step_min']:>8.1f} {r['cpu_ms_per_step_median']:>8.1f} {r['clips_per_s']:>8.2f} "
              f"{r['speedup_vs_transformers']:>9.2f} {r['speedup_vs_transformers_min']:>8.2f} "
              f"{r['first_step_s']:>10.1f}")
    for name in names if args.dual else ():
        plain, dual = (next(r for r in rows if r["config"] == name and r["impl"] == i) for i in ("ours", "ours-dual"))
        print(f"{name}: dual masking (running-cell decoder mask, ratio {DECODER_RATIO}) takes "
              f"{plain['ms_per_step_median']:.1f} -> {dual['ms_per_step_median']:.1f} ms/step: "
              f"x{plain['ms_per_step_median'] / dual['ms_per_step_median']:.2f} median, "
              f"x{plain['ms_per_step_min'] / dual['ms_per_step_min']:.2f} min")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(torch=torch.__version__, threads=torch.get_num_threads(), mask_ratio=MASK_RATIO,
                       decoder_ratio=DECODER_RATIO if args.dual else None,
                       argv=sys.argv[1:], rows=rows), f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
