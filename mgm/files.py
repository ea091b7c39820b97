"""Atomic output files and one-line OS errors: the one way mgm writes anything a user keeps.

Every output (checkpoints, motion, masks, lists, manifests, features, pictures, caches) is written
to a hidden temporary file in the destination's own directory and renamed over the destination
(`os.replace`), so a reader -- or a crash, a `kill -9`, a full disk -- sees the old file or the
new one, never half of one; on any failure the temporary file is removed. A missing output
directory is created (with its parents) everywhere. An OSError (disk full, read-only file system,
permission denied) becomes an MGMError that names the file and the reason in one line.

    with atomic_write("out/motion.npz") as f:      # a binary file object
        np.savez(f, dx=dx, dy=dy)
    with atomic_path("out/clip.mp4") as tmp:       # a path, for writers that open files by name
        av.open(tmp, "w")...                       # (the temp name keeps the extension)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

from mgm.errors import MGMError

TEMP_MARK = ".tmp-"  # every temporary name holds it: `stale_temps` finds leftovers by it


def temp_name(path: str | os.PathLike) -> Path:
    """A hidden, unique name beside `path` with the same extension (writers that pick a format
    by extension -- FFmpeg, PIL, numpy -- see the real one): dir/.name.tmp-PID-HEX.ext"""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(3)}{path.suffix}")


def os_error(path, e: OSError, doing: str = "cannot write") -> MGMError:
    """An OSError as a one-line MGMError naming `path`: "out/x.npz: cannot write (no space left on device)"."""
    reason = (e.strerror or str(e) or type(e).__name__).strip().lower()
    return MGMError(f"{os.fspath(path)}: {doing} ({reason})")


def make_parent(path: str | os.PathLike) -> None:
    """Create the directory `path` will live in (the one behaviour for a missing output directory)."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(parent, e, "cannot create the output folder") from None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)  # makes the rename itself durable
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an exception it is renamed
    over `path`, otherwise removed. durable: fsync the file and its directory (checkpoints), so
    the new file survives a power loss too. OSError -> MGMError naming `path`."""
    path = Path(path)
    make_parent(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise os_error(path, e) from None
    except Exception as e:
        # Some writers raise their own error while an OSError is handled: torch.save's zip writer
        # answers a full disk with "RuntimeError: unexpected pos ...". The OSError is the reason.
        if isinstance(e.__context__, OSError) and not isinstance(e, MGMError):
            raise os_error(path, e.__context__) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()  # gone already after a successful rename
    if durable:
        _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, durable: bool = False, **open_kw):
    """Yield an open file (mode "wb" or "w") that becomes `path` when the block ends without an
    exception; see atomic_path."""
    with atomic_path(path, durable=durable) as tmp:
        with open(tmp, mode, **open_kw) as f:
            yield f
            f.flush()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Path.write_text, atomic and with one-line errors."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line (logs, manifests): one short write, so concurrent appenders interleave whole
    lines. OSError -> MGMError naming `path`."""
    try:
        make_parent(path)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")
    except OSError as e:
        raise os_error(path, e) from None


def stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Temporary files left in `directory` by writers that were killed (kill -9, power loss)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(".") and TEMP_MARK in p.name)
