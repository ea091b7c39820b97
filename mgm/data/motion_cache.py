"""Per-video block motion read once and kept on disk, so later epochs decode pixels only.

Pre-training visits every video hundreds of times; its motion vectors never change. The first
visit reads the whole video's motion by the motion-only fast path (`codec.read_motion`) and stores
it as one .npy file; every later visit decodes exactly what a `tube` loader decodes (the sampled
frames' pixels, no motion-vector export) and memory-maps the few rows of motion it needs. The
result is the one-pass read's (`codec.read_clip`): same vectors (stored in float16, see below),
same accumulation.

Files: <dir>/<video stem>-<key>.npy, float16 [2, F, Hb, Wb] (dx, dy per decoded frame, px/frame).
Half the size of float32 (which took 2.45x the source video's size at 720p); entries written
before 2026-12-04 are float32 and are read as they are. Precision: float16 keeps 11 significant
bits, so a stored value is off by at most 2^-11 of itself (0.008 px at 16-32 px/frame); a block
covered by one (quarter-pel) vector is exact below 512 px/frame. MGM masks made from it equal
those made from float32 in all 3,600 real clips checked (docs/RESULTS.md, data loader). The key
hashes the video's real path, size, modification time and the block size, so an edited or
replaced video gets a new entry. Concurrent workers may compute the same entry: each writes a
private temporary file and renames it, so readers see a whole file or none. A damaged entry (a
full disk, a foreign file) is read again from the video, with a warning.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import OrderedDict

import numpy as np

from mgm.config import CODEC_BLOCK
from mgm.files import atomic_write


class MotionCache:
    # Memory maps kept open per process: re-opening one (stat, hash, header parse, mmap) cost
    # ~0.5 ms, a third of what MGM adds to a tube item. Bounded: each holds a file descriptor. A video
    # replaced while a process runs keeps its old map until evicted (entry() sees the change).
    OPEN_MAPS = 64

    def __init__(self, directory: str | os.PathLike, block: int = CODEC_BLOCK):
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
        """float16 (float32 for older entries) [2, F, Hb, Wb], memory-mapped: dx, dy of every
        decoded frame of `video`."""
        key = os.fspath(video)
        if key in self._maps:
            self._maps.move_to_end(key)
            return self._maps[key]
        path = self.entry(video)
        if not os.path.exists(path):
            self._store(video, path)
        try:
            self._maps[key] = _open_entry(path)
        except ValueError as e:  # damaged (a disk that filled, a foreign file): it is only a cache
            warnings.warn(f"{path}: damaged motion-cache entry ({e}); read {os.fspath(video)} again")
            self._store(video, path)
            self._maps[key] = _open_entry(path)
        if len(self._maps) > self.OPEN_MAPS:
            self._maps.popitem(last=False)
        return self._maps[key]

    def _store(self, video, path: str) -> None:
        from mgm import codec

        # One decoder on one thread: loader workers already read different videos on every core.
        field = codec.read_motion(video, block=self.block, jobs=1, threads=codec.CLIP_THREADS)
        # atomic_write: a whole file or none for concurrent readers; readable by the whole team
        # (mode 0666 less the umask, where mkstemp made it 0600).
        with atomic_write(path) as f:
            np.save(f, np.stack([field.dx, field.dy]).astype(np.float16))


DTYPES = (np.float16, np.float32)  # written now, written before 2026-12-04


def _open_entry(path: str) -> np.ndarray:
    """float16 or float32 [2, F, Hb, Wb] memory map of a cache file; ValueError if it is not one."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(str(e).splitlines()[0][:120] if str(e) else type(e).__name__) from None
    if arr.dtype not in DTYPES or arr.ndim != 4 or arr.shape[0] != 2:
        raise ValueError(f"holds {arr.dtype} {arr.shape}, not float16 [2, F, H, W]")
    return arr
