"""Stop cleanly when the cluster says so: SIGTERM / SIGUSR1 become a request honoured at the next
optimizer-step boundary, where the trainer writes a checkpoint and exits with a message.

SLURM sends SIGTERM (or, with `--signal=USR1@120`, SIGUSR1) before pre-emption or at the time
limit, and torchrun forwards SIGTERM to every worker; Python's default for SIGTERM kills the
process at once, losing everything since the last checkpoint. The handler only sets a flag: the
training loop reads it once per step, inside the reduction all ranks already do, so every rank
stops after the same step.
"""

from __future__ import annotations

import os
import signal
import threading

SIGNALS = ("SIGTERM", "SIGUSR1")
WORKER_GRACE_S = 120.0  # a shielded worker's life after a SIGTERM (see shield_worker)


class StopRequest:
    """Context manager: while active, the signals above set `.signal` (its name) instead of killing.

    Outside the main thread (where Python cannot install handlers) it does nothing."""

    def __init__(self):
        self.signal: str | None = None
        self._previous: dict = {}

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame) -> None:
        self.signal = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def exit_code(stopped: str | None) -> int:
    """A command's exit status: 0, or 128 + the signal's number when a signal stopped the run (the
    shell's convention, so a job script can tell a pre-empted run from a finished one)."""
    return 128 + int(signal.Signals[stopped]) if stopped else 0


def shield_worker(grace_s: float = WORKER_GRACE_S) -> None:
    """In a DataLoader worker: leave the stop signals to the main process.

    SLURM signals every process of a job step, and `timeout`, `kill -- -PGID` and a terminal signal
    the whole process group, so the loader's workers get the SIGTERM too; by default it kills them,
    and the main process then dies mid-step of "DataLoader worker ... killed by signal" (a traceback,
    no checkpoint: the stop request is lost). Shielded, a worker ignores SIGUSR1 and, after a
    SIGTERM, keeps serving batches for `grace_s` seconds (the main process needs at most the batch
    of the step in progress; it then checkpoints and shuts the workers down itself) before it exits
    with status 0, so a worker the DataLoader terminates at shutdown, or one stuck, still goes.
    """
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    def leave_later(signum, frame):
        timer = threading.Timer(grace_s, os._exit, (0,))
        timer.daemon = True
        timer.start()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one timer, however many SIGTERMs follow

    signal.signal(signal.SIGTERM, leave_later)
