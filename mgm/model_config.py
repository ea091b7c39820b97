"""The model's configuration, apart from the model (as transformers' VideoMAEConfig): what fixes
the network's shape (geometry, widths) and its regularisation, and the named presets."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace

from mgm.config import Geometry

# transformers-style names of the geometry's fields, which ModelConfig(...), from_preset and the
# presets still take (over the geometry) and which read as properties.
_GEOMETRY_NAMES = {"img_size": "size", "num_frames": "num_frames", "tubelet": "tubelet", "patch": "patch"}


@dataclass(init=False)
class ModelConfig:
    """Everything that fixes the network's shape (one clip Geometry, widths) and its regularisation.

    ModelConfig(geometry=Geometry(...), embed_dim=...) or, as transformers spells it,
    ModelConfig(img_size=112, num_frames=16, patch=16, ...): those names replace the geometry's fields.
    """

    geometry: Geometry = field(default_factory=Geometry)
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    decoder_embed_dim: int = 384
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    drop_path: float = 0.0
    norm_pix_loss: bool = True
    num_classes: int = 0
    fc_drop: float = 0.0
    use_mean_pooling: bool = True
    # Fine-tuning head input: "mean" (VideoMAE) or "slots": the per-tubelet-slot means, each
    # fc_norm'ed, concatenated [T' * D]. Slots keep temporal order, which a mean over all tokens
    # only keeps once the encoder has learnt to write it into every token (RESULTS.md: on the
    # benchmark's motion classes fine-tuning sat at chance for ~500 steps with "mean").
    pooling: str = "mean"
    grad_checkpointing: bool = False
    norm_eps: float = 1e-6  # VideoMAE's LayerNorm eps (transformers' config default is 1e-12)
    head_init_scale: float = 0.001  # VideoMAE fine-tuning scales the fresh head's init by this

    def __init__(self, geometry: Geometry | None = None, **kw):
        named = {new: kw.pop(old) for old, new in _GEOMETRY_NAMES.items() if old in kw}
        geometry = geometry or Geometry()
        self.geometry = replace(geometry, **named) if named else geometry  # replace validates divisibility
        for f in fields(self):
            if f.name != "geometry":
                default = f.default_factory() if f.default is MISSING else f.default
                setattr(self, f.name, kw.pop(f.name, default))
        if kw:
            raise TypeError(f"ModelConfig got unknown fields: {', '.join(sorted(kw))}")
        self.__post_init__()

    def __post_init__(self):
        if self.pooling not in ("mean", "slots"):
            raise ValueError(f"pooling={self.pooling!r} is not one of mean, slots")
        if self.pooling == "slots" and not self.use_mean_pooling:
            raise ValueError("pooling='slots' needs use_mean_pooling=True (it pools over space per slot)")
        for name, dim, heads in (("", self.embed_dim, self.num_heads),
                                 ("decoder_", self.decoder_embed_dim, self.decoder_num_heads)):
            if dim % heads:
                raise ValueError(f"{name}embed_dim={dim} is not a multiple of {name}num_heads={heads}")

    img_size = property(lambda self: self.geometry.size)
    num_frames = property(lambda self: self.geometry.num_frames)
    tubelet = property(lambda self: self.geometry.tubelet)
    patch = property(lambda self: self.geometry.patch)

    @property
    def patch_dim(self) -> int:
        """Values per tubelet: tubelet * patch * patch * in_chans (one prediction per masked token)."""
        return self.tubelet * self.patch * self.patch * self.in_chans

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ModelConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
        known = {f.name for f in fields(cls)} | set(_GEOMETRY_NAMES)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        preset = PRESETS[name]
        if "geometry" in overrides:  # a whole geometry replaces the preset's own clip size / patch
            preset = {k: v for k, v in preset.items() if k not in _GEOMETRY_NAMES}
        return cls(**{**preset, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


# Widths as in VideoMAE (ViT-S/B/L with their pre-training decoders; "giant" is VideoMAE V2's
# ViT-g/14: patch 14, 16 heads of 88, MLP 6144 wide); "tiny" and "micro" are for
# CPU experiments ("micro": ~0.8 M encoder weights, what the long masking experiment affords on 2
# cores; "nano": 96-d, ~0.6x micro's time per step, what fits the 3-hour `small` experiment).
PRESETS: dict[str, dict] = {
    "nano": dict(img_size=64, embed_dim=96, depth=4, num_heads=3,
                 decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2),
    "micro": dict(img_size=64, embed_dim=128, depth=4, num_heads=4,
                  decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2),
    "tiny": dict(img_size=112, embed_dim=192, depth=4, num_heads=3,
                 decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6,
                  decoder_embed_dim=192, decoder_depth=4, decoder_num_heads=3),
    "base": dict(embed_dim=768, depth=12, num_heads=12,
                 decoder_embed_dim=384, decoder_depth=4, decoder_num_heads=6),
    "large": dict(embed_dim=1024, depth=24, num_heads=16,
                  decoder_embed_dim=512, decoder_depth=4, decoder_num_heads=8),
    "giant": dict(patch=14, embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11,
                  decoder_embed_dim=512, decoder_depth=4, decoder_num_heads=8),
}
