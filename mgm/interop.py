"""Checkpoint interoperability: MCG-NJU VideoMAE, VideoMAE V2 and Hugging Face transformers <-> ours.

Layouts read (`to_ours`):
- ours, and MCG-NJU / VideoMAE V2 pre-training files: `encoder.blocks.N.attn.qkv.weight`,
  `encoder.blocks.N.attn.q_bias` / `v_bias`, `encoder.patch_embed.proj.*`, `decoder.*`, ...;
- MCG-NJU / V2 fine-tuning files (V2's distilled ViT-S/B, its fine-tuned ViT-g/14): the same
  without `encoder.`, plus `fc_norm.*` / `head.*`;
- transformers: q/k/v split into `videomae.encoder.layer.N.attention.attention.{query,key,value}`,
  with the q/v biases either as `query.bias` / `value.bias` (transformers >= 5) or as
  `q_bias` / `v_bias` (transformers 4, the layout of the hub's MCG-NJU/videomae-* files).
Files may wrap the state dict in `model` / `module` / `state_dict` and prefix `module.` /
`_orig_mod.`. `from_hf` / `to_hf` translate transformers names both ways.

Known differences (not weights, so not translated): transformers' LayerNorm eps is
`config.layer_norm_eps` (1e-12 by default) in the blocks and 1e-5 in `decoder.norm` and `fc_norm`,
VideoMAE uses 1e-6 everywhere (our `ModelConfig.norm_eps`); and transformers keeps no position
table in its state dict (it always uses the sin-cos table of its own geometry).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgm.config import Geometry
from mgm.model import VideoMAEClassifier, VideoMAEPretrain, sincos_table
from mgm.model_config import PRESETS, ModelConfig

# Inside one transformer block: transformers' name -> ours (q/k/v handled separately).
_HF_BLOCK = {
    "attention.output.dense": "attn.proj",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}
# Outside the blocks: transformers' prefix -> ours.
_HF_TOP = {
    "videomae.embeddings.patch_embeddings.projection.": "encoder.patch_embed.proj.",
    "videomae.layernorm.": "encoder.norm.",
    "encoder_to_decoder.": "encoder_to_decoder.",
    "mask_token": "mask_token",
    "decoder.norm.": "decoder.norm.",
    "decoder.head.": "decoder.head.",
    "fc_norm.": "fc_norm.",
    "classifier.": "head.",
}
_HF_STACKS = {"videomae.encoder.layer.": "encoder.blocks.", "decoder.decoder_layers.": "decoder.blocks."}
_QKV = "attention.attention."
# transformers 4 kept VideoMAE's biases as parameters of the self-attention module; 5 moved them
# into the query / value Linear layers. Same tensors, so both names map to ours.
_HF_V4_BIAS = {"q_bias": "query.bias", "v_bias": "value.bias"}
_LAYOUT_NAMES = {"hf": "transformers", "hf-bare": "transformers (bare VideoMAEModel)",
                 "videomae-finetune": "MCG-NJU / VideoMAE V2 fine-tuning", "ours": "ours / MCG-NJU pre-training"}


def unwrap(checkpoint: dict) -> dict[str, Tensor]:
    """The state dict inside a checkpoint file's dict (`model` / `module` / `state_dict` entries),
    without DDP's `module.` and torch.compile's `_orig_mod.` prefixes."""
    sd = checkpoint
    for key in ("model", "module", "state_dict"):
        if isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "_orig_mod."):
            k = k.removeprefix(prefix)
        out[k] = v
    return out


def detect(state_dict: dict[str, Tensor]) -> str:
    """'hf', 'hf-bare' (a bare transformers VideoMAEModel: no `videomae.` prefix),
    'videomae-finetune' (MCG-NJU fine-tuning layout, no `encoder.` prefix) or 'ours'
    (ours and MCG-NJU pre-training share names)."""
    if any(k.startswith("videomae.") for k in state_dict):
        return "hf"
    if any(k.startswith("embeddings.patch_embeddings.") for k in state_dict):
        return "hf-bare"
    if any(k.startswith(("blocks.", "patch_embed.")) for k in state_dict):
        return "videomae-finetune"
    return "ours"


def layout_name(checkpoint: dict) -> str:
    """Human name of a checkpoint's layout, for messages."""
    return _LAYOUT_NAMES[detect(unwrap(checkpoint))]


