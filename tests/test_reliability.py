"""Faults a training campaign meets (docs/RELIABILITY.md): full or read-only disks, divergence, a
reused or shared run directory, pre-emption, damaged checkpoints, impossible settings. Each test
injects the fault for real where it can (tmpfs mounts, signals, truncated files) and checks that
nothing is lost and that the user reads one line naming the file or key and the reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mgm.train import checkpoint as C
from mgm import files
from mgm.cli import main
from mgm.train.loop import NonFiniteLossError
from mgm.errors import MGMError
from mgm.train.config import load_config
from mgm.train.fit import Task, fit
from mgm.train.log import read_log
from test_engine import Batches as Pairs  # regression data: item i is x_i [3] -> y_i [1]
from test_engine import _mse, one_thread  # noqa: F401  (autouse: tiny models run on one thread)

CLI = [sys.executable, "-c", "import sys; from mgm.cli import main; sys.exit(main(sys.argv[1:]))"]


def _cfg(tmp_path, *extra):
    return load_config("pretrain", overrides=[
        f"run.out_dir={tmp_path}", "run.name=t", "data.batch_size=2", "optim.epochs=2", "run.progress=false",
        "optim.base_lr=25.6", *extra])


def _one_line(text: str) -> str:
    assert "Traceback" not in text, text
    # a progress bar redraws with \r and ends blank: what stays on screen is each line's last part
    lines = [line.split("\r")[-1] for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def _snapshot(folder: Path) -> dict:
    """{relative path: (size, mtime_ns, bytes)} of every file under folder."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- atomic outputs, one-line OS errors
