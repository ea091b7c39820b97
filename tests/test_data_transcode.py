"""Transcoding: a VP9 clip (no motion vectors) becomes H.264 whose motion reads correctly."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import interior_cells, moving_square_frames
from mgm import codec
from mgm.cli import main
from mgm.data.transcode import Settings, output_size, parse_shard, plan, transcode_all, transcode_file
from mgm.errors import MGMError, VideoError
from mgm.files import TEMP_MARK, stale_temps


def _write_vp9(path, frames):
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libvpx-vp9", rate=25)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p"
        s.options = {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


@pytest.fixture(scope="module")
def vp9(tmp_path_factory):
    d = tmp_path_factory.mktemp("vp9")
    frames, boxes = moving_square_frames(n=16, height=96, width=160, vx=4, vy=2, size=48, start=(8, 8))
    (d / "in").mkdir()
    _write_vp9(d / "in" / "a.webm", frames)
    return d, frames, boxes


def test_vp9_has_no_motion_and_transcoded_motion_is_right(vp9, tmp_path):
    d, frames, boxes = vp9
    src = d / "in" / "a.webm"
    assert codec.probe(src).codec == "vp9"
    with pytest.raises(VideoError, match="re-encode"):
        codec.read_motion(src)
    n = transcode_file(src, tmp_path / "a.mp4")
    assert n == 16
    info = codec.probe(tmp_path / "a.mp4")
    assert (info.codec, info.width, info.height, info.num_frames, info.fps) == ("h264", 160, 96, 16, 25)
    field = codec.read_motion(tmp_path / "a.mp4")
    assert "".join(field.frame_type) == "I" + "P" * 15  # no B-frames, one GOP
    for t in range(1, 16):
        cells = interior_cells(boxes[t])
        assert np.median(field.dx[t][cells]) == pytest.approx(4, abs=0.5)
        assert np.median(field.dy[t][cells]) == pytest.approx(2, abs=0.5)
    # --height halves the frame and therefore the motion
    transcode_file(src, tmp_path / "half.mp4", Settings(height=48))
    half = codec.read_motion(tmp_path / "half.mp4")
    assert (half.width, half.height) == (80, 48)
    cells = interior_cells([v // 2 for v in boxes[6]])  # the 24-px square covers block (1, 1)
    assert np.median(half.dx[6][cells]) == pytest.approx(2, abs=0.5)
    assert np.median(half.dy[6][cells]) == pytest.approx(1, abs=0.5)


def test_output_size_and_shard_parsing():
    assert output_size(640, 480, None) == (640, 480)
    assert output_size(640, 480, 240) == (320, 240)
    assert output_size(427, 240, 128) == (228, 128)  # 227.7 -> nearest even
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(MGMError):
            parse_shard(bad)


def test_folder_resume_manifest_shards_and_errors(vp9, tmp_path, capsys):
    d, _, _ = vp9
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("b.webm", "sub/c.webm"):
        (src / name).write_bytes((d / "in" / "a.webm").read_bytes())
    (src / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 broken")
    assert [o for _, o in plan([src], tmp_path / "o")] == [
        str(tmp_path / "o" / n) for n in ("b.mp4", "broken.mp4", "sub/c.mp4")]
    assert [s for s, _ in plan([src], "o")[1::2]] == [str(src / "broken.webm")]  # shard 1/2
    out = tmp_path / "o"
    assert main(["transcode", str(src), "--out", str(out), "--jobs", "1", "--shard", "0/2"]) == 0
    assert sorted(p.name for p in out.rglob("*.mp4")) == ["b.mp4", "c.mp4"]
    recs = [json.loads(line) for line in open(out / "manifest-0of2.jsonl")]
    assert [(r["status"], r["frames"]) for r in recs] == [("ok", 16), ("ok", 16)]
    assert recs[0]["settings"]["x264_params"] == "bframes=0:ref=1" and recs[0]["settings"]["gop"] == 32
    # resume: finished outputs are skipped; the broken file fails with its reason, exit code 1
    s = transcode_all([src], out, jobs=2, progress=False)
    assert (s["ok"], s["exists"], len(s["errors"])) == (0, 2, 1)
    assert s["errors"][0]["source"] == str(src / "broken.webm") and "error" in s["errors"][0]["status"]
    assert not (out / "broken.mp4").exists() and not list(out.rglob("*.part.mp4"))
    capsys.readouterr()
    assert main(["transcode", str(src / "broken.webm"), "--out", str(out / "x"), "--jobs", "1"]) == 1
    assert "broken.webm" in capsys.readouterr().out


# --- failures that would hit every file: a full disk, a worker killed -------------------------------

CLI = [sys.executable, "-c", "import sys; from mgm.cli import main; sys.exit(main(sys.argv[1:]))", "transcode"]


@pytest.fixture(scope="module")
def noise_clips(tmp_path_factory):
    """in/a.mp4: 10 frames; in/b.mp4, in/c.mp4: 100 frames of 320x240 noise, which x264 (preset
    medium, crf 18) turns into ~4 MB each, taking seconds."""
    d = tmp_path_factory.mktemp("noise") / "in"
    d.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (100, 240, 320, 3), dtype=np.uint8)
    fast = {"preset": "ultrafast", "x264-params": "bframes=0:ref=1"}
    codec.write_video(d / "a.mp4", frames[:10], options=fast)
    codec.write_video(d / "b.mp4", frames, options=fast)
    (d / "c.mp4").write_bytes((d / "b.mp4").read_bytes())
    return d


def _one_line(stderr):
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _leftovers(out):
    """Files in `out` that are neither the manifest nor a finished output: temp or partial files."""
    return sorted(p.name for p in out.rglob("*") if p.name != "manifest.jsonl" and (
        p.name.startswith(".") or TEMP_MARK in p.name or ".part" in p.name))


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("full", [False, True], ids=["2MB-free", "no-space"])
def test_full_disk_is_one_line_naming_the_file_and_leaves_nothing(noise_clips, tmpfs, jobs, full):
    tiny_disk = tmpfs("2m")
    # was: an av.error.OSError traceback; on a disk already full a segfault (--jobs 1) or a hang (Pool)
    if full:
        with open(tiny_disk / "filler", "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    out = tiny_disk / "o"
    r = subprocess.run(CLI + [str(noise_clips / "b.mp4"), str(noise_clips / "c.mp4"), "--out", str(out),
                              "--jobs", jobs], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert line.startswith("mgm transcode: error: ") and "no space left on device" in line
    assert str(out / "b.mp4") in line or str(out / "c.mp4") in line
    assert _leftovers(out) == [] and not list(out.glob("*.mp4"))


def test_killed_worker_stops_the_run_naming_its_source(noise_clips, tmp_path):
    # was: multiprocessing.Pool never noticed, the command hung forever and left a .part.mp4
    out = tmp_path / "o"
    p = subprocess.Popen(CLI + [str(noise_clips), "--out", str(out), "--jobs", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # a.mp4 (10 frames) done, and a worker mid-way through b or c: its temp file carries its pid
        while not ((out / "a.mp4").exists() and (temps := stale_temps(out))):
            assert p.poll() is None and time.monotonic() < deadline, "the run ended or stalled first"
            time.sleep(0.02)
        name = temps[0].name  # .b.mp4.tmp-PID-HEX.mp4
        os.kill(int(name.split(TEMP_MARK)[1].split("-")[0]), signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1 and time.monotonic() - killed_at < 10
    line = _one_line(err)
    source = noise_clips / name[1:].split(TEMP_MARK)[0]
    assert f"error: {source}: the worker transcoding it died (signal 9)" in line
    assert _leftovers(out) == []
    assert sorted(p.name for p in out.glob("*.mp4")) == ["a.mp4"]  # finished output kept ...
    assert codec.probe(out / "a.mp4").num_frames == 10
    recs = [json.loads(line) for line in open(out / "manifest.jsonl")]  # ... and the death recorded
    assert {(r["source"], r["status"]) for r in recs} >= {
        (str(noise_clips / "a.mp4"), "ok"), (str(source), "error: worker died (signal 9)")}
