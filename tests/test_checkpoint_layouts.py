"""Published checkpoint layouts, written as real files and loaded the way `model.init` does.

References are transformers VideoMAE models (the installed version). Each file renames their
weights to a layout with names spelled out here, from the layouts' own code: the hub's
transformers 4 files (`attention.attention.q_bias` / `v_bias`), MCG-NJU VideoMAE and VideoMAE V2
(`blocks.N.attn.qkv.weight`, `q_bias`, `patch_embed.proj`, `encoder.` in pre-training files). A file
must give the reference's outputs; a missing or zeroed weight must show.
"""

import math
import re

import pytest
import torch

from mgm import interop
from mgm.errors import MGMError
from mgm.interop import infer_grid, interpolate_pos_embed, load_encoder_weights
from mgm.model import ModelConfig, VideoMAEClassifier
from mgm.train.tasks import init_encoder

transformers = pytest.importorskip("transformers")

TOL = 1e-5
BIAS_V5 = re.compile(r"attention\.attention\.(query|key|value)\.bias$")


def tiny(**kw) -> ModelConfig:
    base = dict(img_size=32, num_frames=8, tubelet=2, patch=16, embed_dim=48, depth=2, num_heads=3,
                decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=2)
    return ModelConfig(**{**base, **kw})


def giant_shaped(**kw) -> ModelConfig:
    """VideoMAE V2 ViT-g/14 in miniature: patch 14, MLP ratio 48/11, two heads of 22."""
    return tiny(img_size=28, patch=14, embed_dim=44, num_heads=2, mlp_ratio=48 / 11, **kw)


def reference(cls, cfg: ModelConfig, pretrain: bool):
    """A transformers model with random weights (biases and norms too, so a dropped one shows)."""
    torch.manual_seed(0)
    model = cls(transformers.VideoMAEConfig(**interop.hf_config_kwargs(cfg, pretrain=pretrain))).eval()
    for name, module in model.named_modules():
        if name in ("decoder.norm", "fc_norm"):  # transformers hard-codes 1e-5 there, VideoMAE 1e-6
            module.eps = cfg.norm_eps
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def video(cfg: ModelConfig) -> torch.Tensor:
    return torch.randn(2, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(1))


def hub_v4_names(sd: dict) -> dict:
    """transformers 4 names, as in the hub's MCG-NJU/videomae-* files: q/v biases are parameters
    `attention.attention.q_bias` / `v_bias` and the key has no bias."""
    out = {}
    for k, v in sd.items():
        m = BIAS_V5.search(k)
        if m and m[1] == "key":
            continue
        out[BIAS_V5.sub(lambda m: f"attention.attention.{m[1][0]}_bias", k) if m else k] = v
    return out


