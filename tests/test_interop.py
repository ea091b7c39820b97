"""Parity with transformers' VideoMAE: same weights, same input and mask -> same numbers (1e-5)."""

from types import SimpleNamespace

import pytest
import torch

from mgm import interop
from mgm.interop import load_encoder_weights
from mgm.model import ModelConfig, VideoMAEClassifier, VideoMAEPretrain

transformers = pytest.importorskip("transformers")

TOL = 1e-5


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(img_size=32, num_frames=8, tubelet=2, patch=16, embed_dim=48, depth=2, num_heads=3,
                decoder_embed_dim=24, decoder_depth=2, decoder_num_heads=2, norm_eps=1e-6)
    return ModelConfig(**{**base, **kw})


def hf_model(cls, cfg: ModelConfig, pretrain: bool):
    torch.manual_seed(0)
    hf_cfg = transformers.VideoMAEConfig(**interop.hf_config_kwargs(cfg, pretrain=pretrain))
    model = cls(hf_cfg).eval()
    # transformers hard-codes eps 1e-5 in these two norms; VideoMAE (and we) use norm_eps everywhere.
    for name, module in model.named_modules():
        if name in ("decoder.norm", "fc_norm"):
            module.eps = cfg.norm_eps
    # Random (not default zero / one) biases and norms, so a swapped or dropped one would show.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def random_mask(batch: int, num_tokens: int, num_masked: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, num_tokens, dtype=torch.bool)
    for b in range(batch):
        mask[b, torch.randperm(num_tokens, generator=g)[:num_masked]] = True
    return mask


def video(cfg: ModelConfig, batch: int = 2) -> torch.Tensor:
    """`[B, C, T, H, W]`, ImageNet-normalised-like values."""
    return torch.randn(batch, cfg.in_chans, cfg.num_frames, cfg.img_size, cfg.img_size,
                       generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("norm_pix_loss", [True, False])
@pytest.mark.parametrize("qkv_bias", [True, False])
def test_pretrain_parity(norm_pix_loss, qkv_bias):
    cfg = tiny_cfg(norm_pix_loss=norm_pix_loss, qkv_bias=qkv_bias)
    hf = hf_model(transformers.VideoMAEForPreTraining, cfg, pretrain=True)
    ours = VideoMAEPretrain(cfg).eval()
    ours.load_state_dict(interop.from_hf(hf.state_dict()), strict=False)
    missing = set(ours.state_dict()) - set(interop.from_hf(hf.state_dict()))
    assert missing == {"encoder.pos_embed"}  # transformers keeps no table; ours stays the sin-cos one

    x = video(cfg)
    mask = random_mask(2, cfg.geometry.num_tokens, 11)
    with torch.no_grad():
        out = hf(x.transpose(1, 2), bool_masked_pos=mask)
        loss, pred = ours(x, mask)
    assert pred.shape == out.logits.shape == (2, 11, cfg.patch_dim)
    torch.testing.assert_close(pred, out.logits, atol=TOL, rtol=0)
    torch.testing.assert_close(loss, out.loss, atol=TOL, rtol=0)
    assert loss > 0.1  # random weights: far from the target, so the comparison means something


def test_pretrain_gradient_parity():
    """Same gradients for every weight (transformers' q/k/v gradients fused like the weights)."""
    cfg = tiny_cfg()
    hf = hf_model(transformers.VideoMAEForPreTraining, cfg, pretrain=True)
    ours = VideoMAEPretrain(cfg).eval()
    ours.load_state_dict(interop.from_hf(hf.state_dict()), strict=False)
    x, mask = video(cfg), random_mask(2, cfg.geometry.num_tokens, 12, seed=2)
    hf(x.transpose(1, 2), bool_masked_pos=mask).loss.backward()
    ours(x, mask)[0].backward()
    expected = interop.from_hf({k: p.grad for k, p in hf.named_parameters()})
    got = {k: p.grad for k, p in ours.named_parameters()}
    assert expected.keys() == got.keys()
    for k in got:
        torch.testing.assert_close(got[k], expected[k], atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.parametrize("use_mean_pooling", [True, False])
def test_classifier_parity(use_mean_pooling):
    cfg = tiny_cfg(num_classes=5, use_mean_pooling=use_mean_pooling)
    hf = hf_model(transformers.VideoMAEForVideoClassification, cfg, pretrain=False)
    ours = VideoMAEClassifier(cfg).eval()
    skipped = load_encoder_weights(ours, hf.state_dict(), head=True)
    assert skipped == []
    x = video(cfg)
    with torch.no_grad():
        expected = hf(x.transpose(1, 2)).logits
        got = ours(x)
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    assert expected.std() > 0.01


def test_hf_pretrain_into_classifier_matches_hf_encoder():
    """Pre-trained transformers weights -> our classifier's encoder (decoder dropped)."""
    cfg = tiny_cfg()
    hf = hf_model(transformers.VideoMAEForPreTraining, cfg, pretrain=True)
    ours = VideoMAEClassifier(tiny_cfg(num_classes=3, use_mean_pooling=False)).eval()
    skipped = load_encoder_weights(ours, hf.state_dict())
    assert skipped and all(k.startswith(("decoder.", "encoder_to_decoder", "mask_token")) for k in skipped)
    x = video(cfg)
    with torch.no_grad():
        expected = hf.videomae(x.transpose(1, 2)).last_hidden_state
        got = ours.encoder(x)
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    # A bare VideoMAEModel state dict (no `videomae.` prefix) loads the same way.
    bare = VideoMAEClassifier(tiny_cfg(num_classes=3, use_mean_pooling=False)).eval()
    assert load_encoder_weights(bare, hf.videomae.state_dict()) == []
    with torch.no_grad():
        torch.testing.assert_close(bare.encoder(x), expected, atol=TOL, rtol=0)


def test_export_round_trip_to_transformers():
    """Ours -> transformers names -> a transformers model gives our outputs; and back is lossless."""
    cfg = tiny_cfg()
    torch.manual_seed(3)
    ours = VideoMAEPretrain(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    exported = interop.to_hf(ours.state_dict())
    hf = transformers.VideoMAEForPreTraining(
        transformers.VideoMAEConfig(**interop.hf_config_kwargs(cfg, pretrain=True))).eval()
    hf.decoder.norm.eps = cfg.norm_eps
    result = hf.load_state_dict(exported, strict=False)
    # transformers before 5.2x gives keys a bias, left at its zero init: exact (see interop.from_hf)
    assert all(k.endswith("attention.attention.key.bias") for k in result.missing_keys)
    assert not result.unexpected_keys
    x, mask = video(cfg), random_mask(2, cfg.geometry.num_tokens, 12, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mask)[0], hf(x.transpose(1, 2), bool_masked_pos=mask).loss,
                                   atol=TOL, rtol=0)
    back = interop.from_hf(exported)
    sd = ours.state_dict()
    assert set(back) == set(sd) - {"encoder.pos_embed"}
    for k, v in back.items():
        assert torch.equal(v, sd[k]), k


def test_export_refuses_resampled_position_table():
    cfg = tiny_cfg()
    sd = VideoMAEPretrain(cfg).state_dict()
    sd["encoder.pos_embed"] = sd["encoder.pos_embed"] * 0.5
    with pytest.raises(ValueError, match="sin-cos"):
        interop.to_hf(sd)


def test_mcg_nju_layouts():
    """MCG-NJU pre-training checkpoints share our names; fine-tuning ones lack `encoder.`; files
    wrap them in {'model': ...} and DDP adds `module.`."""
    cfg = tiny_cfg(num_classes=4)
    src = VideoMAEClassifier(cfg).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    original = {k.removeprefix("encoder."): v for k, v in src.state_dict().items() if k != "encoder.pos_embed"}
    assert "blocks.0.attn.q_bias" in original and "fc_norm.weight" in original
    ckpt = {"model": {"module." + k: v for k, v in original.items()}}
    dst = VideoMAEClassifier(cfg).eval()
    load_encoder_weights(dst, ckpt, head=True)
    x = video(cfg)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), atol=0, rtol=0)

    with pytest.raises(ValueError, match="layer scale"):
        interop.to_ours({"blocks.0.gamma_1": torch.zeros(3), **original})


