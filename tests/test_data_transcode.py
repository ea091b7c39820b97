"""Transcoding: a VP9 clip (no motion vectors) becomes H.264 whose motion reads correctly."""

import json

import numpy as np
import pytest

from conftest import interior_cells, moving_square_frames
from mgm import codec
from mgm.cli import main
from mgm.data.transcode import Settings, output_size, parse_shard, plan, transcode_all, transcode_file
from mgm.errors import MGMError, VideoError


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
