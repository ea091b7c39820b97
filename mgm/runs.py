"""Every training run at a glance: read back from the run directories' `log.jsonl` (see mgm.train.log).

A run directory is any folder holding a `log.jsonl` written by `fit`. Its summary: the command,
the recipe's essentials, steps done / planned, the last training loss, the best and last
evaluation, its state and how long ago it last wrote. State: "running" while a process holds the
run directory's lock (mgm.train.rundir), else "finished" (all planned steps), "stopped" (a signal, or a
process that ended without finishing), "diverged" (a NaN / inf), or "failed" (another error).
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mgm.errors import MGMError
from mgm.train.checkpoint import list_checkpoints
from mgm.train.rundir import LOCK
from mgm.train.log import read_log


@dataclass
class RunSummary:
    path: str
    command: str               # pretrain, finetune, linprobe
    model: str                 # the model preset
    mask: str                  # "mgm 0.75" for pre-training, "" otherwise
    effective_batch: int
    lr: float                  # the scaled learning rate
    step: int                  # optimizer steps done
    planned: int
    loss: float | None         # the last logged training loss
    best_top1: float | None
    last_top1: float | None
    state: str
    updated: float             # wall-clock time of the last log record
    losses: list               # [(step, loss)] for the plot
    evals: list                # [(step, top1)]


def find_runs(root: str | Path) -> list[Path]:
    """Run directories under `root` (or `root` itself), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise MGMError(f"{root}: no such folder")
    if (root / "log.jsonl").is_file():
        return [root]
    return sorted(p.parent for p in root.rglob("log.jsonl"))


def _locked(run_dir: Path) -> bool:
    """True while a live run holds run_dir's lock (a shared lock attempt fails against its flock)."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops our shared lock


def summarise(run_dir: str | Path) -> RunSummary:
    run_dir = Path(run_dir)
    try:
        records = read_log(run_dir / "log.jsonl")
    except (OSError, ValueError) as e:
        raise MGMError(f"{run_dir / 'log.jsonl'}: not a readable run log ({str(e)[:80]})") from None
    start = next((r for r in records if r.get("event") == "start"), {})
    config = start.get("config", {})
    max_steps = config.get("optim", {}).get("max_steps", 0)
    total = start.get("total_steps", 0)
    planned = min(total, max_steps) if max_steps and total else total or max_steps
    data = config.get("data", {})
    command = start.get("task", "?")
    losses = _losses(records, "step")
    if len(losses) < 4:  # logged every run.log_every steps: a short run's curve is its epoch means
        losses = _losses(records, "epoch") or losses
    evals = [(r["step"], r["top1"]) for r in records if r.get("event") == "eval" and r.get("top1") is not None]
    # the log's last step, or a checkpoint's: a run that failed mid-epoch logged no step record since
    saved = [int(p.stem.split("-")[1]) for p in list_checkpoints(run_dir)]
    step = max([r["step"] for r in records if isinstance(r.get("step"), int)] + saved, default=0)
    return RunSummary(
        path=str(run_dir), command=command, model=config.get("model", {}).get("preset", "?"),
        mask=f"{data.get('mask')} {data.get('mask_ratio'):g}" if command == "pretrain" and data else "",
        effective_batch=start.get("effective_batch", 0), lr=start.get("lr", float("nan")), step=step,
        planned=planned, loss=losses[-1][1] if losses else None,
        best_top1=max((t for _, t in evals), default=None), last_top1=evals[-1][1] if evals else None,
        state=_state(run_dir, records, step, planned), updated=records[-1]["time"] if records else 0.0,
        losses=losses, evals=evals)


def _losses(records: list[dict], event: str) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in records if r.get("event") == event and r.get("loss") is not None]


def _state(run_dir: Path, records: list[dict], step: int, planned: int) -> str:
    if _locked(run_dir):
        return "running"
    last = records[-1] if records else {}
    if last.get("event") == "error":
        message = str(last.get("message", ""))
        return "diverged" if "non-finite" in message or "NaN/inf" in message else "failed"
    if last.get("event") == "stopped":
        return f"stopped ({last.get('signal')})"
    return "finished" if planned and step >= planned else "stopped"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(runs: list[RunSummary], root: str | Path, now: float | None = None) -> str:
    """A plain-text table, one line per run, paths relative to `root`."""
    now = time.time() if now is None else now
    head = ("run", "command", "model", "mask", "batch", "lr", "steps", "loss", "best", "last", "state", "updated")
    rows = [head]
    for r in runs:
        name = os.path.relpath(r.path, root) if Path(r.path) != Path(root) else Path(r.path).name
        rows.append((name, r.command, r.model, r.mask or "-", str(r.effective_batch), f"{r.lr:.3g}",
                     f"{r.step}/{r.planned}", "-" if r.loss is None else f"{r.loss:.4f}",
                     _pct(r.best_top1), _pct(r.last_top1), r.state, _age(now - r.updated)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n(best / last: evaluation top-1 %; loss: the last logged training loss)"


def as_json(runs: list[RunSummary]) -> list[dict]:
    return [{k: v for k, v in asdict(r).items()} for r in runs]


def plot(runs: list[RunSummary], out: str | Path, root: str | Path) -> Path:
    """Training loss (left) and evaluation top-1 (right) against steps, one line per run, to a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MGMError("--plot needs matplotlib: pip install matplotlib") from None
    from mgm.files import atomic_write

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        name = os.path.relpath(r.path, root) if Path(r.path) != Path(root) else Path(r.path).name
        if r.losses:
            left.plot(*zip(*r.losses), label=name)
        if r.evals:
            right.plot(*zip(*r.evals), marker="o", label=name)
    left.set(xlabel="step", ylabel="training loss", title="loss")
    right.set(xlabel="step", ylabel="top-1 (%)", title="evaluation")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not any(r.evals for r in runs):
        right.text(0.5, 0.5, "no evaluations", ha="center", va="center", transform=right.transAxes)
    fig.tight_layout()
    with atomic_write(out) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return Path(out)
