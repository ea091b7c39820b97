"""The VideoMAE model against references written independently of it (Conv3d, loops, formulas)."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from mgm.config import IMAGENET_MEAN, IMAGENET_STD
from mgm.interop import interpolate_pos_embed, load_encoder_weights
from mgm.model import (Attention, ModelConfig, VideoMAEClassifier, VideoMAEEncoder, VideoMAEPretrain, gather_tokens,
                       patchify, sincos_table, split_ids, unpatchify)
from mgm.train.optim import layer_id


def cfg(**kw) -> ModelConfig:
    base = dict(img_size=32, num_frames=8, tubelet=2, patch=8, embed_dim=24, depth=2, num_heads=2,
                decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    return ModelConfig(**{**base, **kw})


def clip(c: ModelConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, c.in_chans, c.num_frames, c.img_size, c.img_size,
                       generator=torch.Generator().manual_seed(seed))


def mask_first(batch: int, num_tokens: int, counts: list[int]) -> torch.Tensor:
    """Per clip, mask a different set of `counts[b]` tokens (rolled), same count within a batch."""
    mask = torch.zeros(batch, num_tokens, dtype=torch.bool)
    for b in range(batch):
        mask[b, :counts[b]] = True
        mask[b] = mask[b].roll(3 * b)
    return mask


def perturb(model: torch.nn.Module, scale: float = 0.1):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)


def test_sincos_table_formula():
    table = sincos_table(50, 6)
    assert table.shape == (50, 6) and table.dtype == torch.float32
    for pos in (0, 1, 17, 49):
        for j in range(6):
            angle = pos / 10000 ** (2 * (j // 2) / 6)
            assert table[pos, j].item() == pytest.approx(math.sin(angle) if j % 2 == 0 else math.cos(angle), abs=1e-7)


def test_patchify_layout_and_inverse():
    c = cfg()
    v = clip(c)
    p = patchify(v, c.tubelet, c.patch)
    gt, gh, gw = c.geometry.grid
    assert p.shape == (2, gt * gh * gw, 3, c.tubelet * c.patch * c.patch)
    b, ch, t, y, x = 1, 2, 5, 19, 10  # an arbitrary pixel
    token = ((t // c.tubelet) * gh + y // c.patch) * gw + x // c.patch
    inner = ((t % c.tubelet) * c.patch + y % c.patch) * c.patch + x % c.patch
    assert p[b, token, ch, inner] == v[b, ch, t, y, x]
    assert torch.equal(unpatchify(p, c.geometry.grid, c.tubelet, c.patch), v)


def test_split_ids_orders_and_counts():
    mask = torch.tensor([[1, 0, 0, 1, 1, 0], [0, 1, 1, 0, 0, 1]], dtype=torch.bool)
    vis, msk = split_ids(mask)
    assert vis.tolist() == [[1, 2, 5], [0, 3, 4]]
    assert msk.tolist() == [[0, 3, 4], [1, 2, 5]]
    with pytest.raises(ValueError, match="same number"):
        split_ids(torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool))


def test_gather_tokens_picks_each_clips_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 2, 5, generator=g, requires_grad=True)
    ids = torch.tensor([[0, 4, 6], [1, 2, 3], [6, 5, 0]])
    got = gather_tokens(x, ids)
    assert got.shape == (3, 3, 2, 5)
    for b in range(3):
        for j in range(3):
            assert torch.equal(got[b, j], x[b, ids[b, j]])
    got.sum().backward()  # each picked row once: its gradient is 1, the others' 0
    counts = torch.zeros(3, 7).scatter_add_(1, ids, torch.ones(3, 3))
    assert torch.equal(x.grad, counts[:, :, None, None].expand_as(x))
    table = torch.randn(1, 7, 4, generator=g)  # one table shared by every clip
    assert torch.equal(gather_tokens(table, ids), torch.stack([table[0, i] for i in ids]))
    mask = torch.rand(3, 7, generator=g) > 0.5
    assert torch.equal(gather_tokens(mask, ids), torch.stack([mask[b, ids[b]] for b in range(3)]))


def test_attention_matches_naive_softmax_attention():
    torch.manual_seed(0)
    attn = Attention(12, num_heads=3, qkv_bias=True)
    perturb(attn, 1.0)
    x = torch.randn(2, 5, 12)
    w = attn.qkv.weight
    q = x @ w[:12].T + attn.q_bias
    k = x @ w[12:24].T  # VideoMAE: no bias on k
    v = x @ w[24:].T + attn.v_bias
    heads = lambda t: t.reshape(2, 5, 3, 4).transpose(1, 2)  # noqa: E731
    a = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(4), dim=-1)
    ref = attn.proj((a @ heads(v)).transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=0)


def reference_tokens(enc: VideoMAEEncoder, video: torch.Tensor) -> torch.Tensor:
    """All tokens the way VideoMAE computes them: Conv3d over the whole clip + sin-cos table."""
    x = enc.patch_embed.proj(video).flatten(2).transpose(1, 2)
    return x + sincos_table(x.shape[1], x.shape[2])


def test_encoder_on_visible_tokens_equals_full_sequence_restricted():
    """Without attention (depth 0) every token is computed alone, so the visible-only encoder must
    equal the full-clip reference with the masked tokens removed, in ascending order."""
    c = cfg(depth=0)
    enc = VideoMAEEncoder(c).eval()
    perturb(enc)
    v = clip(c)
    mask = mask_first(2, c.geometry.num_tokens, [20, 20])
    out = enc(v, mask)
    assert out.shape == (2, c.geometry.num_tokens - 20, c.embed_dim)
    ref = enc.norm(reference_tokens(enc, v))
    torch.testing.assert_close(out, ref[~mask].reshape(2, -1, c.embed_dim), atol=1e-5, rtol=0)


def test_encoder_with_blocks_matches_reference_on_gathered_tokens():
    c = cfg()
    enc = VideoMAEEncoder(c).eval()
    perturb(enc)
    v = clip(c)
    mask = mask_first(2, c.geometry.num_tokens, [25, 25])
    x = reference_tokens(enc, v)[~mask].reshape(2, -1, c.embed_dim)
    for blk in enc.blocks:
        x = blk(x)
    torch.testing.assert_close(enc(v, mask), enc.norm(x), atol=1e-5, rtol=0)


def test_targets_against_per_tubelet_loop():
    c = cfg()
    model = VideoMAEPretrain(c)
    v = clip(c)
    mask = mask_first(2, c.geometry.num_tokens, [7, 7])
    got = model.targets(v, mask)
    assert got.shape == (2, 7, c.patch_dim)
    gt, gh, gw = c.geometry.grid
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None, None]
    for b in range(2):
        for j, n in enumerate(mask[b].nonzero().flatten().tolist()):
            t, y, x = n // (gh * gw), (n // gw) % gh, n % gw
            cube = v[b, :, t * c.tubelet:(t + 1) * c.tubelet, y * c.patch:(y + 1) * c.patch,
                     x * c.patch:(x + 1) * c.patch] * std + mean  # [C, t, p, p] pixels in [0, 1]
            flat = cube.reshape(3, -1)
            norm = (flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-6)
            expected = norm.T.reshape(-1)  # (t, p, p, C) order, C fastest
            torch.testing.assert_close(got[b, j], expected, atol=1e-5, rtol=0)


def test_plain_pixel_targets_are_unnormalised_pixels():
    c = cfg(norm_pix_loss=False)
    model = VideoMAEPretrain(c)
    v = clip(c)
    mask = mask_first(2, c.geometry.num_tokens, [3, 3])
    pixels = v * torch.tensor(IMAGENET_STD)[:, None, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None, None]
    # Token 0 is masked in clip 0: its first value is pixel (t=0, y=0, x=0) of channel 0, then channel 1.
    assert mask[0, 0]
    torch.testing.assert_close(model.targets(v, mask)[0, 0, :3], pixels[0, :, 0, 0, 0])


def test_loss_is_zero_when_prediction_equals_target():
    """Every tubelet is the same pattern under a per-tubelet affine change of brightness, so the
    norm-pix target is one vector; a decoder head that outputs it (zero weights, bias = target)
    must score 0, and a shifted bias must score exactly the shift squared."""
    c = cfg()
    gt, gh, gw = c.geometry.grid
    g = torch.Generator().manual_seed(0)
    pattern = torch.randn(1, 1, 3, c.tubelet * c.patch * c.patch, generator=g)
    scale = torch.rand(2, gt * gh * gw, 3, 1, generator=g) + 0.5
    shift = torch.randn(2, gt * gh * gw, 3, 1, generator=g)
    pixels = unpatchify(pattern * scale + shift, c.geometry.grid, c.tubelet, c.patch)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None, None], torch.tensor(IMAGENET_STD)[:, None, None, None]
    video = (pixels - mean) / std
    mask = mask_first(2, gt * gh * gw, [30, 30])
    model = VideoMAEPretrain(c).eval()
    target = model.targets(video, mask)
    assert torch.allclose(target, target[:1, :1].expand_as(target), atol=1e-4)
    with torch.no_grad():
        model.decoder.head.weight.zero_()
        model.decoder.head.bias.copy_(target[0, 0])
        loss, pred = model(video, mask)
        assert pred.shape == (2, 30, c.patch_dim)
        assert loss.item() < 1e-8
        model.decoder.head.bias.add_(0.5)
        assert model(video, mask)[0].item() == pytest.approx(0.25, abs=1e-5)


def test_reconstruct_copies_visible_and_places_predictions():
    c = cfg()
    model = VideoMAEPretrain(c).eval()
    v = clip(c)
    mask = mask_first(2, c.geometry.num_tokens, [40, 40])
    with torch.no_grad():
        model.decoder.head.weight.zero_()
        model.decoder.head.bias.zero_()  # predicts the standardised value 0 = the true tubelet mean
    rec = model.reconstruct(v, mask)
    pixels = v * torch.tensor(IMAGENET_STD)[:, None, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None, None]
    rp, pp = patchify(rec, c.tubelet, c.patch), patchify(pixels, c.tubelet, c.patch)
    torch.testing.assert_close(rp[~mask], pp[~mask], atol=1e-6, rtol=0)
    torch.testing.assert_close(rp[mask], pp[mask].mean(-1, keepdim=True).expand_as(pp[mask]), atol=1e-5, rtol=0)


def test_grad_checkpointing_gives_same_gradients():
    c = cfg(drop_path=0.3)
    v = clip(c)
    mask = mask_first(2, c.geometry.num_tokens, [40, 40])
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = VideoMAEPretrain(cfg(drop_path=0.3, grad_checkpointing=ckpt)).train()
        torch.manual_seed(1)  # same drop-path draws in both runs
        model(v, mask)[0].backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-6, rtol=1e-5, msg=n)


def test_drop_path_only_in_training():
    c = cfg(drop_path=0.5)
    model = VideoMAEClassifier(cfg(drop_path=0.5, num_classes=3))
    perturb(model)
    v = clip(c)
    model.eval()
    assert torch.equal(model(v), model(v))
    model.train()
    torch.manual_seed(0)
    a = model(v)
    assert not torch.allclose(a, model(v))


def test_features_per_slot_follow_their_frames():
    """With no attention, slot t's feature depends on frames [t*tubelet, (t+1)*tubelet) only."""
    c = cfg(depth=0, num_classes=3)
    model = VideoMAEClassifier(c).eval()
    perturb(model)
    v = clip(c)
    w = v.clone()
    w[:, :, 2:4] += 1.0  # frames of slot 1
    a, b = model.features_per_slot(v), model.features_per_slot(w)
    assert a.shape == (2, c.geometry.grid[0], c.embed_dim)
    changed = (a - b).abs().amax(dim=(0, 2)) > 1e-4
    assert changed.tolist() == [False, True, False, False]
    # The clip feature is fc_norm of the mean token, i.e. of the mean of the per-slot means.
    tokens = model.encoder(v)
    torch.testing.assert_close(model.features(v), model.fc_norm(tokens.mean(1)))
    torch.testing.assert_close(model(v), model.head(model.features(v)))


