"""A run directory holds one run: claimed with a lock for the run's lifetime, never silently reused.

Two runs writing one directory interleave their logs and overwrite (or, through `keep_ckpts`,
delete) each other's checkpoints. So a training process (rank 0) claims the directory before it
writes anything:
- an exclusive `flock` on `<run dir>/.lock` (released by the kernel when the process dies, so a
  crash leaves no stale lock) refuses a second concurrent run, naming the holder's pid;
- a fresh run (no `--resume`) into a directory that holds another run's checkpoints or log is
  refused, naming the ways on, and nothing there is changed -- unless `run.overwrite` is set, which
  deletes that run's checkpoints, log and TensorBoard events first;
- temporary files of a write that was killed (`kill -9` during a checkpoint save) are removed:
  with the lock held nobody else can be writing them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from mgm.errors import MGMError
from mgm.files import make_parent, os_error, stale_temps
from mgm.train.checkpoint import list_checkpoints

LOCK = ".lock"
# Besides the checkpoints: what marks a directory as holding a run.
RUN_FILES = ("log.jsonl", "last.pt", "best.pt", "bad_videos_train.jsonl", "bad_videos_val.jsonl")
RUN_DIRS = ("tb",)


class RunDirClaim:
    """The held claim on a run directory; `release()` (or the process's end) frees it."""

    def __init__(self, run_dir: Path, fd: int):
        self.run_dir, self._fd = run_dir, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def claim(run_dir: str | Path, *, fresh: bool, overwrite: bool = False) -> RunDirClaim:
    """Claim `run_dir` for this process; see the module docstring. fresh: the run starts from
    step 0 (no resume). Raises MGMError (one line, the directory unchanged) when it cannot."""
    run_dir = Path(run_dir)
    if fresh and not overwrite:
        _check_fresh(run_dir, overwrite)  # before the lock file: a refused run creates nothing
    lock = run_dir / LOCK
    make_parent(lock)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise os_error(run_dir, e, "cannot use the run directory") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise MGMError(f"{run_dir}: another run is writing to it now (pid {holder}); wait for it to "
                       f"finish, or give this run another name (--name NEW)") from None
    held = RunDirClaim(run_dir, fd)
    try:
        if fresh:  # again under the lock (a run may have finished there since), or to overwrite
            _check_fresh(run_dir, overwrite)
        for tmp in stale_temps(run_dir):
            tmp.unlink(missing_ok=True)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        held.release()
        raise os_error(run_dir, e, "cannot use the run directory") from None
    except BaseException:
        held.release()
        raise
    return held


def previous_run(run_dir: Path) -> list[Path]:
    """What another run left in run_dir: its checkpoints, log and TensorBoard events."""
    found = list_checkpoints(run_dir)
    found += [run_dir / n for n in RUN_FILES + RUN_DIRS if (run_dir / n).exists()]
    return found


def _check_fresh(run_dir: Path, overwrite: bool) -> None:
    found = previous_run(run_dir)
    if not found:
        return
    if not overwrite:
        ckpts = [p.name for p in found if p.name.startswith("ckpt-")]
        what = f"{len(ckpts)} checkpoints, newest {ckpts[-1]}" if ckpts else ", ".join(p.name for p in found)
        raise MGMError(f"{run_dir} already holds a run ({what}); nothing was changed. Continue it with "
                       f"--resume auto, start a new one with --name NEW (run.name), or replace it "
                       f"with --overwrite (run.overwrite=true)")
    for p in found:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
