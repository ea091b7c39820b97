"""Distributed: 2 CPU processes (torchrun, gloo) with half the batch each (as 2 accumulated
micro-batches of 1, which exercises DDP's no_sync too) train the same weights as 1 process with the
whole batch; the sharded sampler deals exactly the global batches."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mgm.train import checkpoint as C
from mgm.train.tasks import pretrain_task
from mgm.train.config import load_config
from mgm.train.distributed import DistInfo, ShardedSampler, all_reduce_mean, init_distributed, wrap_ddp


def test_sharded_sampler_two_ranks_cover_each_global_batch_like_one_rank():
    n, per_rank = 22, 3
    one = ShardedSampler(n, seed=5)
    ranks = [ShardedSampler(n, num_replicas=2, rank=r, seed=5) for r in range(2)]
    for s in (one, *ranks):
        s.set_epoch(2)
    whole = one.indices()
    assert sorted(whole.tolist()) == list(range(n))
    parts = [r.indices() for r in ranks]
    for step in range(n // (2 * per_rank)):
        global_batch = whole[step * 2 * per_rank:(step + 1) * 2 * per_rank]
        union = np.concatenate([p[step * per_rank:(step + 1) * per_rank] for p in parts])
        assert sorted(union.tolist()) == sorted(global_batch.tolist())
    # order depends on (seed, epoch) only; another epoch reshuffles
    again = ShardedSampler(n, seed=5)
    again.set_epoch(2)
    assert again.indices().tolist() == whole.tolist()
    again.set_epoch(3)
    assert again.indices().tolist() != whole.tolist()
    # resuming 4 indices into the epoch continues exactly where the full order was
    ranks[1].set_epoch(2, start=4)
    assert ranks[1].indices().tolist() == parts[1][4:].tolist() and len(ranks[1]) == len(parts[1]) - 4


def test_single_process_defaults_are_no_ops(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(0, 1, 0, torch.device("cpu")) and info.is_main and not info.distributed
    model = torch.nn.Linear(2, 2)
    assert wrap_ddp(model, info) is model
    assert all_reduce_mean({"loss": 2.5}) == {"loss": 2.5}


RUN_ARGS = [
    "--set", "data.source=random", "--set", "data.num_frames=4", "--set", "data.size=32",
    "--set", "data.mask=random", "--set", "data.mask_ratio=0.75", "--set", "data.random_len=24",
    "--set", "optim.epochs=1", "--set", "optim.base_lr=0.2", "--set", "optim.clip_grad=1.0",
    "--set", "optim.warmup_epochs=0.5", "--set", "run.threads=1", "--set", "run.progress=false",
]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_global_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--set", f"run.out_dir={tmp_path}", *RUN_ARGS]
    two = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
         "--nproc_per_node", "2", "-m", "mgm.cli", "pretrain", "--name", "ddp",
         "--set", "data.batch_size=1", "--set", "optim.accum_steps=2", *common],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    one = subprocess.run([sys.executable, "-m", "mgm.cli", "pretrain", "--name", "single",
                          "--set", "data.batch_size=4", *common],
                         env=env, capture_output=True, text=True, timeout=180)
    out, err = two.communicate(timeout=180)
    assert two.returncode == 0, err[-3000:]
    assert one.returncode == 0, one.stderr[-3000:]
    # rank 0 alone prints and logs; both runs see the same effective batch and lr
    assert out.count("effective batch 4 (1 x 2 accum x 2 procs)") == 1
    assert "effective batch 4 (4 x 1 accum x 1 procs)" in one.stdout
    a = C.load_checkpoint(C.latest_checkpoint(tmp_path / "ddp"))
    b = C.load_checkpoint(C.latest_checkpoint(tmp_path / "single"))
    assert a["step"] == b["step"] == 6 and a["world_size"] == 2 and len(a["rng"]) == 2
    for k, v in b["model"].items():
        torch.testing.assert_close(a["model"][k], v, rtol=1e-4, atol=2e-5, msg=lambda m, k=k: f"{k}: {m}")
    # ... and they did train: far from the shared initialisation (seed 0), compared to the tolerance
    cfg = load_config("pretrain", overrides=[o for o in RUN_ARGS if o != "--set"])
    torch.manual_seed(cfg.run.seed)
    init = pretrain_task(cfg).model.state_dict()
    moved = max(float((b["model"][k] - init[k]).abs().max()) for k in init)
    assert moved > 5e-3


@pytest.mark.slow
def test_two_process_evaluation_merges_shards_like_one_process(tmp_path):
    """Uneven shards (11 videos over 2 ranks) gathered by video index give the single-process numbers."""
    import json

    from mgm.cli import main

    common = ["--set", f"run.out_dir={tmp_path}", "--set", "data.source=random", "--set", "data.num_frames=4",
              "--set", "data.size=32", "--set", "data.random_len=11", "--set", "data.batch_size=2",
              "--set", "run.threads=1", "--set", "run.progress=false", "--set", "data.num_classes=3"]
    before = torch.get_num_threads()
    try:
        assert main(["finetune", "--name", "ft", *common, "--set", "optim.base_lr=0.05"]) == 0
        ckpt = C.latest_checkpoint(tmp_path / "ft")
        assert main(["eval", str(ckpt), "--out", str(tmp_path / "one.json")]) == 0
    finally:
        torch.set_num_threads(before)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
         "-m", "mgm.cli", "eval", str(ckpt), "--out", str(tmp_path / "two.json")],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("top-1") == 1  # printed by rank 0 only
    one, dist2 = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["videos"] == dist2["videos"] == 11
    assert one["top1"] == dist2["top1"] and one["top5"] == dist2["top5"]
    assert one["loss"] == pytest.approx(dist2["loss"], rel=1e-5)
