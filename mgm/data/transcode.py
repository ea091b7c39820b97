"""Re-encode videos to H.264 with fixed, recorded settings, so their motion vectors can be read.

SSv2 ships as VP9 (no exportable motion vectors) and x264's defaults (B-frames, 3 references) mix
1-3 frame gaps into one vector. The defaults here give exact per-frame displacements: one
reference frame, no B-frames, a fixed GOP (keyint = min-keyint, no scene-cut keyframes),
yuv420p, the source frame rate (frames are re-timed at a constant rate; none dropped or added),
the source height or `height` (width scaled to keep the aspect ratio, both even). Audio is dropped.

Each output is written to a temporary name and renamed (mgm.files.atomic_path), so a finished file
is never partial and a re-run skips it (resume). Every file gets one line in a JSON-lines manifest:
source, output, settings, frame count, status ("ok", "exists" or "error: reason"). Files are encoded
in worker processes; a bad input is that file's error, but an output that cannot be written (a full
disk) or a worker that dies (a crash in FFmpeg, kill -9) stops the run with one line naming the
file, and no temporary file is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from mgm.errors import MGMError, VideoError
from mgm.files import TEMP_MARK, append_line, atomic_path, make_parent, stale_temps

VIDEO_EXTS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ogv")


@dataclass(frozen=True)
class Settings:
    """Encoder settings, written into the manifest with every file."""

    height: int | None = None  # None = source height
    gop: int = 32
    crf: int = 18
    preset: str = "medium"
    x264_params: str = "bframes=0:ref=1"
    threads: int = 1  # per file; parallelism comes from encoding several files at once

    def options(self) -> dict:
        params = f"{self.x264_params}:keyint={self.gop}:min-keyint={self.gop}:scenecut=0:threads={self.threads}"
        return {"x264-params": params, "crf": str(self.crf), "preset": self.preset}


def output_size(width: int, height: int, target: int | None) -> tuple[int, int]:
    """(width, height) of the output: the target height (or the source's), aspect kept, both even."""
    h = height if target is None else target
    w = width * h / height
    return max(2, int(round(w / 2)) * 2), max(2, int(round(h / 2)) * 2)


def _decoded(inp, istream, src):
    """The frames of `istream`. A decoding error after the first frame ends the stream (a truncated
    tail: keep what decoded, as players do). Only decoding is guarded here: an encoding or writing
    error (a full disk) must not pass for a truncated input."""
    import av

    n = 0
    try:
        for frame in inp.decode(istream):
            yield frame
            n += 1
    except av.FFmpegError as e:
        if n == 0:
            raise VideoError(src, f"cannot decode ({e})") from None


def transcode_file(src, dst, settings: Settings = Settings()) -> int:
    """Re-encode `src` to H.264 at `dst` (mgm.files.atomic_path: temp file + rename). Returns the
    number of frames written. A bad input -> VideoError; the output cannot be written -> MGMError."""
    import av
    import numpy as np  # noqa: F401  (PyAV's frame conversion needs it loaded)

    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.isfile(src):
        raise VideoError(src, "no such file")
    try:
        inp = av.open(src)
    except (av.FFmpegError, ValueError) as e:
        raise VideoError(src, f"not a readable video ({e})") from None
    try:
        if not inp.streams.video:
            raise VideoError(src, "contains no video stream")
        istream = inp.streams.video[0]
        istream.thread_type = "AUTO"  # pixels only: frame threading is safe and faster here
        rate = Fraction(istream.average_rate or istream.guessed_rate or 25)
        time_base = 1 / rate
        width, height = output_size(istream.codec_context.width, istream.codec_context.height, settings.height)
        n = 0
        with atomic_path(dst) as tmp:
            with av.open(str(tmp), "w") as out:
                ostream = out.add_stream("libx264", rate=rate)
                ostream.width, ostream.height, ostream.pix_fmt = width, height, "yuv420p"
                ostream.codec_context.gop_size = settings.gop
                ostream.options = settings.options()
                for frame in _decoded(inp, istream, src):
                    img = frame.reformat(width=width, height=height, format="yuv420p")
                    img.pts, img.time_base = n, time_base  # constant-rate re-timing
                    for packet in ostream.encode(img):
                        out.mux(packet)
                    n += 1
                for packet in ostream.encode():
                    out.mux(packet)
            if n == 0:
                raise VideoError(src, "no frames decoded")
    finally:
        inp.close()
    return n


def plan(inputs, out) -> list[tuple[str, str]]:
    """(source, output) pairs, sorted. A folder input is searched recursively for video files and
    its layout kept under `out`; a file input goes to out/<name>.mp4."""
    pairs = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTS:
                    pairs.append((str(f), str(Path(out) / f.relative_to(p).with_suffix(".mp4"))))
        elif p.is_file():
            pairs.append((str(p), str(Path(out) / (p.stem + ".mp4"))))
        else:
            raise MGMError(f"{inp}: no such file or folder")
    outputs = [o for _, o in pairs]
    if len(set(outputs)) != len(outputs):
        dup = next(o for o in outputs if outputs.count(o) > 1)
        raise MGMError(f"two inputs would be written to {dup}; transcode them into separate folders")
    return sorted(pairs)


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' (0 <= i < n) -> (i, n). Shard i takes the files at positions i, i + n, i + 2n, ..."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise MGMError(f"--shard must be i/n, e.g. 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise MGMError(f"--shard {text}: need 0 <= i < n")
    return i, n


def _record(src, dst, settings, status, frames=None) -> dict:
    """A manifest line."""
    return {"source": src, "output": dst, "settings": asdict(settings), "frames": frames, "status": status}


def _transcode_one(src, dst, settings) -> tuple[dict, str | None]:
    """(manifest record, fatal error or None). A bad input is the file's own error; any other
    failure -- above all an output that cannot be written (disk full, read-only, permission
    denied) -- would hit every other file too, so it stops the run."""
    try:
        return _record(src, dst, settings, "ok", transcode_file(src, dst, settings)), None
    except VideoError as e:
        return _record(src, dst, settings, f"error: {e.reason}"), None
    except MGMError as e:  # from mgm.files: "DST: cannot write (no space left on device)"
        return _record(src, dst, settings, f"error: {str(e).removeprefix(f'{dst}: ')}"), str(e)
    except Exception as e:  # e.g. an option x264 rejects: one line, not a traceback
        return _record(src, dst, settings, f"error: {e}"), f"{src}: cannot transcode ({type(e).__name__}: {e})"


def _worker_main(conn) -> None:
    """A worker process: transcode each (src, dst, settings) received and send back _transcode_one's
    answer; None or a closed pipe ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops us and removes our temp file
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            return
        conn.send(_transcode_one(*task))


class _Worker:
    """A spawned process (fresh: no inherited FFmpeg threads) that transcodes one file at a time.
    Every encode runs in one, even with --jobs 1: FFmpeg can crash (it has segfaulted writing to a
    full disk), and a crash or a kill -9 must be noticed and named, not hang the run or end it
    silently."""

    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()  # only the worker holds its end now, so ours reads EOF once it dies
        self.task = None

    def give(self, task) -> None:
        """The next (src, dst, settings), or None: no more work, exit."""
        self.task = task
        with contextlib.suppress(OSError):  # it died: `result` will say so
            self.conn.send(task)

    def result(self) -> tuple[dict, str | None]:
        """_transcode_one's answer for the current file; a worker that died gives a fatal error."""
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            pass
        self.proc.join(5)
        src, dst, settings = self.task
        code = self.proc.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if _out_of_space(dst):  # FFmpeg may crash instead of reporting a full disk: say the likely cause
            reason = f"no space left on device; the worker transcoding {src} died ({how})"
            return _record(src, dst, settings, f"error: {reason}"), f"{dst}: cannot write ({reason})"
        return (_record(src, dst, settings, f"error: worker died ({how})"),
                f"{src}: the worker transcoding it died ({how}); finished files are kept, "
                "run the same command again to resume")

    def stop(self) -> None:
        """End the process -- at once if it is busy -- and remove the temporary file it may leave."""
        if self.task is not None:
            self.proc.kill()  # mid-file when the run stops: nothing to save
        self.proc.join(5)  # an idle worker exits on the None it was given
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        if self.task is not None:  # mgm.files.temp_name puts the writer's (the worker's) pid in it
            dst = Path(self.task[1])
            for tmp in stale_temps(dst.parent):
                if tmp.name.startswith(f".{dst.name}{TEMP_MARK}{self.proc.pid}-"):
                    tmp.unlink(missing_ok=True)


def _out_of_space(path) -> bool:
    try:
        return shutil.disk_usage(Path(path).parent).free < 1 << 20
    except OSError:
        return False


def transcode_all(inputs, out, settings: Settings = Settings(), jobs: int = 1, shard=(0, 1),
                  progress: bool = True) -> dict:
    """Transcode this shard's files, `jobs` at a time in worker processes; append one manifest line
    per file. A bad input is recorded and the others go on; a failure that would hit every file
    (the output cannot be written, a worker crashed or was killed) stops the run with an MGMError
    naming the file, after ending the other workers and removing their temporary files. Finished
    outputs are kept: a re-run resumes.

    Returns {"manifest": path, "ok": n, "exists": n, "errors": [records]}.
    """
    import multiprocessing as mp
    from multiprocessing.connection import wait

    from tqdm import tqdm

    i, n = shard
    pairs = plan(inputs, out)[i::n]
    manifest = Path(out) / ("manifest.jsonl" if n == 1 else f"manifest-{i}of{n}.jsonl")
    make_parent(manifest)
    summary = {"manifest": str(manifest), "ok": 0, "exists": 0, "errors": []}

    def note(rec):
        append_line(manifest, json.dumps(rec))
        if rec["status"].startswith("error"):
            summary["errors"].append(rec)
        else:
            summary[rec["status"]] += 1
        bar.update()

    # disable=None: a bar on a terminal only; in a log or a pipe its \r updates are noise
    with tqdm(total=len(pairs), unit="video", desc="transcode", disable=None if progress else True) as bar:
        todo = []
        for s, d in pairs:
            if os.path.exists(d):
                note(_record(s, d, settings, "exists"))
            else:
                todo.append((s, d, settings))
        queue, workers, fatal = iter(todo), [], None
        try:
            ctx = mp.get_context("spawn")
            workers = [_Worker(ctx) for _ in range(min(max(1, jobs), len(todo)))]
            for w in workers:
                w.give(next(queue, None))
            while fatal is None and (busy := [w for w in workers if w.task is not None]):
                # a result, or a process that ended without one (its sentinel): noticed at once
                ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
                for w in busy:
                    if w.conn in ready or w.proc.sentinel in ready:
                        rec, fatal = w.result()
                        if fatal:
                            break
                        note(rec)
                        w.give(next(queue, None))
        finally:
            for w in workers:
                w.stop()
    if fatal:
        with contextlib.suppress(MGMError):  # recorded if the disk still takes it
            append_line(manifest, json.dumps(rec))
        raise MGMError(fatal)
    return summary
