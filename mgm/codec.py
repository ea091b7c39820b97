"""Decode videos with PyAV: frames and/or the motion vectors the bitstream already carries.

One pass gives both: the decoder exports each frame's motion vectors as side data while it
reconstructs the pixels. Three things matter (measured, see DESIGN.md):
- the export flag must be set on the *stream's* codec context, not passed to `av.open`;
- frame threading makes the exported vectors differ from run to run, so we use slice threads;
- for motion-only reads, `skip_loop_filter` / `skip_idct` keep the vectors identical and skip
  part of the reconstruction (the pixels are then garbage, so never combined with `pixels=True`).
Encoding is mgm.encode's (`write_video`, re-exported here on first use).
"""

from __future__ import annotations

import gc
import os
import threading
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Sequence

import numpy as np

from mgm import gridding, heap, segments
from mgm.config import CODEC_BLOCK
from mgm.errors import VideoError
from mgm.motion import MotionField, accumulate

# AVPictureType -> the three letters users know; S/SI/SP/BI are rare and map to their kin.
_PICT_TYPES = {1: "I", 2: "P", 3: "B", 4: "P", 5: "I", 6: "P", 7: "B"}

# Codecs whose FFmpeg decoders export motion vectors (flags2 +export_mvs), by decoder name: the
# MS-MPEG-4 v3 decoder (DivX 3, OpenCV's vtest.avi) is named "msmpeg4", its codec "msmpeg4v3".
MV_CODECS = {"h264", "mpeg4", "mpeg2video", "mpeg1video", "h263", "msmpeg4v1", "msmpeg4v2", "msmpeg4",
             "msmpeg4v3", "wmv1", "wmv2", "flv1"}

REENCODE_HINT = "re-encode it to H.264, e.g. `mgm transcode VIDEO --out DIR`"

# Decoding threads of the loader's reads (clip.decode_clip, the motion cache): one. A loader runs
# one worker per core already, and an H.264 file of one slice a picture (x264's default) gives slice
# threads nothing to share, while FFmpeg's default (a thread per core) starts that many threads for
# every clip: 16 threads (a 16-core machine's default) cost +27% CPU on a 640x272 clip's 32 frames,
# +1-8% at 720p, against 1 (2026-12-04, RESULTS.md, "Data loader").
CLIP_THREADS = 1
# read_frames and read_clip decode a non-reference frame outside the clip not at all (iter_frames'
# `only`: for read_clip, the frames between the keyframe a seek lands on and the clip's first motion
# frame); off only to measure what that saves (`./run bench data --skip-rounds`).
SKIP_NONREF = True


def __getattr__(name):
    """codec.write_video is mgm.encode's, imported when first asked for: encoding loads mgm.files,
    and with it hashlib and OpenSSL (4 MB), which a read does not need."""
    if name == "write_video":
        from mgm.encode import write_video

        return write_video
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NoFramesError(VideoError):
    """Decoding from the requested position yielded no frame at all."""


