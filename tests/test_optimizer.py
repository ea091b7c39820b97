"""AdamW as build_optimizer makes it: the fused kernel where torch has one, the for-loop otherwise;
its values against the textbook formula, bit-identical runs, and resuming checkpoints that the
for-loop optimizer wrote (every checkpoint before the fused kernel)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mgm.model import ModelConfig, VideoMAEPretrain
from mgm.train import checkpoint as C
from mgm.train import optim
from mgm.train.loop import train_one_epoch
from mgm.train.optim import build_optimizer, fused_adamw_available

LR, WD, BETAS, EPS = 0.05, 0.1, (0.9, 0.95), 1e-8


@pytest.fixture(autouse=True)
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 3))


def _grads(model, steps, seed=1):
    """Fixed gradients per step: {param name: [steps x grad]}, so runs can be compared exactly."""
    g = torch.Generator().manual_seed(seed)
    return [{n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters()} for _ in range(steps)]


def _apply(model, opt, grads):
    for step in grads:
        for n, p in model.named_parameters():
            p.grad = step[n].clone()
        opt.step()
        opt.zero_grad(set_to_none=True)


def _reference(p0: torch.Tensor, grads: list[torch.Tensor], lr: float, wd: float) -> torch.Tensor:
    """AdamW (Loshchilov & Hutter, as torch.optim.AdamW) in float64."""
    p, m, v = p0.double(), torch.zeros_like(p0, dtype=torch.float64), torch.zeros_like(p0, dtype=torch.float64)
    (b1, b2) = BETAS
    for t, g in enumerate(grads, 1):
        g = g.double()
        p = p * (1 - lr * wd)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + EPS)
    return p


def test_fused_where_torch_has_the_kernel_else_the_for_loop():
    opt = build_optimizer(_net(), LR, WD)
    assert [(g["fused"], g["foreach"]) for g in opt.param_groups] == [(True, False)] * 2  # decay / no decay
    assert not fused_adamw_available([torch.zeros(3, dtype=torch.int64)])
    with torch.device("meta"):  # a device without fused kernels: the for-loop, as before
        meta = nn.Linear(3, 2)
    assert not fused_adamw_available(meta.parameters())
    opt = build_optimizer(meta, LR, WD)
    assert [(bool(g["fused"]), g["foreach"]) for g in opt.param_groups] == [(False, False)] * 2


@pytest.mark.parametrize("fused", [True, False])
def test_adamw_values_against_the_formula(fused, monkeypatch):
    monkeypatch.setattr(optim, "fused_adamw_available", lambda params: fused)
    model = _net()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, LR, WD)
    assert all(bool(g["fused"]) == fused for g in opt.param_groups)
    grads = _grads(model, 4)
    _apply(model, opt, grads)
    decay = {n for g in opt.param_groups if g["weight_decay"] for n in g["names"]}
    assert decay == {"0.weight", "2.weight"}  # 1-D tensors (biases, norm) get none
    for n, p in model.named_parameters():
        want = _reference(start[n], [s[n] for s in grads], LR, WD if n in decay else 0.0)
        torch.testing.assert_close(p.detach().double(), want, rtol=2e-6, atol=2e-7)


def test_fused_step_is_bit_identical_run_to_run_and_at_any_thread_count():
    # Sizes past torch's parallel grain (32768 elements) and odd, so 2 threads split them
    # unevenly and vector tails differ from the 1-thread run.
    def run(threads):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(301, 257), nn.Linear(257, 3))
        opt = build_optimizer(model, LR, WD)
        _apply(model, opt, _grads(model, 3))
        return [p.detach().clone() for p in model.parameters()], opt.state_dict()["state"]

    (w1, s1), (w1b, _), (w2, s2) = run(1), run(1), run(2)
    for a, b, c in zip(w1, w1b, w2):
        assert torch.equal(a, b) and torch.equal(a, c)
    for k in s1:
        assert torch.equal(s1[k]["exp_avg_sq"], s2[k]["exp_avg_sq"])


def _pretrain_run(steps, resume_after=None, tmp_path=None):
    """`steps` engine steps of a small VideoMAE on fixed batches; with resume_after=k, a
    checkpoint after k steps is loaded into a fresh model and optimizer which do the rest."""
    torch.set_num_threads(1)
    cfg = ModelConfig.from_preset("nano", img_size=32, num_frames=4)
    g = torch.Generator().manual_seed(0)
    n = cfg.geometry.num_tokens
    batches = [{"video": torch.randn(2, 3, 4, 32, 32, generator=g),
                "mask": torch.rand(2, n, generator=g).argsort(1) < n * 3 // 4} for _ in range(steps)]

    def fresh():
        torch.manual_seed(0)
        model = VideoMAEPretrain(cfg)
        return model, build_optimizer(model, 1e-3, 0.05)

    def train(model, opt, part):
        train_one_epoch(model, lambda m, b: m(b["video"], b["mask"])[0], part, opt, None,
                        device=torch.device("cpu"), steps=len(part), clip_grad=1.0, progress=False)

    model, opt = fresh()
    first = batches if resume_after is None else batches[:resume_after]
    train(model, opt, first)
    if resume_after is not None:
        path = C.save_checkpoint(C.checkpoint_path(tmp_path, resume_after),
                                 {"model": model.state_dict(), "optimizer": opt.state_dict()})
        state = C.load_checkpoint(path)
        model, opt = fresh()
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        train(model, opt, batches[resume_after:])
    return model


def test_same_seed_and_resume_give_bit_identical_pretraining(tmp_path):
    # At one thread count: whole runs at 1 vs 2 threads differ in the last bits with either AdamW
    # kernel (the matmuls' and norms' reductions split by thread), as they did before fused.
    straight = _pretrain_run(5)
    again = _pretrain_run(5)
    resumed = _pretrain_run(5, resume_after=3, tmp_path=tmp_path)
    for (name, a), b, c in zip(straight.state_dict().items(), again.state_dict().values(),
                               resumed.state_dict().values()):
        assert torch.equal(a, b) and torch.equal(a, c), name
    torch.manual_seed(0)  # the runs' initial weights: training moved them (a guard against a vacuous test)
    init = VideoMAEPretrain(straight.cfg).encoder.blocks[0].attn.qkv.weight
    assert not torch.allclose(init, straight.encoder.blocks[0].attn.qkv.weight)


def test_a_checkpoint_of_the_for_loop_optimizer_resumes_on_the_fused_kernel(tmp_path):
    """Checkpoints written before the fused kernel hold a for-loop AdamW's state (and groups saying
    foreach=False, fused=None): they load, continue from their step count on the fused kernel,
    and give the weights the formula gives for the whole run."""
    model = _net()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = _grads(model, 5)
    old = torch.optim.AdamW(optim.param_groups(model, WD), lr=LR, betas=BETAS, weight_decay=WD, foreach=False)
    _apply(model, old, grads[:3])
    path = C.save_checkpoint(C.checkpoint_path(tmp_path, 3),
                             {"model": model.state_dict(), "optimizer": old.state_dict()})
    state = C.load_checkpoint(path)
    assert [g["fused"] for g in state["optimizer"]["param_groups"]] == [None, None]

    resumed = _net()
    resumed.load_state_dict(state["model"])
    opt = build_optimizer(resumed, LR, WD)
    opt.load_state_dict(state["optimizer"])
    assert [(g["fused"], g["foreach"]) for g in opt.param_groups] == [(True, False)] * 2
    assert {float(s["step"]) for s in opt.state.values()} == {3.0}
    _apply(resumed, opt, grads[3:])
    assert {float(s["step"]) for s in opt.state.values()} == {5.0}
    decay = {n for g in opt.param_groups if g["weight_decay"] for n in g["names"]}
    for n, p in resumed.named_parameters():
        want = _reference(start[n], [s[n] for s in grads], LR, WD if n in decay else 0.0)
        torch.testing.assert_close(p.detach().double(), want, rtol=2e-6, atol=2e-7)
