"""The masking experiment end to end at smoke size, its resumability, and the report arithmetic."""

import json

import numpy as np
import pytest

from mgm.experiment import PRESETS, Arm, FineTune, Tag, prepare_data
from mgm.experiment.report import _steps_to_reach, summarise


@pytest.mark.slow
def test_smoke_experiment_completes_writes_the_table_and_resumes(tmp_path, capsys):
    from mgm.cli import main

    out = tmp_path / "smoke"
    args = ["experiment", "masking", "--preset", "smoke", "--out", str(out), "--threads", "1"]
    # First the final checkpoints only; the full call then adds the curve point (the epoch end at
    # half of pre-training) from the stored pre-training instead of pre-training again.
    assert main(args + ["--curve", "1.0"]) == 0
    # The runs' own lines go to a log, the terminal keeps the experiment's bar and running table.
    printed = capsys.readouterr()
    assert "[pretrain-tube-0.75-s0]" not in printed.out + printed.err
    assert "top-1 so far" in printed.out
    assert "[pretrain-tube-0.75-s0] step 12/12" in (out / "runs" / "output.log").read_text()
    logs = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("pretrain-*/log.jsonl")}
    assert len(logs) == 2
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in logs} == logs
    pre = json.loads((out / "results" / "pretrain__mgm-0.75__s0.json").read_text())
    assert sorted(pre["checkpoints"], key=int) == ["6", "12"]
    table = (out / "results.md").read_text()
    for row in ("scratch", "tube-0.75", "mgm-0.75", "motion-maps", "untrained"):
        assert row in table
    assert (out / "curve.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["curve"]) == {"tube-0.75", "mgm-0.75"}
    results = sorted((out / "results").glob("*.json"))
    # 2 arms x (1 pretrain + curve point 0.5 + final at 2 label fractions + probe + transfer)
    # + scratch x (2 fractions + transfer) + untrained probe + motion probe
    assert len(results) == 2 * 6 + 3 + 2
    for r in results:
        rec = json.loads(r.read_text())
        if "top1" in rec:
            assert 0 <= rec["top1"] <= 100
    # A second call finds every result stored and trains nothing.
    stamps = {r: r.stat().st_mtime_ns for r in results}
    capsys.readouterr()
    assert main(args) == 0
    assert {r: r.stat().st_mtime_ns for r in results} == stamps
    assert "pretrain:" not in capsys.readouterr().out


def test_arm_names_and_unknown_arms(tmp_path):
    from mgm.cli import main

    assert Arm("mgm", 0.75, (("focus", 0.5),)).name == "mgm-0.75-focus0.5"
    assert Arm("mgm", 0.75, (("camera_comp", False),)).name == "mgm-0.75-camera_compoff"
    assert main(["experiment", "masking", "--preset", "smoke", "--arms", "nope-0.1",
                 "--out", str(tmp_path / "a")]) == 1
    # an arm of another preset runs with this preset's recipe (nothing to run with --report-only)
    assert main(["experiment", "masking", "--preset", "large", "--arms", "mgm-0.75-sigma4",
                 "--out", str(tmp_path / "b"), "--report-only"]) == 0
    assert main(["experiment", "masking", "--preset", "large", "--arms", "mgm-0.75-focus0.75",
                 "--out", str(tmp_path / "b"), "--report-only"]) == 0  # in no preset: by its name


def test_arm_from_name_inverts_name():
    for arm in {a for p in PRESETS.values() for a in p.arms}:
        assert Arm.from_name(arm.name) == arm
    assert Arm.from_name("mgm-0.75-focus0.75-sigma3") == Arm("mgm", 0.75, (("focus", 0.75), ("sigma", 3.0)))
    assert Arm.from_name("mgm-warp-0.9") == Arm("mgm-warp", 0.9)  # the longest strategy prefix
    for bad, reason in [("mgm-0.75-nope3", "not PARAMVALUE"), ("mgm-0.75-focus2", "focus"),
                        ("tube-0.75-focus0.5", "parameter of tube"), ("mgm-abc", "not a number"),
                        ("mgm-0.75-camera_comp1", "on/off"), ("tube-1.5", "ratio"), ("blob-0.5", "strategy"),
                        ("mgm-0.75-focus0.5.1", "not PARAMVALUE"), ("tube-0.7.5", "not a number")]:
        with pytest.raises(ValueError, match=reason):
            Arm.from_name(bad)


def test_no_scratch_drops_only_the_scratch_baselines(tmp_path):
    from mgm.experiment import Runner

    full = Runner(tmp_path / "a", PRESETS["smoke"]).units()
    lean = Runner(tmp_path / "b", PRESETS["smoke"].replace(scratch=False)).units()
    assert [u for u in full if u[1:2] != ("scratch",)] == lean
    assert len(full) - len(lean) == 3  # 2 label fractions + the shifted variant, 1 seed


def test_large_preset_is_long_recipe_on_larger_objects():
    """Only the data differs from `long` in what a run does (the rest is which runs to make), so
    the two benchmarks' figures compare like for like."""
    from mgm.data import synth
    from mgm.experiment import Runner

    long, large = PRESETS["long"].record(), PRESETS["large"].record()
    assert sorted(k for k in long if long[k] != large[k] and k not in Runner._SELECTION) == ["synth"]
    assert synth.PRESETS[large["synth"]].scene.radius == (0.165, 0.27)
    assert [a.name for a in PRESETS["large"].arms] == ["tube-0.75", "mgm-0.75"]


def test_steps_to_reach_interpolates():
    tube = [(100, 40.0, 0), (200, 50.0, 0), (300, 60.0, 0)]
    assert _steps_to_reach([(100, 60.0, 0), (300, 70.0, 0)], tube) == pytest.approx(1 / 3)
    # crosses 60 halfway between 100 (50) and 200 (70): step 150 of 300
    assert _steps_to_reach([(100, 50.0, 0), (200, 70.0, 0), (300, 75.0, 0)], tube) == pytest.approx(0.5)
    assert _steps_to_reach([(100, 10.0, 0), (300, 59.0, 0)], tube) is None


def test_summary_pairs_seeds_for_the_difference():
    recs = []
    for seed, (t, m) in enumerate([(50.0, 56.0), (40.0, 42.0)]):
        recs += [{"tag": "tube-0.75@12", "variant": "base", "fraction": 1.0, "seed": seed, "top1": t},
                 {"tag": "mgm-0.75@12", "variant": "base", "fraction": 1.0, "seed": seed, "top1": m},
                 {"tag": "scratch", "variant": "base", "fraction": 1.0, "seed": seed, "top1": 30.0}]
    s = summarise(recs, 1.0)
    mean, std, n = s["headline"]["0.75"]["mgm_minus_tube_f1"]
    assert (mean, std, n) == (pytest.approx(4.0), pytest.approx(2 ** 1.5), 2)  # diffs 6, 2: sample std
    assert "| scratch | 30.0 ± 0.0 (2) |" in s["markdown"]
    assert "| tube-0.75 (12 steps) | 45.0 ± 7.1 (2) |" in s["markdown"]
    # paired diffs 20 and 10: sample std 7.07 (the ± shown), standard error 5, t(1 df) = 12.706
    assert "- tube-0.75 − scratch, all labels: +15.0 ± 7.1 points (2 seeds; 95% CI -48.5 to +78.5)" in s["markdown"]
    assert s["curve"]["tube-0.75"] == [(12, 45.0, pytest.approx(50 ** 0.5))]
    # A seed with an extra curve point: only seeds with every point make the curve.
    more = recs + [{"tag": "tube-0.75@6", "variant": "base", "fraction": 1.0, "seed": 1, "top1": 20.0}]
    assert summarise(more, 1.0)["curve"]["tube-0.75"] == [(6, 20.0, 0.0), (12, 40.0, 0.0)]
    # ... and the per-seed table shows every run, scratch and tube first, a missing one as —
    assert ("| fine-tuned, all labels | seed 0 | seed 1 |\n|---|---|---|\n| scratch | 30.0 | 30.0 |\n"
            "| tube-0.75, 6 steps | — | 20.0 |\n| tube-0.75, 12 steps | 50.0 | 40.0 |\n"
            "| mgm-0.75, 12 steps | 56.0 | 42.0 |") in summarise(more, 1.0)["markdown"]
    assert s["headline"]["0.75"]["mgm_minus_tube_f1_ci95"] == pytest.approx((4 - 12.706 * 2, 4 + 12.706 * 2))
    # One seed: the difference alone, no spread or interval.
    one = summarise([r for r in recs if r["seed"] == 0], 1.0)["markdown"]
    assert "- ratio 0.75: MGM − tube, all labels: +6.0 points (1 seed)" in one


def test_summary_compares_every_other_arm_with_tube_at_its_ratio():
    """MGM's settings (and other strategies) get the same paired difference and steps-to-match as
    the headline arm, against the tube arm of their own ratio only."""
    recs = []
    for seed, (t, f) in enumerate([(40.0, 43.0), (50.0, 51.0)]):
        recs += [{"tag": "tube-0.75@12", "variant": "base", "fraction": 1.0, "seed": seed, "top1": t},
                 {"tag": "mgm-0.75-focus0.5@12", "variant": "base", "fraction": 1.0, "seed": seed, "top1": f},
                 {"tag": "mgm-0.75-focus0.5@4", "variant": "base", "fraction": 1.0, "seed": seed, "top1": f - 10},
                 {"tag": "motion-topk-0.75@12", "variant": "base", "fraction": 1.0, "seed": seed, "top1": t - 1},
                 {"tag": "motion-topk-0.9@12", "variant": "base", "fraction": 1.0, "seed": seed, "top1": 99.0}]
    s = summarise(recs, 1.0)
    assert s["headline"] == {}  # no default mgm arm
    assert set(s["versus_tube"]) == {"mgm-0.75-focus0.5", "motion-topk-0.75"}  # no tube at 0.9
    assert s["versus_tube"]["motion-topk-0.75"]["minus_tube_f1"] == (pytest.approx(-1.0), pytest.approx(0.0), 2)
    v = s["versus_tube"]["mgm-0.75-focus0.5"]
    assert v["minus_tube_f1"] == (pytest.approx(2.0), pytest.approx(2 ** 0.5), 2)  # diffs 3, 1
    # tube's final mean 45 is crossed between step 4 (mean 37) and 12 (47): at 4 + 8 * 8/10 = 10.4
    assert v["steps_fraction_to_match_tube"] == pytest.approx(10.4 / 12)
    assert "- mgm-0.75-focus0.5 − tube, all labels: +2.0 ± 1.4 points (2 seeds" in s["markdown"]
    assert "- mgm-0.75-focus0.5 reaches tube's final accuracy (all labels) with 87% of the" in s["markdown"]
    # motion-topk has its final checkpoint only (ahead of nothing, but also measured at no fewer steps)
    assert "motion-topk-0.75 reaches" not in s["markdown"]
    assert s["versus_tube"]["motion-topk-0.75"]["steps_fraction_to_match_tube"] is None  # not 1.0 or any figure
    better = summarise([dict(r, top1=99.0) if r["tag"] == "motion-topk-0.75@12" else r for r in recs], 1.0)
    assert better["versus_tube"]["motion-topk-0.75"]["steps_fraction_to_match_tube"] is None  # ahead: still None
    # ... on the seeds both have: a third tube seed (tube's mean 60) does not move the target
    third = summarise(recs + [{"tag": "tube-0.75@12", "variant": "base", "fraction": 1.0, "seed": 2,
                               "top1": 90.0}], 1.0)
    assert third["versus_tube"]["mgm-0.75-focus0.5"]["steps_fraction_to_match_tube"] == pytest.approx(10.4 / 12)


def test_t_quantiles_match_scipy():
    from mgm.experiment.report import _T95
    st = pytest.importorskip("scipy.stats")  # a test dependency through scikit-video
    for df, t in _T95.items():
        assert t == pytest.approx(st.t.ppf(0.975, df), abs=6e-4), df


def test_summary_pairs_transfer_seeds_apart_from_the_base_benchmark():
    recs = []
    for seed, (t, m, s) in enumerate([(30.0, 33.0, 20.0), (20.0, 21.0, 10.0)]):
        recs += [{"tag": tag, "variant": "shifted", "fraction": 1.0, "seed": seed, "top1": v}
                 for tag, v in (("tube-0.75@12", t), ("mgm-0.75@12", m), ("scratch", s))]
        recs += [{"tag": "tube-0.75@12", "variant": "base", "fraction": 1.0, "seed": seed, "top1": 50.0},
                 {"tag": "mgm-0.75@12", "variant": "base", "fraction": 1.0, "seed": seed, "top1": 40.0}]
    # A second ratio, whose transfer differences must not be reported for the first.
    recs += [{"tag": tag, "variant": "shifted", "fraction": 1.0, "seed": 0, "top1": v}
             for tag, v in (("tube-0.9@12", 10.0), ("mgm-0.9@12", 17.0))]
    s = summarise(recs, 1.0)
    assert "- ratio 0.9: MGM − tube, transfer to the shifted variant: +7.0 points (1 seed)" in s["markdown"]
    h = s["headline"]["0.75"]
    assert h["transfer_mgm_minus_tube"] == (pytest.approx(2.0), pytest.approx(2 ** 0.5), 2)
    assert h["mgm_minus_tube_f1"] == (pytest.approx(-10.0), pytest.approx(0.0), 2)  # base kept apart
    assert "| tube-0.75 (12 steps) | 50.0 ± 0.0 (2) | 25.0 ± 7.1 (2) |" in s["markdown"]
    assert "- tube-0.75 − scratch, transfer to the shifted variant: +10.0 ± 0.0 points" in s["markdown"]
    assert "- ratio 0.75: MGM − tube, transfer to the shifted variant: +2.0 ± 1.4 points (2 seeds" in s["markdown"]


def test_linear_probe_reads_a_linear_signal_and_not_noise():
    from mgm.experiment.probe import linear_probe

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 20))
    x[:, 0] += 5 * y  # class is linearly readable from feature 0 (Bayes accuracy ~99%)
    assert linear_probe(x[:200], y[:200], x[200:], y[200:]) > 90
    noise = rng.normal(size=(300, 20))
    assert linear_probe(noise[:200], y[:200], noise[200:], y[200:]) < 60


