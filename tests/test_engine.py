"""Engine: lr scaling and schedule values, parameter groups with layer decay, gradient accumulation,
non-finite loss handling, multi-view evaluation, mixup/cutmix targets, linear probe, precision."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn

from mgm.train import checkpoint as C
from mgm.train.loop import (NonFiniteLossError, evaluate, make_scaler, resolve_precision, topk_correct,
                        train_one_epoch)
from mgm.errors import MGMError
from mgm.train.mixup import mix_batch, smooth_one_hot, soft_cross_entropy
from mgm.train.optim import CosineSchedule, build_optimizer, param_groups, scaled_lr
from mgm.train.config import load_config
from mgm.train.fit import Task, fit

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: extra threads only spin (measured 100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_lr_scaling_rule():
    assert scaled_lr(1.5e-4, 256) == pytest.approx(1.5e-4)
    assert scaled_lr(1.5e-4, 2048) == pytest.approx(1.2e-3)   # VideoMAE ViT-B K400: 64 x 32 GPUs
    assert scaled_lr(1e-3, 24) == pytest.approx(9.375e-5)


def test_cosine_schedule_values_and_lr_scale():
    opt = torch.optim.AdamW([{"params": [nn.Parameter(torch.zeros(1))], "lr_scale": 1.0},
                             {"params": [nn.Parameter(torch.zeros(1))], "lr_scale": 0.25}])
    s = CosineSchedule(opt, lr=1.0, total_steps=10, warmup_steps=2, min_lr=0.1)
    got = [s.step() for _ in range(12)]
    expect = [0.0, 0.5] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)] + [0.1, 0.1]
    assert got == pytest.approx(expect)
    assert got[6] == pytest.approx(0.55)          # half-way through the cosine: (1 + 0.1) / 2
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.025])
    state = s.state_dict()
    s2 = CosineSchedule(opt, lr=1.0, total_steps=10, warmup_steps=2, min_lr=0.1)
    s2.load_state_dict(state)
    assert s2.value(s2.step_index) == s.value(s.step_index)


def test_layer_decay_groups_of_the_classifier():
    from mgm.model import ModelConfig, VideoMAEClassifier
    from mgm.train.optim import layer_id

    model = VideoMAEClassifier(ModelConfig.from_preset("tiny", img_size=32, num_frames=4, num_classes=5))
    depth = model.cfg.depth  # 4
    groups = param_groups(model, 0.05, layer_decay=0.5, num_layers=depth, layer_id=layer_id,
                          no_weight_decay=model.no_weight_decay())
    scale_of = {n: g["lr_scale"] for g in groups for n in g["names"]}
    decay_of = {n: g["weight_decay"] for g in groups for n in g["names"]}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(scale_of) == sorted(names)  # every parameter exactly once
    assert sum(len(g["names"]) for g in groups) == len(names)
    assert scale_of["encoder.patch_embed.proj.weight"] == 0.5 ** 5
    for i in range(depth):
        assert scale_of[f"encoder.blocks.{i}.mlp.fc1.weight"] == 0.5 ** (depth - i)
        assert scale_of[f"encoder.blocks.{i}.norm1.weight"] == 0.5 ** (depth - i)
    assert scale_of["head.weight"] == 1.0 and scale_of["fc_norm.weight"] == 1.0
    assert decay_of["head.weight"] == 0.05 and decay_of["encoder.blocks.0.attn.qkv.weight"] == 0.05
    assert decay_of["head.bias"] == 0.0 and decay_of["encoder.blocks.2.norm2.weight"] == 0.0
    assert decay_of["fc_norm.weight"] == 0.0
    # without layer decay: two groups, decay / no decay, all at full rate
    plain = param_groups(model, 0.05)
    assert [(g["weight_decay"], g["lr_scale"]) for g in plain] == [(0.05, 1.0), (0.0, 1.0)]
    opt = build_optimizer(model, 2e-3, 0.05, betas=(0.9, 0.95), layer_decay=0.5, num_layers=depth,
                          layer_id=layer_id)
    assert opt.defaults["betas"] == (0.9, 0.95)
    assert {round(g["lr"] / 2e-3, 6) for g in opt.param_groups} == {0.5 ** k for k in range(6)}


def test_pretrain_groups_exempt_mask_token_from_decay():
    from mgm.model import ModelConfig, VideoMAEPretrain

    model = VideoMAEPretrain(ModelConfig.from_preset("tiny", img_size=32, num_frames=4))
    groups = param_groups(model, 0.05)  # the model's no_weight_decay() is picked up by itself
    decay_of = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert model.mask_token.ndim == 3 and decay_of["mask_token"] == 0.0 and decay_of["encoder.blocks.0.mlp.fc2.weight"] == 0.05


# ---------------------------------------------------------------------------------------------

class Batches(torch.utils.data.Dataset):
    """Regression data: item i is x_i [3] -> y_i [1]; fixed, so loops can be compared exactly."""

    def __init__(self, n=16):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "index": i}


def _mse(model, batch):
    return (model(batch["x"]) - batch["y"]).square().mean()


def _run(batch_size, accum, steps=3, clip=0.0):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = build_optimizer(model, 0.1, 0.05)
    sched = CosineSchedule(opt, 0.1, total_steps=steps, warmup_steps=1)
    loader = torch.utils.data.DataLoader(Batches(), batch_size=batch_size, shuffle=False)
    stats = train_one_epoch(model, _mse, loader, opt, sched, device=CPU, steps=steps, accum_steps=accum,
                            clip_grad=clip, progress=False)
    return model, stats


def test_gradient_accumulation_equals_the_big_batch():
    big, s_big = _run(batch_size=4, accum=1)
    acc, s_acc = _run(batch_size=2, accum=2)
    assert s_big["steps"] == s_acc["steps"] == 3
    for a, b in zip(big.parameters(), acc.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert s_big["loss"] == pytest.approx(s_acc["loss"], rel=1e-6)
    small, _ = _run(batch_size=2, accum=1)  # not the same thing: guards against a vacuous test
    assert not torch.allclose(small.weight, big.weight)


def test_gradient_clipping_bounds_the_update():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = [{"x": torch.full((2, 3), 100.0), "y": torch.zeros(2, 1)}]
    seen = []
    train_one_epoch(model, _mse, loader, opt, None, device=CPU, steps=1, clip_grad=0.5, progress=False,
                    on_step=lambda step, m: seen.append((step, m)))
    # SGD with lr 1: the update is the clipped gradient, norm 0.5 over weight and bias together
    update = torch.cat([(model.weight.detach() - w0).flatten(), model.bias.detach() - b0])
    assert float(update.norm()) == pytest.approx(0.5, rel=1e-5)
    assert seen[0][0] == 1 and seen[0][1]["grad_norm"] > 100  # the norm before clipping is logged


@pytest.mark.parametrize("clip", [0.0, 1e9, 3.0, "at the norm"])  # none, never reached, clips, the boundary
def test_grad_norm_and_clipping_equal_torch_bit_for_bit(clip):
    from mgm.train.loop import _clip, _grad_norm

    g = torch.Generator().manual_seed(0)
    shapes = [(301, 257), (257,), (7, 3, 5), (1,)]
    ours = [nn.Parameter(torch.zeros(s)) for s in shapes]
    ref = [nn.Parameter(torch.zeros(s)) for s in shapes]
    for a, b in zip(ours, ref):
        a.grad = torch.randn(a.shape, generator=g)
        b.grad = a.grad.clone()
    tensor = _grad_norm(ours, CPU)
    norm = float(tensor)
    if clip == "at the norm":  # the coefficient is 1 to float32 rounding: torch's clamp decides
        clip = norm + 1e-6
    _clip(ours, tensor, norm, clip)
    want = torch.nn.utils.clip_grad_norm_(ref, clip if clip else float("inf"), foreach=False)
    assert norm == float(want) and norm > 3.0
    for a, b in zip(ours, ref):
        assert torch.equal(a.grad, b.grad)
    if clip == 3.0:  # and it did clip
        assert float(torch.stack([p.grad.norm() for p in ours]).norm()) == pytest.approx(3.0, rel=1e-5)


def test_loader_running_out_is_a_clear_error():
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = torch.utils.data.DataLoader(Batches(4), batch_size=2)
    with pytest.raises(MGMError, match="ran out after 2 steps"):
        train_one_epoch(model, _mse, loader, opt, None, device=CPU, steps=3, progress=False)


class SlowBatches(Batches):
    """Batches whose items take `delay` seconds each to load."""

    def __init__(self, n=8, delay=0.0):
        super().__init__(n)
        self.delay = delay

    def __getitem__(self, i):
        time.sleep(self.delay)
        return super().__getitem__(i)


@pytest.mark.parametrize("slow", ["data", "model"])
def test_data_time_is_the_wait_for_batches(slow):
    """data_time measures the wait for the loader, not the model's work: a slow loader shows up in it,
    a slow loss does not; the epoch's step_s and data_s are the sums of the steps'."""
    delay = 0.03
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def loss(model, batch):
        if slow == "model":
            time.sleep(2 * delay)
        return _mse(model, batch)

    loader = torch.utils.data.DataLoader(SlowBatches(8, delay if slow == "data" else 0.0), batch_size=2)
    seen = []
    stats = train_one_epoch(model, loss, loader, opt, None, device=CPU, steps=3, accum_steps=1, progress=False,
                            on_step=lambda step, m: seen.append(m))
    for m in seen:
        assert 0 <= m["data_time"] <= m["step_time"]
        if slow == "data":  # two items of `delay` each per batch
            assert m["data_time"] >= 2 * delay and m["data_time"] > 0.8 * m["step_time"]
        else:
            assert m["step_time"] >= 2 * delay and m["data_time"] < 0.2 * m["step_time"]
    assert stats["step_s"] == pytest.approx(sum(m["step_time"] for m in seen))
    assert stats["data_s"] == pytest.approx(sum(m["data_time"] for m in seen))


def test_fit_says_where_the_time_went(tmp_path, capsys):
    from mgm.train.log import read_log

    cfg = _tiny_cfg(tmp_path, "run.log_every=1")
    fit(cfg, Task("pretrain", nn.Linear(3, 1), _mse), SlowBatches(8, 0.01))
    line = [l for l in capsys.readouterr().out.splitlines() if "steps in" in l]
    assert len(line) == 1 and line[0].startswith("[t] 8 steps in ") and "waiting for data" in line[0]
    share = int(line[0].split("a step, ")[1].split("%")[0])
    assert share >= 80  # 20 ms of loading per step against a linear model's microseconds
    epochs = [r for r in read_log(tmp_path / "t" / "log.jsonl") if r["event"] == "epoch"]
    assert len(epochs) == 2 and all(0 < r["data_s"] <= r["step_s"] <= r["elapsed"] for r in epochs)


def _tiny_cfg(tmp_path, *extra):
    return load_config("pretrain", overrides=[
        f"run.out_dir={tmp_path}", "run.name=t", "data.batch_size=2", "optim.epochs=2", "run.progress=false",
        "optim.base_lr=25.6", *extra])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = _tiny_cfg(tmp_path, "run.ckpt_every=2")
    calls = [0]

    def loss(model, batch):
        calls[0] += 1
        value = _mse(model, batch)
        return value * float("nan") if calls[0] == 5 else value

    torch.manual_seed(0)
    task = Task("pretrain", nn.Linear(3, 1), loss)
    with pytest.raises(NonFiniteLossError) as e:
        fit(cfg, task, Batches(16))
    msg = str(e.value)
    assert "\n" not in msg and "non-finite loss (nan) at step 5" in msg and "last good" in msg
    assert [p.name for p in C.list_checkpoints(tmp_path / "t")] == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    last = C.load_checkpoint(tmp_path / "t" / "ckpt-00000004.pt")
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert all(torch.isfinite(p).all() for p in task.model.parameters())  # no NaN step was applied
    from mgm.train.log import read_log

    error = read_log(tmp_path / "t" / "log.jsonl")[-1]
    assert error["event"] == "error" and error["last_checkpoint"].endswith("ckpt-00000004.pt")


def test_fit_prints_base_and_scaled_lr_and_logs_jsonl(tmp_path, capsys):
    from mgm.train.log import read_log

    cfg = _tiny_cfg(tmp_path, "optim.accum_steps=2", "run.log_every=1")
    torch.manual_seed(0)
    result = fit(cfg, Task("pretrain", nn.Linear(3, 1), _mse), Batches(16))
    out = capsys.readouterr().out
    # effective batch 2 x 2 = 4, lr = 25.6 * 4 / 256 = 0.4; 16 items / 4 = 4 steps per epoch
    assert "base lr 25.6 x effective batch 4 (2 x 2 accum x 1 procs) / 256 = lr 0.4;" in out
    assert result["step"] == 8 and result["epoch"] == 2
    log = read_log(tmp_path / "t" / "log.jsonl")
    start = log[0]
    assert start["event"] == "start" and start["lr"] == pytest.approx(0.4) and start["base_lr"] == 25.6
    assert start["effective_batch"] == 4 and start["config"]["optim"]["accum_steps"] == 2
    steps = [r for r in log if r["event"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert steps[0]["lr"] == pytest.approx(0.4) and steps[-1]["lr"] < steps[0]["lr"]


def test_too_small_dataset_is_a_clear_error(tmp_path):
    cfg = _tiny_cfg(tmp_path, "data.batch_size=32")
    with pytest.raises(MGMError, match="smaller than one effective batch"):
        fit(cfg, Task("pretrain", nn.Linear(3, 1), _mse), Batches(16))


# ---------------------------------------------------------------------------------------------

class ViewLogits(torch.utils.data.Dataset):
    """Item = one view; its "video" is the logits the fake model returns for it."""

    def __init__(self, rows):
        self.rows = rows  # (video index, label, logits)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        idx, label, logits = self.rows[i]
        # a "video" [C=1, T=1, H=1, W=K] whose pixels are the logits the fake model returns
        return {"video": torch.tensor(logits).view(1, 1, 1, -1), "label": label, "index": idx}


def _logits(model, video):
    return video.flatten(1)


def test_evaluate_averages_softmax_over_views():
    # video 0: one view is extremely sure of class 0, two views prefer class 1 (the label): the mean
    # softmax picks 1, a mean of logits would pick 0. video 1: both views pick its class 1.
    # video 2: label 0 has the lowest of six logits -> wrong even in the top-5.
    rows = [(0, 1, [100., 0, 0, 0, 0, 0]), (0, 1, [0., 50, 0, 0, 0, 0]), (0, 1, [0., 1, 0, 0, 0, 0]),
            (1, 1, [0., 3, 0, 0, 0, 0]), (1, 1, [0., 2, 1, 0, 0, 0]),
            (2, 0, [0., 1, 2, 3, 4, 5])]
    loader = torch.utils.data.DataLoader(ViewLogits(rows), batch_size=2)
    m = evaluate(_logits, nn.Identity(), loader, device=CPU, progress=False)
    assert (m["videos"], m["views"]) == (3, 6)
    assert m["top1"] == pytest.approx(200 / 3) and m["top5"] == pytest.approx(200 / 3)
    p = [torch.tensor(r[2]).softmax(0) for r in rows]
    probs = [(p[0] + p[1] + p[2]) / 3, (p[3] + p[4]) / 2, p[5]]
    nll = -sum(float(q[label].log()) for q, label in zip(probs, (1, 1, 0))) / 3
    assert m["loss"] == pytest.approx(nll, rel=1e-6)
    # the same views stacked in one item [B, V, ...] give the same verdict
    views = torch.tensor([r[2] for r in rows[:3]]).view(1, 3, 1, 1, 1, 6)  # [B, V, C, T, H, W]
    stacked = [{"video": views, "label": torch.tensor([1]), "index": torch.tensor([0])}]
    m2 = evaluate(_logits, nn.Identity(), stacked, device=CPU, progress=False)
    assert (m2["top1"], m2["views"], m2["videos"]) == (100.0, 3, 1)


def test_topk_correct_counts():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    assert topk_correct(probs, torch.tensor([1, 2, 0]), ks=(1, 2, 5)) == {1: 1, 2: 2, 5: 3}


# ---------------------------------------------------------------------------------------------

def test_label_smoothing_targets():
    t = smooth_one_hot(torch.tensor([2, 0]), 4, smoothing=0.2)
    torch.testing.assert_close(t, torch.tensor([[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]]))
    logits = torch.randn(2, 4)
    ref = nn.functional.cross_entropy(logits, torch.tensor([2, 0]), label_smoothing=0.2)
    assert float(soft_cross_entropy(logits, t)) == pytest.approx(float(ref), rel=1e-6)


def test_mixup_mixes_videos_and_targets_with_the_same_lambda():
    torch.manual_seed(3)
    video = torch.randn(4, 3, 4, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    mixed, t = mix_batch(video, labels, 4, mixup=0.8)
    lam = float(t[0, 0])  # item 0 mixes with item 3: weight lam on its own class 0
    torch.testing.assert_close(mixed, lam * video + (1 - lam) * video.flip(0))
    assert 0 < lam < 1 and t[0, 3] == pytest.approx(1 - lam)
    torch.testing.assert_close(t.sum(1), torch.ones(4))


def test_cutmix_target_weight_is_the_kept_area():
    torch.manual_seed(1)
    video = torch.zeros(2, 3, 4, 10, 10)
    video[1] = 1.0  # item 0 pastes a box of ones from item 1
    mixed, t = mix_batch(video, torch.tensor([0, 1]), 2, cutmix=1.0)
    pasted = float(mixed[0, 0, 0].mean())  # share of item 0's frame that came from item 1
    assert 0 < pasted < 1
    assert float(t[0, 1]) == pytest.approx(pasted) and float(t[0, 0]) == pytest.approx(1 - pasted)
    assert torch.equal(mixed[0, :, 0], mixed[0, :, 3])  # the same box in every frame
    off, same = mix_batch(video, torch.tensor([0, 1]), 2, mixup=1.0, prob=0.0)
    assert off is video and torch.equal(same, torch.eye(2))


# ---------------------------------------------------------------------------------------------

def test_linear_probe_freezes_the_encoder_and_normalises_without_affine():
    from mgm.train.tasks import linprobe_task

    cfg = load_config("linprobe", overrides=["data.num_frames=4", "data.size=32", "model.pooling=slots"])
    torch.manual_seed(0)
    task = linprobe_task(cfg, num_classes=3)
    probe = task.model
    assert probe.bn.weight is None and probe.bn.bias is None
    assert probe.head.in_features == 2 * 192  # T' = 4 / tubelet 2 slots of D = 192
    trainable = [n for n, p in probe.named_parameters() if p.requires_grad]
    assert trainable == ["head.weight", "head.bias"]
    before = {k: v.clone() for k, v in probe.backbone.state_dict().items()}
    opt = build_optimizer(probe, 0.1, 0.0)
    batch = {"video": torch.randn(4, 3, 4, 32, 32), "label": torch.tensor([0, 1, 2, 0])}
    probe.train()
    assert not probe.backbone.training and probe.bn.training
    for _ in range(3):
        task.loss(probe, batch).backward()
        opt.step()
        opt.zero_grad()
    for k, v in probe.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k
    # features are the encoder's per-slot features; BN standardises them over the batch
    feats = probe.backbone.features_per_slot(batch["video"]).flatten(1)
    torch.testing.assert_close(probe.features(batch["video"]), feats)
    z = probe.bn(feats)
    torch.testing.assert_close(z.mean(0), torch.zeros(z.shape[1]), atol=1e-4, rtol=0)


def test_precision_choice_and_scaler_only_for_fp16():
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert make_scaler(CPU, "fp32") is None and make_scaler(CPU, "bf16") is None
    assert make_scaler(CPU, "fp16") is not None


def test_bf16_and_fp16_autocast_on_cpu_train(tmp_path):
    """The opt-in reduced-precision paths run end to end and really change the numbers; fp16 goes
    through a GradScaler whose state lands in the checkpoint."""
    from mgm.model import ModelConfig, VideoMAEPretrain

    mask = torch.zeros(8, dtype=torch.bool)
    mask[:6] = True

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"video": torch.randn(3, 4, 32, 32, generator=torch.Generator().manual_seed(i)),
                    "mask": mask, "index": i}

    losses = {}
    for precision in ("fp32", "bf16", "fp16"):
        cfg = _tiny_cfg(tmp_path, f"run.precision={precision}", f"run.name={precision}", "optim.epochs=1",
                        "data.batch_size=4", "optim.base_lr=1e-3")
        torch.manual_seed(0)
        model = VideoMAEPretrain(ModelConfig.from_preset("tiny", img_size=32, num_frames=4))
        task = Task("pretrain", model, lambda m, b: m(b["video"], b["mask"])[0])
        losses[precision] = fit(cfg, task, Clips())["loss"]
    for low in ("bf16", "fp16"):
        assert math.isfinite(losses[low]) and losses[low] != losses["fp32"]
        assert losses[low] == pytest.approx(losses["fp32"], rel=0.05)
    scaler = C.load_checkpoint(C.latest_checkpoint(tmp_path / "fp16"))["scaler"]
    assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == 2  # 2 finite steps
    assert C.load_checkpoint(C.latest_checkpoint(tmp_path / "bf16"))["scaler"] == {}


# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_chain_on_synthetic_h264_videos(tmp_path, capsys):
    """mgm synth -> pretrain (mgm masks from motion vectors) -> finetune -> eval -> features."""
    import json

    import numpy as np

    from mgm.cli import main
    from mgm.train.log import read_log

    syn, runs = tmp_path / "syn", tmp_path / "runs"
    assert main(["synth", str(syn), "--preset", "tiny"]) == 0
    data = ["--set", f"run.out_dir={runs}", "--set", f"data.train_list={syn / 'train.txt'}",
            "--set", f"data.val_list={syn / 'val.txt'}", "--set", f"data.root={syn}",
            "--set", "data.num_frames=4", "--set", "data.size=32", "--set", "data.stride=2",
            "--set", "data.batch_size=8", "--set", "run.threads=1", "--set", "run.progress=false"]
    assert main(["pretrain", "--name", "pre", *data, "--set", "data.mask=mgm",
                 "--set", "data.mask_ratio=0.75"]) == 0
    pre = C.latest_checkpoint(runs / "pre")
    assert pre.name == "ckpt-00000006.pt"  # 48 train clips / batch 8
    assert main(["finetune", "--name", "ft", *data, "--set", f"model.init={pre}",
                 "--set", "data.test_clips=2", "--set", "optim.base_lr=0.01"]) == 0
    ft = C.latest_checkpoint(runs / "ft")
    last_eval = [r for r in read_log(runs / "ft" / "log.jsonl") if r["event"] == "eval"][-1]
    assert (last_eval["videos"], last_eval["views"]) == (24, 48)  # 12 classes x 2 val clips, 2 views

    # evaluating the checkpoint reproduces the evaluation done at the end of training
    out_json = tmp_path / "eval.json"
    assert main(["eval", str(ft), "--out", str(out_json)]) == 0
    ev = json.loads(out_json.read_text())
    assert ev["top1"] == last_eval["top1"] and ev["top5"] == last_eval["top5"]
    assert ev["loss"] == pytest.approx(last_eval["loss"], rel=1e-6)

    # features: one row per val clip, equal to the encoder's own features of that clip
    feats_path = tmp_path / "f.npy"
    assert main(["features", str(pre), "--out", str(feats_path), *data]) == 0
    feats, labels = np.load(feats_path), np.load(tmp_path / "f.labels.npy")
    val_labels = [int(line.split()[1]) for line in (syn / "val.txt").read_text().splitlines()]
    assert feats.shape == (24, 192) and labels.tolist() == val_labels
    from mgm.model import VideoMAEClassifier
    from mgm.train.tasks import init_encoder, model_config
    from mgm.train.datasets import build_dataset

    cfg = load_config("features", overrides=[o for o in data if o != "--set"])
    enc = VideoMAEClassifier(model_config(cfg, 0))
    init_encoder(enc, str(pre))
    enc.eval()
    clip = build_dataset(cfg, "val", masks=False)[5]["video"]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(feats[5]), enc.features(clip[None])[0], rtol=1e-4, atol=1e-5)


def test_finetune_and_linprobe_learn_a_separable_task(tmp_path):
    """RandomClips carry a per-class pattern under noise: training must find it (and a probe on a
    random frozen encoder must too), while an untrained head is at chance."""
    from mgm.train.tasks import run_training

    common = [f"run.out_dir={tmp_path}", "data.source=random", "data.num_frames=4", "data.size=32",
              "data.random_len=32", "data.batch_size=4", "run.progress=false", "data.num_classes=4"]
    ft = run_training("finetune", load_config("finetune", overrides=[
        *common, "run.name=ft", "optim.epochs=3", "optim.base_lr=0.05"]))
    assert ft["step"] == 24 and ft["eval"]["videos"] == 32 and ft["eval"]["top1"] >= 90.0
    # the order-aware head learns it too, and its checkpoint is rebuilt with that head by `mgm eval`
    slots = run_training("finetune", load_config("finetune", overrides=[
        *common, "run.name=fts", "optim.epochs=3", "optim.base_lr=0.05", "model.pooling=slots"]))
    assert slots["eval"]["top1"] >= 90.0
    from mgm.cli import main

    assert main(["eval", str(C.latest_checkpoint(tmp_path / "fts")), "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["top1"] == slots["eval"]["top1"]
    lp = run_training("linprobe", load_config("linprobe", overrides=[
        *common, "run.name=lp", "optim.epochs=3", "model.pooling=slots"]))
    assert lp["eval"]["top1"] >= 60.0
    untrained = run_training("linprobe", load_config("linprobe", overrides=[
        *common, "run.name=lp0", "optim.epochs=1", "optim.base_lr=1e-9"]))
    assert untrained["eval"]["top1"] <= 50.0


def test_uint8_clips_train_exactly_as_float32_clips(tmp_path):
    """data.video_dtype=uint8 (the loader hands over uint8, the loop normalises on the device) trains
    bit for bit as float32: the same losses, weights and evaluation, pre-training (MGM masks) and
    fine-tuning (mixup, evaluation); auto is float32 on the CPU; uint8 with random erasing is refused."""
    from mgm.cli import main
    from mgm.train.datasets import uint8_video
    from mgm.train.log import read_log

    syn, runs = tmp_path / "syn", tmp_path / "runs"
    assert main(["synth", str(syn), "--preset", "tiny"]) == 0
    data = ["--set", f"run.out_dir={runs}", "--set", f"data.train_list={syn / 'train.txt'}",
            "--set", f"data.val_list={syn / 'val.txt'}", "--set", f"data.root={syn}",
            "--set", "data.num_frames=4", "--set", "data.size=32", "--set", "data.stride=2",
            "--set", "data.batch_size=8", "--set", "run.threads=1", "--set", "run.progress=false",
            "--set", "run.log_every=1", "--set", "data.flip=true"]
    logs, weights = {}, {}
    for dtype in ("float32", "uint8"):
        d = [*data, "--set", f"data.video_dtype={dtype}"]
        assert main(["pretrain", "--name", f"pre-{dtype}", *d, "--set", "data.mask=mgm", "--set", "data.mask_ratio=0.75"]) == 0
        pre = C.latest_checkpoint(runs / f"pre-{dtype}")
        assert main(["finetune", "--name", f"ft-{dtype}", *d, "--set", f"model.init={pre}",
                     "--set", "optim.base_lr=0.01", "--set", "optim.mixup=0.8"]) == 0
        for run in ("pre", "ft"):
            log = read_log(runs / f"{run}-{dtype}" / "log.jsonl")
            logs[run, dtype] = [(r["event"], r.get("loss"), r.get("top1")) for r in log if r["event"] in ("step", "eval")]
            weights[run, dtype] = C.load_checkpoint(C.latest_checkpoint(runs / f"{run}-{dtype}"))["model"]
    for run in ("pre", "ft"):
        assert logs[run, "float32"] == logs[run, "uint8"] and len(logs[run, "uint8"]) >= 6
        assert all(torch.equal(weights[run, "float32"][k], v) for k, v in weights[run, "uint8"].items())
    cfg = load_config("finetune", overrides=[f"data.train_list={syn / 'train.txt'}"])
    assert not uint8_video(cfg)  # auto, no CUDA here
    assert uint8_video(load_config("finetune", overrides=["data.video_dtype=uint8"]))
    assert main(["finetune", "--name", "x", *data, "--set", "data.video_dtype=uint8", "--set", "data.erase_prob=0.25"]) == 1