def test_atomic_write_creates_folders_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.txt"
    files.write_text(target, "one")
    assert target.read_text() == "one" and oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    with pytest.raises(RuntimeError):
        with files.atomic_write(target, "w") as f:
            f.write("half")
            raise RuntimeError("killed half way")
    assert target.read_text() == "one" and os.listdir(target.parent) == ["out.txt"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_full_disk_is_one_line_naming_the_file_and_no_temp_is_left(tmpfs):
    disk = tmpfs("64k")
    with pytest.raises(MGMError) as e:
        with files.atomic_write(disk / "big.bin") as f:
            f.write(b"\0" * 1_000_000)
    assert str(e.value) == f"{disk / 'big.bin'}: cannot write (no space left on device)"
    assert os.listdir(disk) == []


@pytest.mark.parametrize("command", [
    ["synth", "{out}/bench", "--preset", "tiny", "--clips", "dev=1", "--jobs", "1"],
    ["lists", "kinetics", "{csv}", "--out", "{out}/lists"],
    ["motion", "{video}", "--out", "{out}/m.npz"],
    ["mask", "{video}", "--strategy", "tube", "--num-frames", "4", "--stride", "2", "--size", "32",
     "--out", "{out}/m.npy"],
    ["show", "{video}", "--strategy", "tube", "--num-frames", "4", "--stride", "2", "--size", "32",
     "--out", "{out}/m.png"],
], ids=lambda c: c[0])
def test_read_only_output_is_one_line(command, tmpfs, square_clip, tmp_path, capsys):
    out = tmpfs("1m", readonly=True)
    csv = tmp_path / "k400.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,0,10,train\n")
    args = [a.format(out=out, video=square_clip[0], csv=csv) for a in command]
    assert main(args) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(out) in line and "read-only file system" in line


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A tiny fine-tuned checkpoint on random clips (for eval / features)."""
    out = tmp_path_factory.mktemp("ft")
    assert main(["finetune", "--set", f"run.out_dir={out}", "--name", "ft", *_TINY, "--set", "run.progress=false",
                 "--set", "optim.max_steps=1"]) == 0
    return C.latest_checkpoint(out / "ft")


_TINY = ["--set", "data.source=random", "--set", "data.num_frames=4", "--set", "data.size=32",
         "--set", "data.batch_size=4", "--set", "data.random_len=8", "--set", "data.num_classes=2",
         "--set", "run.threads=1"]


@pytest.mark.parametrize("command", [["eval", "{ckpt}", "--out", "{out}/m.json"],
                                     ["features", "{ckpt}", "--out", "{out}/f.npy"]], ids=lambda c: c[0])
def test_read_only_output_of_eval_and_features(command, finetuned, tmpfs, capsys):
    out = tmpfs("1m", readonly=True)
    args = [a.format(out=out, ckpt=finetuned) for a in command] + ["--set", "run.progress=false"]
    assert main(args) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(out) in line and "read-only file system" in line


def test_disk_full_at_a_checkpoint_save_is_one_line_and_keeps_the_previous_one(tmpfs):
    disk = tmpfs("2m")  # one checkpoint of this model (weights + AdamW moments) is ~1.2 MB
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 20_000), nn.Linear(20_000, 1))
    with pytest.raises(MGMError) as e:
        fit(_cfg(disk, "run.ckpt_every=1", "optim.base_lr=1e-3"), Task("pretrain", model, _mse), Pairs())
    run_dir = disk / "t"
    assert str(e.value) == (f"{run_dir}/ckpt-00000002.pt: cannot write (no space left on device); "
                            f"the previous checkpoint {run_dir}/ckpt-00000001.pt is intact")
    assert [p.name for p in C.list_checkpoints(run_dir)] == ["ckpt-00000001.pt"]
    assert C.load_checkpoint(run_dir / "ckpt-00000001.pt")["step"] == 1
    assert files.stale_temps(run_dir) == []


# ---------------------------------------------------------------- divergence
def _nan_gradients_at(step: int):
    """A loss that stays finite while its gradients turn NaN at optimizer step `step`."""
    calls = [0]

    def loss(model, batch):
        calls[0] += 1
        value = _mse(model, batch)
        if calls[0] == step:
            value.register_hook(lambda g: g * float("nan"))
        return value

    return loss


def test_nan_gradients_with_a_finite_loss_are_never_applied_or_saved(tmp_path):
    torch.manual_seed(0)
    task = Task("pretrain", nn.Linear(3, 1), _nan_gradients_at(3))
    with pytest.raises(NonFiniteLossError) as e:
        fit(_cfg(tmp_path, "run.ckpt_every=1", "run.keep_ckpts=10"), task, Pairs())
    msg = str(e.value)
    assert "non-finite gradients" in msg and "at step 3" in msg and "ckpt-00000002.pt" in msg and "\n" not in msg
    assert all(torch.isfinite(p).all() for p in task.model.parameters())
    saved = C.list_checkpoints(tmp_path / "t")
    assert [p.name for p in saved] == ["ckpt-00000001.pt", "ckpt-00000002.pt"]
    assert all(not C.nonfinite_tensors(C.load_checkpoint(p)["model"]) for p in saved)


@pytest.mark.parametrize("ckpt_every", [1, 0])  # a save right after the update, or the next step first
def test_an_update_that_overflows_the_weights_is_not_saved(tmp_path, ckpt_every):
    """An lr beyond float32's range makes the first update's weights inf. The loop checks weights
    lazily: a save right after it refuses, or the next step's loss (NaN) finds them; either way
    NonFiniteLossError names the update, and no checkpoint holds a non-finite weight."""
    torch.manual_seed(0)
    task = Task("pretrain", nn.Linear(3, 1), _mse)
    with pytest.raises(NonFiniteLossError, match="an update up to step 1 made weights NaN/inf"):
        fit(_cfg(tmp_path, f"run.ckpt_every={ckpt_every}", "optim.base_lr=1e45", "optim.weight_decay=0"), task, Pairs())
    assert not C.list_checkpoints(tmp_path / "t")


def test_huge_but_finite_weights_are_finite():
    """The weights' check is exact: a sum of squares would overflow to inf on 1e30 weights."""
    from mgm.train.loop import weights_finite

    assert weights_finite([torch.full((4,), 1e30), torch.tensor([-3e38])])
    assert not weights_finite([torch.ones(3), torch.tensor([1.0, float("inf")])])
    assert not weights_finite([torch.tensor([float("nan")]), torch.ones(2)])


