"""CUDA checks: marker `gpu`, each test skips itself where CUDA is missing (CI, these CPU machines).

    python -m pytest -m gpu tests/test_gpu.py      # what `./run bench gpu` runs first and records

What and how close (fp32 comparisons run with TF32 off, so CUDA and CPU both do true fp32 and differ
only in summation order, ~1e-6 relative):
  - pre-training (plain and dual masking) and fine-tuning forward/backward on CUDA vs the CPU, same
    weights and inputs: loss within 1e-5 relative, all gradients together within 1e-4 relative
    (||g_cuda - g_cpu|| / ||g_cpu||), each parameter's within 1e-3;
  - bf16 autocast on CUDA vs fp32 on the CPU: loss within 3e-2 relative, gradient cosine >= 0.99;
  - torch.compile (inductor) vs eager on CUDA, fp32: loss within 1e-4, gradients within 1e-3 relative;
  - SDPA runs a fused kernel: ours (pre-training, fine-tuning) and transformers' VideoMAE in bf16
    under sdpa_kernel([FLASH_ATTENTION, EFFICIENT_ATTENTION]), where needing the math fallback raises;
  - a one-process NCCL group: all_reduce, and DDP's gradient all-reduce equal to a plain backward
    (1e-5 relative);
  - uint8 clips (data.video_dtype) normalised on CUDA equal the CPU's float32 clips bit for bit;
  - mgm's engine on the GPU: `fit` pre-trains (bf16, torch.compile, pinned loader workers), resumes
    from its checkpoint, and a fine-tune initialised from it evaluates.
"""

from __future__ import annotations

import contextlib
import copy
import math

import pytest
import torch

from mgm.model import ModelConfig, VideoMAEClassifier, VideoMAEPretrain

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def small_config(**kw) -> ModelConfig:
    """ViT-B's head width (64) at toy size: 4 frames of 32x32, patch 8 -> 2 x 4 x 4 = 32 tokens."""
    base = dict(img_size=32, num_frames=4, patch=8, embed_dim=128, depth=2, num_heads=2,
                decoder_embed_dim=128, decoder_depth=1, decoder_num_heads=2)
    return ModelConfig(**{**base, **kw})