def test_plain_pixel_target_reaches_the_model():
    from mgm.train.tasks import model_config
    from mgm.train.config import load_config

    assert model_config(load_config("pretrain")).norm_pix_loss is True
    cfg = load_config("pretrain", overrides=["model.norm_pix_loss=false"])
    assert model_config(cfg).norm_pix_loss is False


def test_a_second_recipe_reuses_another_folders_benchmark(tmp_path, capsys):
    """--data points a recipe folder at clips generated for another: they are used as they are
    (nothing regenerated, the label-fraction list written beside them), and clips of another
    benchmark preset are refused with one line naming the folder."""
    from mgm.cli import main
    from mgm.data.lists import write_list
    from mgm.errors import MGMError

    data = tmp_path / "shared"
    for variant in ("base", "shifted"):
        write_list(data / variant / "train.txt", [(f"c{i}.mp4", i % 2) for i in range(8)])
        (data / variant / "meta.json").write_text(json.dumps({"preset": "tiny", "variant": variant}))
    roots = prepare_data(data, PRESETS["smoke"], progress=False)
    assert roots == {"base": data / "base", "shifted": data / "shifted"}
    assert sorted(p.name for p in (data / "base").iterdir()) == ["meta.json", "train.txt", "train_0.5.txt"]
    assert len((data / "base" / "train_0.5.txt").read_text().splitlines()) == 4  # half of each class

    (data / "base" / "meta.json").write_text(json.dumps({"preset": "small-large", "variant": "base"}))
    args = ["experiment", "masking", "--preset", "smoke", "--out", str(tmp_path / "long"), "--data", str(data),
            "--steps", "24"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(data / "base") in err and "small-large" in err
    assert list((tmp_path / "long" / "results").glob("*.json")) == []
    with pytest.raises(MGMError, match="needs tiny"):
        prepare_data(data, PRESETS["smoke"].replace(transfer=False), progress=False)


def test_runners_sharing_a_folder_claim_units(tmp_path):
    """A unit held by another live process is skipped; a dead holder's claim is taken over."""
    import os
    import subprocess

    from mgm.experiment import Runner

    runner = Runner(tmp_path, PRESETS["smoke"])
    unit = ("pretrain", Arm("tube", 0.75), 0)
    lock = tmp_path / "results" / "claim-pretrain-tube-0.75-0.pid"
    lock.write_text(str(os.getppid()))  # alive, and not us
    assert not runner.claim(unit)
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(str(dead.pid))
    assert runner.claim(unit) and lock.read_text() == str(os.getpid())
    assert runner.claim(unit)  # our own claim
    runner.release_claims()
    assert not lock.exists()


def test_a_damaged_result_file_is_one_line_naming_it(tmp_path, capsys):
    """A stored unit that is not JSON (edited by hand, a full disk) stops the report with one line
    naming the file and the remedy, and is left as it was; a sound one is read back."""
    from mgm.cli import main
    from mgm.experiment import Runner

    out = tmp_path / "x"
    argv = ["experiment", "masking", "--preset", "smoke", "--out", str(out), "--report-only"]
    assert main(argv) == 0
    runner = Runner(out, PRESETS["smoke"])
    rec = FineTune(tag=Tag("scratch"), fraction=0.5, seed=0, top1=12.5)
    runner._store("finetune/scratch", rec)
    assert runner.result("finetune/scratch") == rec
    assert json.loads(runner._result_path("finetune/scratch").read_text()) == {
        "tag": "scratch", "variant": "base", "fraction": 0.5, "seed": 0, "top1": 12.5, "top5": None}
    bad = runner._result_path("pretrain/tube")
    bad.write_text('{"top1": 3')
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "not a readable result" in err and "delete it" in err
    assert bad.read_text() == '{"top1": 3'
    bad.write_text('{"top1": 3}')  # JSON, but no record: the same one line
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "not a readable result" in err


def test_cli_preset_choices_are_the_presets():
    """The CLI lists its presets as literals (argparse stays free of the heavy imports): they must
    be exactly the PRESETS dicts' keys, so a new preset cannot be missing from the command line."""
    import argparse

    from mgm.cli import build_parser
    from mgm.data import synth

    def choices(command):
        sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
        return set(next(a.choices for a in sub.choices[command]._actions if "--preset" in a.option_strings))

    assert choices("synth") == set(synth.PRESETS)
    assert choices("experiment") == set(PRESETS) - {"demo"}  # `demo` is `mgm demo`'s own


def test_patch_sets_the_token_grid_of_every_run(tmp_path, capsys):
    """--patch changes the recipe (so its results never mix with another grid's) and the geometry
    each run is configured with; a patch that does not divide the frames fails in one line."""
    from mgm.cli import main
    from mgm.experiment import Runner

    out = tmp_path / "fine"
    assert main(["experiment", "masking", "--preset", "large", "--out", str(out), "--patch", "6",
                 "--report-only"]) == 0
    assert json.loads((out / "recipe.json").read_text())["patch"] == 6
    runner = Runner(out, PRESETS["large"].replace(patch=6))
    cfg = runner._config("pretrain", "x", tmp_path, tmp_path / "train.txt", 0)
    assert cfg.data.geometry.grid == (4, 8, 8)  # 48 px frames in 6 px patches, 8 frames in tubelets of 2
    capsys.readouterr()
    assert main(["experiment", "masking", "--preset", "large", "--out", str(tmp_path / "bad"), "--patch", "5",
                 "--report-only"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--patch 5" in err and "6, 8, 12" in err
    assert not (tmp_path / "bad").exists()
    assert main(["experiment", "masking", "--preset", "large", "--out", str(tmp_path / "bad"), "--patch", "0",
                 "--report-only"]) == 1  # not silently the preset's grid
    assert not (tmp_path / "bad").exists()


def test_only_full_arms_get_the_curve_fractions_probes_and_transfer(tmp_path, monkeypatch):
    """`small` keeps its budget by evaluating the 0.75 pair every way and the other arms once."""
    from mgm.experiment import Arm, Pretraining, Runner

    preset = PRESETS["smoke"].replace(arms=(Arm("tube", 0.75), Arm("random", 0.9)), full_arms=("tube-0.75",))
    runner = Runner(tmp_path, preset)
    calls = []
    monkeypatch.setattr(runner, "pretrain", lambda arm, seed: Pretraining(arm=arm.name, checkpoints={"6": "a.pt", "12": "b.pt"}))
    monkeypatch.setattr(runner, "finetune", lambda tag, init, frac, seed, variant="base":
                        calls.append(("finetune", tag, init, frac, variant)))
    monkeypatch.setattr(runner, "probe", lambda tag, init, seed: calls.append(("probe", tag, init)))
    for arm in preset.arms:
        runner._run_unit(("pretrain", arm, 0))
    assert calls == [("finetune", "tube-0.75@6", "a.pt", 0.5, "base"),     # the curve point
                     ("finetune", "tube-0.75@12", "b.pt", 1.0, "base"),    # every label fraction
                     ("finetune", "tube-0.75@12", "b.pt", 0.5, "base"),
                     ("probe", "tube-0.75@12", "b.pt"),
                     ("finetune", "tube-0.75@12", "b.pt", 0.5, "shifted"),
                     ("finetune", "random-0.9@12", "b.pt", 0.5, "base")]  # final, curve labels only


def test_runners_started_together_wait_for_the_one_generating_the_data(tmp_path, monkeypatch):
    import fcntl
    import threading

    from mgm.data import synth

    generated, generate = [], synth.generate
    monkeypatch.setattr(synth, "generate", lambda out, **kw: (generated.append(out), generate(out, **kw)))
    data = tmp_path / "data"
    data.mkdir()
    done = []
    with open(data / ".lock", "w") as held:  # another runner is generating
        fcntl.flock(held, fcntl.LOCK_EX)
        waiter = threading.Thread(target=lambda: done.append(prepare_data(data, PRESETS["smoke"], progress=False)))
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive() and generated == []
    waiter.join(120)
    assert generated == [str(data / "base"), str(data / "shifted")]
    assert done and (done[0]["base"] / "meta.json").exists()


def test_an_interrupted_generation_is_redone(tmp_path):
    """`mgm synth` writes meta.json first and the lists last: stopped in between, the next call
    generates again instead of failing on a missing list."""
    roots = prepare_data(tmp_path, PRESETS["smoke"], progress=False)
    (roots["base"] / "val.txt").unlink()
    assert (prepare_data(tmp_path, PRESETS["smoke"], progress=False)["base"] / "val.txt").exists()


def test_a_field_added_to_the_recipe_reads_as_its_default_in_an_older_folder(tmp_path, monkeypatch):
    """A folder made before `finetune_pooling` existed holds mean-pooled fine-tunes: it resumes with
    the default and refuses "slots"; the fine-tunes are configured with the preset's pooling."""
    from mgm.errors import MGMError
    from mgm.experiment import Runner

    out, mean = tmp_path / "old", PRESETS["long"]
    assert mean.finetune["model.pooling"] == "mean" and PRESETS["small"].finetune["model.pooling"] == "slots"
    Runner(out, mean)
    recipe = json.loads((out / "recipe.json").read_text())
    del recipe["finetune_pooling"]
    (out / "recipe.json").write_text(json.dumps(recipe))
    Runner(out, mean)  # no error
    slots = mean.replace(finetune_pooling="slots")
    with pytest.raises(MGMError, match="differs in finetune_pooling"):
        Runner(out, slots)
    (out / "recipe.json").write_text("{")
    with pytest.raises(MGMError, match=r"recipe.json: not a readable recipe"):
        Runner(out, mean)
    assert (out / "recipe.json").read_text() == "{"  # kept as it was: nothing lost
    seen = []
    monkeypatch.setattr("mgm.train.tasks.run_training", lambda command, cfg: seen.append(cfg) or {"eval": {"top1": 9.0}})
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.txt").write_text("".join(f"v{i}.mp4 {i % 2}\n" for i in range(40)))
    runner = Runner(tmp_path / "new", slots)
    runner.roots = {"base": root}
    assert runner.finetune("scratch", None, 1.0, 0).top1 == 9.0
    assert seen[0].model.pooling == "slots"


def test_pretrained_reuses_another_folders_pretrainings(tmp_path, monkeypatch):
    """--pretrained: a finished pre-training of the other folder is linked, not redone (its
    checkpoints stay there), and so is a probe scored on the same split; one it lacks is trained
    here; a folder whose pre-training recipe differs is refused in one line naming the fields."""
    from mgm.errors import MGMError
    from mgm.experiment import Runner

    smoke = PRESETS["smoke"]
    src = tmp_path / "mean"
    Runner(src, smoke)
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.txt").write_text("".join(f"v{i}.mp4 {i % 2}\n" for i in range(48)))  # 6 steps of 8 an epoch
    theirs = src / "runs" / "pretrain-tube-0.75-s0"
    theirs.mkdir(parents=True)
    for step in (6, 12):
        (theirs / f"ckpt-{step:08d}.pt").write_text(str(step))
    (src / "results" / "pretrain__tube-0.75__s0.json").write_text(json.dumps(
        {"arm": "tube-0.75", "seed": 0, "final_loss": 0.5,
         "checkpoints": {s: str(theirs / f"ckpt-{int(s):08d}.pt") for s in ("6", "12")}}))

    trained = []
    monkeypatch.setattr("mgm.train.tasks.run_training", lambda command, cfg: trained.append(cfg.run.name) or 1 / 0)
    out = tmp_path / "slots"
    runner = Runner(out, smoke.replace(finetune_pooling="slots"), pretrained=src)
    assert runner.data == src / "data"  # the pre-trainings' clips unless --data
    runner.roots = {"base": root}
    res = runner.pretrain(Arm("tube", 0.75), 0)
    assert trained == [] and res.final_loss == 0.5 and res.reused_from == str(src)
    assert {s: open(p).read() for s, p in res.checkpoints.items()} == {"6": "6", "12": "12"}
    assert all(p.startswith(str(out / "runs")) for p in res.checkpoints.values())
    with pytest.raises(ZeroDivisionError):  # not in the other folder: pre-trained here
        runner.pretrain(Arm("mgm", 0.75), 0)
    assert trained == ["pretrain-mgm-0.75-s0"]
    # a probe of a frozen encoder is reused when both folders score the same split, else run again
    (src / "results" / "probe__motion-maps.json").write_text(json.dumps({"tag": "motion-maps", "mean": 42.0}))
    assert runner.motion_probe().mean == 42.0
    dev = Runner(tmp_path / "dev", smoke.replace(eval_split="dev"), pretrained=src)
    monkeypatch.setattr(Runner, "memory_splits", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        dev.motion_probe()
    with pytest.raises(MGMError, match="differ from this recipe's in pretrain_steps, pretrain_lr"):
        Runner(tmp_path / "other", smoke.replace(pretrain_steps=24, pretrain_lr=1e-3), pretrained=src)
    with pytest.raises(MGMError, match="not an experiment folder"):
        Runner(tmp_path / "other", smoke, pretrained=root)
    (src / "recipe.json").write_text('{"synth": "tiny", ')  # cut off while written
    with pytest.raises(MGMError, match=r"recipe.json: not a readable recipe"):
        Runner(tmp_path / "other", smoke, pretrained=src)
    assert not (tmp_path / "other").exists()  # refused before anything was made


@pytest.mark.slow
def test_a_preset_without_every_epoch_keeps_only_curve_checkpoints(tmp_path):
    """The demo's preset keeps only the checkpoints its curve fine-tunes (one per epoch came to
    5.7 GB in runs/demo); the others keep every epoch end, so a new curve point reuses them."""
    from mgm.train.checkpoint import list_checkpoints
    from mgm.experiment import Runner

    assert PRESETS["demo"].keep_every_epoch is False and PRESETS["small"].keep_every_epoch
    preset = PRESETS["smoke"].replace(arms=(Arm("tube", 0.75),), seeds=(0,), label_fractions=(1.0,),
                     curve_labels=1.0, probe=False, transfer=False, scratch=False, keep_every_epoch=False)
    runner = Runner(tmp_path, preset, verbose=False)
    runner.run()
    kept = [p.name for p in list_checkpoints(tmp_path / "runs" / "pretrain-tube-0.75-s0")]
    assert kept == ["ckpt-00000006.pt", "ckpt-00000012.pt"]  # the curve's 0.5 and 1.0 only
    assert runner.run()["markdown"]  # finished: the kept checkpoints satisfy the resume check


def test_a_preset_is_a_geometry_and_stage_overrides_stored_under_the_old_names(tmp_path, monkeypatch):
    """Presets hold one Geometry and each stage's training-config overrides; recipe.json keeps the
    names it always had (num_frames, pretrain_batch, finetune_pooling, ...), so older folders resume;
    an override without such a name is stored as "<stage>.<key>", reaches the run's config and
    decides whether another folder's pre-trainings may be reused."""
    from mgm.config import Geometry
    from mgm.errors import MGMError
    from mgm.experiment import Runner

    smoke = PRESETS["smoke"]
    assert smoke.geometry == Geometry(num_frames=4, size=64, tubelet=2, patch=16)
    rec = smoke.record()
    assert {k: rec[k] for k in ("num_frames", "size", "patch", "pretrain_batch", "pretrain_lr", "norm_pix",
                                "finetune_batch", "finetune_lr", "finetune_layer_decay", "finetune_pooling")} == {
        "num_frames": 4, "size": 64, "patch": 16, "pretrain_batch": 8, "pretrain_lr": 2e-3, "norm_pix": True,
        "finetune_batch": 8, "finetune_lr": 4e-3, "finetune_layer_decay": 0.75, "finetune_pooling": "mean"}
    changed = smoke.replace(patch=8, pretrain_batch=4, finetune_pooling="slots", seeds=(3,))
    assert changed.geometry.patch == 8 and changed.geometry.size == 64 and changed.seeds == (3,)
    assert changed.pretrain["data.batch_size"] == 4 and changed.finetune["model.pooling"] == "slots"
    assert smoke.pretrain["data.batch_size"] == 8  # the original is untouched
    with pytest.raises(ValueError, match="not a multiple of patch"):
        smoke.replace(patch=7)

    compiled = smoke.replace(pretrain={**smoke.pretrain, "run.precision": "fp32", "optim.weight_decay": 0.1})
    assert compiled.record()["pretrain.optim.weight_decay"] == 0.1
    seen = []
    monkeypatch.setattr("mgm.train.tasks.run_training", lambda command, cfg: seen.append(cfg) or 1 / 0)
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.txt").write_text("".join(f"v{i}.mp4 {i % 2}\n" for i in range(16)))
    runner = Runner(tmp_path / "a", compiled)
    runner.roots = {"base": root}
    with pytest.raises(ZeroDivisionError):
        runner.pretrain(Arm("tube", 0.75), 0)
    cfg = seen[0]
    assert (cfg.optim.weight_decay, cfg.data.batch_size, cfg.optim.base_lr, cfg.data.patch) == (0.1, 8, 2e-3, 16)
    with pytest.raises(MGMError, match="differ from this recipe's in pretrain.optim.weight_decay"):
        Runner(tmp_path / "b", smoke, pretrained=tmp_path / "a")


def test_a_stop_signal_inside_a_unit_keeps_its_checkpoint_and_stores_no_result(tmp_path, monkeypatch, capsys):
    """A training run that a SIGTERM stopped is no finished unit: no result is stored (a fine-tune
    would have been recorded without a score), the pre-training's checkpoint stays (the clean-up of
    a finished pre-training would delete it), and the command exits 143 with one line."""
    from mgm.cli import main
    from mgm.errors import Stopped
    from mgm.experiment import Runner

    def stopped_run(command, cfg):
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        (cfg.run_dir / "ckpt-00000005.pt").write_text("state at the stop")
        return {"step": 5, "stopped": "SIGTERM", "eval": None, "loss": 1.0}

    monkeypatch.setattr("mgm.train.tasks.run_training", stopped_run)
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.txt").write_text("".join(f"v{i}.mp4 {i % 2}\n" for i in range(48)))
    runner = Runner(tmp_path / "out", PRESETS["smoke"])
    runner.roots = {"base": root}
    with pytest.raises(Stopped, match=r"SIGTERM received: pre-training tube-0.75 s0 stopped at step 5 \(its "
                                      r"checkpoint in .* is kept; the next run continues it\)"):
        runner.pretrain(Arm("tube", 0.75), 0)
    run_dir = tmp_path / "out" / "runs" / "pretrain-tube-0.75-s0"
    assert (run_dir / "ckpt-00000005.pt").read_text() == "state at the stop"
    with pytest.raises(Stopped, match="fine-tuning scratch on 1 of the labels s0 stopped at step 5"):
        runner.finetune("scratch", None, 1.0, 0)
    assert not list((tmp_path / "out" / "results").glob("*.json"))  # nothing recorded as done

    monkeypatch.setattr("mgm.experiment.runner.Runner.run", lambda self: runner.pretrain(Arm("tube", 0.75), 0))
    code = main(["experiment", "masking", "--preset", "smoke", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 143 and len(err) == 1 and err[0].startswith("mgm experiment: SIGTERM received: pre-training")