def test_save_checkpoint_refuses_non_finite_weights(tmp_path):
    with pytest.raises(MGMError, match="1 model tensors hold NaN/inf"):
        C.save_checkpoint(tmp_path / "ckpt-00000001.pt", {"model": {"w": torch.tensor([1.0, float("nan")])}})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- one run per run directory
def test_a_fresh_run_into_a_used_run_dir_refuses_and_changes_nothing(tmp_path):
    torch.manual_seed(0)
    fit(_cfg(tmp_path), Task("pretrain", nn.Linear(3, 1), _mse), Pairs())
    before = _snapshot(tmp_path / "t")
    with pytest.raises(MGMError) as e:
        fit(_cfg(tmp_path, "optim.epochs=1"), Task("pretrain", nn.Linear(3, 1), _mse), Pairs())
    assert "already holds a run" in str(e.value) and "--resume auto" in str(e.value) and "--overwrite" in str(e.value)
    assert _snapshot(tmp_path / "t") == before
    (tmp_path / "t" / ".lock").unlink()  # a run directory written before the lock existed
    before = _snapshot(tmp_path / "t")
    with pytest.raises(MGMError, match="already holds a run"):
        fit(_cfg(tmp_path, "optim.epochs=1"), Task("pretrain", nn.Linear(3, 1), _mse), Pairs())
    assert _snapshot(tmp_path / "t") == before  # not even a lock file
    # the explicit overwrite replaces the old run: its log and checkpoints are this run's only
    fit(_cfg(tmp_path, "optim.epochs=1", "run.overwrite=true"), Task("pretrain", nn.Linear(3, 1), _mse), Pairs())
    from mgm.train.log import read_log

    assert [r["event"] for r in read_log(tmp_path / "t" / "log.jsonl")].count("start") == 1
    assert [p.name for p in C.list_checkpoints(tmp_path / "t")] == ["ckpt-00000008.pt"]


def test_a_second_concurrent_run_is_refused(tmp_path):
    from mgm.train import rundir

    held = rundir.claim(tmp_path / "t", fresh=True)  # another process's run, as far as flock is concerned
    try:
        with pytest.raises(MGMError, match=f"another run is writing to it now \\(pid {os.getpid()}\\)"):
            fit(_cfg(tmp_path), Task("pretrain", nn.Linear(3, 1), _mse), Pairs())
        assert not (tmp_path / "t" / "log.jsonl").exists()
    finally:
        held.release()
    fit(_cfg(tmp_path), Task("pretrain", nn.Linear(3, 1), _mse), Pairs())  # free again


def test_temp_files_of_a_killed_save_are_cleaned_at_the_next_start(tmp_path):
    torch.manual_seed(0)
    fit(_cfg(tmp_path, "optim.epochs=1"), Task("pretrain", nn.Linear(3, 1), _mse), Pairs())
    torn = [tmp_path / "t" / ".ckpt-00000009.pt.tmp-4242", tmp_path / "t" / ".ckpt-00000009.pt.tmp-4242-abc.pt"]
    for p in torn:
        p.write_bytes(b"half a checkpoint")
    fit(_cfg(tmp_path, "run.resume=auto"), Task("pretrain", nn.Linear(3, 1), _mse), Pairs())
    assert not any(p.exists() for p in torn)


# ---------------------------------------------------------------- pre-emption and damaged checkpoints
def _sigterm_at(step: int):
    calls = [0]

    def loss(model, batch):
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signal.SIGTERM)  # as SLURM does before pre-emption
        return _mse(model, batch)

    return loss