class VideoWarning(UserWarning):
    """A video that can be used but is not what it claims (e.g. truncated); names the file."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    num_frames: int  # from the container header; may be 0 or approximate for some formats
    fps: float
    codec: str


class Frame:
    """One decoded frame in display order.

    index: 0-based display index; frame_type: "I", "P" or "B";
    mvs: structured array of motion-vector records (None for intra frames or when not asked for),
         a read-only view that keeps the decoded frame alive: copy it to keep many frames' records;
    rgb: uint8 [H, W, 3], converted on first access (None when pixels were not asked for), so
    callers that keep only some frames pay the colour conversion only for those.
    """

    __slots__ = ("index", "frame_type", "mvs", "width", "height", "_raw", "_rgb")

    def __init__(self, index: int, frame_type: str, mvs, width: int, height: int, raw=None):
        self.index, self.frame_type, self.mvs, self._raw, self._rgb = index, frame_type, mvs, raw, None
        self.width, self.height = width, height

    @property
    def rgb(self) -> np.ndarray | None:
        if self._rgb is None and self._raw is not None:
            self._rgb = _to_rgb(self._raw)
        return self._rgb


_local = threading.local()


def _to_rgb(frame) -> np.ndarray:
    """uint8 [H, W, 3] through one reused, single-threaded swscale context per thread.

    `frame.to_ndarray(format=...)` builds a new context with its own thread pool for every frame:
    4-15x slower on small frames (measured with the data benchmark), and a DataLoader worker
    forked while such a frame awaits garbage collection hangs joining threads it does not have.
    """
    fmt = getattr(_local, "reformatter", None)
    if fmt is None:
        from av.video.reformatter import VideoReformatter

        fmt = _local.reformatter = VideoReformatter()
    return fmt.reformat(frame, format="rgb24", threads=1).to_ndarray()


def _open(path):
    """Open a container and its first video stream, turning every failure into a one-line VideoError."""
    import av

    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoError(path, "no such file")
    if os.path.isdir(path):
        raise VideoError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "empty file (0 bytes)")
    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise VideoError(path, f"not a readable video ({_short(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(path, "contains no video stream")
    return container, container.streams.video[0]


def _short(e: Exception) -> str:
    """FFmpeg's reason without the errno and file name PyAV wraps around it."""
    return (getattr(e, "strerror", None) or str(e) or type(e).__name__).strip().lower()


def probe(path) -> VideoInfo:
    container, stream = _open(path)
    try:
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or 0
        return VideoInfo(os.fspath(path), ctx.width, ctx.height, int(stream.frames or 0),
                         float(rate), ctx.name)
    finally:
        container.close()


def require_motion_vectors(codec_name: str, path) -> None:
    if codec_name not in MV_CODECS:
        raise VideoError(path, f"its {codec_name} stream carries no motion vectors FFmpeg can export; "
                               f"{REENCODE_HINT}")


def _configure(stream, *, motion: bool, fast: bool, path: str, threads: int | None = None) -> None:
    """Export flags, skips and threads of `stream`'s decoder (before its first packet). threads: the
    decoder's slice threads (None: FFmpeg's choice, one per core)."""
    ctx = stream.codec_context
    if motion:
        require_motion_vectors(ctx.name, path)
    # Slice threads only: frame threads make the exported vectors nondeterministic.
    stream.thread_type = "SLICE"
    if threads is not None:
        ctx.thread_count = threads
    opts = {}
    if motion:
        opts["flags2"] = "+export_mvs"
    if fast:
        opts.update(skip_loop_filter="all", skip_idct="all")
    if opts:
        ctx.options = opts


def _open_for(path: str, *, motion: bool, fast: bool, threads: int | None = None):
    """_open, then _configure (closing the file if the codec is refused)."""
    container, stream = _open(path)
    try:
        _configure(stream, motion=motion, fast=fast, path=path, threads=threads)
    except BaseException:
        container.close()
        raise
    return container, stream


def _indexer(stream, base_pts):
    """pts -> display index (None for None) of `stream`'s frames, for reads after a seek:
    round((pts - base_pts) * time_base * average_rate), halves to even, as exact integer arithmetic.
    What Fraction arithmetic gives, without building Fractions for every frame (0.3 vs 4.5 us a
    frame on bikes.mp4, 2026-12-04: ~0.2 ms of a 16 x stride-2 training clip's read)."""
    tb, rate = stream.time_base, stream.average_rate
    num, den = tb.numerator * rate.numerator, tb.denominator * rate.denominator

    def index(pts):
        if pts is None:
            return None
        q, r = divmod((pts - base_pts) * num, den)
        return q + (2 * r > den or (2 * r == den and q % 2 == 1))

    return index