def test_config_from_hf_round_trip():
    cfg = tiny_cfg(num_classes=7)
    hf_cfg = transformers.VideoMAEConfig(**interop.hf_config_kwargs(cfg, pretrain=False))
    assert interop.config_from_hf(hf_cfg) == cfg


def test_config_from_a_transformers_config_that_names_the_bias_qkv_bias():
    """transformers 4.x and 5.17 (the H200 machine's) call VideoMAE's q/v bias flag qkv_bias, later
    releases qv_bias: either is read."""
    cfg = tiny_cfg(num_classes=7)
    new = transformers.VideoMAEConfig(**interop.hf_config_kwargs(cfg, pretrain=False))
    fields = {k: v for k, v in vars(new).items() if k not in ("qv_bias", "qkv_bias")}
    old = SimpleNamespace(**fields, num_labels=new.num_labels,
                          qkv_bias=getattr(new, "qv_bias", getattr(new, "qkv_bias", None)))
    assert interop.config_from_hf(old) == cfg
    assert interop.config_from_hf(SimpleNamespace(**{**vars(old), "qkv_bias": False})).qkv_bias is False


def test_classifier_export_and_import_through_transformers_models():
    cfg = tiny_cfg(num_classes=4)
    torch.manual_seed(4)
    ours = VideoMAEClassifier(cfg).eval()
    perturb = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn(p.shape, generator=perturb) * 0.1)
    hf = interop.to_transformers(ours)
    assert isinstance(hf, transformers.VideoMAEForVideoClassification)
    x = video(cfg)
    with torch.no_grad():
        torch.testing.assert_close(hf(x.transpose(1, 2)).logits, ours(x), atol=TOL, rtol=0)
        back = interop.from_transformers(hf)
        assert back.cfg == cfg
        torch.testing.assert_close(back(x), ours(x), atol=0, rtol=0)
