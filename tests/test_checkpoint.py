"""Checkpoints: atomic writes, RNG capture, round trip, --resume auto, and resume after SIGKILL."""

from __future__ import annotations

import argparse
import fractions
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mgm.train import checkpoint as C
from mgm.errors import MGMError
from mgm.train.optim import CosineSchedule, build_optimizer


def _tiny_setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
    opt = build_optimizer(model, 1e-2, 0.05)
    sched = CosineSchedule(opt, 1e-2, total_steps=20, warmup_steps=3)
    return model, opt, sched


def _train(model, opt, sched, steps):
    for _ in range(steps):
        sched.step()
        x = torch.randn(4, 6)  # draws on the global RNG, so RNG restore matters
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()


def test_round_trip_restores_identical_state(tmp_path):
    model, opt, sched = _tiny_setup()
    _train(model, opt, sched, 4)
    random.random(), np.random.rand()  # move the python / numpy streams too
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "step": 4, "epoch": 0, "batches_done": 4, "config": {"run": {"seed": 0}}, "rng": [C.capture_rng()]}
    path = C.save_checkpoint(C.checkpoint_path(tmp_path, 4), state)
    expect_py, expect_np, expect_torch = random.random(), np.random.rand(), torch.rand(3)
    _train(model, opt, sched, 3)
    final = {k: v.clone() for k, v in model.state_dict().items()}

    loaded = C.load_checkpoint(path)  # weights_only=True inside
    m2, o2, s2 = _tiny_setup(seed=123)  # different init: everything must come from the file
    m2.load_state_dict(loaded["model"])
    o2.load_state_dict(loaded["optimizer"])
    s2.load_state_dict(loaded["scheduler"])
    C.restore_rng(loaded["rng"][0])
    assert (random.random(), np.random.rand()) == (expect_py, expect_np)
    assert torch.equal(torch.rand(3), expect_torch)  # same draws as the original run made here
    assert s2.step_index == 4 and loaded["batches_done"] == 4 and loaded["config"] == {"run": {"seed": 0}}
    _train(m2, o2, s2, 3)
    for k, v in m2.state_dict().items():
        assert torch.equal(v, final[k]), k


def test_atomic_write_keeps_old_file_when_save_fails(tmp_path, monkeypatch):
    path = C.checkpoint_path(tmp_path, 1)
    C.save_checkpoint(path, {"x": torch.arange(3)})

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(MGMError, match=f"{path.name}: cannot write \\(disk full\\)"):  # one line, not a traceback
        C.save_checkpoint(path, {"x": torch.arange(5)})
    assert torch.equal(C.load_checkpoint(path)["x"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_latest_and_prune_order_by_step_not_name_or_time(tmp_path):
    for step in (3, 12, 100, 7):
        C.save_checkpoint(C.checkpoint_path(tmp_path, step), {"step": step})
    (tmp_path / "ckpt-notastep.pt").write_bytes(b"x")
    (tmp_path / ".ckpt-00000200.pt.tmp-1").write_bytes(b"torn")  # a write killed half way
    assert C.latest_checkpoint(tmp_path).name == "ckpt-00000100.pt"
    C.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt-00000012.pt", "ckpt-00000100.pt"]
    assert C.latest_checkpoint(tmp_path / "missing") is None


def test_load_errors_are_one_line_mgm_errors(tmp_path):
    bad = tmp_path / "ckpt-00000001.pt"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(MGMError, match="cannot load checkpoint"):
        C.load_checkpoint(bad)
    with pytest.raises(MGMError, match="not found"):
        C.load_checkpoint(tmp_path / "nope.pt")

    # arbitrary objects are refused (weights_only=True) ...
    torch.save({"x": fractions.Fraction(1, 3)}, tmp_path / "foreign.pt")
    with pytest.raises(MGMError, match="cannot load checkpoint"):
        C.load_checkpoint(tmp_path / "foreign.pt")
    # ... except the argparse.Namespace of MCG-NJU VideoMAE checkpoints, a bag of attributes
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-3)}, tmp_path / "mcg.pt")
    loaded = C.load_checkpoint(tmp_path / "mcg.pt")
    assert loaded["args"].lr == 1e-3 and torch.equal(loaded["model"]["w"], torch.ones(2))


