"""DataLoader clips/s on this machine's cores against what the GPU's training step consumes.

Clips: drawn by mgm's synthetic-benchmark renderer (`mgm.data.synth.make_clip`, the clips of
`mgm synth`) at `clip_size`^2 x `clip_frames` and encoded to H.264 by `mgm.encode.write_video` with
synth's x264 settings; nothing is downloaded. The loader is benchmarks.speed.data's (`loader_rate`:
the training dataset, one DataLoader worker per core here) at the step's geometry (16x224^2, stride
4 on a GPU), for tube masks (pixels only), MGM masks (pixels + motion vectors, one decode) and MGM
with the motion cache (motion read once per video, then pixels only). Its masks are at 0.75 for both
strategies: the ratio costs the loader nothing. The workers hand over uint8 clips, as training's loader
does on CUDA (data.video_dtype auto; the first GPU run, 2026-12-04, measured float32 clips).

cores per GPU = the step's clips/s (ours, best of eager / compiled, same mask) / the loader's
clips/s per worker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.gpu.steps import Case, SectionTimeout, model_config

CONFIGS = {"tube": "tube-0.9", "mgm": "mgm-0.75", "mgm-cached": "mgm-0.75"}  # loader config -> step mask


def _clip(job) -> tuple[str, int]:
    root, index, size, frames = job
    from mgm.data import synth
    from mgm.encode import write_video

    label = index % len(synth.CLASSES)
    path = Path(root) / f"{index:04d}.mp4"
    if not path.exists():
        video, _ = synth.make_clip(label, synth.clip_rng(0, "base", "train", index), size, frames)
        write_video(path, video, fps=25, options={"x264-params": synth.x264_params(frames), "crf": "18"}, gop=frames)
    return str(path), label


def generate_clips(root: Path, sizes, jobs: int) -> list:
    """`sizes.num_clips` clips in `root` (kept for the next run), as mgm.data.lists.Sample."""
    import multiprocessing as mp

    from mgm.data.lists import Sample

    root.mkdir(parents=True, exist_ok=True)
    work = [(str(root), i, sizes.clip_size, sizes.clip_frames) for i in range(sizes.num_clips)]
    with mp.get_context("fork").Pool(max(1, min(jobs, len(work)))) as pool:
        return [Sample(path, label) for path, label in pool.map(_clip, work)]


def run_loader(sizes, work: Path, deadline: float, log=print) -> dict:
    """Clips/s of each loader config with one worker per core, while time is left before `deadline`."""
    from benchmarks.speed.data import loader_rate

    workers = sizes.workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    samples = generate_clips(work / "clips", sizes, jobs=workers)
    out = {"workers": workers, "clips": len(samples), "clip": f"{sizes.clip_frames}x{sizes.clip_size}x{sizes.clip_size}",
           "generate_s": time.perf_counter() - t0, "rows": []}
    geo = model_config(sizes, Case("pretrain", "ours", "tube-0.9")).geometry
    out["geometry"] = f"{geo.num_frames}x{geo.size}^2, stride {sizes.loader_stride}"
    per_run = workers * sizes.loader_batch * sizes.loader_rounds
    for config in CONFIGS:
        if time.perf_counter() >= deadline:
            out["rows"].append({"config": config, "status": "skipped", "note": "the section's time ran out"})
            continue
        t = time.perf_counter()
        try:
            # uint8 clips: what training's loader hands over on CUDA (data.video_dtype auto)
            rate, per_cpu_s = loader_rate(samples, geo, config, workers, per_run, sizes.loader_stride,
                                          work / "loader_cache", batch=sizes.loader_batch, uint8=True)
        except SectionTimeout:  # the rows measured so far are kept; the rest are skipped above
            out["rows"].append({"config": config, "status": "timeout", "seconds": time.perf_counter() - t,
                                "note": "stopped at the section's cap"})
            log(f"  loader {config}: stopped at the section's cap")
            continue
        out["rows"].append({"config": config, "status": "ok", "video": "uint8", "clips_per_s": rate, "per_worker": rate / workers,
                            "clips_per_cpu_s": per_cpu_s, "clips": per_run, "seconds": time.perf_counter() - t})
        log(f"  loader {config}: {rate:.1f} clips/s with {workers} workers")
    return out


def cores_per_gpu(loader: dict, step_rows: list[dict]) -> None:
    """Adds to each loader row the step's consumption and the cores that keep up with it."""
    for row in loader.get("rows", []):
        mask = CONFIGS[row["config"]]
        steps = [r for r in step_rows if r["status"] == "ok" and r["task"] == "pretrain" and r["impl"] == "ours"
                 and r["mask"] == mask and not r["dual"]]
        if row["status"] != "ok" or not steps:
            continue
        best = max(steps, key=lambda r: r["clips_per_s"])
        row["gpu_clips_per_s"] = best["clips_per_s"]
        row["gpu_row"] = f"pretrain ours {mask}{' compiled' if best['compiled'] else ''}"
        row["cores_per_gpu"] = best["clips_per_s"] / row["per_worker"]
