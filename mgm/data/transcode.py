"""Re-encode videos to H.264 with fixed, recorded settings, so their motion vectors can be read.

SSv2 ships as VP9 (no exportable motion vectors) and x264's defaults (B-frames, 3 references) mix
1-3 frame gaps into one vector. The defaults here give exact per-frame displacements: one
reference frame, no B-frames, a fixed GOP (keyint = min-keyint, no scene-cut keyframes),
yuv420p, the source frame rate (frames are re-timed at a constant rate; none dropped or added),
the source height or `height` (width scaled to keep the aspect ratio, both even). Audio is dropped.

Each output is written to a temporary name and renamed, so a finished file is never partial and
a re-run skips it (resume). Every file gets one line in a JSON-lines manifest: source, output,
settings, frame count, status ("ok", "exists" or "error: reason").
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from mgm.errors import MGMError, VideoError

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


def transcode_file(src, dst, settings: Settings = Settings()) -> int:
    """Re-encode `src` to H.264 at `dst` (temp file + rename). Returns the number of frames written."""
    import av
    import numpy as np  # noqa: F401  (PyAV's frame conversion needs it loaded)

    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.isfile(src):
        raise VideoError(src, "no such file")
    tmp = f"{dst}.part.mp4"
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    n = 0
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
        with av.open(tmp, "w") as out:
            ostream = out.add_stream("libx264", rate=rate)
            ostream.width, ostream.height, ostream.pix_fmt = width, height, "yuv420p"
            ostream.codec_context.gop_size = settings.gop
            ostream.options = settings.options()
            try:
                for frame in inp.decode(istream):
                    img = frame.reformat(width=width, height=height, format="yuv420p")
                    img.pts, img.time_base = n, time_base  # constant-rate re-timing
                    for packet in ostream.encode(img):
                        out.mux(packet)
                    n += 1
            except av.FFmpegError as e:
                if n == 0:
                    raise VideoError(src, f"cannot decode ({e})") from None
                # a truncated tail: keep what decoded, as players do
            for packet in ostream.encode():
                out.mux(packet)
        if n == 0:
            raise VideoError(src, "no frames decoded")
        os.replace(tmp, dst)
    finally:
        inp.close()
        if os.path.exists(tmp):
            os.remove(tmp)
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


def _job(args):
    src, dst, settings = args
    record = {"source": src, "output": dst, "settings": asdict(settings)}
    if os.path.exists(dst):
        return {**record, "frames": None, "status": "exists"}
    try:
        return {**record, "frames": transcode_file(src, dst, settings), "status": "ok"}
    except VideoError as e:
        return {**record, "frames": None, "status": f"error: {e.reason}"}


def transcode_all(inputs, out, settings: Settings = Settings(), jobs: int = 1, shard=(0, 1),
                  progress: bool = True) -> dict:
    """Transcode this shard's files in parallel; append one manifest line per file.

    Returns {"manifest": path, "ok": n, "exists": n, "errors": [records]}.
    """
    from tqdm import tqdm

    i, n = shard
    pairs = plan(inputs, out)[i::n]
    Path(out).mkdir(parents=True, exist_ok=True)
    manifest = Path(out) / ("manifest.jsonl" if n == 1 else f"manifest-{i}of{n}.jsonl")
    summary = {"manifest": str(manifest), "ok": 0, "exists": 0, "errors": []}
    work = [(s, d, settings) for s, d in pairs]
    if jobs > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(jobs)  # fresh processes: no inherited FFmpeg threads
        results = pool.imap_unordered(_job, work)
    else:
        pool, results = None, map(_job, work)
    try:
        with open(manifest, "a") as f:
            for rec in tqdm(results, total=len(work), unit="video", desc="transcode", disable=not progress):
                f.write(json.dumps(rec) + "\n")
                f.flush()
                if rec["status"].startswith("error"):
                    summary["errors"].append(rec)
                else:
                    summary[rec["status"]] += 1
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return summary
