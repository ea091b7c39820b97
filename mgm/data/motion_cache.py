"""Per-video block motion read once and kept on disk, so later epochs decode pixels only.

Pre-training visits every video hundreds of times; its motion vectors never change. The first
visit reads the whole video's motion by the motion-only fast path (`codec.read_motion`) and stores
it as one .npy file; every later visit decodes exactly what a `tube` loader decodes (the sampled
frames' pixels, no motion-vector export) and memory-maps the few rows of motion it needs. The
result is identical to the one-pass read (`codec.read_clip`): same vectors, same accumulation.

Files: <dir>/<video stem>-<key>.npy, float32 [2, F, Hb, Wb] (dx, dy per decoded frame). The key
hashes the video's real path, size, modification time and the block size, so an edited or
replaced video gets a new entry. Concurrent workers may compute the same entry: each writes a
private temporary file and renames it, so readers see a whole file or none.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict

import numpy as np


class MotionCache:
    # Memory maps kept open per process: re-opening one (stat, hash, header parse, mmap) cost
    # ~0.5 ms, a third of what MGM adds to a tube item. Bounded: each holds a file descriptor. A video
    # replaced while a process runs keeps its old map until evicted (entry() sees the change).
    OPEN_MAPS = 64

    def __init__(self, directory: str | os.PathLike, block: int = 16):
        self.directory, self.block = os.fspath(directory), block
        os.makedirs(self.directory, exist_ok=True)
        self._maps: OrderedDict = OrderedDict()

    def entry(self, video: str | os.PathLike) -> str:
        """The cache file of `video` (it may not exist yet)."""
        video = os.path.realpath(os.fspath(video))
        st = os.stat(video)
        key = hashlib.sha1(f"{video}|{st.st_size}|{st.st_mtime_ns}|{self.block}".encode()).hexdigest()[:16]
        stem = os.path.splitext(os.path.basename(video))[0]
        return os.path.join(self.directory, f"{stem}-{key}.npy")

    def motion(self, video: str | os.PathLike) -> np.ndarray:
        """float32 [2, F, Hb, Wb] (memory-mapped): dx, dy of every decoded frame of `video`."""
        key = os.fspath(video)
        if key in self._maps:
            self._maps.move_to_end(key)
            return self._maps[key]
        path = self.entry(video)
        if not os.path.exists(path):
            self._store(video, path)
        self._maps[key] = np.load(path, mmap_mode="r")
        if len(self._maps) > self.OPEN_MAPS:
            self._maps.popitem(last=False)
        return self._maps[key]

    def _store(self, video, path: str) -> None:
        from mgm import codec

        # jobs=1: loader workers already read different videos on every core.
        field = codec.read_motion(video, block=self.block, jobs=1)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp.npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.stack([field.dx, field.dy]))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
