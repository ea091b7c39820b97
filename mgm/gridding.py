"""Grid decoded frames' motion vectors as they come: in place, in small batches, freeing each frame.

What `codec.read_motion` and `codec.read_clip` stream their frames through. Three things keep a
long 720p read at the memory of a few frames (measured 2026-12-04, 1280x720 x 600, two segment
decoders: 637 MiB peak before, 99 MiB after):
- `GridRows`: one preallocated result that every batch (and every parallel segment) writes its
  own rows of; no per-batch parts concatenated at the end;
- `grid_frames`: records are views into their PyAV frame, so they are gridded in batches of a
  few thousand and the batch's frames freed at once, by the cyclic GC (PyAV's frame and its
  side-data container reference each other, ~1.6 MB a 720p frame);
- `young_heap`: makes that per-batch `gc.collect()` visit only what the read created.
`ahead` lets a decoder run ahead of the gridding on a thread of its own.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import threading
from dataclasses import dataclass

import numpy as np

from mgm.motion import MotionField, grid_shape, mvs_to_grids

# Records gridded per mvs_to_grids call: enough that numpy's per-call overhead stays small on
# small frames (16 frames of 320x240), and one frame at a time from 720p (~4,500 records a frame),
# where gridding frames together saves nothing and each frame held costs ~2 MB.
BATCH_RECORDS, BATCH_FRAMES = 4096, 16
# A training clip's read (codec.read_clip) is a few dozen frames, decoded per clip by the loader,
# where the per-call overhead is what MGM costs over tube: a 16 x stride-2 clip of 640x272 bikes.mp4
# (~970 records a frame, up to ~1,400) is gridded in 1-2 calls instead of 6-8, in half the time
# (1.2 vs 2.5 ms a clip, 2026-12-04); at 720p at most ~7 frames (~10 MB) are held.
CLIP_RECORDS, CLIP_FRAMES = 32768, 64


class GridRows:
    """The per-frame results of a read, written in place: dx, dy float32 and known bool
    [capacity, Hb, Wb], frame types <U1 [capacity]. Preallocated to the frames expected (grown by
    doubling past that), so that a read holds one copy of its result and parallel segments write
    their own rows of it; allocated at the first frame unless the frame size is given; `field(n)`
    is the first n rows, no copy."""

    def __init__(self, capacity: int, block: int, width: int | None = None, height: int | None = None):
        self.capacity, self.block, self.width, self.height = max(capacity, 1), block, width, height
        self.dx = self.dy = self.known = self.types = None
        if width is not None:
            self._allocate(width, height)

    def _allocate(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        shape = (self.capacity, *grid_shape(width, height, self.block))
        self.dx, self.dy = np.empty(shape, np.float32), np.empty(shape, np.float32)
        self.known, self.types = np.empty(shape, bool), np.empty(self.capacity, "<U1")

    def put(self, row: int, mvs: list, types: list, width: int, height: int) -> None:
        """Grid the records of frames row, row + 1, ... (None: no vectors) into their rows."""
        if self.dx is None:
            self._allocate(width, height)
        end = row + len(mvs)
        while end > len(self.types):  # a serial read past the frames expected (never in parallel)
            self._grow()
        self.dx[row:end], self.dy[row:end], self.known[row:end] = mvs_to_grids(
            mvs, self.width, self.height, self.block)
        self.types[row:end] = types

    def _grow(self) -> None:
        for k in ("dx", "dy", "known", "types"):
            old = getattr(self, k)
            new = np.empty((2 * len(old), *old.shape[1:]), old.dtype)
            new[:len(old)] = old
            setattr(self, k, new)

    def field(self, n: int) -> MotionField:
        return MotionField(self.dx[:n], self.dy[:n], self.known[:n], self.types[:n],
                           self.width, self.height, self.block)


def grid_frames(frames, rows: GridRows, first: int = 0, *, records: int = BATCH_RECORDS,
                most: int = BATCH_FRAMES) -> int:
    """Grid `frames` (codec.Frame: mvs, frame_type, width, height; display order) into rows
    first, first + 1, ..., in batches of up to `records` records or `most` frames; returns their
    count. Run it inside `young_heap()`."""
    mvs, types, size, n, f = [], [], 0, first, None
    for f in frames:
        mvs.append(f.mvs)
        types.append(f.frame_type)
        size += 0 if f.mvs is None else len(f.mvs)
        if size >= records or len(mvs) == most:
            rows.put(n, mvs, types, f.width, f.height)
            n += len(mvs)
            mvs, types, size, f = [], [], 0, None
            gc.collect()
    if mvs:
        rows.put(n, mvs, types, f.width, f.height)
        n += len(mvs)
    mvs = f = None
    gc.collect()  # the last batch's frames: a read leaves none behind
    return n - first


_frozen_by_reads = 0
_freeze_lock = threading.Lock()
# The most the permanent generation holds when nobody froze the heap: what it held when this module
# was imported. CPython 3.12 keeps its immortal objects there (its static code constants: 375 tuples
# on 3.12.1), from the start and again after every full collection, even one after gc.unfreeze();
# 3.11 and 3.13 keep nothing there. More than that means the process froze its heap itself.
_unfrozen_most = gc.get_freeze_count()


@contextlib.contextmanager
def young_heap():
    """While decoding, make a full `gc.collect()` visit only the objects made since: everything
    older is moved out of the collector's sight (`gc.freeze`) and back at the end (the last of
    concurrent reads unfreezes). A young-generation collection alone does not do: a frame alive in
    another thread (or alive at an automatic collection) is promoted and its cycle then waits for a
    full collection, which costs as much as the process holds (~3 ms after importing numpy and av,
    per batch). A process that froze its heap itself keeps its state (its collections stay cheap).
    Concurrent reads (threads) share the first one's young heap: freezing again as another read
    starts would hide the earlier reads' frames from their own collections, to wait in the oldest
    generation for the process's next full collection (~5 MB a 640x272 clip). "Froze its heap
    itself": more frozen than when this module was imported; on CPython 3.12 every process has
    immortal objects there, and taking those for a process's own freeze made every collection a
    full one (3.12: a 720p read_clip 3.2x slower in a process that imported torch, read_motion 2x)."""
    global _frozen_by_reads
    with _freeze_lock:
        ours = _frozen_by_reads > 0 or gc.get_freeze_count() <= _unfrozen_most
        if ours:
            if _frozen_by_reads == 0:
                gc.freeze()
            _frozen_by_reads += 1
    try:
        yield
    finally:
        if ours:
            with _freeze_lock:
                _frozen_by_reads -= 1
                if _frozen_by_reads == 0:
                    gc.unfreeze()


def ahead(frames, depth: int = 2):
    """Yield from `frames` (an iterator that decodes), advanced up to `depth` frames ahead by a
    thread of its own: the decoder keeps working while the caller grids. A decoder returns to
    Python between frames, so otherwise its slice threads (a 2-slice video: both cores) wait for
    the gridding. An error of the iterator is raised here, in its place; closing this generator
    stops and joins the thread (before the caller closes the file it decodes)."""
    q, stop, end = queue.Queue(depth), threading.Event(), object()

    def produce():
        try:
            for f in frames:
                q.put(f)
                del f  # the frame belongs to the caller now; its cycle is freed by their collection
                if stop.is_set():
                    return
            q.put(end)
        except BaseException as e:  # noqa: BLE001 -- handed to the caller, who raises it
            q.put(_Failed(e))

    thread = threading.Thread(target=produce, name="mgm-decode", daemon=True)
    thread.start()
    try:
        while (f := q.get()) is not end:
            if isinstance(f, _Failed):
                raise f.error
            yield f
            del f
    finally:  # also when the caller stops early
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.01)
            except queue.Empty:
                pass


@dataclass
class _Failed:
    error: BaseException