def stored_geometry(checkpoint: dict):
    """The clip Geometry a checkpoint of ours was trained at (its `config` dict's data section),
    or None (a foreign file, or a bare state dict)."""

    config = checkpoint.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict):
        return None
    try:
        return Geometry(**{k: int(data[k]) for k in ("num_frames", "size", "tubelet", "patch")})
    except (KeyError, TypeError, ValueError):
        return None


def to_ours(checkpoint: dict) -> dict[str, Tensor]:
    """Any supported checkpoint (dict or wrapped) -> a state dict with our names."""
    sd = unwrap(checkpoint)
    if any(".gamma_1" in k or ".gamma_2" in k for k in sd):
        raise ValueError("checkpoint uses layer scale (gamma_1/gamma_2, init_values > 0), which this model lacks")
    kind = detect(sd)
    if kind == "hf":
        return from_hf(sd)
    if kind == "hf-bare":
        return from_hf({"videomae." + k: v for k, v in sd.items()})
    if kind == "videomae-finetune":
        return {k if k.startswith(("fc_norm.", "head.")) else "encoder." + k: v for k, v in sd.items()}
    return dict(sd)


def _hf_block_to_ours(rest: str) -> str:
    for hf, ours in _HF_BLOCK.items():
        if rest.startswith(hf + "."):
            return ours + rest[len(hf):]
    raise KeyError(rest)


