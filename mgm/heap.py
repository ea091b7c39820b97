"""glibc's malloc, told what to do with freed memory: keep it for the next clip, or hand it back.

`reuse_freed_memory`: loader workers keep the memory a clip frees for the next clip.

Every clip allocates and frees the same few large blocks: the decoded frames (8.4 MB for 16 frames
of 640x272, 44 MB at 720p), the float clip, the decoder's buffers. glibc's malloc serves a block
above its mmap threshold (dynamic: 128 kB, raised up to 32 MiB by the blocks freed) with a fresh
mapping and unmaps it when freed, and returns the heap's free top to the kernel past its trim
threshold, so the next clip page-faults (and zeroes) the same memory again. With both thresholds
fixed above a clip's blocks, a worker reuses its heap: +10-15% clips per CPU-second for tube and for
MGM with the motion cache, +0-6% for MGM without it (DataLoader, 2 workers, 16x224^2 clips of 640x272
and 1280x720 H.264, 2026-12-04, docs/RESULTS.md), for 5-8 MiB more resident memory per worker at
640x272 and 60-90 MiB at 720p. Linux with glibc only; elsewhere nothing changes.

`trim`: a process that is done with a large, short-lived allocation (a segment decoder's buffers in
`codec.read_motion`) hands malloc's free pages back.
"""

from __future__ import annotations

import sys

MMAP_THRESHOLD_MIB, TRIM_THRESHOLD_MIB = 64, 128
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def _glibc(name: str):
    """glibc's function `name`, or None where there is none (not Linux, or musl)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # already loaded by numpy

    return getattr(ctypes.CDLL(None), name, None)


def reuse_freed_memory(worker_id: int | None = None) -> bool:
    """Fix this process's malloc thresholds (above) so freed clip-sized blocks stay in its heap;
    a DataLoader `worker_init_fn`. True if set (glibc), False where there is no mallopt. glibc before
    2.35 refuses an mmap threshold over 32 MiB: then 32 MiB (720p frames are mapped afresh, smaller
    ones reused)."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MIB << 20):
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_MIB << 20))


def trim() -> None:
    """Hand the free pages of malloc's heaps back to the OS (glibc's malloc_trim; elsewhere nothing).
    A closed decoder's buffers go back to the malloc arena of the thread that decoded, and glibc
    keeps them there: with no more decoding on that thread, ~11 MB at 720p (measured) would count
    in the process's memory until its end."""
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)
