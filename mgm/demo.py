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
    from mgm.experiment import PRESETS, Pretraining, Runner

    preset = PRESETS["demo"].replace(threads=threads)
    runner = Runner(out, preset, verbose=False)
    summary = runner.run()
    print(summary["markdown"])
    out = Path(out)
    pre = {r.arm: r for r in runner.all_results() if isinstance(r, Pretraining)}
    clip = _first_val_clip(runner)
    _mask_gif(clip, out / "mask_mgm.gif")
    ckpt = pre["mgm-0.75"].checkpoints[str(preset.pretrain_steps)]
    _reconstruction_png(clip, ckpt, out / "reconstruction_mgm.png")
    _loss_png(pre, out / "pretrain_loss.png")
    top1 = {}
    for tag in ("mgm-0.75", "tube-0.75", "scratch"):
        step = "" if tag == "scratch" else f"@{preset.pretrain_steps}"
        r = runner.result(f"finetune/base/{tag}{step}/f1/s0")
        top1[tag.split("-")[0]] = r.top1 if r and r.top1 is not None else float("nan")
    # each file once: last.pt / best.pt are hard links to a checkpoint (what `du` counts)
    size = sum({(st.st_dev, st.st_ino): st.st_size for st in (p.stat() for p in out.rglob("*") if p.is_file())}.values())
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
        if record.loss_curve:
            ax.plot(*zip(*record.loss_curve), label=arm)
    ax.set(xlabel="pre-training step", ylabel="reconstruction loss",
           title="tiny demo: tube vs MGM pre-training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def _first_val_clip(runner) -> dict:
    """The first validation clip as the pictures show it: its name, sampled indices [T], frames
    uint8 [T, S, S, 3], motion [T, 2, H', W'], its MGM mask at 0.75 [T', H', W'] and geometry."""
    from mgm.masking import build_mask_generator

    test = runner.memory_splits()[1]
    geometry, i = test.geometry, int(test.items[0])
    idx = clip_indices(test.split.video.shape[1], geometry, test.stride, None)
    motion = test.motion(i, idx)
    return {"name": Path(test.split.paths[i]).name, "idx": idx, "frames": np.asarray(test.frames(i, idx)),
            "motion": motion, "geometry": geometry,
            "mask": build_mask_generator("mgm", geometry, 0.75)(motion, np.random.default_rng(0))}


def _mask_gif(clip: dict, path: Path) -> None:
    """The MGM mask of the clip, frame by frame beside its motion (as `mgm show`)."""
    from mgm import viz
    from mgm.masking import build_mask_generator

    geometry, motion = clip["geometry"], clip["motion"]
    mgm = build_mask_generator("mgm", geometry, 0.75, jitter=0.0)  # the ring: the centre without jitter
    centres = mgm.centres(motion[None], np.random.default_rng(0))[0]
    k = -(-160 // geometry.size)  # drawn at least 160 px wide, each pixel a k x k block
    shown = np.repeat(np.repeat(clip["frames"], k, 1), k, 2)
    viz.save_mask_gif(path, shown, motion, clip["mask"], centres, geometry.tubelet, geometry.patch * k,
                      lambda t: f"{clip['name']} mgm 0.75  t={int(clip['idx'][t])}")


def _reconstruction_png(clip: dict, ckpt: str, path: Path) -> None:
    """Input, MGM-masked input and the pre-trained model's reconstruction of the clip."""
    from mgm import viz
    from mgm.reconstruct import load_pretrained, reconstruct_frames

    model, geometry = load_pretrained(ckpt)
    frames, mask = clip["frames"], clip["mask"]
    recon = reconstruct_frames(model, frames, mask)
    rows, labels = viz.reconstruction_rows(frames / 255.0, recon, mask, geometry.tubelet, geometry.patch,
                                           scale=3)
    cols = [f"slot {s}" for s in range(len(rows[0]))]
    viz.save_png(path, viz.montage(rows, labels, cols, "MGM pre-trained tiny ViT: reconstruction"))