def test_slot_pooling_reads_the_order_of_time_slots():
    """Without attention, the mean over all tokens cannot tell a clip from its slots played backwards;
    the slot-pooled head (the per-slot features concatenated) can, and equals head(flattened slots)."""
    c = cfg(depth=0, num_classes=3)
    mean, slots = VideoMAEClassifier(c).eval(), VideoMAEClassifier(replace(c, pooling="slots")).eval()
    perturb(mean)
    perturb(slots)
    v = clip(c)
    back = torch.cat(v.split(c.tubelet, dim=2)[::-1], dim=2)  # slot order reversed, frames within kept
    torch.testing.assert_close(mean(v), mean(back))
    assert (slots(v) - slots(back)).abs().max() > 1e-3
    assert slots.head.in_features == c.geometry.grid[0] * c.embed_dim
    torch.testing.assert_close(slots(v), slots.head(slots.features_per_slot(v).flatten(1)))
    with pytest.raises(ValueError, match="pooling='avg' is not one of mean, slots"):
        replace(c, pooling="avg")


def test_classifier_head_init_scale():
    model = VideoMAEClassifier(cfg(num_classes=10))
    assert model.head.weight.std().item() == pytest.approx(0.02 * 0.001, rel=0.3)
    assert model.encoder.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_pos_embed_interpolation():
    pos = torch.randn(1, 4 * 3 * 5, 7)
    assert torch.equal(interpolate_pos_embed(pos, (4, 3, 5), (4, 3, 5)), pos)
    # A table linear in the token coordinates stays linear (away from the border clamp).
    t, y, x = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), torch.arange(4.0), indexing="ij")
    table = torch.stack([t, y, x], -1).reshape(1, 64, 3)
    up = interpolate_pos_embed(table, (4, 4, 4), (8, 8, 8)).reshape(8, 8, 8, 3)
    # New token i sits at old coordinate (i + 0.5) / 2 - 0.5.
    for i in range(1, 7):
        assert up[i, 3, 3, 0].item() == pytest.approx((i + 0.5) / 2 - 0.5, abs=1e-5)
        assert up[3, 3, i, 2].item() == pytest.approx((i + 0.5) / 2 - 0.5, abs=1e-5)