def iter_frames(path, *, pixels: bool = True, motion: bool = True, start: int = 0,
                stop: int | None = None, fast: bool = False, threads: int | None = None,
                only: set | None = None) -> Iterator[Frame]:
    """Decode frames `start <= index < stop` in display order, with pixels and/or motion vectors.

    `fast=True` (motion only) skips the loop filter and the inverse DCT: identical vectors, less work.
    For `start > 0` it seeks to the keyframe before `start` and decodes forward, using timestamps
    to recover display indices; if the container has no usable timestamps it decodes from the start.
    threads: the decoder's slice threads (None: one per core; the same frames and vectors either way).
    only: display indices the caller needs: on the seek path (start > 0, timestamps) a non-reference
    frame outside them is not decoded at all (FFmpeg's skip_frame, set per packet; no other frame
    depends on it, so the rest decode to the same pixels and vectors), and is not yielded.
    """
    if fast and pixels:
        raise ValueError("fast=True corrupts pixels; use it only with pixels=False")
    path = os.fspath(path)
    container, stream = _open_for(path, motion=motion, fast=fast, threads=threads)
    try:
        yield from _decoded(container, stream, path, pixels, motion, start, stop, only)
    finally:
        container.close()


def _decoded(container, stream, path, pixels, motion, start, stop, only=None) -> Iterator[Frame]:
    """iter_frames on an open, configured container (read_motion opens it once for everything)."""
    import av

    base_pts = stream.start_time if stream.start_time is not None else 0
    by_pts = start > 0 and stream.average_rate and stream.time_base
    index_of = _indexer(stream, base_pts) if by_pts else None
    if by_pts:
        target = base_pts + int(Fraction(start) / Fraction(stream.average_rate) / stream.time_base)
        try:
            container.seek(target, backward=True, any_frame=False, stream=stream)
        except av.FFmpegError:
            container.seek(0)
            by_pts = False
    count = 0
    skipping = only is not None and by_pts  # skips need each packet's display index
    try:
        for frame in (_decode_only(container, stream, index_of, only) if skipping else container.decode(stream)):
            index = index_of(frame.pts) if by_pts else count
            if by_pts and count == 0 and (index is None or index > start):
                # No timestamps, or the seek overshot: count frames from the very start.
                yield from _from_the_start(container, stream, pixels, motion, start, stop)
                return
            count += 1
            if index < start:
                continue
            if stop is not None and index >= stop:
                break
            yield _wrap(frame, index, pixels, motion)
        if by_pts and count == 0:
            # Nothing decoded after the seek: MPEG-TS seeks land on the packet at the time asked,
            # keyframe or not, and past the last keyframe nothing decodes (a clip over the tail).
            yield from _from_the_start(container, stream, pixels, motion, start, stop)
    except av.FFmpegError as e:
        if count == 0:
            raise VideoError(path, f"cannot decode ({_short(e)})") from None
        # A truncated tail: keep what decoded, as players do.


def _decode_only(container, stream, index_of, wanted: set):
    """container.decode(stream), with every packet whose frame is not `wanted` decoded only if it is
    a reference frame (skip_frame NONREF for that packet; a packet without a timestamp, the final
    flush included, is decoded as usual). At stride 4 over x264's default B-frames this skips ~40%
    of the frames of a clip's read (docs/RESULTS.md, "Data loader")."""
    ctx = stream.codec_context
    for packet in container.demux(stream):
        i = index_of(packet.pts)
        ctx.skip_frame = "DEFAULT" if i is None or i in wanted else "NONREF"
        yield from packet.decode()


def _from_the_start(container, stream, pixels, motion, start, stop):
    """The frames start <= index < stop, decoded from the first and counted (no seek, no skips)."""
    stream.codec_context.skip_frame = "DEFAULT"
    container.seek(0)
    yield from _count_from_start(container, stream, pixels, motion, start, stop)


def _count_from_start(container, stream, pixels, motion, start, stop):
    for index, frame in enumerate(container.decode(stream)):
        if stop is not None and index >= stop:
            break
        if index >= start:
            yield _wrap(frame, index, pixels, motion)


_MV_DTYPE = None