# transformers name -> MCG-NJU / VideoMAE V2 name (their modeling_finetune / modeling_pretrain).
MCG_BLOCK = [("layernorm_before", "norm1"), ("layernorm_after", "norm2"), ("attention.output.dense", "attn.proj"),
             ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2")]
MCG_BIAS = {"attention.attention.query.bias": "attn.q_bias", "attention.attention.value.bias": "attn.v_bias"}


def mcg_names(sd: dict, pretrain: bool) -> dict:
    """MCG-NJU VideoMAE / VideoMAE V2 names: fused qkv without key bias; `encoder.` before the
    encoder in pre-training files only."""
    enc = "encoder." if pretrain else ""
    out = {}
    for k, v in sd.items():
        m = re.match(r"(videomae\.encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)", k)
        if m:
            block = f"{enc if m[1].startswith('videomae') else 'decoder.'}blocks.{m[2]}."
            rest = m[3]
            if rest.startswith("attention.attention.") and rest.endswith(".weight"):
                if rest.endswith("query.weight"):
                    qkv = [sd[k.replace("query", n)] for n in ("query", "key", "value")]
                    out[block + "attn.qkv.weight"] = torch.cat(qkv)
                continue
            if rest.endswith("key.bias"):
                continue
            if rest in MCG_BIAS:
                out[block + MCG_BIAS[rest]] = v
                continue
            hf, ours = next((a, b) for a, b in MCG_BLOCK if rest.startswith(a + "."))
            out[block + ours + rest[len(hf):]] = v
            continue
        k = (k.replace("videomae.embeddings.patch_embeddings.projection.", enc + "patch_embed.proj.")
             .replace("videomae.layernorm.", enc + "norm.").replace("classifier.", "head."))
        out[k] = v
    return out


def loaded(cfg: ModelConfig, path) -> VideoMAEClassifier:
    model = VideoMAEClassifier(cfg).eval()
    init_encoder(model, str(path))
    return model


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_hub_transformers4_file_equals_current_layout(tmp_path, suffix, capsys):
    """The hub's q_bias / v_bias file gives the features of the same weights in the current
    transformers layout, and of transformers itself; zeroed biases change them; a missing one stops."""
    from safetensors.torch import save_file

    save = (lambda sd, p: save_file(sd, str(p))) if suffix == ".safetensors" else torch.save
    cfg = tiny()
    hf = reference(transformers.VideoMAEForPreTraining, cfg, pretrain=True)
    current = hf.state_dict()
    hub = hub_v4_names(current)
    assert any(BIAS_V5.search(k) for k in current)  # the installed transformers' names differ...
    assert "videomae.encoder.layer.1.attention.attention.v_bias" in hub  # ...from the hub's
    assert not any(BIAS_V5.search(k) for k in hub)
    save(current, tmp_path / f"current{suffix}")
    save(hub, tmp_path / f"hub{suffix}")

    x = video(cfg)
    with torch.no_grad():
        expected = hf.videomae(x.transpose(1, 2)).last_hidden_state
        tokens = loaded(tiny(use_mean_pooling=False), tmp_path / f"hub{suffix}").encoder(x)
        feats = {name: loaded(cfg, tmp_path / f"{name}{suffix}").features(x) for name in ("current", "hub")}
    torch.testing.assert_close(tokens, expected, atol=TOL, rtol=0)
    assert torch.equal(feats["hub"], feats["current"])

    zeroed = {k: torch.zeros_like(v) if k.endswith(("q_bias", "v_bias")) else v for k, v in hub.items()}
    save(zeroed, tmp_path / f"zeroed{suffix}")
    capsys.readouterr()
    with torch.no_grad():
        zero_feats = loaded(cfg, tmp_path / f"zeroed{suffix}").features(x)
    assert (zero_feats - feats["hub"]).abs().max() > 1e-2
    assert "every q/v attention bias in the checkpoint is zero" in capsys.readouterr().out

    del hub["videomae.encoder.layer.1.attention.attention.v_bias"]
    save(hub, tmp_path / f"no-bias{suffix}")
    with pytest.raises(MGMError) as e:
        loaded(cfg, tmp_path / f"no-bias{suffix}")
    message = str(e.value)
    assert "\n" not in message and f"no-bias{suffix}" in message and "'encoder.blocks.1.attn.v_bias'" in message


@pytest.mark.parametrize("shape", [tiny, giant_shaped], ids=["videomae", "v2-giant"])
def test_mcg_nju_and_videomae_v2_pretraining_files(tmp_path, shape):
    """{'model': {'encoder.blocks...', 'decoder...', ...}} as VideoMAE / V2 pre-training saves it
    (no position table: theirs is a plain tensor, not in the state dict)."""
    cfg = shape()
    hf = reference(transformers.VideoMAEForPreTraining, cfg, pretrain=True)
    sd = mcg_names(hf.state_dict(), pretrain=True)
    assert {"encoder.blocks.0.attn.qkv.weight", "encoder.blocks.0.attn.q_bias", "encoder.norm.weight",
            "decoder.blocks.0.attn.v_bias", "mask_token", "encoder_to_decoder.weight"} <= sd.keys()
    torch.save({"model": sd, "epoch": 799}, tmp_path / "checkpoint-799.pth")
    x = video(cfg)
    with torch.no_grad():
        got = loaded(shape(use_mean_pooling=False), tmp_path / "checkpoint-799.pth").encoder(x)
        torch.testing.assert_close(got, hf.videomae(x.transpose(1, 2)).last_hidden_state, atol=TOL, rtol=0)


@pytest.mark.parametrize("shape", [tiny, giant_shaped], ids=["videomae", "v2-distilled-or-giant"])
def test_mcg_nju_and_videomae_v2_finetuning_files(tmp_path, shape):
    """{'module': {'blocks...', 'fc_norm', 'head'}} as VideoMAE / V2 fine-tuning and V2's distilled
    ViT-S/B save it (DeepSpeed): the encoder via init_encoder, the head too when asked."""
    cfg = shape(num_classes=5)
    hf = reference(transformers.VideoMAEForVideoClassification, cfg, pretrain=False)
    sd = mcg_names(hf.state_dict(), pretrain=False)
    assert {"blocks.1.attn.qkv.weight", "patch_embed.proj.weight", "fc_norm.weight", "head.weight"} <= sd.keys()
    path = tmp_path / "vit_k710_ft.pth"
    torch.save({"module": sd}, path)
    x = video(cfg)
    with torch.no_grad():
        expected = hf(x.transpose(1, 2)).logits
        fresh_head = loaded(cfg, path)
        with_head = VideoMAEClassifier(cfg).eval()
        load_encoder_weights(with_head, torch.load(path), head=True)
        torch.testing.assert_close(with_head(x), expected, atol=TOL, rtol=0)
        # init_encoder loads the same encoder, keeps its fresh fc_norm and head
        torch.testing.assert_close(fresh_head.encoder(x), with_head.encoder(x), atol=0, rtol=0)
        assert not torch.equal(fresh_head.head.weight, with_head.head.weight)


def test_giant_preset_is_videomae_v2_vit_g():
    cfg = ModelConfig.from_preset("giant")
    assert (cfg.patch, cfg.embed_dim, cfg.depth, cfg.num_heads) == (14, 1408, 40, 16)
    with torch.device("meta"):
        model = VideoMAEClassifier(cfg)
    assert model.encoder.blocks[0].mlp.fc1.weight.shape == (6144, 1408)  # int(1408 * 48/11), as V2
    assert model.encoder.grid == (8, 16, 16)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 1011) < 1  # V2 reports 1011M