def test_load_pretrain_checkpoint_into_classifier_of_other_size():
    src = VideoMAEPretrain(cfg())
    perturb(src)
    dst = VideoMAEClassifier(cfg(img_size=48, num_frames=4, num_classes=3))
    head_before = dst.head.weight.clone()
    with pytest.raises(ValueError, match="pass old_grid"):  # frames and size both changed: ambiguous
        load_encoder_weights(dst, src.state_dict())
    skipped = load_encoder_weights(dst, {"model": src.state_dict()}, old_grid=(4, 4, 4))
    assert "encoder.norm.weight" in skipped and "mask_token" in skipped  # mean pooling: no final norm
    assert not any(k.startswith("encoder.blocks") for k in skipped)
    assert torch.equal(dst.encoder.blocks[1].attn.q_bias, src.encoder.blocks[1].attn.q_bias)
    assert torch.equal(dst.head.weight, head_before)
    expected = interpolate_pos_embed(src.encoder.pos_embed, (4, 4, 4), (2, 6, 6))
    torch.testing.assert_close(dst.encoder.pos_embed, expected)
    with pytest.raises(ValueError, match="lacks"):
        load_encoder_weights(dst, {k: v for k, v in src.state_dict().items() if "blocks.0." not in k})
    # Same frames, other (square) size: the old grid is inferred from the table's length.
    same_frames = VideoMAEClassifier(cfg(img_size=48, num_classes=3))
    load_encoder_weights(same_frames, src.state_dict())
    torch.testing.assert_close(same_frames.encoder.pos_embed,
                               interpolate_pos_embed(src.encoder.pos_embed, (4, 4, 4), (4, 6, 6)))


