"""2-process DDP fine-tuning with evaluation (torchrun, gloo on CPU) exits 0 every time.

The bug: DistributedDataParallel's constructor imports torch._dynamo and with it
torch.distributed.nn, whose functions take `group=group.WORLD` as a default argument -- evaluated at
import. Imported while the process group exists, those defaults kept it alive after
destroy_process_group, so its gloo worker threads outlived mgm's cleanup. A worker still releasing
the tensors of the last collective (evaluation's all_gather_object) when the interpreter shut down
aborted the process ("terminate called without an active exception", SIGABRT) and torchrun failed
-- in some runs only, as thread scheduling fell. So each run also checks the cause itself, which
does not depend on luck: once the command has returned, no thread of the process group is left.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

RUNS = 6

# Run `python -m mgm.cli ...` as torchrun would, then report the process's live threads.
LAUNCHER = """\
import os, runpy, sys

def threads():
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1

before, code = threads(), 0
try:
    runpy.run_module("mgm.cli", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
print(f"threads of rank {os.environ.get('RANK')}: {before} at start, {threads()} after the command",
      file=sys.stderr, flush=True)
sys.exit(code)
"""

TINY = ["--set", "data.source=random", "--set", "model.preset=nano", "--set", "data.num_frames=2",
        "--set", "data.size=32", "--set", "data.random_len=4", "--set", "data.batch_size=1",
        "--set", "data.num_classes=3", "--set", "optim.epochs=1", "--set", "run.threads=1",
        "--set", "run.progress=false"]


@pytest.mark.slow
def test_two_process_finetune_with_evaluation_exits_cleanly_every_time(tmp_path):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    for i in range(RUNS):
        out_dir = tmp_path / f"runs{i}"
        p = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
             "--nproc_per_node", "2", str(launcher), "finetune", "--name", "ft",
             "--set", f"run.out_dir={out_dir}", *TINY],
            env=env, capture_output=True, text=True, timeout=180)
        where = f"run {i + 1} of {RUNS}"
        assert "terminate called" not in p.stderr, f"{where}:\n{p.stderr[-3000:]}"
        assert p.returncode == 0, f"{where}: exit {p.returncode}\n{p.stderr[-3000:]}"
        assert p.stdout.count("eval at step 2 (epoch 1/1): top-1") == 1, f"{where}:\n{p.stdout}"  # it did evaluate
        counts = re.findall(r"threads of rank (\d): (-?\d+) at start, (\d+) after the command", p.stderr)
        assert sorted(r for r, _, _ in counts) == ["0", "1"], p.stderr[-3000:]
        for rank, before, after in counts:
            if int(before) > 0:  # /proc/self/task: Linux
                assert int(after) <= int(before), (
                    f"{where}, rank {rank}: {after} threads alive after the command, {before} at start: "
                    f"the process group's threads outlived cleanup and may abort the interpreter's exit")
    print(f"{RUNS} runs in {time.perf_counter() - t0:.0f} s")
