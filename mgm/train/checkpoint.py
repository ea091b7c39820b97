"""Complete, atomic checkpoints and RNG capture, loadable with torch.load(weights_only=True).

A training checkpoint (assembled by mgm.train.fit) holds: model, optimizer, scheduler, scaler,
step, epoch, batches_done (data-loader position inside the epoch), config (plain dict) and rng
(per-rank python / numpy / torch / cuda states as tensors and plain types). Files are named
`ckpt-<step:08d>.pt` in the run directory; `--resume auto` takes the highest step.
"""

from __future__ import annotations

import argparse
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from mgm.errors import MGMError
from mgm.files import atomic_path, atomic_write

_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")
LAST, BEST = "last.pt", "best.pt"  # in every run dir: the newest checkpoint, the best evaluated one


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / f"ckpt-{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints in run_dir, oldest first (by step in the name, not by mtime)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write `state` to path atomically and durably (mgm.files.atomic_path): a reader, a SIGKILL or a
    full disk leaves the old file or the new one, never half of one, and no temporary file.
    Refuses (MGMError) a state whose model weights are not all finite: such a file would be
    resumed from as if it were good."""
    bad = nonfinite_tensors(state.get("model", {}))
    if bad:
        raise MGMError(f"{path}: not saved, {len(bad)} model tensors hold NaN/inf (first: {bad[0]})")
    with atomic_write(path, durable=True) as f:
        torch.save(state, f)
    return Path(path)


def nonfinite_tensors(weights: dict) -> list[str]:
    """Names of the floating-point tensors in `weights` that hold a NaN or an infinity."""
    return [k for k, v in weights.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def last_good_checkpoint(run_dir: str | Path, warn=None) -> tuple[Path, dict] | tuple[None, None]:
    """The newest checkpoint in run_dir that loads and whose weights are all finite, with its state.

    A damaged newer one (truncated by a crash, a full disk, or holding NaN weights) is skipped;
    `warn(message)` is told about each one skipped."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            state = load_checkpoint(path)
        except MGMError as e:
            if warn:
                warn(f"{e}; skipped, trying the one before")
            continue
        bad = nonfinite_tensors(state.get("model", {})) if isinstance(state.get("model"), dict) else []
        if bad:
            if warn:
                warn(f"{path}: {len(bad)} model tensors hold NaN/inf; skipped, trying the one before")
            continue
        return path, state
    return None, None


def link_as(path: str | Path, name: str) -> Path:
    """Make run_dir/name (last.pt, best.pt) the checkpoint `path`, atomically. A hard link: no extra
    space, and it keeps its checkpoint when pruning deletes the ckpt-*.pt name (best.pt is often an
    old one); a copy where the file system has no hard links."""
    import shutil

    path = Path(path)
    target = path.parent / name
    with atomic_path(target) as tmp:
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
    return target


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run directory standing for its last.pt (else its newest ckpt-*.pt)."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / LAST).is_file():
        return path / LAST
    newest = latest_checkpoint(path)
    if newest is None:
        raise MGMError(f"{path}: a folder without checkpoints (no {LAST}, no ckpt-*.pt)")
    return newest


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """torch.load(weights_only=True): tensors and plain containers only, no code execution.
    `path` may be a run directory: its last.pt (see `resolve`).

    argparse.Namespace is allowed too (MCG-NJU VideoMAE checkpoints store their arguments in one;
    it only holds attributes). A .safetensors file loads as a bare state dict.
    """
    path = resolve(path)
    if not path.is_file():
        raise MGMError(f"{path}: checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device=str(map_location))
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which and why, in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise MGMError(f"{path}: cannot load checkpoint ({first[:200]})") from None


def prune_checkpoints(run_dir: str | Path, keep: int, keep_steps=()) -> None:
    """Delete all but the newest `keep` checkpoints (keep <= 0 keeps everything) and those of the
    steps in `keep_steps` (the points of a learning curve)."""
    if keep <= 0:
        return
    protected = {int(s) for s in keep_steps}
    for p in list_checkpoints(run_dir)[:-keep]:
        if int(_NAME.match(p.name).group(1)) not in protected:
            p.unlink(missing_ok=True)


def capture_rng() -> dict:
    """This process's RNG states as tensors / plain types (weights_only-loadable)."""
    version, keys, gauss = random.getstate()
    name, np_keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": [version, list(keys), gauss],
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