def test_layer_id_and_no_weight_decay():
    assert layer_id("encoder.patch_embed.proj.weight", 12) == 0
    assert layer_id("encoder.pos_embed", 12) == 0
    assert layer_id("encoder.blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id("module.encoder.blocks.11.mlp.fc2.bias", 12) == 12
    assert layer_id("fc_norm.weight", 12) == 13
    assert layer_id("head.weight", 12) == 13
    model = VideoMAEPretrain(cfg())
    nwd = model.no_weight_decay()
    assert {"mask_token", "encoder.blocks.0.attn.q_bias", "encoder.norm.weight", "decoder.head.bias"} <= nwd
    assert "encoder.blocks.0.attn.qkv.weight" not in nwd and "encoder.patch_embed.proj.weight" not in nwd


def test_presets_match_videomae_parameter_counts():
    """VideoMAE reports 22M / 87M / 305M parameters for its ViT-S / B / L classifiers (K400)."""
    for name, millions in (("small", 22), ("base", 87), ("large", 305)):
        with torch.device("meta"):
            model = VideoMAEClassifier(ModelConfig.from_preset(name, num_classes=400))
        n = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(n - millions) < 1, (name, n)
    assert ModelConfig.from_preset("tiny").geometry.grid == (8, 7, 7)
    with pytest.raises(ValueError, match="unknown model preset"):
        ModelConfig.from_preset("huge")
    with pytest.raises(ValueError, match="unknown model config keys: depht"):
        ModelConfig.from_preset("tiny", depht=3)


def test_bf16_autocast_runs_and_loss_is_float32():
    c = cfg()
    model = VideoMAEPretrain(c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pred = model(clip(c), mask_first(2, c.geometry.num_tokens, [40, 40]))
    assert loss.dtype == torch.float32 and pred.dtype == torch.bfloat16
    loss.backward()
    assert torch.isfinite(model.encoder.patch_embed.proj.weight.grad).all()


def test_compiled_model_matches_eager():
    pytest.importorskip("torch._dynamo")
    c = cfg()
    model = VideoMAEPretrain(c).eval()
    v, mask = clip(c), mask_first(2, c.geometry.num_tokens, [40, 40])
    compiled = torch.compile(model, backend="eager")  # graph capture only: fast, checks traceability
    torch.testing.assert_close(compiled(v, mask)[0], model(v, mask)[0])


def test_functional_equivalence_of_patch_embedding_and_conv3d():
    c = cfg(in_chans=2)
    enc = VideoMAEEncoder(c)
    v = clip(c)
    ref = F.conv3d(v, enc.patch_embed.proj.weight, enc.patch_embed.proj.bias, stride=(c.tubelet, c.patch, c.patch))
    got = enc.patch_embed(patchify(v, c.tubelet, c.patch))
    torch.testing.assert_close(got, ref.flatten(2).transpose(1, 2), atol=1e-5, rtol=0)