# ---------------------------------------------------------------------------------------------
# Resume after SIGKILL reproduces the uninterrupted run bit for bit (CPU)

# A run with every source of state the resume must restore: drop path (torch RNG), gradient
# accumulation and a warm-up schedule, 2 epochs of 8 optimizer steps, a checkpoint every 3 steps.
RUN_ARGS = [
    "--set", "data.source=random", "--set", "data.num_frames=4", "--set", "data.size=32",
    "--set", "data.mask=random", "--set", "data.mask_ratio=0.75", "--set", "data.random_len=32",
    "--set", "data.batch_size=2", "--set", "optim.accum_steps=2", "--set", "optim.epochs=2",
    "--set", "optim.warmup_epochs=0.5", "--set", "optim.base_lr=0.05", "--set", "optim.clip_grad=1.0",
    "--set", "model.drop_path=0.2", "--set", "run.ckpt_every=3", "--set", "run.keep_ckpts=10",
    "--set", "run.threads=1", "--set", "run.progress=false", "--set", "run.log_every=1",
]

# The child: the real CLI; with KILL_AFTER_STEP it announces that optimizer step and then waits
# for the parent's SIGKILL, so the kill lands mid-epoch at a known point (after the step-3
# checkpoint, with steps 4-5 done and lost).
CHILD = textwrap.dedent("""
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    kill_after = int(os.environ.get("KILL_AFTER_STEP", "0"))
    if kill_after:
        step = torch.optim.AdamW.step
        calls = [0]
        def counting_step(self, *a, **k):
            out = step(self, *a, **k)
            calls[0] += 1
            if calls[0] == kill_after:
                print("KILLME", flush=True)
                time.sleep(120)
            return out
        torch.optim.AdamW.step = counting_step
    from mgm.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _child(tmp_path, name, extra=(), kill_after=0):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "KILL_AFTER_STEP": str(kill_after), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(script), "pretrain", "--name", name, "--set", f"run.out_dir={tmp_path}",
           *RUN_ARGS, *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _final_state(run_dir: Path) -> dict:
    return C.load_checkpoint(C.latest_checkpoint(run_dir))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_auto_matches_uninterrupted_run(tmp_path):
    victim = _child(tmp_path, "killed", kill_after=5)
    reference = _child(tmp_path, "straight")
    deadline = time.time() + 60
    line = ""
    while time.time() < deadline and "KILLME" not in line:
        line = victim.stdout.readline()
        if not line and victim.poll() is not None:
            break
    assert "KILLME" in line, victim.stderr.read()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert victim.returncode == -signal.SIGKILL
    run_dir = tmp_path / "killed"
    assert [p.name for p in C.list_checkpoints(run_dir)] == ["ckpt-00000003.pt"]  # steps 4, 5 lost
    state = C.load_checkpoint(run_dir / "ckpt-00000003.pt")
    assert (state["epoch"], state["batches_done"]) == (0, 6)  # 3 steps x 2 micro-batches into epoch 0

    resumed = _child(tmp_path, "killed", extra=["--resume", "auto"])
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert "resumed from" in out and "at step 3" in out
    out_ref, err_ref = reference.communicate(timeout=120)
    assert reference.returncode == 0, err_ref

    a, b = _final_state(run_dir), _final_state(tmp_path / "straight")
    assert a["step"] == b["step"] == 16 and a["epoch"] == b["epoch"] == 2
    for k, v in b["model"].items():
        assert torch.equal(a["model"][k], v), f"{k} differs after resume"
    for pid, s in b["optimizer"]["state"].items():
        assert torch.equal(a["optimizer"]["state"][pid]["exp_avg_sq"], s["exp_avg_sq"])
    # and the run did train: weights moved away from the step-3 checkpoint
    assert not torch.equal(a["model"]["encoder.blocks.0.attn.qkv.weight"],
                           state["model"]["encoder.blocks.0.attn.qkv.weight"])