def batch(cfg: ModelConfig, b: int = 4, ratio: float = 0.75, seed: int = 0):
    """(video float32 `[B, 3, T, S, S]`, mask bool `[B, N]` with floor(ratio N) masked per clip,
    decoder mask bool `[B, N]` dropping half, labels int64 `[B]`), on the CPU."""
    g = torch.Generator().manual_seed(seed)
    n = cfg.geometry.num_tokens
    video = torch.randn(b, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g)

    def exact(k):
        order = torch.rand(b, n, generator=g).argsort(1)
        return torch.zeros(b, n, dtype=torch.bool).scatter_(1, order[:, :k], True)

    return video, exact(int(ratio * n)), exact(n // 2), torch.randint(0, max(cfg.num_classes, 1), (b,), generator=g)


@contextlib.contextmanager
def true_fp32():
    """CUDA matmuls and convolutions in true fp32 (no TF32), as on the CPU."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def loss_and_grads(model, loss_fn, device, bf16=False):
    """loss_fn(model on `device`) -> scalar; returns (loss float64, {name: grad float32 on the CPU})."""
    model = model.to(device)
    model.zero_grad(set_to_none=True)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with amp:
        loss = loss_fn(model)
    loss.backward()
    grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def pretrain_loss(video, mask, dec=None):
    def fn(m):
        d = next(m.parameters()).device
        return m(video.to(d), mask.to(d), None if dec is None else dec.to(d))[0]
    return fn


def finetune_loss(video, labels):
    def fn(m):
        d = next(m.parameters()).device
        return torch.nn.functional.cross_entropy(m(video.to(d)).float(), labels.to(d))
    return fn


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def flat(grads: dict) -> torch.Tensor:
    return torch.cat([g.flatten() for _, g in sorted(grads.items())])


def assert_same_grads(got: dict, want: dict, total: float, each: float) -> None:
    assert got.keys() == want.keys()
    assert rel(flat(got), flat(want)) < total
    worst = max(want, key=lambda n: rel(got[n], want[n]))
    assert rel(got[worst], want[worst]) < each, worst


def compare_devices(make_model, loss_fn, device, other=CPU):
    """(loss, grads) of one model's copies on `device` and on `other`, true fp32."""
    model = make_model()
    with true_fp32():
        return loss_and_grads(copy.deepcopy(model), loss_fn, device), loss_and_grads(model, loss_fn, other)


@pytest.mark.parametrize("dual", [False, True], ids=["plain", "dual"])
def test_pretrain_on_cuda_matches_the_cpu(dual):
    torch.manual_seed(0)
    cfg = small_config()
    video, mask, dec, _ = batch(cfg)
    (loss, grads), (want_loss, want) = compare_devices(lambda: VideoMAEPretrain(cfg),
                                                       pretrain_loss(video, mask, dec if dual else None), CUDA)
    assert math.isclose(loss, want_loss, rel_tol=1e-5)
    assert_same_grads(grads, want, total=1e-4, each=1e-3)


def test_reconstruction_on_cuda_matches_the_cpu():
    """`mgm show` / the reconstruct figure on a GPU: the masked patches written back by index."""
    torch.manual_seed(0)
    cfg = small_config()
    video, mask, _, _ = batch(cfg)
    model = VideoMAEPretrain(cfg).eval()
    with torch.no_grad(), true_fp32():
        want = model.reconstruct(video, mask)
        got = copy.deepcopy(model).to(CUDA).reconstruct(video.to(CUDA), mask.to(CUDA)).cpu()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_finetune_on_cuda_matches_the_cpu():
    torch.manual_seed(0)
    cfg = small_config(num_classes=5, head_init_scale=1.0)
    video, _, _, labels = batch(cfg)
    (loss, grads), (want_loss, want) = compare_devices(lambda: VideoMAEClassifier(cfg), finetune_loss(video, labels), CUDA)
    assert math.isclose(loss, want_loss, rel_tol=1e-5)
    assert_same_grads(grads, want, total=1e-4, each=1e-3)


def test_uint8_clips_normalised_on_cuda_equal_the_cpu_float_path():
    """data.video_dtype: a uint8 batch copied to the GPU and normalised there (the loop's
    video_to_device) equals the float32 clips the workers would have made on the CPU, bit for bit."""
    from mgm.data.transforms import normalise_video
    from mgm.train.loop import video_to_device

    u8 = torch.randint(0, 256, (2, 3, 4, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    on_gpu = video_to_device(u8.pin_memory(), CUDA)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    assert torch.equal(on_gpu.cpu(), normalise_video(u8))


def test_bf16_autocast_on_cuda_tracks_fp32():
    torch.manual_seed(0)
    cfg = small_config()
    video, mask, _, _ = batch(cfg)
    model = VideoMAEPretrain(cfg)
    loss, grads = loss_and_grads(copy.deepcopy(model), pretrain_loss(video, mask), CUDA, bf16=True)
    want_loss, want = loss_and_grads(model, pretrain_loss(video, mask), CPU)
    assert math.isclose(loss, want_loss, rel_tol=3e-2)
    cosine = torch.nn.functional.cosine_similarity(flat(grads), flat(want), dim=0)
    assert cosine >= 0.99


def test_compile_on_cuda_matches_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    cfg = small_config()
    video, mask, dec, _ = batch(cfg)
    model = VideoMAEPretrain(cfg)
    compiled = torch.compile(copy.deepcopy(model).to(CUDA))
    with true_fp32():
        loss, grads = loss_and_grads(compiled, pretrain_loss(video, mask), CUDA)
        want_loss, want = loss_and_grads(model, pretrain_loss(video, mask), CUDA)
    assert math.isclose(loss, want_loss, rel_tol=1e-4)
    assert_same_grads({n.removeprefix("_orig_mod."): g for n, g in grads.items()}, want, total=1e-3, each=1e-2)
    # bf16 and dual masking compile too, and train to a finite loss
    loss, _ = loss_and_grads(compiled, pretrain_loss(video, mask, dec), CUDA, bf16=True)
    assert math.isfinite(loss)


def test_sdpa_runs_a_fused_kernel():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    cfg = small_config(num_classes=5)
    video, mask, _, labels = batch(cfg)
    # the math fallback is not allowed: a shape, dtype or build without a fused kernel raises here
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        for model, fn in ((VideoMAEPretrain(cfg), pretrain_loss(video, mask)),
                          (VideoMAEClassifier(cfg), finetune_loss(video, labels))):
            loss, grads = loss_and_grads(model, fn, CUDA, bf16=True)
            assert math.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # head width 64 in bf16: flash itself
        loss, _ = loss_and_grads(VideoMAEPretrain(cfg), pretrain_loss(video, mask), CUDA, bf16=True)
        assert math.isfinite(loss)


def test_transformers_videomae_runs_a_fused_kernel():
    transformers = pytest.importorskip("transformers")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from mgm import interop

    cfg = small_config()
    video, mask, _, _ = batch(cfg)
    hf = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(
        **interop.hf_config_kwargs(cfg, pretrain=True), attn_implementation="sdpa"))
    assert hf.config._attn_implementation == "sdpa"
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        loss, _ = loss_and_grads(hf, lambda m: m(video.transpose(1, 2).to(CUDA), bool_masked_pos=mask.to(CUDA)).loss,
                                 CUDA, bf16=True)
    assert math.isfinite(loss)


def train_on(device: str, tmp_path, compile_: bool = True) -> list[dict]:
    """mgm's engine end to end on `device` (random clips): pre-train 2 steps (bf16, compile, loader
    workers with pinned memory), resume to step 3, fine-tune 2 steps from it and evaluate. Returns
    the three results of `run_training`."""
    from mgm.train.config import load_config
    from mgm.train.tasks import run_training

    common = ["data.source=random", "data.random_len=16", "data.batch_size=4", "data.num_frames=4", "data.size=32",
              "data.patch=8", "data.num_workers=2", "model.preset=nano", f"run.device={device}",
              "run.precision=bf16", f"run.out_dir={tmp_path}", "run.progress=false", "run.eval_every=0"]
    pre = common + ["run.name=pre", "data.mask=tube", "data.mask_ratio=0.75"]
    first = run_training("pretrain", load_config("pretrain", overrides=pre + ["optim.max_steps=2",
                                                                                f"run.compile={compile_}"]))
    resumed = run_training("pretrain", load_config("pretrain", overrides=pre + ["optim.max_steps=3", "run.resume=auto"]))
    tuned = run_training("finetune", load_config("finetune", overrides=common + [
        "run.name=tune", "optim.max_steps=2", f"model.init={resumed['checkpoint']}"]))
    return [first, resumed, tuned]


def test_the_engine_trains_resumes_and_evaluates_on_cuda(tmp_path):
    from mgm.train.checkpoint import load_checkpoint

    first, resumed, tuned = train_on(CUDA.type, tmp_path)
    assert (first["step"], resumed["step"], tuned["step"]) == (2, 3, 2)
    assert all(math.isfinite(r["loss"]) for r in (first, resumed, tuned))
    assert tuned["eval"]["videos"] > 0
    state = load_checkpoint(resumed["checkpoint"])  # written from the GPU, read on the CPU
    assert all(t.device == CPU for t in state["model"].values())


# Last in the file: pytest runs tests in file order, and NCCL's set-up is the likeliest to hang in a
# VM; the bench stops pytest at its cap, and the tests before it keep their outcomes.
def test_one_process_nccl_group(tmp_path):
    import torch.distributed as dist

    assert dist.is_nccl_available()
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        t = torch.arange(4.0, device=CUDA)
        dist.all_reduce(t)
        torch.cuda.synchronize()
        assert t.tolist() == [0.0, 1.0, 2.0, 3.0]
        torch.manual_seed(0)
        cfg = small_config()
        video, mask, _, _ = batch(cfg)
        model = VideoMAEPretrain(cfg).to(CUDA)
        ddp = torch.nn.parallel.DistributedDataParallel(copy.deepcopy(model), device_ids=[0])
        with true_fp32():
            loss, grads = loss_and_grads(ddp, pretrain_loss(video, mask), CUDA)
            want_loss, want = loss_and_grads(model, pretrain_loss(video, mask), CUDA)
        # the same kernels on the same device; only fused attention's backward may add in another order
        assert math.isclose(loss, want_loss, rel_tol=1e-5)
        assert_same_grads({n.removeprefix("module."): g for n, g in grads.items()}, want, total=1e-5, each=1e-4)
    finally:
        dist.destroy_process_group()
