"""`./run bench gpu`: the smoke run (the GPU run's code at toy sizes on the CPU) writes the JSON a GPU
run writes; the batch search, the time budget and the experiment's `gpu` preset."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from benchmarks import ROOT
from benchmarks.gpu import steps as S
from benchmarks.gpu.sizes import SMOKE


@pytest.mark.slow
def test_smoke_run_writes_every_row_and_section(tmp_path):
    out = tmp_path / "gpu.json"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "gpu", "--smoke", "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.perf_counter() - t0 < 300
    data = json.loads(out.read_text())
    assert data["sizes"] == "smoke" and data["info"]["device"] == "cpu"
    assert set(data["sections"]) == {"tests", "matmul", "steps", "loader", "experiment"}
    # the CUDA tests ran in their own pytest and skipped themselves here (or passed on a GPU machine)
    tests = data["tests"]
    assert tests["status"] == ("passed" if torch.cuda.is_available() else "skipped")
    assert len(tests["tests"]) >= 8 and tests["failed"] == tests["error"] == 0
    assert data["matmul"]["tflops"] > 0
    rows = data["steps"]
    assert [(r["task"], r["impl"], r["mask"], r["dual"], r["compiled"]) for r in rows] == \
        [(c.task, c.impl, c.mask, c.dual, c.compiled) for c in S.CASES]
    assert {r["impl"] for r in rows} == {"ours", "transformers"}
    for r in rows:
        assert r["status"] == "ok", r
        assert r["batch"] == SMOKE.max_batch and r["steps"] == SMOKE.steps
        assert r["ms_per_step"] >= r["ms_min"] > 0 and r["clips_per_s"] > 0
        assert r["gflop_per_clip"] > 0 and 0 < r["mfu"] and r["final_loss"] == r["final_loss"]  # not NaN
        assert r["peak_gb"] is None  # CPU: no device memory to read
    visible = {r["mask"]: r["visible_tokens"] for r in rows if r["task"] == "pretrain"}
    assert visible["mgm-0.75"] > visible["tube-0.9"]  # MGM at 0.75 keeps more tokens
    assert all(r["visible_tokens"] == r["tokens"] for r in rows if r["task"] == "finetune")
    loader = data["loader"]
    assert [r["config"] for r in loader["rows"]] == ["tube", "mgm", "mgm-cached"]
    assert all(r["clips_per_s"] > 0 and r["cores_per_gpu"] > 0 for r in loader["rows"])
    exp = data["experiment"]
    assert exp["status"] == "ok" and exp["summary"] is not None
    # each training run's timing: 3 pre-trainings and 4 fine-tunes, every step inside its epochs' wall time
    assert len(exp["runs"]) == 7 and all(r["steps"] > 0 and 0 <= r["data_ms"] <= r["step_ms"] for r in exp["runs"])
    assert all(0 <= r["outside_steps_s"] < r["wall_s"] for r in exp["runs"])
    assert data["elapsed_s"] < SMOKE.budget_s
    assert "wrote" in proc.stdout and "loader mgm-cached" in proc.stdout


def test_batch_search_steps_down_on_out_of_memory():
    tried = []

    def try_batch(b):
        tried.append(b)
        if b > 8:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory at batch {b}")
        return {"status": "ok", "batch": b}

    row = S.largest_batch(try_batch, S.candidates(64), torch.device("cpu"))
    assert row == {"status": "ok", "batch": 8, "oom_batches": [64, 48, 32, 24, 16, 12]}
    assert tried == [64, 48, 32, 24, 16, 12, 8]
    assert S.largest_batch(try_batch, [32, 16], torch.device("cpu")) == {"status": "oom", "oom_batches": [32, 16]}

    def broken(b):
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError):  # only OOM moves the search down
        S.largest_batch(broken, [2, 1], torch.device("cpu"))

    def cublas(b):  # how cuBLAS reports a full device: a RuntimeError, not an OutOfMemoryError
        if b > 16:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        return {"status": "ok", "batch": b}

    assert S.largest_batch(cublas, [32, 16], torch.device("cpu")) == {"status": "ok", "batch": 16, "oom_batches": [32]}
    assert not S.is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED"))


def test_rows_past_the_deadline_are_skipped_with_a_note():
    rows = S.run_cases(SMOKE, torch.device("cpu"), deadline=time.perf_counter() - 1, peak_tflops=1.0, log=lambda _: None)
    assert len(rows) == len(S.CASES)
    assert all(r["status"] == "skipped" and "left" in r["note"] for r in rows)


def test_the_gpu_preset_is_larger_than_every_cpu_preset_and_configures_its_runs(tmp_path):
    from mgm.data import synth
    from mgm.experiment import PRESETS, Runner
    from mgm.model import ModelConfig

    gpu = PRESETS["gpu"]
    cpu = [p for name, p in PRESETS.items() if name != "gpu"]
    assert [a.name for a in gpu.arms] == ["tube-0.9", "tube-0.75", "mgm-0.75"] and gpu.seeds == (0,) and gpu.scratch
    g = gpu.geometry
    assert all(g.num_tokens > p.geometry.num_tokens and g.size >= p.geometry.size for p in cpu)
    width = lambda p: ModelConfig.from_preset(p.model).embed_dim  # noqa: E731
    assert all(width(gpu) > width(p) for p in cpu)
    clips = synth.PRESETS[gpu.synth]
    assert g.num_frames * gpu.stride <= clips.num_frames and g.size <= clips.size  # no repeated frames, no upscaling
    runner = Runner(tmp_path, gpu)
    assert [u[0] for u in runner.units()] == ["finetune", "pretrain", "pretrain", "pretrain"]  # scratch + 3 arms
    root = tmp_path / "data" / "base"
    for stage in ("pretrain", "finetune"):
        cfg = runner._config(stage, "x", root, root / "train.txt", 0)  # validated by load_config
        assert (cfg.data.num_frames, cfg.data.size, cfg.data.patch) == (g.num_frames, g.size, g.patch)
        assert cfg.data.batch_size == 64 and cfg.data.in_memory and cfg.data.num_workers > 0
        ModelConfig.from_preset(gpu.model, img_size=g.size, num_frames=g.num_frames, patch=g.patch)


def test_a_compiled_row_retried_after_out_of_memory_compiles_its_own_batch():
    """Dynamo keeps its graphs per code object, not per model: without a reset, the try at the next
    batch down recompiled the OOM'd try's graphs with a symbolic (dynamic) batch size."""
    case = S.Case("pretrain", "ours", "tube-0.9", compiled=True)
    cpu = torch.device("cpu")
    S.measure(case, SMOKE, 3, cpu)  # compiled, then (on a GPU) out of memory
    with torch._dynamo.config.patch(error_on_recompile=True):  # (monkeypatch's undo hides the key for good)
        row = S.measure(case, SMOKE, 2, cpu)
    assert row["batch"] == 2 and row["final_loss"] == row["final_loss"]


def run_within_12_s(tmp_path, monkeypatch, section: str) -> dict:
    """`bench gpu --smoke --only SECTION --budget 12`: it must end within the budget (+3 s) and leave
    no alarm behind; returns its JSON."""
    from benchmarks.gpu import bench

    monkeypatch.setattr(bench, "START", time.perf_counter())
    out = tmp_path / "gpu.json"
    t0 = time.perf_counter()
    assert bench.main(["--smoke", "--only", section, "--budget", "12", "--out", str(out),
                       "--work", str(tmp_path / "work")]) == 0
    assert time.perf_counter() - t0 < 12 + 3
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left behind
    return json.loads(out.read_text())


def test_a_row_still_running_at_the_sections_cap_is_stopped_and_the_rows_done_are_written(tmp_path, monkeypatch):
    """The steps section checked its cap only between rows: a compilation outlasting it ran on into
    the next sections' time (and past the run's outer timeout, losing every row: the JSON was
    written only after the section)."""
    def compiling_for_a_long_time(case, sizes, b, device):
        time.sleep(30)

    monkeypatch.setattr(S, "measure", compiling_for_a_long_time)
    data = run_within_12_s(tmp_path, monkeypatch, "steps")
    assert data["sections"]["steps"]["cap_s"] < 8
    rows = data["steps"]
    assert len(rows) == len(S.CASES) and rows[0]["status"] == "timeout"
    assert all(r["status"] == "skipped" for r in rows[1:])


def test_the_rows_are_handed_over_as_they_finish(monkeypatch):
    monkeypatch.setattr(S, "measure", lambda case, sizes, b, device: {"status": "ok", "batch": b, "ms_per_step": 1.0,
                                                                      "clips_per_s": 1.0, "gflop_per_clip": 1.0})
    seen = []
    rows = S.run_cases(SMOKE, torch.device("cpu"), time.perf_counter() + 60, 1.0, log=lambda _: None,
                       on_row=lambda rows: seen.append((len(rows), all("mfu" in r for r in rows))))
    assert seen == [(n, True) for n in range(1, len(S.CASES) + 1)] and len(rows) == len(S.CASES)


def test_a_loader_run_stopped_at_the_sections_cap_keeps_the_configs_measured_before_it(tmp_path, monkeypatch):
    """The loader section's cap stopped it by an exception out of run_loader: the configs already
    measured were lost with it (no "loader" in the JSON)."""
    import benchmarks.speed.data as D
    from benchmarks.gpu import loader as L

    calls = []

    def rate(samples, geo, config, *args, **kwargs):
        calls.append(config)
        if len(calls) == 2:
            time.sleep(30)  # a DataLoader run still going at the cap
        return 10.0, 5.0

    monkeypatch.setattr(D, "loader_rate", rate)
    monkeypatch.setattr(L, "generate_clips", lambda root, sizes, jobs: [])
    data = run_within_12_s(tmp_path, monkeypatch, "loader")
    rows = data["loader"]["rows"]
    assert [r["status"] for r in rows] == ["ok", "timeout"] + ["skipped"] * (len(L.CONFIGS) - 2)
    assert rows[0]["clips_per_s"] == 10.0 and data["sections"]["loader"]["status"] == "timeout"
