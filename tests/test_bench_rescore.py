"""`./run bench rescore`: which runs it scores, and that it reproduces the experiment's own scores."""

import json

import pytest
from conftest import load_benchmark

from mgm.data.lists import read_list


@pytest.fixture(scope="module")
def rescore():
    return load_benchmark("rescore")


def test_it_takes_the_all_label_base_fine_tunes_in_seed_order(rescore, tmp_path):
    recs = {"finetune__base__tube-0.75@4000__f1__s1": ("tube-0.75@4000", "base", 1.0, 1),
            "finetune__base__scratch__f1__s0": ("scratch", "base", 1.0, 0),
            "finetune__base__tube-0.75@4000__f1__s0": ("tube-0.75@4000", "base", 1.0, 0),
            "finetune__base__tube-0.75@1344__f0.1__s0": ("tube-0.75@1344", "base", 0.1, 0),    # 10% of labels
            "finetune__shifted__tube-0.75@4000__f1__s0": ("tube-0.75@4000", "shifted", 1.0, 0)}  # transfer
    (tmp_path / "results").mkdir()
    for name, (tag, variant, frac, seed) in recs.items():
        (tmp_path / "results" / f"{name}.json").write_text(json.dumps(
            {"tag": tag, "variant": variant, "fraction": frac, "seed": seed, "top1": 10.0}))
    (tmp_path / "results" / "pretrain__tube-0.75__s0.json").write_text(json.dumps({"seed": 0}))
    got = [run.name for _, run in rescore.all_label_finetunes(tmp_path)]
    assert got == ["finetune-base-scratch-f1-s0", "finetune-base-tube-0.75@4000-f1-s0",
                   "finetune-base-tube-0.75@4000-f1-s1"]


@pytest.mark.slow
def test_rescoring_on_the_experiments_own_list_reproduces_its_scores(rescore, tmp_path, capsys):
    """The same checkpoints on the same list must give the stored top-1 exactly: this checks the run
    folders it finds (named by the experiment) and the evaluation path together."""
    from mgm.cli import main

    out = tmp_path / "smoke"
    assert main(["experiment", "masking", "--preset", "smoke", "--out", str(out), "--threads", "1",
                 "--curve", "1.0", "--fractions", "1.0", "--no-probe", "--no-transfer"]) == 0
    assert rescore.main([str(out), str(out / "data" / "base" / "val.txt")]) == 0
    stored = json.loads((out / "summary.json").read_text())["finetune"]
    again = json.loads((out / "rescore" / "base-val.json").read_text())["finetune"]
    assert set(again) == {"base|scratch|None|1.0", "base|tube-0.75|12|1.0", "base|mgm-0.75|12|1.0"}
    assert again == stored
    # another list of the same folder is scored afresh, not read from the val list's cache
    assert rescore.main([str(out), str(out / "data" / "base" / "train.txt")]) == 0
    train = read_list(out / "data" / "base" / "train.txt")
    runs = sorted((out / "rescore" / "base-train").glob("*.json"))
    assert len(runs) == 3 and all(json.loads(r.read_text())["videos"] == len(train) for r in runs)
    assert "| mgm-0.75 (12 steps) |" in capsys.readouterr().out


def test_a_damaged_record_stops_it_in_one_line_naming_the_file(rescore, tmp_path):
    (tmp_path / "results").mkdir()
    bad = tmp_path / "results" / "finetune__base__scratch__f1__s0.json"
    bad.write_text('{"tag": "scr')
    (tmp_path / "dev.txt").write_text("a.mp4 0\n")
    with pytest.raises(SystemExit) as exit_:
        rescore.main([str(tmp_path), str(tmp_path / "dev.txt")])
    msg = str(exit_.value.code)
    assert msg.count("\n") == 0 and msg.startswith(f"{bad}: not a readable result") and "delete it" in msg
    assert bad.read_text() == '{"tag": "scr'
