"""mgm.gridding on hand-made records: rows written in place, batches, decoding ahead (no video)."""

import gc
import subprocess
import sys
import threading
import weakref
from types import SimpleNamespace

import numpy as np
import pytest

from mgm import gridding, motion
from mgm.errors import VideoError
from test_motion import records


def frame(*rows, kind="P"):
    return SimpleNamespace(mvs=records(*rows) if rows else None, frame_type=kind, width=48, height=32)


@pytest.mark.parametrize("batches", [{}, {"records": gridding.CLIP_RECORDS, "most": gridding.CLIP_FRAMES},
                                     {"records": 1, "most": 1}, {"records": 10**6, "most": 7}])
def test_grid_frames_writes_each_frame_gridded_alone_and_grows_past_the_expected_count(batches):
    """Whatever the batches (the default, read_clip's, one frame, 7 frames), each row is its frame
    gridded alone."""
    rng = np.random.default_rng(0)
    frames = [frame(kind="I")] + [frame(*[(-1, 16, 16, int(x), int(y), 2.0, -1.0) for x, y in
                                         rng.integers(0, 40, (int(rng.integers(1, 9)), 2))])
                                  for _ in range(40)]
    rows = gridding.GridRows(3, 16)  # a header that promised 3 frames
    with gridding.young_heap():
        assert gridding.grid_frames(iter(frames), rows, **batches) == 41
    field = rows.field(41)
    for t, f in enumerate(frames):
        dx, dy, known = motion.mvs_to_grid(f.mvs, 48, 32)
        np.testing.assert_array_equal(field.dx[t], dx)
        np.testing.assert_array_equal(field.dy[t], dy)
        np.testing.assert_array_equal(field.known[t], known)
    assert field.frame_type.tolist() == ["I"] + ["P"] * 40
    assert field.dx.shape == (41, 2, 3) and gc.get_freeze_count() <= gridding._unfrozen_most


def test_young_heap_keeps_a_heap_the_caller_froze():
    """Checked object by object (a frozen object is missing from gc.get_objects()): the count of
    frozen objects also drops when one of them dies, e.g. released by another test's thread."""
    def frozen(obj):
        return not any(o is obj for o in gc.get_objects())

    kept = [object()]  # the caller's, frozen with its heap
    gc.freeze()
    try:
        with gridding.young_heap():
            made = [object()]  # during the read
            assert frozen(kept) and not frozen(made)
        assert frozen(kept)
    finally:
        gc.unfreeze()


def test_objects_frozen_before_the_import_are_not_taken_for_the_process_freezing_its_heap():
    """CPython 3.12 keeps its immortal objects in the permanent generation (375 tuples on 3.12.1,
    put back there by every full collection): taken for a heap the process froze itself, no read
    made a young heap, and every per-batch collection was a full one (a 720p read_clip 3.2x slower
    with torch imported). Simulated on any version by a freeze before the import."""
    code = """
import gc
gc.freeze()  # what a CPython 3.12 process holds frozen from the start
from mgm import gridding
n = gc.get_freeze_count()
with gridding.young_heap():
    assert gc.get_freeze_count() > n, "no young heap"
gc.collect()
with gridding.young_heap():
    assert gc.get_freeze_count() > n, "no young heap after the first read"
gc.freeze()  # the process freezing its own heap after the import: left as it is
m = gc.get_freeze_count()
with gridding.young_heap():
    assert gc.get_freeze_count() == m
assert gc.get_freeze_count() == m
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_read_starting_during_another_leaves_the_first_reads_frames_to_its_own_collection():
    """Concurrent reads (threads) share one young heap: a second read freezing the heap again hid
    the first read's kept frames from that read's collection, and they waited in the oldest
    generation for the process's next full collection (read_clip's leak, with threads)."""
    class Frame:
        pass

    with gridding.young_heap():  # read A
        kept = Frame()
        kept.side_data = kept  # a frame whose side data was read: a reference cycle
        alive = weakref.ref(kept)
        with gridding.young_heap():  # read B starts on another thread while A holds its frames
            del kept
            gc.collect()  # A collects what it kept (read_clip's finally)
            assert alive() is None
        assert gc.get_freeze_count() > gridding._unfrozen_most  # A's reading: its heap stays frozen
    assert gc.get_freeze_count() <= gridding._unfrozen_most


def test_ahead_hands_over_items_and_errors_in_order():
    def items():
        yield 1
        yield 2
        raise VideoError("x.mp4", "broken")

    got = []
    with pytest.raises(VideoError, match="broken"):
        for x in gridding.ahead(items()):
            got.append(x)
    assert got == [1, 2]
    ahead = gridding.ahead(iter(range(1000)))
    assert next(ahead) == 0
    ahead.close()  # stops and joins its thread: nothing decodes after the file is closed
    assert not [t for t in threading.enumerate() if t.name == "mgm-decode"]
