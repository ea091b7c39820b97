"""A researcher's first hour: `mgm runs` lists and plots runs, last.pt / best.pt and run directories
wherever a checkpoint is taken, TensorBoard or one line saying how to get it, numbers a reader can
trust (1-based epochs, dropped clips, top-k, parameter counts), warnings that name the video."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

from mgm.train import checkpoint as C
from mgm.cli import main
from mgm.train.log import read_log

TINY = ["--set", "data.source=random", "--set", "data.num_frames=4", "--set", "data.size=32",
        "--set", "data.batch_size=4", "--set", "data.random_len=18", "--set", "data.num_classes=3",
        "--set", "run.threads=1", "--set", "run.progress=false"]


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """runs/{pre, ft, lp}: a tiny pre-training, a fine-tune and a linear probe from it (3 epochs of
    4 steps; 18 clips at batch 4 leave 2 out of every epoch)."""
    root = tmp_path_factory.mktemp("first_hour") / "runs"
    common = TINY + ["--set", f"run.out_dir={root}"]
    assert main(["pretrain", *common, "--name", "pre", "--set", "optim.epochs=3"]) == 0
    assert main(["finetune", *common, "--name", "ft", "--set", "optim.epochs=3",
                 "--set", f"model.init={root / 'pre'}"]) == 0          # a run directory as the checkpoint
    assert main(["linprobe", *common, "--name", "lp", "--set", "optim.epochs=2",
                 "--set", f"model.init={root / 'pre'}"]) == 0
    return root


def test_runs_lists_every_run_with_recipe_progress_and_scores(three_runs, capsys):
    assert main(["runs", str(three_runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "command", "model", "mask", "batch", "lr", "steps", "loss", "best", "last",
                                "state", "updated"]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    # lr = base lr x 4 / 256: 1.5e-4 for pre-training, 1e-3 fine-tuning, 0.1 probing
    assert rows["pre"][1:8] == ["pretrain", "tiny", "tube", "0.9", "4", "2.34e-06", "12/12"]
    assert rows["ft"][1:7] == ["finetune", "tiny", "-", "4", "1.56e-05", "12/12"]
    assert rows["lp"][1:7] == ["linprobe", "tiny", "-", "4", "0.00156", "8/8"]
    ft = {r["path"].rsplit("/", 1)[1]: r for r in json.loads(_json(three_runs))}
    logs = {name: read_log(three_runs / name / "log.jsonl") for name in ft}
    for name, r in ft.items():
        evals = [e["top1"] for e in logs[name] if e["event"] == "eval"]
        assert r["state"] == "finished" and r["step"] == r["planned"]
        assert r["best_top1"] == (max(evals) if evals else None) and r["last_top1"] == (evals[-1] if evals else None)
        assert r["effective_batch"] == 4 and r["lr"] == pytest.approx(next(e["lr"] for e in logs[name]))
    assert (ft["pre"]["step"], ft["ft"]["step"], ft["lp"]["step"]) == (12, 12, 8)
    assert ft["pre"]["mask"] == "tube 0.9" and ft["ft"]["mask"] == ""


def _json(root) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["runs", str(root), "--json"]) == 0
    return buf.getvalue()


def test_runs_states_running_stopped_diverged(tmp_path):
    from mgm import runs
    from mgm.train import rundir

    common = TINY + ["--set", f"run.out_dir={tmp_path}"]
    assert main(["pretrain", *common, "--name", "cut", "--set", "optim.epochs=3", "--set", "optim.max_steps=4"]) == 0
    log = tmp_path / "cut" / "log.jsonl"
    start = json.loads(log.read_text().splitlines()[0])
    assert start["event"] == "start"
    assert runs.summarise(tmp_path / "cut").state == "finished"  # max_steps reached: planned is 4
    held = rundir.claim(tmp_path / "cut", fresh=False)
    try:
        assert runs.summarise(tmp_path / "cut").state == "running"
    finally:
        held.release()
    with open(log, "a") as f:
        f.write(json.dumps({"event": "error", "time": 1.0, "step": 5,
                            "message": "non-finite loss (nan) at step 5"}) + "\n")
    assert runs.summarise(tmp_path / "cut").state == "diverged"
    lines = log.read_text().splitlines()
    log.write_text(lines[0] + "\n" + lines[-1].replace('"step": 5', '"step": 0') + "\n")  # failed before logging
    assert runs.summarise(tmp_path / "cut").step == 4  # then the newest checkpoint's step counts


def test_runs_plot_draws_losses_and_scores(three_runs, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert main(["runs", str(three_runs), "--plot", str(out)]) == 0
    assert f"{out}: loss and top-1 curves of 3 runs" in capsys.readouterr().out
    from PIL import Image

    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[0] > 300 and img.shape[1] > 800
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # lines in several colours, not a blank


def test_last_and_best_point_at_the_right_checkpoints(three_runs):
    ft = three_runs / "ft"
    evals = [r for r in read_log(ft / "log.jsonl") if r["event"] == "eval"]
    best_step = max(evals, key=lambda r: (r["top1"], -r["step"]))["step"]  # the first of equal bests
    assert C.load_checkpoint(ft / "last.pt")["step"] == 12
    assert C.load_checkpoint(ft / "best.pt")["step"] == best_step
    assert os.path.samefile(ft / "last.pt", C.latest_checkpoint(ft))  # a hard link: no extra space
    assert not (three_runs / "pre" / "best.pt").exists()  # pre-training is never evaluated


def test_a_run_directory_stands_for_its_last_checkpoint(three_runs, tmp_path, capsys):
    assert main(["eval", str(three_runs / "ft"), "--set", "run.progress=false",
                 "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    last = [r for r in read_log(three_runs / "ft" / "log.jsonl") if r["event"] == "eval"][-1]
    assert json.loads((tmp_path / "m.json").read_text())["top1"] == last["top1"]
    assert f"top-1 {last['top1']:.2f}%" in printed and "top-5" not in printed  # 3 classes: no top-5
    assert main(["features", str(three_runs / "pre"), "--out", str(tmp_path / "f.npy"),
                 "--set", "data.source=random", "--set", "data.random_len=6", "--set", "run.progress=false"]) == 0
    assert np.load(tmp_path / "f.npy").shape == (6, 192)
    with pytest.raises(Exception, match="a folder without checkpoints"):
        C.load_checkpoint(tmp_path)


def test_start_line_epochs_and_counts_read_right(three_runs, tmp_path, capsys):
    main(["linprobe", *TINY, "--set", f"run.out_dir={tmp_path}", "--name", "lp", "--set", "optim.epochs=2",
          "--set", f"model.init={three_runs / 'pre'}"])
    out = capsys.readouterr().out
    assert "4 steps/epoch (2 of 18 clips left out of each epoch)" in out
    assert "579 of 2.07M params trained" in out  # was "0.00M of ..."
    assert "epoch 1/2" in out and "epoch 2/2" in out and "epoch 0" not in out
    records = read_log(tmp_path / "lp" / "log.jsonl")
    assert {r["epoch"] for r in records if r["event"] in ("step", "epoch", "eval")} == {1, 2}


def test_tensorboard_gets_the_scalars_or_one_line_says_how(tmp_path, capsys, monkeypatch):
    import builtins

    assert main(["pretrain", *TINY, "--set", f"run.out_dir={tmp_path}", "--name", "tb", "--set", "optim.epochs=1",
                 "--set", "run.log_every=1"]) == 0
    if importlib_available("tensorboard"):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(tmp_path / "tb" / "tb"))
        acc.Reload()
        logged = [r["loss"] for r in read_log(tmp_path / "tb" / "log.jsonl") if r["event"] == "step"]
        assert [e.value for e in acc.Scalars("step/loss")] == pytest.approx(logged)
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    capsys.readouterr()
    assert main(["pretrain", *TINY, "--set", f"run.out_dir={tmp_path}", "--name", "none", "--set", "optim.epochs=1"]) == 0
    printed = capsys.readouterr().out
    assert "TensorBoard is not installed" in printed and "pip install tensorboard" in printed
    assert not (tmp_path / "none" / "tb").exists()


def importlib_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_top5_only_with_more_than_five_classes():
    from mgm.train.loop import evaluate

    class Logits(torch.utils.data.Dataset):
        def __init__(self, k):
            self.k = k

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"video": torch.arange(self.k, dtype=torch.float32).view(1, 1, 1, -1), "label": 0, "index": i}

    for k, top5 in ((3, None), (5, None), (6, 0.0)):
        loader = torch.utils.data.DataLoader(Logits(k), batch_size=2)
        m = evaluate(lambda model, v: v.flatten(1), torch.nn.Identity(), loader, device=torch.device("cpu"),
                     progress=False)
        assert m["top5"] == top5, k  # label 0 has the lowest logit: outside the top-5 of 6


def test_a_motionless_clip_warning_names_the_video_and_the_clip(encode, tmp_path):
    from mgm.config import Geometry
    from mgm.data.dataset import build_dataset
    from mgm.masking import build_mask_generator

    still = np.full((12, 64, 64, 3), 90, np.uint8)
    path = encode("still.mp4", still)
    (tmp_path / "l.txt").write_text(f"{path} 0\n")
    g = Geometry(num_frames=4, size=32, tubelet=2, patch=16)
    data = build_dataset(str(tmp_path / "l.txt"), geometry=g, mode="val", stride=2,
                         mask_generator=build_mask_generator("mgm", g, 0.5))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        data[0]
    messages = [str(w.message) for w in seen]
    assert any(m.startswith(f"{path} (clip from frame ") and "no motion" in m for m in messages), messages


def test_a_negligible_pretraining_lr_is_warned_with_the_fix(tmp_path, capsys):
    assert main(["pretrain", *TINY, "--set", f"run.out_dir={tmp_path}", "--name", "p", "--set", "optim.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert ("warning: the scaled lr 2.34e-06 (effective batch 4) is so small that pre-training will barely "
            "move; raise optim.base_lr, data.batch_size or optim.accum_steps") in out


@pytest.mark.slow
def test_demo_ends_on_what_it_shows(tmp_path, monkeypatch, capsys):
    """`mgm demo` (on a shortened recipe): the loss curves, mask GIF, reconstruction and table it
    names exist, no one-point curve.png, and the last line names mgm and tube with their top-1 in
    percent and says the tiny run is chance-level by design."""
    from mgm import experiment

    monkeypatch.setitem(experiment.PRESETS, "demo", experiment.PRESETS["demo"].replace(pretrain_steps=8,
                        finetune_steps=4, pretrain_batch=8, finetune_batch=8, probe=False))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    last = printed[-1]
    assert last.startswith("top-1 (%): mgm ") and " | tube " in last and " | scratch " in last
    assert "chance-level by design" in last and "README" in last
    for name in ("pretrain_loss.png", "mask_mgm.gif", "reconstruction_mgm.png", "results.md"):
        assert (out / name).stat().st_size > 400, name
        assert str(out / name) in printed[-2]
    assert not (out / "curve.png").exists()
    import re

    printed_mb = int(re.search(r", (\d+) MB: delete it", printed[-2]).group(1))
    on_disk = {(st.st_dev, st.st_ino): st.st_size for st in (p.stat() for p in out.rglob("*") if p.is_file())}
    assert abs(printed_mb - sum(on_disk.values()) / 2**20) < 1  # hard-linked last.pt counted once, as du does
    assert "| scratch |" in (out / "results.md").read_text()  # the table, in percent


def test_model_init_brings_its_geometry_and_flags_override_it(three_runs, tmp_path, capsys):
    """Fine-tuning from a run folder takes its model and clip geometry (4 frames of 32 px here, not
    the defaults 16 x 224) unless a flag sets them; then the position table is resampled."""
    bare = ["--set", "data.source=random", "--set", "data.batch_size=4", "--set", "data.random_len=8",
            "--set", "data.num_classes=3", "--set", "run.threads=1", "--set", "run.progress=false",
            "--set", f"run.out_dir={tmp_path}", "--set", f"model.init={three_runs / 'pre'}",
            "--set", "optim.max_steps=1"]
    assert main(["finetune", *bare, "--name", "inherit"]) == 0
    assert "took data.num_frames=4, data.size=32 from the checkpoint" in capsys.readouterr().out
    data = read_log(tmp_path / "inherit" / "log.jsonl")[0]["config"]["data"]
    assert (data["num_frames"], data["size"]) == (4, 32)
    assert main(["finetune", *bare, "--name", "override", "--set", "data.size=64"]) == 0
    data = read_log(tmp_path / "override" / "log.jsonl")[0]["config"]["data"]
    assert (data["num_frames"], data["size"]) == (4, 64)


def test_a_damaged_run_log_is_named_and_the_other_runs_still_listed(three_runs, tmp_path, capsys):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(three_runs, root)
    with open(root / "lp" / "log.jsonl", "a") as f:
        f.write('{"event": "step", "st')  # a run killed in the middle of a write
    assert main(["runs", str(root)]) == 1
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()[2:4]] == ["ft", "pre"]
    assert err.strip().count("\n") == 0 and f"{root / 'lp' / 'log.jsonl'}: not a readable run log" in err
