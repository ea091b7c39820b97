"""Checks and measures mgm on one CUDA GPU in one command, inside a time budget (docs/GPU.md).

    ./run bench gpu [--out runs/bench/gpu.json] [--work runs/bench/gpu_work] [--only steps,loader]
    ./run bench gpu --smoke       # the same code on the CPU at toy sizes (part of ./run test)
    MGM_PYTHON=python3 ./run bench gpu    # on a GPU machine with its own torch (no .venv)

Sections, in order, each with a time cap (sizes.py; 8 minutes in all on a GPU). A section that would
start with too little time left is skipped with a note, so the whole run never overruns:
  tests       pytest -m gpu tests/test_gpu.py: CUDA vs CPU forward/backward, bf16 autocast,
              torch.compile, fused SDPA kernels, a one-process NCCL group; pass / fail recorded
  matmul      the chip's bf16 matrix rate (n^3 products), the reference of `mfu`
  steps       pre-training / fine-tuning steps, ours vs transformers (steps.py)
  loader      the DataLoader on every core vs the step's clips/s: cores per GPU (loader.py)
  experiment  `mgm experiment masking --preset gpu` (experiment.py), in a subprocess stopped at its cap
The JSON is rewritten after every section: a run killed from outside keeps what it measured.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # the budget counts from here: torch's import included

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks import ROOT
from benchmarks.gpu.sizes import SIZES

SECTIONS = ("tests", "matmul", "steps", "loader", "experiment")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, toy sizes (the code path of a GPU run)")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench" / "gpu.json"))
    p.add_argument("--work", default=None, help="clips and the experiment's folder (default: beside --out)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of: {', '.join(SECTIONS)}")
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default: the size's)")
    return p.parse_args(argv)


def run_tests(cap: float, log=print) -> dict:
    """pytest -m gpu -v in a subprocess, killed at `cap` s; each test's outcome read from its -v line,
    so a run stopped by the cap (a hung NCCL call, say) still reports the tests that finished."""
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", "tests/test_gpu.py"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=cap)
        stdout, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout, rc = (e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""), None
    lines = stdout.strip().splitlines()
    log("\n".join("  " + line for line in lines[-15:]))
    outcomes = {}
    for line in lines:
        m = re.match(r"\S+::(\S+) (PASSED|FAILED|SKIPPED|ERROR)", line)
        if m:
            outcomes[m[1]] = m[2].lower()
    counts = {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed", "error", "skipped")}
    if rc is None:
        status = "timeout"
    elif rc == 0 and counts["passed"]:
        status = "passed"
    elif rc == 0 and outcomes and counts["skipped"] == len(outcomes):
        status = "skipped"  # no CUDA here: every test skips itself
    else:
        status = "failed"
    return {"status": status, "returncode": rc, **counts, "tests": outcomes, "tail": lines[-5:],
            **({"note": f"pytest stopped at the cap of {cap:.0f} s"} if rc is None else {})}


def run_experiment(cap: float, work: Path, smoke: bool) -> dict:
    """benchmarks.gpu.experiment in a subprocess printing to this one's output as it goes, killed at
    `cap` s (its finished units stay stored in its folder, and a rerun there continues them)."""
    cmd = [sys.executable, "-m", "benchmarks.gpu.experiment", str(work / "experiment")] + (["--smoke"] if smoke else [])
    folder = work / "experiment"
    t0 = time.perf_counter()
    sys.stdout.flush()
    try:
        rc = subprocess.run(cmd, cwd=ROOT, timeout=cap).returncode
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "note": f"stopped at its cap of {cap:.0f} s; finished units are stored in {folder}",
                "seconds": time.perf_counter() - t0, "folder": str(folder), "runs": run_timings(folder)}
    summary = folder / "summary.json"
    return {"status": "ok" if rc == 0 else "failed", "returncode": rc, "seconds": time.perf_counter() - t0,
            "folder": str(folder), "runs": run_timings(folder),
            "summary": json.loads(summary.read_text()) if rc == 0 and summary.exists() else None}


def run_timings(folder: Path) -> list[dict]:
    """Where each training run of the experiment spent its time, from its log.jsonl: steps done, wall
    seconds of its epochs, the median step and its wait for data (of the logged steps), and the
    seconds outside the steps (checkpoints, evaluation, loader start-up). Unfinished runs included;
    a resumed run: its last call's (each call times from its own start)."""
    import statistics

    from mgm.train.log import read_log

    rows = []
    for log_path in sorted(folder.glob("runs/*/log.jsonl")):
        log = read_log(log_path)
        starts = [i for i, r in enumerate(log) if r["event"] == "start"]
        log = log[starts[-1]:] if starts else log
        steps = [r for r in log if r["event"] == "step" and "data_time" in r]
        epochs = [r for r in log if r["event"] == "epoch"]
        row = {"run": log_path.parent.name, "steps": max((r["step"] for r in log if "step" in r), default=0),
               "wall_s": epochs[-1]["elapsed"] if epochs else None,
               "step_ms": 1e3 * statistics.median(r["step_time"] for r in steps) if steps else None,
               "data_ms": 1e3 * statistics.median(r["data_time"] for r in steps) if steps else None}
        if epochs and all("step_s" in r for r in epochs):
            row["outside_steps_s"] = epochs[-1]["elapsed"] - sum(r["step_s"] for r in epochs)
        rows.append(row)
        print(f"  {row['run']}: {row['steps']} steps, {_fmt(row['wall_s'], '.1f')} s, step "
              f"{_fmt(row['step_ms'], '.1f')} ms (data wait {_fmt(row['data_ms'], '.1f')}), "
              f"{_fmt(row.get('outside_steps_s'), '.1f')} s outside the steps")
    return rows


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except Exception:  # noqa: BLE001 -- absent or broken there: its rows and test report it, the run goes on
        info["transformers"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(name=p.name, memory_gb=p.total_memory / 2**30, capability=f"{p.major}.{p.minor}",
                    cuda=torch.version.cuda, multiprocessors=p.multi_processor_count)
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def print_table(result: dict) -> None:
    print(f"\n{result['sizes']} run on {result['info'].get('name')}: bf16 matrix rate "
          f"{result.get('matmul', {}).get('tflops') or float('nan'):.3g} TFLOP/s")
    head = (f"{'task':<8} {'impl':<12} {'mask':<8} {'dual':<4} {'comp':<4} {'batch':>5} {'ms/step':>8} "
            f"{'clips/s':>8} {'peak GB':>7} {'GFLOP/clip':>10} {'MFU':>5} {'1st s':>6}  status")
    print(head + "\n" + "-" * len(head))
    for r in result.get("steps", []):
        if r["status"] != "ok":
            print(f"{r['task']:<8} {r['impl']:<12} {r['mask']:<8} {'y' if r['dual'] else '':<4} "
                  f"{'y' if r['compiled'] else '':<4} {'':>5} {'':>8} {'':>8} {'':>7} {'':>10} {'':>5} {'':>6}  "
                  f"{r['status']} {r.get('note', '')}")
            continue
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
        print(f"{r['task']:<8} {r['impl']:<12} {r['mask']:<8} {'y' if r['dual'] else '':<4} "
              f"{'y' if r['compiled'] else '':<4} {r['batch']:>5} {r['ms_per_step']:>8.1f} {r['clips_per_s']:>8.1f} "
              f"{fmt(r['peak_gb'], '7.1f'):>7} {r['gflop_per_clip']:>10.3g} {fmt(r.get('mfu'), '5.1%'):>5} "
              f"{r['first_step_s']:>6.1f}  ok")
    loader = result.get("loader") or {}
    for r in loader.get("rows", []):
        if r["status"] == "ok":
            need = f", GPU eats {r['gpu_clips_per_s']:.1f} clips/s -> {r['cores_per_gpu']:.1f} cores per GPU" \
                if "cores_per_gpu" in r else ""
            print(f"loader {r['config']:<10} {r['clips_per_s']:7.1f} clips/s on {loader['workers']} workers "
                  f"({r['per_worker']:.2f} per core){need}")
    for name, s in result["sections"].items():
        if s["status"] not in ("ok", "passed"):
            print(f"section {name}: {s['status']} {s.get('note', '')}")


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = SIZES["smoke" if args.smoke else "full"]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("bench gpu: no CUDA device here; on a CPU run `./run bench gpu --smoke`")
    device = torch.device("cpu" if args.smoke else "cuda")
    out = Path(args.out)
    work = Path(args.work) if args.work else out.parent / "gpu_work"
    work.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    budget = args.budget or sizes.budget_s
    deadline = START + budget
    if device.type == "cuda":
        # bf16 autocast runs the matrices in bf16; what stays fp32 (loss, optimizer) may use TF32
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    result = {"sizes": sizes.name, "budget_s": budget, "argv": sys.argv[1:], "info": device_info(device),
              "tf32": device.type == "cuda", "sections": {}}

    def write():
        result["elapsed_s"] = time.perf_counter() - START
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1, default=str))
        os.replace(tmp, out)

    from benchmarks.gpu import loader as L
    from benchmarks.gpu import steps as S

    peak = None
    for name in SECTIONS:
        left = deadline - time.perf_counter()
        cap = min(sizes.caps[name], left - 5)  # 5 s kept for the table and the JSON
        if name not in only:
            result["sections"][name] = {"status": "not asked", "note": "--only"}
            continue
        if cap < sizes.min_s[name]:
            result["sections"][name] = {"status": "skipped", "note": f"{left:.0f} s of the {budget:.0f} s budget "
                                                                     f"left, needs {sizes.min_s[name]} s"}
            print(f"[{name}] skipped: {left:.0f} s left", flush=True)
            continue
        print(f"[{name}] (cap {cap:.0f} s)", flush=True)
        t0 = time.perf_counter()
        end = t0 + cap
        status, note = "ok", ""

        def steps_so_far(rows):
            result["steps"] = rows
            write()

        try:
            if name == "tests":  # the subprocesses are stopped at the cap by subprocess.run
                result["tests"] = run_tests(cap)
                status = result["tests"]["status"]
            elif name == "experiment":
                result["experiment"] = run_experiment(cap, work, args.smoke)
                status = result["experiment"]["status"]
            else:
                with S.cap_at(end):  # this process's own work: SIGALRM stops it at the cap
                    if name == "matmul":
                        peak = S.matmul_tflops(sizes.matmul_n, device)
                        result["matmul"] = {"n": sizes.matmul_n, "dtype": "bfloat16", "tflops": peak}
                    elif name == "steps":
                        result["steps"] = S.run_cases(sizes, device, end, peak, on_row=steps_so_far)
                        fits = [r["batch"] for r in result["steps"] if r["status"] == "ok"]
                        result["h2d"] = S.h2d(sizes, max(fits), device) if fits else None
                    elif name == "loader":
                        result["loader"] = L.run_loader(sizes, work, end)
                        L.cores_per_gpu(result["loader"], result.get("steps", []))
        except S.SectionTimeout:
            status, note = "timeout", f"stopped at its cap of {cap:.0f} s"
            print(f"[{name}] {note}", flush=True)
        except Exception as e:  # noqa: BLE001 -- a broken section is recorded; the others still run
            status, note = "error", f"{type(e).__name__}: {e}"[:500]
            print(f"[{name}] {note}", flush=True)
        rows = {"steps": result.get("steps") or [], "loader": (result.get("loader") or {}).get("rows", [])}.get(name, [])
        if status == "ok" and any(r.get("status") == "timeout" for r in rows):  # the rows before it are kept
            status, note = "timeout", f"a row was stopped at the section's cap of {cap:.0f} s"
        result["sections"][name] = {"status": status, "seconds": time.perf_counter() - t0, "cap_s": cap,
                                    **({"note": note} if note else {})}
        write()
    print_table(result)
    write()
    print(f"\nwrote {out} ({time.perf_counter() - START:.0f} s of the {budget:.0f} s budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