def _records(sd) -> np.ndarray:
    """The motion-vector records of one frame: a read-only view of the frame's side data.

    Not copied: at 720p a copy (~280 kB of fresh memory per frame) cost 0.16 ms, 15% of decoding
    the frame. The view keeps its frame alive, so code that keeps many frames' `mvs` should copy
    them. PyAV's `to_ndarray` rebuilds its structured dtype on every new frame (~0.1 ms); the dtype
    is taken from it once and reused with `np.frombuffer`."""
    global _MV_DTYPE
    if _MV_DTYPE is None:
        _MV_DTYPE = sd.to_ndarray().dtype
    return np.frombuffer(sd, dtype=_MV_DTYPE)


def _wrap(frame, index: int, pixels: bool, motion: bool) -> Frame:
    mvs = None
    if motion:
        sd = frame.side_data.get("MOTION_VECTORS")
        if sd is not None:
            mvs = _records(sd)
    return Frame(index, _PICT_TYPES.get(int(frame.pict_type), "P"), mvs, frame.width, frame.height,
                 frame if pixels else None)


def _motion_field(frames, block: int, path, expected: int = 0, **batches) -> MotionField:
    """Grids of every frame. frames: iterable of Frame -> MotionField [F, Hb, Wb]; `expected`:
    the frame count to allocate for; `batches`: grid_frames' batch sizes."""
    rows = gridding.GridRows(expected, block)
    n = gridding.grid_frames(frames, rows, **batches)
    if n == 0:
        raise NoFramesError(path, "no frames could be decoded")
    return rows.field(n)


def read_motion(path, *, block: int = CODEC_BLOCK, start: int = 0, stop: int | None = None,
                progress: bool = False, jobs: int | None = None, threads: int | None = None) -> MotionField:
    """Dense per-block motion of every decoded frame in [start, stop), by the motion-only fast path.

    Returns a MotionField: dx, dy float32 [F, ceil(H/block), ceil(W/block)], frame types [F].
    jobs: decoders run at once on segments of whole GOPs when reading a whole video (None: one
    per CPU; 1: serial). The result is identical to a serial read (see `_read_segments`).
    The file is opened once for the header, the segment plan and the first (or only) decoder.
    threads: each decoder's slice threads (None: one per core).
    """
    path = os.fspath(path)
    container, stream = _open_for(path, motion=True, fast=True, threads=threads)  # VP9 fails before the progress bar
    bar = None
    try:
        promised = int(stream.frames or 0)
        # rows allocated up front: the header's count, up to 2^15 frames (a damaged header may claim millions)
        expected = min((min(promised, stop) if stop is not None else promised) - start, 1 << 15)
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=max(expected, 0) or None, unit="frame", leave=False, desc=os.path.basename(path))
        jobs = _available_cpus() if jobs is None else jobs
        whole = start == 0 and stop is None
        with gridding.young_heap():
            field = None
            if whole and jobs > 1:
                stream = None  # held here, the first segment's decoder would outlive its segment
                field = _read_segments(path, container, block, jobs, bar, threads)
                if field is None:  # the scan read the file to its end (and a failed segment closed it): start afresh
                    container.close()
                    container, stream = _open_for(path, motion=True, fast=True, threads=threads)
            if field is None:
                frames = _decoded(container, stream, path, False, True, start, stop)
                frames = gridding.ahead(frames) if jobs > 1 else frames
                try:
                    field = _motion_field(_ticking(frames, bar), block, path, expected)
                finally:
                    frames.close()
        if whole:
            _warn_if_truncated(path, field.num_frames, promised)
        return field
    finally:
        container.close()
        if bar is not None:
            bar.close()


def _warn_if_truncated(path, decoded: int, promised: int) -> None:
    """A file cut short (an interrupted copy or download) still decodes up to the cut, silently;
    its header still lists every frame. Say so: the motion covers only the decoded part."""
    if 0 < decoded < promised:
        warnings.warn(VideoWarning(f"{os.fspath(path)}: truncated? decoded {decoded} of the {promised} "
                                   f"frames its header lists; the result covers those {decoded}"),
                      stacklevel=3)


def _available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _ticking(frames, bar):
    for f in frames:
        if bar is not None:
            bar.update(1)
        yield f
        del f  # not held while the next frame decodes (see segments.decode)