def test_other_model_size_says_what_to_set(tmp_path):
    """A V2 ViT-g/14 file into a patch-16 ViT-B: one line naming the preset and patch to set."""
    sd = {"patch_embed.proj.weight": torch.zeros(1408, 3, 2, 14, 14)}
    sd.update({f"blocks.{i}.norm1.weight": torch.zeros(1) for i in range(40)})
    torch.save({"module": sd}, tmp_path / "vit_g.pth")
    with torch.device("meta"):
        model = VideoMAEClassifier(ModelConfig.from_preset("base"))
    with pytest.raises(MGMError, match=r"vit_g.pth: .*set model.preset=giant and data.patch=14$"):
        init_encoder(model, str(tmp_path / "vit_g.pth"))


def test_weights_without_a_place_or_with_a_part_missing_stop(tmp_path):
    cfg = tiny()
    src = VideoMAEClassifier(cfg)
    sd = {k.removeprefix("encoder."): v for k, v in src.state_dict().items() if k != "encoder.pos_embed"}
    # V2's cosine attention has a learnt logit scale per head: dropping it would change the features
    torch.save({"module": {**sd, "blocks.0.attn.scale": torch.zeros(3, 1, 1)}}, tmp_path / "cos.pth")
    with pytest.raises(MGMError, match="no place for, first 'encoder.blocks.0.attn.scale'"):
        loaded(cfg, tmp_path / "cos.pth")
    hf = interop.to_hf(src.state_dict(), check_pos=False)
    hf = {k: v for k, v in hf.items() if "layer.0.attention.attention.key" not in k}
    torch.save(hf, tmp_path / "hf.bin")
    with pytest.raises(MGMError, match=r"lacks 'videomae.encoder.layer.0.attention.attention.key.weight'"):
        loaded(cfg, tmp_path / "hf.bin")


