"""`mgm demo`: the whole pipeline in a few minutes on a CPU.

Builds the tiny synthetic motion benchmark (real H.264, motion vectors from the bitstream),
pre-trains the tiny ViT with tube and with MGM masks, fine-tunes each and a from-scratch
baseline, prints the table, and draws an MGM mask GIF and a reconstruction PNG into OUT.
At this size the accuracies are close to chance and say nothing about the method: the demo shows
that every stage works; `mgm experiment masking --preset small` measures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mgm.data import synth
from mgm.data.memory import clip_indices


def run_demo(out: str = "runs/demo", threads: int = 0) -> str:
    from dataclasses import replace

    from mgm.experiment import PRESETS, Runner

    preset = replace(PRESETS["demo"], threads=threads)
    runner = Runner(out, preset, verbose=False)
    summary = runner.run()
    print(summary["markdown"])
    out = Path(out)
    pre = {r["arm"]: r for r in runner.all_results() if "checkpoints" in r}
    clip = _first_val_clip(runner.roots["base"])
    _mask_gif(clip, preset, out / "mask_mgm.gif")
    ckpt = pre["mgm-0.75"]["checkpoints"][str(preset.pretrain_steps)]
    _reconstruction_png(runner, ckpt, out / "reconstruction_mgm.png")
    _loss_png(pre, out / "pretrain_loss.png")
    top1 = {}
    for tag in ("mgm-0.75", "tube-0.75", "scratch"):
        step = "" if tag == "scratch" else f"@{preset.pretrain_steps}"
        r = runner.result(f"finetune/base/{tag}{step}/f1/s0")
        top1[tag.split("-")[0]] = r["top1"] if r and r["top1"] is not None else float("nan")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"\nwrote {out}/pretrain_loss.png (tube and MGM pre-training losses), {out}/mask_mgm.gif, "
          f"{out}/reconstruction_mgm.png, {out}/results.md; everything (clips, checkpoints, logs) is in "
          f"{out}/, {size / 2**20:.0f} MB: delete it to start over")
    chance = 100 / len(synth.CLASSES)
    line = ("top-1 (%): " + " | ".join(f"{k} {v:.1f}" for k, v in top1.items()) +
            f" -- chance is {chance:.1f}% ({len(synth.CLASSES)} classes): this {preset.pretrain_steps}-step "
            f"tiny run is chance-level by design and shows that every stage works; the measured results "
            f"are in README.md, 'Results'")
    print(line)
    return line


def _loss_png(pretrainings: dict, path: Path) -> None:
    """The pre-training loss of each arm against steps (the runner's stored loss curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mgm.files import atomic_write

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for arm, record in sorted(pretrainings.items()):
        if record.get("loss_curve"):
            ax.plot(*zip(*record["loss_curve"]), label=arm)
    ax.set(xlabel="pre-training step", ylabel="reconstruction loss",
           title="tiny demo: tube vs MGM pre-training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def _first_val_clip(root: Path) -> str:
    first = (root / "val.txt").read_text().split("\n", 1)[0].rsplit(None, 1)[0]
    return str(root / first)


def _mask_gif(clip: str, preset, path: Path) -> None:
    from mgm.cli import main

    main(["show", clip, "--strategy", "mgm", "--ratio", "0.75", "--num-frames", str(preset.num_frames),
          "--stride", str(preset.stride), "--size", str(preset.size), "--out", str(path)])


def _reconstruction_png(runner, ckpt: str, path: Path) -> None:
    """Input, MGM-masked input and the pre-trained model's reconstruction of one validation clip."""
    from mgm import viz
    from mgm.masking import build_mask_generator
    from mgm.reconstruct import load_pretrained, reconstruct_frames

    model, geometry = load_pretrained(ckpt)
    _, test = runner._memory_splits()
    idx = clip_indices(test.split.video.shape[1], geometry, test.stride, None)
    frames = np.asarray(test.frames(int(test.items[0]), idx))  # uint8 [T, S, S, 3]
    mask = build_mask_generator("mgm", geometry, 0.75)(test.motion(int(test.items[0]), idx),
                                                       np.random.default_rng(0))
    recon = reconstruct_frames(model, frames, mask)
    rows, labels = viz.reconstruction_rows(frames / 255.0, recon, mask, geometry.tubelet, geometry.patch,
                                           scale=3)
    cols = [f"slot {s}" for s in range(len(rows[0]))]
    viz.save_png(path, viz.montage(rows, labels, cols, "MGM pre-trained tiny ViT: reconstruction"))