def _read_segments(path, container, block: int, jobs: int, bar, threads: int | None = None) -> MotionField | None:
    """`read_motion` of a whole video on up to `jobs` threads, one segment of whole GOPs each.

    Threads suffice: PyAV releases the GIL while it demuxes and decodes, which is most of the
    work; only the per-frame Python and the gridding (~7% at 720p) contend. Segments start at clean
    cuts only (IDR keyframes without open-GOP leading frames, see mgm.segments), where a fresh
    decoder yields exactly the frames and vectors of a decode from the start. `container` (open,
    configured, its stream held by no caller) is scanned, then decodes the first segment on this
    thread; the others open their own. Each segment's decoder is freed, and malloc's free pages
    handed back, as soon as its own segment is decoded: a decoder holds ~13 MB at 720p (reference
    pictures, buffer pools), and segments end far apart on uneven splits (3 GOPs on 2 cores: 200
    and 400 frames; peak RSS of `mgm motion` 97 -> 92.5 MiB). Returns None, for a serial read,
    when the scan found no usable timestamps or a segment did not decode exactly the planned frames.
    """
    from concurrent.futures import ThreadPoolExecutor

    stream = container.streams.video[0]
    packets = segments.scan(container, stream)
    if packets is None:
        return None
    plan = segments.plan(packets, jobs)
    width, height = stream.codec_context.width, stream.codec_context.height
    del stream  # held here, the first segment's decoder would outlive its segment
    rows = gridding.GridRows(len(packets.pts), block, width, height)
    # With cores to spare (a lone decoder), each decoder decodes ahead of its gridding: the gridding
    # then takes a core the decoder does not use, and slice threads no longer wait for it between
    # frames. Segments that fill the cores gain nothing from it; it would only hold more frames
    # (+6 MB at 720p).
    spare = len(plan) < jobs

    def read(container, seg) -> bool:
        ok = _read_segment(path, container, seg, rows, bar, spare, threads)
        heap.trim()  # the segment's decoder is freed by now
        return ok

    with ThreadPoolExecutor(max(len(plan) - 1, 1)) as pool:
        others = [pool.submit(read, None, seg) for seg in plan[1:]]
        ok = read(container, plan[0])
        ok = all([ok] + [f.result() for f in others])
    if not ok:
        if bar is not None:
            bar.reset()
        return None
    return rows.field(len(packets.pts))


def _read_segment(path, container, seg, rows: gridding.GridRows, bar, spare: bool, threads: int | None = None) -> bool:
    """Decode one segment (on `container`, or on a container of its own if None) into its rows of
    `rows`, decoding ahead of the gridding if there are `spare` cores, and close the container.
    False unless it decoded exactly the planned frames (timestamps `seg.pts`, in that order)
    without a decoding error."""
    import av

    planned = seg.pts.tolist()
    done, exact = 0, True

    def frames():
        nonlocal done, exact
        for frame in segments.decode(container, stream, seg):
            exact = done < seg.count and frame.pts == planned[done]
            if not exact:
                return  # not the planned frame: give up early
            yield _wrap(frame, seg.first + done, False, True)
            done += 1
            del frame

    try:
        if container is None:
            container, stream = _open_for(path, motion=True, fast=True, threads=threads)
        else:
            stream = container.streams.video[0]
        decoded = gridding.ahead(frames()) if spare else frames()
        try:
            gridding.grid_frames(_ticking(decoded, bar), rows, seg.first)
        finally:
            decoded.close()
    except (av.FFmpegError, VideoError):
        return False
    finally:
        if container is not None:
            container.close()
    return exact and done == seg.count


def _keeping(frames, indices, kept: dict):
    """Pass `frames` through, keeping those at `indices` in `kept` (by display index) and the
    last one under "last": an index past the end repeats the last frame (short-video padding)."""
    wanted = set(np.asarray(indices).tolist())
    for f in frames:
        if f.index in wanted:
            kept[f.index] = f
        kept["last"] = f
        yield f


