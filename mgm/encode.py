"""Encode RGB frames to a video file with PyAV (the test fixtures, synthetic data, benchmarks).

The counterpart of mgm.codec, which decodes; its defaults give streams whose motion vectors are
exact (see `write_video`).
"""

from __future__ import annotations

import os

import numpy as np

from mgm.files import atomic_path


def write_video(path, frames, *, fps: int = 25, codec: str = "libx264", options: dict | None = None,
                gop: int | None = None) -> int:
    """Encode RGB frames (iterable of uint8 [H, W, 3], even H and W) to `path`; returns the count.

    For libx264 the default options give exact motion vectors: one reference frame, no B-frames
    (`x264-params bframes=0:ref=1`). Pass `options` to override, e.g. {} for x264's defaults.
    Written atomically (mgm.files.atomic_path): an interrupted or failed write leaves no partial file.
    """

    if options is None:
        options = {"x264-params": "bframes=0:ref=1"} if codec == "libx264" else {}
    with atomic_path(path) as tmp:
        return _encode(tmp, frames, fps, codec, options, gop)


def _encode(path, frames, fps, codec, options, gop) -> int:
    import av

    n = 0
    with av.open(os.fspath(path), "w") as out:
        stream = None
        for img in frames:
            if stream is None:
                stream = out.add_stream(codec, rate=fps)
                stream.height, stream.width = img.shape[:2]
                stream.pix_fmt = "yuv420p"
                if gop:
                    stream.codec_context.gop_size = gop
                stream.options = dict(options)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(packet)
            n += 1
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    return n
