"""List files: parsing, errors naming file + line, and builders from fake official split files."""

import json

import pytest

from mgm.cli import main
from mgm.data import lists
from mgm.errors import MGMError


def test_read_list_with_root_and_spaces(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("a/v1.mp4 0\n\n# comment\nb/my video.mp4 3\n/abs/v.mp4 1\n")
    got = lists.read_list(f, root="/data")
    assert got == [lists.Sample("/data/a/v1.mp4", 0), lists.Sample("/data/b/my video.mp4", 3),
                   lists.Sample("/abs/v.mp4", 1)]
    assert lists.read_list(f)[0].path == "a/v1.mp4"


@pytest.mark.parametrize("text,lineno,reason", [
    ("a.mp4 0\nb.mp4\n", 2, "expected 'path label'"),
    ("a.mp4 0\nb.mp4 x\n", 2, "is not an integer"),
    ("a.mp4 -1\n", 1, "negative"),
])
def test_read_list_errors_name_file_and_line(tmp_path, text, lineno, reason):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(MGMError) as e:
        lists.read_list(f)
    assert f"{f}:{lineno}:" in str(e.value) and reason in str(e.value)


def test_read_list_missing_and_empty(tmp_path):
    with pytest.raises(MGMError, match="not found"):
        lists.read_list(tmp_path / "nope.txt")
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(MGMError, match="no entries"):
        lists.read_list(tmp_path / "e.txt")


def test_write_read_roundtrip(tmp_path):
    rows = [("x/a b.mp4", 2), ("y.mp4", 0)]
    lists.write_list(tmp_path / "l.txt", rows)
    assert [(s.path, s.label) for s in lists.read_list(tmp_path / "l.txt")] == rows


def test_ucf101(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (tmp_path / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g09_c02.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    classes, splits = lists.ucf101(tmp_path, 1, ext=".mp4")
    assert classes == ["ApplyEyeMakeup", "Archery"]
    assert splits["train"] == [("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.mp4", 0),
                               ("Archery/v_Archery_g09_c02.mp4", 1)]
    assert splits["test"] == [("Archery/v_Archery_g01_c01.mp4", 1)]
    (tmp_path / "testlist01.txt").write_text("Archery/a.avi\nBoxing/b.avi\n")
    with pytest.raises(MGMError, match=r"testlist01.txt:2: class folder 'Boxing'"):
        lists.ucf101(tmp_path, 1)


def test_hmdb51(tmp_path):
    (tmp_path / "wave_test_split1.txt").write_text("w1.avi 1 \nw2.avi 2 \nw3.avi 0 \n")
    (tmp_path / "brush_hair_test_split1.txt").write_text("b1.avi 2\nb2.avi 1\n")
    (tmp_path / "brush_hair_test_split2.txt").write_text("b1.avi 1\n")
    classes, splits = lists.hmdb51(tmp_path, 1)
    assert classes == ["brush_hair", "wave"]
    assert splits["train"] == [("brush_hair/b2.avi", 0), ("wave/w1.avi", 1)]
    assert splits["test"] == [("brush_hair/b1.avi", 0), ("wave/w2.avi", 1)]
    (tmp_path / "wave_test_split1.txt").write_text("w1.avi 7\n")
    with pytest.raises(MGMError, match=r"wave_test_split1.txt:1:"):
        lists.hmdb51(tmp_path, 1)


def test_ssv2(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"Holding something": "1", "Pushing something from left to right": "0"}))
    (tmp_path / "train.json").write_text(json.dumps([
        {"id": "78687", "label": "holding potato", "template": "Holding [something]", "placeholders": ["potato"]},
        {"id": "42326", "label": "pushing pen", "template": "Pushing [something] from left to right"}]))
    (tmp_path / "validation.json").write_text(json.dumps([{"id": "1", "template": "Holding [something]"}]))
    classes, splits = lists.ssv2(tmp_path / "labels.json", tmp_path / "train.json", tmp_path / "validation.json")
    assert classes == ["Pushing something from left to right", "Holding something"]
    assert splits == {"train": [("78687.webm", 1), ("42326.webm", 0)], "val": [("1.webm", 1)]}
    (tmp_path / "validation.json").write_text(json.dumps([{"id": "1", "template": "Juggling [something]"}]))
    with pytest.raises(MGMError, match="entry 0"):
        lists.ssv2(tmp_path / "labels.json", tmp_path / "train.json", tmp_path / "validation.json")


def test_kinetics_and_cli(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                        "zumba,abc,10,20,train\nabseiling,def,0,10,train\n")
    (tmp_path / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nzumba,ghi,5,15,val\n")
    classes, splits = lists.kinetics([tmp_path / "train.csv", tmp_path / "validate.csv"], by_class=True)
    assert classes == ["abseiling", "zumba"]
    assert splits["train"] == [("zumba/abc_000010_000020.mp4", 1), ("abseiling/def_000000_000010.mp4", 0)]
    assert splits["val"] == [("zumba/ghi_000005_000015.mp4", 1)]
    # CLI with --root: entries missing on disk are dropped and counted.
    root = tmp_path / "videos"
    (root / "zumba").mkdir(parents=True)
    (root / "zumba" / "abc_000010_000020.mp4").write_bytes(b"x")
    assert main(["lists", "kinetics", str(tmp_path / "train.csv"), str(tmp_path / "validate.csv"),
                 "--by-class", "--out", str(tmp_path / "out"), "--root", str(root)]) == 0
    assert "1 missing" in capsys.readouterr().out
    assert (tmp_path / "out" / "train.txt").read_text() == "zumba/abc_000010_000020.mp4 1\n"
    assert (tmp_path / "out" / "classes.txt").read_text() == "abseiling\nzumba\n"
    assert main(["lists", "ssv2", str(tmp_path / "x.json"), "--out", str(tmp_path / "o")]) == 1