def test_sigterm_checkpoints_at_the_step_boundary_and_resume_is_exact(tmp_path, capsys):
    torch.manual_seed(0)
    whole = Task("pretrain", nn.Linear(3, 1), _mse)
    fit(_cfg(tmp_path / "a"), whole, Pairs())
    torch.manual_seed(0)
    first = fit(_cfg(tmp_path / "b"), Task("pretrain", nn.Linear(3, 1), _sigterm_at(3)), Pairs())
    assert first["stopped"] == "SIGTERM" and first["step"] == 3
    assert first["checkpoint"].endswith("ckpt-00000003.pt") and Path(first["checkpoint"]).exists()
    assert "SIGTERM received: stopped at step 3" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed after the run
    torch.manual_seed(1)  # initialisation is overwritten by the checkpoint
    resumed = Task("pretrain", nn.Linear(3, 1), _mse)
    assert fit(_cfg(tmp_path / "b", "run.resume=auto"), resumed, Pairs())["step"] == 16
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_sigterm_to_the_command_exits_143_with_a_checkpoint(tmp_path):
    args = CLI + ["pretrain", "--set", f"run.out_dir={tmp_path}", "--name", "p", *_TINY,
                  "--set", "optim.epochs=1000", "--set", "run.log_every=1", "--set", "run.progress=false"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "p" / "log.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and '"event": "step"' in log.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received" in out and "--resume auto" in out
    assert C.latest_checkpoint(tmp_path / "p") is not None


def test_sigterm_to_the_whole_process_group_with_loader_workers_still_checkpoints(tmp_path):
    """SLURM, `timeout` and `kill -- -PGID` signal the loader's workers too: the run must still stop at
    a step boundary with a checkpoint (before: the workers died, and the main process with them, of
    "DataLoader worker ... killed by signal: Terminated", a traceback and no checkpoint)."""
    args = CLI + ["pretrain", "--set", f"run.out_dir={tmp_path}", "--name", "p", *_TINY, "--set", "data.num_workers=2",
                  "--set", "data.random_len=400", "--set", "optim.epochs=1000", "--set", "run.log_every=1",
                  "--set", "run.progress=false"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = tmp_path / "p" / "log.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().count('"event": "step"') >= 3) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # the main process and both workers, mid-epoch
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "SIGTERM received" in out
    stopped = [r for r in read_log(log) if r["event"] == "stopped"]
    assert len(stopped) == 1 and stopped[0]["step"] >= 3
    assert C.latest_checkpoint(tmp_path / "p").name == f"ckpt-{stopped[0]['step']:08d}.pt"


def test_a_shielded_worker_outlives_a_sigterm_by_its_grace_only():
    """The shield defers a SIGTERM, never ignores it for good: a worker the DataLoader terminates at
    shutdown (or one stuck) still exits, status 0."""
    code = ("import os, signal, time\n"
            "from mgm.train.stopping import shield_worker\n"
            "shield_worker(grace_s=1.0)\n"
            "os.kill(os.getpid(), signal.SIGUSR1); os.kill(os.getpid(), signal.SIGTERM)\n"
            "print('alive after both', flush=True)\n"
            "time.sleep(30)\n"
            "print('not reached')\n")
    t = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0 and proc.stdout == "alive after both\n", proc.stderr
    assert time.time() - t < 20


def test_resume_auto_skips_a_truncated_newest_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    fit(_cfg(tmp_path, "run.ckpt_every=2", "optim.max_steps=6"), Task("pretrain", nn.Linear(3, 1), _mse), Pairs())
    newest = C.latest_checkpoint(tmp_path / "t")
    assert newest.name == "ckpt-00000006.pt"
    newest.write_bytes(newest.read_bytes()[:200])  # a crash or a full disk mid-copy
    out = fit(_cfg(tmp_path, "run.resume=auto", "run.ckpt_every=2", "optim.max_steps=8"),
              Task("pretrain", nn.Linear(3, 1), _mse), Pairs())
    printed = capsys.readouterr().out
    assert "ckpt-00000006.pt: cannot load checkpoint" in printed and "skipped" in printed
    assert "resumed from" in printed and "ckpt-00000004.pt at step 4" in printed
    assert out["step"] == 8


# ---------------------------------------------------------------- impossible settings, labels
@pytest.mark.parametrize("override", ["optim.base_lr=-1", "optim.weight_decay=-5", "data.mask_ratio=0",
                                      "data.stride=0", "optim.max_steps=-3", "optim.min_lr=-1e-6",
                                      "optim.layer_decay=0", "model.drop_path=1.5"])
def test_impossible_settings_are_refused_before_any_step(override, tmp_path, capsys):
    assert main(["pretrain", "--set", f"run.out_dir={tmp_path}", *_TINY, "--set", override]) == 1
    key = override.split("=")[0]
    assert f"config key '{key}': must be" in _one_line(capsys.readouterr().err)
    assert not any(tmp_path.iterdir())  # no run dir, no log: refused before anything


def test_a_label_beyond_the_classes_is_found_before_training(tmp_path, capsys):
    (tmp_path / "train.txt").write_text("a.mp4 0\nb.mp4 1\nc.mp4 2\n")
    (tmp_path / "val.txt").write_text("a.mp4 0\n\nd.mp4 3\n")  # line 3: not one of the 3 classes
    assert main(["finetune", "--set", f"run.out_dir={tmp_path}/runs", "--set", f"data.train_list={tmp_path}/train.txt",
                 "--set", f"data.val_list={tmp_path}/val.txt"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"{tmp_path}/val.txt:3: label 3 is not a class (the training list has 3 classes" in line
    assert not (tmp_path / "runs").exists()


def test_lr_below_min_lr_is_warned(tmp_path, capsys):
    torch.manual_seed(0)
    fit(_cfg(tmp_path, "optim.base_lr=1e-4", "optim.min_lr=1e-5", "optim.epochs=1"),
        Task("finetune", nn.Linear(3, 1), _mse), Pairs())
    assert "warning: the scaled lr 7.81e-07 (effective batch 2) is below optim.min_lr 1e-05" in capsys.readouterr().out


# ---------------------------------------------------------------- videos: the right reason, or a warning
@pytest.mark.parametrize("encoder", ["msmpeg4", "msmpeg4v2", "wmv2"])
def test_ms_mpeg4_and_wmv_motion_is_read(encoder, encode):
    """FFmpeg's msmpeg4 decoder (MS-MPEG-4 v3, e.g. OpenCV's vtest.avi) exports motion vectors."""
    from conftest import interior_cells, moving_square_frames

    from mgm import codec

    frames, boxes = moving_square_frames(n=8)
    path = encode(f"square_{encoder}.avi", frames, codec=encoder, options={})
    field = codec.read_motion(path, jobs=1)
    assert field.frame_type[0] == "I" and field.num_frames == 8
    for t in range(2, 8):  # blocks inside the square move (+4, +2) px/frame
        cells = interior_cells(boxes[t])
        assert np.median(field.dx[t][cells]) == 4 and np.median(field.dy[t][cells]) == 2, t


def test_a_vp9_video_in_a_training_list_says_why_not_a_frame_count(encode, tmp_path):
    from conftest import moving_square_frames

    from mgm.config import Geometry
    from mgm.data.dataset import build_dataset
    from mgm.errors import VideoError
    from mgm.masking import build_mask_generator

    frames, _ = moving_square_frames(n=40, vx=2, vy=0)
    path = encode("square.webm", frames, codec="libvpx-vp9", options={"deadline": "realtime", "cpu-used": "8"})
    (tmp_path / "list.txt").write_text(f"{path} 0\n")
    geometry = Geometry(num_frames=4, size=32, tubelet=2, patch=16)
    data = build_dataset(str(tmp_path / "list.txt"), geometry=geometry, mode="pretrain", stride=4,
                         mask_generator=build_mask_generator("mgm", geometry, 0.75))
    for epoch in range(4):  # random starts: some > 0, where the reason used to be rewritten
        with pytest.raises(VideoError, match="vp9 stream carries no motion vectors"):
            data[(epoch, 0)]


def test_a_truncated_mp4_is_warned_not_read_silently(tmp_path, capsys):
    """An MP4 with its index at the front (faststart), cut in half: every frame is listed, half decode."""
    import av

    from conftest import moving_square_frames

    frames, _ = moving_square_frames(n=60, vx=1, vy=0)
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=25)
        s.height, s.width, s.pix_fmt = 96, 160, "yuv420p"
        s.options = {"x264-params": "bframes=0:ref=1"}
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    run = subprocess.run(CLI + ["motion", str(cut), "--out", str(tmp_path / "m.npz"), "--quiet"],
                         capture_output=True, text=True, timeout=120)
    decoded = len(np.load(tmp_path / "m.npz")["frame_type"])
    assert run.returncode == 0 and 0 < decoded < 60
    line = _one_line(run.stderr)  # a user's warning, not a Python source line
    assert line.startswith(f"mgm: warning: {cut}: truncated? decoded {decoded} of the 60 frames its header lists")
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["motion", str(whole), "--out", str(tmp_path / "w.npz"), "--quiet"]) == 0
    assert not seen


def test_motion_cache_is_shared_readable_and_heals_a_damaged_entry(square_clip, tmp_path):
    from mgm.data.motion_cache import MotionCache

    path = square_clip[0]
    cache = MotionCache(tmp_path / "cache")
    good = np.array(cache.motion(path))
    entry = Path(cache.entry(path))
    assert entry.stat().st_mode & 0o777 == 0o666 & ~_umask()  # was 0600: unreadable to a team
    assert os.listdir(tmp_path / "cache") == [entry.name]
    entry.write_bytes(entry.read_bytes()[:100])  # a disk that filled while another job wrote it
    with pytest.warns(UserWarning, match=f"{entry}: damaged motion-cache entry"):
        healed = np.array(MotionCache(tmp_path / "cache").motion(path))
    assert np.array_equal(healed, good)


def test_skipped_bad_videos_are_in_log_jsonl_and_nothing_is_left_in_tmp(square_clip, tmp_path):
    import glob
    import tempfile

    from mgm.train.log import read_log

    lst = tmp_path / "train.txt"
    lst.write_text(f"{square_clip[0]} 0\n{tmp_path}/gone.mp4 1\n")
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "mgm-bad-videos-*")))
    assert main(["pretrain", "--set", f"run.out_dir={tmp_path}", "--name", "p", "--set", f"data.train_list={lst}",
                 "--set", "data.num_frames=4", "--set", "data.size=32", "--set", "data.stride=2",
                 "--set", "data.batch_size=2", "--set", "data.bad_videos=skip", "--set", "run.progress=false",
                 "--set", "run.threads=1"]) == 0
    bad = [r for r in read_log(tmp_path / "p" / "log.jsonl") if r["event"] == "bad_videos"]
    assert bad and bad[0]["count"] == 1 and bad[0]["videos"] == {f"{tmp_path}/gone.mp4": "no such file"}
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "mgm-bad-videos-*"))) == before


def test_pruning_keeps_the_curve_checkpoints(tmp_path):
    for step in (2, 4, 6, 8, 10):
        C.save_checkpoint(C.checkpoint_path(tmp_path, step), {"step": step})
    C.prune_checkpoints(tmp_path, keep=2, keep_steps=[4])
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt-00000004.pt", "ckpt-00000008.pt",
                                                             "ckpt-00000010.pt"]