def test_our_checkpoint_resamples_its_table_from_its_stored_geometry(tmp_path):
    """model.init with one of our pre-training checkpoints at another frame count and size: the
    grid comes from the checkpoint's config (the table's length alone could not tell it)."""
    from mgm.model import VideoMAEPretrain
    from mgm.train.tasks import finetune_task, model_config
    from mgm.train.config import load_config

    pre_cfg = load_config("pretrain", overrides=["model.preset=nano", "data.num_frames=8", "data.size=64"])
    src = VideoMAEPretrain(model_config(pre_cfg))
    with torch.no_grad():
        src.encoder.pos_embed.add_(torch.randn_like(src.encoder.pos_embed))
    path = tmp_path / "ckpt-00000100.pt"
    torch.save({"model": src.state_dict(), "config": pre_cfg.to_dict(), "task": "pretrain", "step": 100}, path)

    ft_cfg = load_config("finetune", overrides=["model.preset=nano", "data.num_frames=4", "data.size=96",
                                                 f"model.init={path}"])
    model = finetune_task(ft_cfg, 3).model
    assert model.encoder.grid == (2, 6, 6)
    expected = interpolate_pos_embed(src.encoder.pos_embed, (4, 4, 4), (2, 6, 6))
    torch.testing.assert_close(model.encoder.pos_embed, expected, atol=0, rtol=0)
    assert torch.equal(model.encoder.blocks[3].attn.v_bias, src.encoder.blocks[3].attn.v_bias)

    # The same weights without the config: 64 tokens fit no grid for 4 frames of 96 px.
    torch.save(src.state_dict(), tmp_path / "bare.pt")
    ft_cfg.model.init = str(tmp_path / "bare.pt")
    with pytest.raises(MGMError, match=r"bare.pt: .*set data.num_frames and data.size to the checkpoint's"):
        finetune_task(ft_cfg, 3)


def test_foreign_learnt_table_grid_is_inferred_and_reported(tmp_path, capsys):
    """A fine-tuning file with a learnt table (use_learnable_pos_emb) for 16 frames of 32 px,
    loaded for 8 frames of 48 px: read as VideoMAE's 16-frame grid, said so, resampled."""
    src_cfg = tiny(num_frames=16)
    src = VideoMAEClassifier(src_cfg)
    table = torch.randn(1, 32, src_cfg.embed_dim)
    sd = {k.removeprefix("encoder."): v for k, v in src.state_dict().items() if k != "encoder.pos_embed"}
    torch.save({"model": {**sd, "pos_embed": table}}, tmp_path / "learnt.pth")
    model = loaded(tiny(img_size=48), tmp_path / "learnt.pth")
    torch.testing.assert_close(model.encoder.pos_embed, interpolate_pos_embed(table, (8, 2, 2), (4, 3, 3)))
    out = capsys.readouterr().out
    assert "read as grid (8, 2, 2) (16 frames of 32 px" in out and "resampled" in out


def test_infer_grid():
    assert infer_grid(1568, 2, 16, (4, 7, 7))[0] == (8, 14, 14)  # VideoMAE 16x224, patch 16
    assert infer_grid(2048, 2, 14, (8, 8, 8))[0] == (8, 16, 16)  # V2 ViT-g/14 16x224
    assert infer_grid(4 * 9, 2, 16, (4, 5, 5))[0] == (4, 3, 3)  # not 16 frames: the model's T'
    assert infer_grid(6 * 25, 2, 16, (4, 5, 5))[0] == (6, 5, 5)  # neither: the model's frame size
    with pytest.raises(ValueError, match="set data.num_frames and data.size"):
        infer_grid(7 * 11, 2, 16, (4, 5, 5))
    assert math.prod(infer_grid(1568, 2, 16, (8, 14, 14))[0]) == 1568


def test_a_key_bias_is_dropped_exactly(tmp_path):
    """Some transformers 5 files store a key bias, VideoMAE has none: it adds q . b_k to every
    logit of a query alike, so softmax cancels it, even when it is not zero."""
    cfg = tiny(use_mean_pooling=False)
    hf = reference(transformers.VideoMAEForPreTraining, cfg, pretrain=True)
    sd = dict(hf.state_dict())
    for i in range(cfg.depth):
        sd[f"videomae.encoder.layer.{i}.attention.attention.key.bias"] = torch.randn(cfg.embed_dim)
    torch.save(sd, tmp_path / "key-bias.bin")
    x = video(cfg)
    with torch.no_grad():
        torch.testing.assert_close(loaded(cfg, tmp_path / "key-bias.bin").encoder(x),
                                   hf.videomae(x.transpose(1, 2)).last_hidden_state, atol=TOL, rtol=0)