def from_hf(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers VideoMAE (ForPreTraining / ForVideoClassification / Model; transformers 4 or 5
    names) -> ours. Raises ValueError naming the first key it cannot place or the first missing
    part of a split q/k/v."""
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}  # (transformers prefix, our block) -> parts
    for k, v in state_dict.items():
        stack = next((s for s in _HF_STACKS if k.startswith(s)), None)
        if stack is not None:
            i, rest = k[len(stack):].split(".", 1)
            block = f"{_HF_STACKS[stack]}{i}."
            if rest.startswith(_QKV):
                name = rest[len(_QKV):]
                qkv.setdefault((f"{stack}{i}.{_QKV}", block), {})[_HF_V4_BIAS.get(name, name)] = v
            else:
                try:
                    out[block + _hf_block_to_ours(rest)] = v
                except KeyError:
                    raise ValueError(f"unexpected transformers VideoMAE key {k!r}") from None
            continue
        top = next((p for p in _HF_TOP if k.startswith(p)), None)
        if top is None:
            raise ValueError(f"unexpected transformers VideoMAE key {k!r}")
        out[_HF_TOP[top] + k[len(top):]] = v
    for (hf, block), p in qkv.items():
        # A key bias adds q . b_k to all logits of a query alike, which softmax cancels: VideoMAE
        # has none, and transformers versions that store one keep it at zero. Dropping it is exact.
        p.pop("key.bias", None)
        names = ("query.weight", "key.weight", "value.weight")
        lacking = [n for n in names if n not in p]
        if lacking:
            raise ValueError(f"transformers checkpoint lacks {hf + lacking[0]!r}")
        out[block + "attn.qkv.weight"] = torch.cat([p.pop(n) for n in names])
        # Biases are copied as found; one the model needs but the file lacks is reported by the
        # loader, never left at zero.
        for hf_name, ours in (("query.bias", "attn.q_bias"), ("value.bias", "attn.v_bias")):
            if hf_name in p:
                out[block + ours] = p.pop(hf_name)
        if p:
            raise ValueError(f"unexpected transformers VideoMAE key {hf + sorted(p)[0]!r}")
    if "encoder_to_decoder.weight" in out and "encoder.norm.weight" not in out:
        raise ValueError("transformers pre-training checkpoint without a final encoder norm "
                         "(config.use_mean_pooling=True): VideoMAE's pre-training encoder always has one")
    return out


def to_hf(state_dict: dict[str, Tensor], *, check_pos: bool = True) -> dict[str, Tensor]:
    """Ours -> transformers VideoMAE names. transformers has no place for a position table: with
    `check_pos` we refuse to export one that is not the sin-cos table it will recompute."""

    sd = unwrap(state_dict)
    pos = sd.get("encoder.pos_embed")
    if check_pos and pos is not None and not torch.allclose(pos[0].float(), sincos_table(*pos.shape[1:]), atol=1e-6):
        raise ValueError("encoder.pos_embed is not the standard sin-cos table (resampled for another geometry?); "
                         "transformers would silently replace it")
    inv_top = {ours: hf for hf, ours in _HF_TOP.items()}
    inv_block = {ours: hf for hf, ours in _HF_BLOCK.items()}
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        if k in ("encoder.pos_embed", "decoder_pos_embed"):
            continue
        m = re.match(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)", k)
        if m:
            stack = {v_: k_ for k_, v_ in _HF_STACKS.items()}[f"{m[1]}.blocks."]
            block, rest = f"{stack}{m[2]}.", m[3]
            if rest == "attn.qkv.weight":
                q, kk, vv = v.chunk(3)
                out[block + _QKV + "query.weight"] = q
                out[block + _QKV + "key.weight"] = kk
                out[block + _QKV + "value.weight"] = vv
            elif rest in ("attn.q_bias", "attn.v_bias"):
                out[block + _QKV + ("query.bias" if rest == "attn.q_bias" else "value.bias")] = v
            else:
                ours = next(o for o in inv_block if rest.startswith(o + "."))
                out[block + inv_block[ours] + rest[len(ours):]] = v
            continue
        top = next((p for p in inv_top if k.startswith(p)), None)
        if top is None:
            raise KeyError(f"no transformers name for {k!r}")
        out[inv_top[top] + k[len(top):]] = v
    return out


def hf_config_kwargs(cfg, *, pretrain: bool) -> dict:
    """`transformers.VideoMAEConfig` arguments for our ModelConfig. A pre-training model needs
    use_mean_pooling=False there, since that flag also decides whether its encoder has a final norm."""
    if getattr(cfg, "pooling", "mean") != "mean":
        raise ValueError(f"a classifier with pooling={cfg.pooling!r} has no transformers VideoMAE "
                         "counterpart (its head reads the mean of all tokens)")
    return dict(
        image_size=cfg.img_size, patch_size=cfg.patch, num_channels=cfg.in_chans, num_frames=cfg.num_frames,
        tubelet_size=cfg.tubelet, hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads, intermediate_size=int(cfg.embed_dim * cfg.mlp_ratio),
        hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        layer_norm_eps=cfg.norm_eps, qkv_bias=cfg.qkv_bias, use_mean_pooling=cfg.use_mean_pooling and not pretrain,
        decoder_num_attention_heads=cfg.decoder_num_heads, decoder_hidden_size=cfg.decoder_embed_dim,
        decoder_num_hidden_layers=cfg.decoder_depth,
        decoder_intermediate_size=int(cfg.decoder_embed_dim * cfg.mlp_ratio),
        norm_pix_loss=cfg.norm_pix_loss, num_labels=max(cfg.num_classes, 1),
    )


def config_from_hf(hf_config, **overrides):
    """Our ModelConfig for a `transformers.VideoMAEConfig` (or anything with its attributes)."""

    c = hf_config
    size = c.image_size if isinstance(c.image_size, int) else c.image_size[0]
    patch = c.patch_size if isinstance(c.patch_size, int) else c.patch_size[0]
    kw = dict(
        geometry=Geometry(num_frames=c.num_frames, size=size, tubelet=c.tubelet_size, patch=patch),
        in_chans=c.num_channels,
        embed_dim=c.hidden_size, depth=c.num_hidden_layers, num_heads=c.num_attention_heads,
        # transformers before 5.2x (4.x, 5.17) names it qkv_bias (and gives keys a zero bias), later ones qv_bias
        mlp_ratio=c.intermediate_size / c.hidden_size, qkv_bias=c.qv_bias if hasattr(c, "qv_bias") else c.qkv_bias,
        decoder_embed_dim=c.decoder_hidden_size, decoder_depth=c.decoder_num_hidden_layers,
        decoder_num_heads=c.decoder_num_attention_heads, norm_pix_loss=c.norm_pix_loss,
        num_classes=getattr(c, "num_labels", 0), use_mean_pooling=c.use_mean_pooling, norm_eps=c.layer_norm_eps,
    )
    if c.hidden_act != "gelu":
        raise ValueError(f"unsupported activation {c.hidden_act!r}")
    return ModelConfig(**{**kw, **overrides})


def to_transformers(model):
    """A transformers VideoMAEForPreTraining / VideoMAEForVideoClassification with our model's
    weights (e.g. to `save_pretrained`). Its two eps-1e-5 norms are set to our eps, so outputs match."""
    import transformers


    pretrain = isinstance(model, VideoMAEPretrain)
    cls = transformers.VideoMAEForPreTraining if pretrain else transformers.VideoMAEForVideoClassification
    hf = cls(transformers.VideoMAEConfig(**hf_config_kwargs(model.cfg, pretrain=pretrain)))
    sd = to_hf(model.state_dict())
    if not pretrain and model.cfg.num_classes == 0:  # transformers always has a classifier
        sd.update({f"classifier.{k}": v for k, v in hf.classifier.state_dict().items()})
    for k, v in hf.state_dict().items():  # some transformers 5 releases give the key a bias:
        if k.endswith(_QKV + "key.bias") and k not in sd:  # zero is VideoMAE's (see from_hf)
            sd[k] = torch.zeros_like(v)
    hf.load_state_dict(sd, strict=True)
    for name, module in hf.named_modules():
        if name in ("decoder.norm", "fc_norm"):
            module.eps = model.cfg.norm_eps
    return hf.eval()


def from_transformers(hf_model):
    """Our VideoMAEPretrain / VideoMAEClassifier with a transformers VideoMAE model's weights."""

    cfg = config_from_hf(hf_model.config)
    if hasattr(hf_model, "decoder"):
        model = VideoMAEPretrain(cfg)
        sd = from_hf(hf_model.state_dict())
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if set(missing) - {"encoder.pos_embed"} or unexpected:
            raise ValueError(f"weights do not match: missing {missing}, unexpected {unexpected}")
    else:
        model = VideoMAEClassifier(cfg)
        load_encoder_weights(model, hf_model.state_dict(), head=hasattr(hf_model, "classifier"))
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Loading an encoder from any layout, position tables on another grid


def interpolate_pos_embed(pos: Tensor, old_grid: tuple[int, int, int], new_grid: tuple[int, int, int]) -> Tensor:
    """Resample a position table `[1, N_old, D]` laid out on `old_grid` (T', H', W') to `new_grid`:
    `[1, N_new, D]`, trilinear over token centres.

    Why interpolate a fixed table instead of recomputing it: VideoMAE's table is 1-D over the
    flattened tokens, so recomputing it for another grid gives each (t, h, w) a different code
    than the one the weights were trained with; resampling keeps each place's code.
    """
    d = pos.shape[-1]
    if pos.shape[-2] != math.prod(old_grid):
        raise ValueError(f"position table has {pos.shape[-2]} tokens, grid {old_grid} has {math.prod(old_grid)}")
    x = pos.reshape(1, *old_grid, d).permute(0, 4, 1, 2, 3).float()
    x = F.interpolate(x, size=tuple(new_grid), mode="trilinear", align_corners=False)
    return x.permute(0, 2, 3, 4, 1).reshape(1, -1, d).to(pos.dtype)


def infer_grid(num_tokens: int, tubelet: int, patch: int,
               model_grid: tuple[int, int, int]) -> tuple[tuple[int, int, int], str]:
    """Token grid (T', H', W') of a foreign position table of `num_tokens` rows, and how it was read.

    Foreign files say nothing of their clip shape, so try, in order: VideoMAE's (and V2's) 16-frame
    clips with square frames (1568 = 8x14x14: 16 frames of 224 px, tubelet 2, patch 16); the
    model's T' with square frames; the model's H' x W'. Raises ValueError saying what to set.
    """
    t, h, w = model_grid
    tries = [(16 // tubelet, "16-frame clips, as VideoMAE pre-trains")] if 16 % tubelet == 0 else []
    for slots, why in tries + [(t, "the model's frame count")]:
        side = math.isqrt(num_tokens // slots)
        if side * side * slots == num_tokens:
            return (slots, side, side), f"{slots * tubelet} frames of {side * patch} px, assuming {why}"
    if num_tokens % (h * w) == 0:
        return (num_tokens // (h * w), h, w), f"{num_tokens // (h * w) * tubelet} frames of the model's size"
    raise ValueError(f"cannot infer the clip shape of a {num_tokens}-token position table (tubelet {tubelet}, "
                     f"patch {patch}): set data.num_frames and data.size to the checkpoint's "
                     f"(or pass old_grid to load_encoder_weights)")


def _encoder_shape(sd: dict) -> dict:
    """Width, depth, tubelet and patch of the encoder in a state dict with our names."""
    w = sd["encoder.patch_embed.proj.weight"]  # Conv3d [D, C, tubelet, patch, patch]
    if w.dim() != 5:  # e.g. an image ViT's Conv2d
        raise ValueError(f"patch embedding of shape {tuple(w.shape)} is not a video tubelet embedding (Conv3d)")
    blocks = {int(k.split(".")[2]) for k in sd if k.startswith("encoder.blocks.")}
    return dict(width=w.shape[0], depth=max(blocks, default=-1) + 1, tubelet=w.shape[2], patch=w.shape[3])


def _check_shape(sd: dict, cfg: ModelConfig) -> None:
    """One line saying what to set when the checkpoint's encoder is not the model's."""
    have = _encoder_shape(sd)
    want = dict(width=cfg.embed_dim, depth=cfg.depth, tubelet=cfg.tubelet, patch=cfg.patch)
    if have == want:
        return
    todo = []
    if (have["width"], have["depth"]) != (want["width"], want["depth"]):
        preset = next((n for n, p in PRESETS.items() if (p["embed_dim"], p["depth"]) == (have["width"], have["depth"])),
                      None)
        todo.append(f"model.preset={preset}" if preset else "a model preset of that width and depth")
    todo += [f"data.{k}={have[k]}" for k in ("tubelet", "patch") if have[k] != want[k]]
    show = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
    raise ValueError(f"checkpoint encoder has {show(have)}; the model {show(want)}: set {' and '.join(todo)}")


def load_encoder_weights(model: nn.Module, state_dict: dict, *, head: bool = False,
                         old_grid: tuple[int, int, int] | None = None, say=None) -> list[str]:
    """Load the encoder of a checkpoint into `model` (a VideoMAEClassifier or VideoMAEPretrain).

    `state_dict` may be in any layout of mgm.interop.to_ours (ours, MCG-NJU, VideoMAE V2,
    transformers 4 or 5). The decoder is dropped; the encoder's final norm is dropped when the
    model has none (mean pooling, as VideoMAE fine-tuning does). With `head=True` fc_norm and head
    are loaded too (a fine-tuned checkpoint, same classes).

    Position table: a missing one keeps the model's sin-cos table (as VideoMAE and transformers
    do). One laid out on another grid is resampled: `old_grid` is the checkpoint's (T', H', W')
    (for ours, from its stored config), else it is inferred from the table's length (`infer_grid`).
    `say(message)` is told what was inferred / resampled.

    Raises ValueError (one line) for any encoder weight the model needs and the checkpoint lacks
    (never left at its initial value), for encoder weights the model has no place for, and for
    shape mismatches. Returns the names in the checkpoint that were not loaded.
    """
    say = say or (lambda message: None)
    sd = to_ours(state_dict)
    target = model.state_dict()
    wanted = [k for k in target if k.startswith("encoder.") or (head and k.startswith(("fc_norm.", "head.")))]
    if "encoder.patch_embed.proj.weight" in sd:  # another model size: say which, not what it lacks
        _check_shape(sd, model.cfg)
    missing = [k for k in wanted if k not in sd and k != "encoder.pos_embed"]  # model order: blocks.0 first
    if missing:
        raise ValueError(f"{layout_name(state_dict)} checkpoint lacks {len(missing)} weights the model needs, "
                         f"first {missing[0]!r}")
    final_norm = "encoder.norm.weight" in target
    extra = [k for k in sd if k.startswith("encoder.") and k not in target
             and (final_norm or not k.startswith("encoder.norm."))]
    if extra:  # e.g. V2's cosine-attention `attn.scale`: dropping it would change the features
        raise ValueError(f"checkpoint has {len(extra)} encoder weights this model has no place for, first {extra[0]!r}")
    load = {k: sd[k] for k in wanted if k in sd}
    pos, grid = load.get("encoder.pos_embed"), model.encoder.grid
    if pos is not None and (pos.shape != target["encoder.pos_embed"].shape or (old_grid and tuple(old_grid) != grid)):
        if pos.shape[-1] != model.cfg.embed_dim:
            raise ValueError(f"position table width {pos.shape[-1]} != model width {model.cfg.embed_dim}")
        if old_grid is None:
            old_grid, how = infer_grid(pos.shape[-2], model.cfg.tubelet, model.cfg.patch, grid)
            say(f"position table of {pos.shape[-2]} tokens read as grid {old_grid} ({how})")
        load["encoder.pos_embed"] = interpolate_pos_embed(pos, tuple(old_grid), grid)
        say(f"position table resampled from grid {tuple(old_grid)} to the model's {grid}")
    for k, v in load.items():
        if v.shape != target[k].shape:
            raise ValueError(f"{k}: checkpoint shape {tuple(v.shape)} != model shape {tuple(target[k].shape)}")
    biases = [v for k, v in load.items() if k.endswith(("attn.q_bias", "attn.v_bias"))]
    if biases and not any(bool(b.any()) for b in biases):
        say("warning: every q/v attention bias in the checkpoint is zero (an untrained model, or a file "
            "re-saved by a transformers version that dropped the hub's q_bias / v_bias)")
    model.load_state_dict(load, strict=False)
    return sorted(sd.keys() - load.keys())
