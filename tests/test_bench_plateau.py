"""`./run bench plateau`: the step at which a fine-tune's training loss leaves chance."""

import json
import math

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def plateau():
    return load_benchmark("plateau")


def test_the_first_window_below_chance_minus_drop(plateau):
    chance = math.log(12)
    flat = [(10 * i, chance) for i in range(1, 31)]                        # steps 10..300 at chance
    falls = flat + [(310 + 10 * i, chance - 0.3) for i in range(10)]       # steps 310..400 well below
    # the mean of the last 5 logged losses drops below chance - 0.15 once 3 of them are low: step 330
    assert plateau.left_chance(falls, chance, 0.15, 5) == 330
    assert plateau.left_chance(falls, chance, 0.15, 1) == 310
    assert plateau.left_chance(flat, chance, 0.15, 5) is None
    # one noisy dip is not leaving the plateau
    dip = flat[:10] + [(105, chance - 0.5)] + flat[10:]
    assert plateau.left_chance(dip, chance, 0.15, 5) is None


def test_it_reads_every_base_fine_tune_and_its_log(plateau, tmp_path):
    from mgm.experiment import finetune_run_name

    (tmp_path / "results").mkdir()
    chance = math.log(12)
    for tag, frac, seed, low_from in (("tube-0.75@12", 1.0, 0, 20), ("scratch", 1.0, 0, None),
                                      ("tube-0.75@12", 0.1, 1, 40)):
        rec = {"tag": tag, "variant": "base", "fraction": frac, "seed": seed, "top1": 50.0}
        (tmp_path / "results" / f"finetune__base__{tag}__f{frac:g}__s{seed}.json").write_text(json.dumps(rec))
        run = tmp_path / "runs" / finetune_run_name(tag, frac, seed)
        run.mkdir(parents=True)
        lines = [{"event": "start"}] + [
            {"event": "step", "step": s, "loss": chance - (1.0 if low_from and s >= low_from else 0.0)}
            for s in range(10, 110, 10)] + [{"event": "eval", "step": 100, "loss": 0.1, "top1": 50.0}]
        (run / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows = plateau.plateau(tmp_path, window=1)
    assert [(r["tag"], r["fraction"], r["left_chance_at"]) for r in rows] == [
        ("scratch", 1.0, None), ("tube-0.75@12", 1.0, 20), ("tube-0.75@12", 0.1, 40)]


def test_a_damaged_record_stops_it_in_one_line_naming_the_file(plateau, tmp_path):
    (tmp_path / "results").mkdir()
    bad = tmp_path / "results" / "finetune__base__scratch__f1__s0.json"
    bad.write_text('{"tag": "scr')
    with pytest.raises(SystemExit) as exit_:
        plateau.main([str(tmp_path)])
    msg = str(exit_.value.code)
    assert msg.count("\n") == 0 and msg.startswith(f"{bad}: not a readable result") and "delete it" in msg
    assert bad.read_text() == '{"tag": "scr' and not (tmp_path / "plateau.json").exists()