def _picked(kept: dict, indices) -> np.ndarray:
    """uint8 [T, H, W, 3]: the kept frames at `indices`, the last frame for indices past the end."""
    return np.stack([kept.get(i, kept["last"]).rgb for i in np.asarray(indices).tolist()])


def read_frames(path, indices: Sequence[int], *, threads: int | None = None) -> np.ndarray:
    """Pixels only (no motion-vector export): uint8 [T, H, W, 3] of display indices `indices`
    (non-decreasing; past the end repeats the last decoded frame). threads: as iter_frames'."""
    indices = np.asarray(indices, dtype=np.int64)
    start, wanted = int(indices.min()), set(indices.tolist())

    def read(only):
        kept: dict = {}
        for _ in _keeping(iter_frames(path, pixels=True, motion=False, start=start, stop=int(indices.max()) + 1,
                                      threads=threads, only=only), indices, kept):
            pass
        return kept

    only = wanted if SKIP_NONREF and start > 0 else None  # skips happen on the seek path only
    kept = read(only)
    if only is not None and not wanted <= kept.keys():
        # Padding past the end: the last frame must be the video's own, which a skip may have passed
        # over (a non-reference frame nobody asked for). Rare (a clip over a video's tail): read all.
        kept = read(None)
    if not kept:
        raise VideoError(path, f"no frame decoded at or after frame {int(indices.min())}")
    return _picked(kept, indices)


def read_clip(path, indices: Sequence[int], *, stride: int | None = None, block: int = CODEC_BLOCK,
              threads: int | None = None):
    """One decode pass: the sampled frames' pixels and each one's motion over the preceding `stride`.

    indices: [T] display indices, non-decreasing; an index past the end repeats the last frame (the
    padding short videos need). stride defaults to the first gap between indices (1 if T == 1).
    Returns frames uint8 [T, H, W, 3], dx, dy float32 [T, Hb, Wb] (motion.accumulate over the
    decoded frames i - stride + 1 .. i), and the MotionField of every decoded frame.
    threads: as iter_frames'.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if stride is None:
        stride = int(indices[1] - indices[0]) if len(indices) > 1 else 1
    stride = max(int(stride), 1)
    first = max(int(indices.min()) - stride + 1, 0)
    last = int(indices.max())
    kept: dict = {}
    # Every frame from `first` on gives motion or pixels; before it (back to the keyframe the seek
    # lands on) only references matter: a clip over a video's tail still decodes its true last frame.
    only = set(range(first, last + 1)) if SKIP_NONREF else None
    frames = _keeping(iter_frames(path, pixels=True, motion=True, start=first, stop=last + 1, threads=threads,
                                  only=only), indices, kept)
    with gridding.young_heap():
        try:
            try:
                field = _motion_field(frames, block, path, last + 1 - first,
                                      records=gridding.CLIP_RECORDS, most=gridding.CLIP_FRAMES)
            except NoFramesError:  # only this one means "the clip starts past the end"; others keep their reason
                if first == 0:
                    raise
                raise VideoError(path, f"has fewer than {first + 1} frames; the clip needs frames "
                                       f"{first}..{last}") from None
            end = first + field.num_frames - 1  # last decoded display index
            if indices[0] > end:
                raise VideoError(path, f"has {end + 1} frames; the clip starts at frame {indices[0]}")
            clamped = np.minimum(indices, end)
            video = _picked(kept, clamped)
        finally:
            # The kept frames are cycles (a PyAV frame whose side data was read and its side-data
            # container): collected here, where the collection visits only this read's objects.
            # Left to the process, they outlived the read in the oldest generation until its next
            # full collection: ~5 MB a 640x272 clip, growing without bound in a loader worker, and
            # every clip's buffers in fresh pages (a page fault per 4 kB, or a zeroed 2 MB huge page).
            kept.clear()
            gc.collect()
    dx, dy = accumulate(field.dx, field.dy, clamped, stride, offset=first)
    return video, dx, dy, field
