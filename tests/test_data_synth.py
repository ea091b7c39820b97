"""Synthetic motion benchmark: determinism, layout, and motion vectors that match the ground truth."""

import json
from dataclasses import replace

import numpy as np
import pytest

from mgm import codec
from mgm.data import synth
from mgm.data.lists import read_list
from mgm.data.synth import Scene
from mgm.errors import MGMError


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth.generate(out, "tiny", seed=3, per_class={"train": 1, "val": 1}, jobs=2, progress=False)
    return out


def test_layout_lists_and_classes(bench):
    assert len(synth.CLASSES) >= 10
    assert (bench / "classes.txt").read_text().split() == list(synth.CLASSES)
    for split in ("train", "val"):
        samples = read_list(bench / f"{split}.txt", root=bench)
        assert [s.label for s in samples] == list(range(len(synth.CLASSES)))
        info = codec.probe(samples[0].path)
        assert (info.width, info.height, info.num_frames, info.codec) == (64, 64, 32, "h264")
        anns = [json.loads(line) for line in open(bench / f"{split}.jsonl")]
        assert [a["class"] for a in anns] == list(synth.CLASSES)
        assert np.array(anns[0]["centre"]).shape == (32, 2)


def test_same_seed_same_frames_other_seed_differs(bench, tmp_path):
    synth.generate(tmp_path / "a", "tiny", seed=3, per_class={"val": 1}, jobs=1, progress=False)
    synth.generate(tmp_path / "b", "tiny", seed=4, per_class={"val": 1}, jobs=1, progress=False)
    for rel in ("val/left/00000.mp4", "val/orbit/00011.mp4"):
        same = [f.rgb for f in codec.iter_frames(tmp_path / "a" / rel, motion=False)]
        ref = [f.rgb for f in codec.iter_frames(bench / rel, motion=False)]
        other = [f.rgb for f in codec.iter_frames(tmp_path / "b" / rel, motion=False)]
        assert np.array_equal(np.stack(same), np.stack(ref))  # parallel (jobs=2) and serial agree
        assert not np.array_equal(np.stack(same), np.stack(other))


def test_other_benchmark_in_folder_is_an_error(bench):
    with pytest.raises(MGMError, match="different benchmark"):
        synth.generate(bench, "tiny", seed=4, per_class={"train": 1, "val": 1}, progress=False)


def test_motion_vectors_follow_the_annotated_object(bench):
    """Translation classes: the block under the object's centre moves with the annotated velocity."""
    anns = [json.loads(line) for line in open(bench / "train.jsonl")]
    for a in anns:
        if a["class"] not in ("left", "right", "up", "down"):
            continue
        field = codec.read_motion(bench / a["path"])
        c = np.array(a["centre"])
        vel = np.diff(c, axis=0)  # [31, 2] px / frame on screen
        got = []
        for t in range(1, 32):
            bx, by = int(c[t, 0] // 16), int(c[t, 1] // 16)
            if 0 <= bx < 4 and 0 <= by < 4 and field.known[t, by, bx]:
                got.append((field.dx[t, by, bx], field.dy[t, by, bx]))
        assert len(got) > 10, a["path"]
        err = np.median(np.abs(np.array(got) - vel.mean(0)), axis=0)
        assert (err < 0.4).all(), (a["class"], err)


def test_trajectories_are_time_centred():
    """Whatever the class, the main object's mean screen position over the clip is its uniform
    anchor in [0.25, 0.75] of the frame and its mean log-size is 0, so position and size averaged
    over time carry no class information."""
    for label in range(len(synth.CLASSES)):
        for seed in range(5):
            frames, ann = synth.make_clip(label, np.random.default_rng(seed), 32, 16)
            assert frames.shape == (16, 32, 32, 3) and frames.dtype == np.uint8
            mean = np.array(ann["centre"]).mean(0)
            assert ((mean > 0.25 * 32 - 0.01) & (mean < 0.75 * 32 + 0.01)).all(), (ann["class"], mean)
            assert abs(np.log(ann["scale"]).mean()) < 1e-3


def test_cli_clips_writes_only_the_named_splits(tmp_path, capsys):
    from mgm.cli import main

    assert main(["synth", str(tmp_path / "d"), "--seed", "3", "--clips", "dev=1", "--jobs", "1"]) == 0
    assert not (tmp_path / "d" / "train.txt").exists()
    assert len(read_list(tmp_path / "d" / "dev.txt")) == len(synth.CLASSES)
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["per_class"] == {"dev": 1}
    assert main(["synth", str(tmp_path / "e"), "--clips", "dev=0"]) == 1
    assert "--clips dev=0: expected SPLIT=N" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "f"), "--clips", "test=2"]) == 1
    assert "unknown split 'test'" in capsys.readouterr().err and not (tmp_path / "f").exists()


def test_small_large_is_small_with_a_larger_main_object(tmp_path):
    """Same seed, same clip: the radius is drawn from the same random number, so every annotation
    but the radius matches `small`, and the radius maps linearly onto the 1.5x range."""
    from mgm.cli import main

    assert synth.PRESETS["small-large"] == replace(synth.PRESETS["small"], scene=Scene(radius=(0.165, 0.27)))
    for preset in ("small", "small-large"):
        assert main(["synth", str(tmp_path / preset), "--preset", preset, "--clips", "dev=1", "--jobs", "2"]) == 0
    small, large = ([json.loads(line) for line in open(tmp_path / p / "dev.jsonl")] for p in ("small", "small-large"))
    assert [a["class"] for a in large] == list(synth.CLASSES)
    for a, b in zip(small, large):
        u = (a["radius"] / 96 - 0.11) / 0.07  # the uniform draw behind the radius, in [0, 1]
        assert 0 <= u <= 1 and b["radius"] == pytest.approx((0.165 + u * 0.105) * 96, abs=0.02)  # both rounded to 0.01 px
        assert {k: v for k, v in a.items() if k != "radius"} == {k: v for k, v in b.items() if k != "radius"}
