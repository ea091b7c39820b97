"""Loader workers keep the memory a clip frees for the next clip, instead of handing it back.

Every clip allocates and frees the same few large blocks: the decoded frames (8.4 MB for 16 frames
of 640x272, 44 MB at 720p), the float clip, the decoder's buffers. glibc's malloc serves a block
above its mmap threshold (dynamic: 128 kB, raised up to 32 MiB by the blocks freed) with a fresh
mapping and unmaps it when freed, and returns the heap's free top to the kernel past its trim
threshold, so the next clip page-faults (and zeroes) the same memory again. With both thresholds
fixed above a clip's blocks, a worker reuses its heap: +10-15% clips per CPU-second for tube and for
MGM with the motion cache, +0-6% for MGM without it (DataLoader, 2 workers, 16x224^2 clips of 640x272
and 1280x720 H.264, 2026-12-04, docs/RESULTS.md), for 5-8 MiB more resident memory per worker at
640x272 and 60-90 MiB at 720p. Linux with glibc only; elsewhere nothing changes.
"""

from __future__ import annotations

import sys

MMAP_THRESHOLD_MIB, TRIM_THRESHOLD_MIB = 64, 128
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def reuse_freed_memory(worker_id: int | None = None) -> bool:
    """Fix this process's malloc thresholds (above) so freed clip-sized blocks stay in its heap;
    a DataLoader `worker_init_fn`. True if set (glibc), False where there is no mallopt. glibc before
    2.35 refuses an mmap threshold over 32 MiB: then 32 MiB (720p frames are mapped afresh, smaller
    ones reused)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # None: not glibc (musl has none)
    if mallopt is None:
        return False
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MIB << 20):
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_MIB << 20))
