"""VideoMAE in plain PyTorch: ViT encoder on visible tubelets, narrow decoder, classifier head.

Architecture and parameter names follow MCG-NJU/VideoMAE (`encoder.blocks.N.attn.qkv`, `q_bias`,
`v_bias`, ...), so their checkpoints load after at most a prefix change (see mgm.interop).

Input convention: a video is float `[B, C, T, H, W]`, normalised with the ImageNet mean/std
(`IMAGENET_MEAN`, `IMAGENET_STD`), as in VideoMAE and transformers. The pre-training target
un-normalises it back to [0, 1] pixels first (for C == 3), so the loss means the same as theirs.

Masks are bool `[B, N]`, True = masked, tokens flattened in (t, h, w) order; every clip of a batch
masks the same number of tokens (contract, checked).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mgm.config import IMAGENET_MEAN, IMAGENET_STD
from mgm.model_config import ModelConfig



# ----------------------------------------------------------------------------------------------
# Tensor helpers


def sincos_table(num_positions: int, dim: int) -> Tensor:
    """VideoMAE's fixed 1-D sinusoid table over the flattened tokens: float32 `[num_positions, dim]`.

    table[p, j] = sin(p / 10000^(2*(j//2)/dim)) for even j, cos(...) for odd j.
    """
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


def patchify(video: Tensor, tubelet: int, patch: int) -> Tensor:
    """Cut `[B, C, T, H, W]` into tubelets: `[B, N, C, tubelet*patch*patch]`, N in (t, h, w) order.

    Channels before pixels keeps rows of `patch` contiguous source pixels together: this copy is
    2-3x faster than VideoMAE's channels-last layout, and matches the Conv3d weight's layout.
    """
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # B, T', H', W', C, tubelet, patch, patch
    return x.reshape(b, -1, c, tubelet * patch * patch)


def unpatchify(patches: Tensor, grid: tuple[int, int, int], tubelet: int, patch: int) -> Tensor:
    """Inverse of `patchify`: `[B, N, C, tubelet*patch*patch]` -> `[B, C, T, H, W]`."""
    gt, gh, gw = grid
    b, _, c, _ = patches.shape
    x = patches.reshape(b, gt, gh, gw, c, tubelet, patch, patch)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(b, c, gt * tubelet, gh * patch, gw * patch)


def pixels_last(patches: Tensor) -> Tensor:
    """`[B, n, C, P]` -> `[B, n, P*C]`: VideoMAE's prediction layout, (tubelet, patch, patch, C)."""
    return patches.transpose(-1, -2).flatten(2)


@torch.compiler.disable  # data-dependent counts: run eagerly, compile what follows as one graph
def split_ids(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Token indices of a bool mask `[B, N]` (True = masked): visible `[B, N_vis]` and masked
    `[B, N_masked]`, each ascending (the order boolean indexing gives, as in VideoMAE)."""
    counts = mask.sum(1).tolist()  # one host sync (on a GPU) for the check and the split
    if any(c != counts[0] for c in counts):
        raise ValueError(f"every clip of a batch must mask the same number of tokens, got {counts}")
    num_masked = counts[0]
    # A stable sort of the 0/1 mask puts visible tokens first, each group in ascending order.
    ids = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    return ids[:, : mask.shape[1] - num_masked], ids[:, mask.shape[1] - num_masked:]


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """Rows `ids [B, n]` of `x [B, N, ...]` -> `[B, n, ...]`; `x [1, N, ...]` (a table every clip
    shares, as the position embeddings) gives each clip its own rows too."""
    b, n = ids.shape
    if x.shape[0] == 1:
        return x[0].index_select(0, ids.flatten()).view(b, n, *x.shape[2:])
    # index_select of whole rows of [B*N, ...]: ~2.4x faster than x[arange(B)[:, None], ids],
    # itself ~3x faster than torch.gather with an expanded index.
    rows = ids + torch.arange(b, device=ids.device)[:, None] * x.shape[1]
    return x.flatten(0, 1).index_select(0, rows.flatten()).view(b, n, *x.shape[2:])


# ----------------------------------------------------------------------------------------------
# Layers


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample with probability p (rescaled)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv matrix and VideoMAE's biases on q and v only."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: `[B, n, D]` -> `[B, n, D]`."""
        b, n, d = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)), each with drop path."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _run_blocks(blocks: nn.ModuleList, x: Tensor, grad_checkpointing: bool) -> Tensor:
    for blk in blocks:
        if grad_checkpointing and blk.training and torch.is_grad_enabled():
            # Non-reentrant checkpointing restores the RNG state, so drop path redraws the same mask.
            x = checkpoint(blk, x, use_reentrant=False)
        else:
            x = blk(x)
    return x


def _drop_path_rates(rate: float, depth: int) -> list[float]:
    return [rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


class PatchEmbed(nn.Module):
    """Tubelet embedding. The weight is stored as VideoMAE's Conv3d (`patch_embed.proj`), but it is
    applied as a linear map to the gathered visible tubelets only: with 90% masking that is 10x
    less work than convolving the whole clip, and the tubelets are already cut for the loss."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        k = (cfg.tubelet, cfg.patch, cfg.patch)
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel_size=k, stride=k)

    def forward(self, patches: Tensor) -> Tensor:
        """patches: `[B, n, C, tubelet*patch*patch]` (from `patchify`) -> `[B, n, D]`."""
        return F.linear(patches.flatten(2), self.proj.weight.flatten(1), self.proj.bias)


# ----------------------------------------------------------------------------------------------
# Models


class VideoMAEEncoder(nn.Module):
    """ViT encoder over the visible tubelets.

    `pos_embed` is a persistent buffer (fixed, never trained) so a checkpoint carries the table its
    weights were trained with, and `load_encoder_weights` can resample it for another geometry.
    `final_norm=False` gives VideoMAE's fine-tuning encoder (mean pooling normalises afterwards).
    """

    def __init__(self, cfg: ModelConfig, final_norm: bool = True):
        super().__init__()
        self.cfg = cfg
        self.grid = cfg.geometry.grid
        self.patch_embed = PatchEmbed(cfg)
        self.register_buffer("pos_embed", sincos_table(cfg.geometry.num_tokens, cfg.embed_dim)[None])
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, p, cfg.norm_eps)
            for p in _drop_path_rates(cfg.drop_path, cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps) if final_norm else nn.Identity()
        self.grad_checkpointing = cfg.grad_checkpointing

    def forward(self, video: Tensor, mask: Tensor | None = None) -> Tensor:
        """video `[B, C, T, H, W]`, mask bool `[B, N]` (True = masked) or None
        -> tokens `[B, N_visible, D]`, visible tokens in ascending token order."""
        ids = None if mask is None else split_ids(mask)[0]
        return self.forward_patches(patchify(video, self.cfg.tubelet, self.cfg.patch), ids)

    def forward_patches(self, patches: Tensor, ids_visible: Tensor | None) -> Tensor:
        """patches `[B, N, C, tubelet*patch*patch]`, ids_visible `[B, n]` or None (all) -> `[B, n, D]`."""
        pos = self.pos_embed.to(patches.dtype)
        if ids_visible is not None:
            patches = gather_tokens(patches, ids_visible)
            pos = gather_tokens(pos, ids_visible)
        x = self.patch_embed(patches) + pos
        x = _run_blocks(self.blocks, x, self.grad_checkpointing)
        return self.norm(x)


class VideoMAEDecoder(nn.Module):
    """Narrow transformer over all tokens; predicts the pixels of the last `num_predict` tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.decoder_embed_dim
        self.blocks = nn.ModuleList(
            Block(d, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.qkv_bias, p, cfg.norm_eps)
            for p in _drop_path_rates(cfg.drop_path, cfg.decoder_depth))
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.head = nn.Linear(d, cfg.patch_dim)  # rows in VideoMAE's (tubelet, patch, patch, C) order
        self.grad_checkpointing = cfg.grad_checkpointing
        # Row r of a channels-first prediction (c * P + i) is head row i * C + c.
        c, p = cfg.in_chans, cfg.patch_dim // cfg.in_chans
        rows = torch.arange(p * c).reshape(p, c).t().reshape(-1)
        self.register_buffer("channels_first_rows", rows, persistent=False)

    def forward(self, x: Tensor, num_predict: int, channels_first: bool = False) -> Tensor:
        """x `[B, N, Dd]` -> `[B, num_predict, tubelet*patch*patch*C]` in (tubelet, patch, patch, C)
        order, or (C, tubelet, patch, patch) with `channels_first` (the layout of `patchify`)."""
        x = _run_blocks(self.blocks, x, self.grad_checkpointing)
        x = self.norm(x[:, -num_predict:])
        if not channels_first:
            return self.head(x)
        rows = self.channels_first_rows
        return F.linear(x, self.head.weight[rows], self.head.bias[rows])


def _init_xavier(m: nn.Module):
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _no_weight_decay(model: nn.Module, extra: tuple[str, ...] = ()) -> set[str]:
    """Names of parameters exempt from weight decay: biases, norms (all 1-D) and `extra`."""
    return {n for n, p in model.named_parameters() if p.ndim <= 1 or n.endswith(".bias") or n in extra}


class VideoMAEPretrain(nn.Module):
    """Masked autoencoder: encoder on visible tokens, decoder on visible + mask tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = VideoMAEEncoder(cfg)
        self.encoder_to_decoder = nn.Linear(cfg.embed_dim, cfg.decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_embed_dim))
        # Not persistent: the decoder only ever runs at the geometry it was built for.
        self.register_buffer("decoder_pos_embed",
                             sincos_table(cfg.geometry.num_tokens, cfg.decoder_embed_dim)[None], persistent=False)
        self.decoder = VideoMAEDecoder(cfg)
        self.apply(_init_xavier)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, video: Tensor, mask: Tensor, decoder_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """video `[B, C, T, H, W]`, mask bool `[B, N]` -> (loss scalar, pred `[B, N_masked, P]`),
        P = tubelet*patch*patch*C in (tubelet, patch, patch, C) order, masked tokens ascending.

        decoder_mask bool `[B, N]` (True = dropped by the decoder; the same count in every clip):
        VideoMAE V2's dual masking. The decoder then gets mask tokens only at the positions the
        decoder mask keeps, `[B, N_kept]` ascending, instead of at every masked one, and pred is
        `[B, N_kept, P]` for those. As in V2 (`forward(x, mask, decode_mask)` and its loss weight
        `bool_masked_pos[~decode_masked_pos]`), kept positions the encoder saw are decoded too,
        which keeps the decoder's input the same length in every clip, but only the kept masked
        ones count in the loss: the mean squared error over (masked & ~decoder_mask) tokens.
        """
        ids_vis, ids_mask = split_ids(mask)
        ids_dec = ids_mask if decoder_mask is None else split_ids(decoder_mask)[0]
        patches = patchify(video, self.cfg.tubelet, self.cfg.patch)
        x = self.encoder_to_decoder(self.encoder.forward_patches(patches, ids_vis))
        pos = self.decoder_pos_embed.to(x.dtype)
        x = torch.cat([x + gather_tokens(pos, ids_vis),
                       self.mask_token.to(x.dtype) + gather_tokens(pos, ids_dec)], dim=1)
        # The head predicts in the channels-first layout of the targets (its rows permuted, not the
        # [B, n, P] outputs): the loss then reads two contiguous tensors, 3x faster than strided.
        pred = self.decoder(x, ids_dec.shape[1], channels_first=True)  # [B, n, C*P]
        with torch.no_grad():
            target = self._targets(patches, ids_dec)  # [B, n, C, P]
        if decoder_mask is None:
            loss = F.mse_loss(pred.float(), target.flatten(2))
        else:
            scored = gather_tokens(mask, ids_dec).float()  # [B, n]: 1 where the encoder did not see it
            per_token = (pred.float() - target.flatten(2)).pow(2).mean(-1)
            loss = (per_token * scored).sum() / scored.sum().clamp_min(1.0)
        b, n, c, p = target.shape
        return loss, pixels_last(pred.view(b, n, c, p))

    def targets(self, video: Tensor, mask: Tensor) -> Tensor:
        """What `pred` is trained to match: `[B, N_masked, P]`, P in (tubelet, patch, patch, C)
        order (see `_targets`)."""
        return pixels_last(self._targets(patchify(video, self.cfg.tubelet, self.cfg.patch), split_ids(mask)[1]))

    def _targets(self, patches: Tensor, ids_mask: Tensor) -> Tensor:
        """Masked tubelets `[B, N_masked, C, tubelet*patch*patch]` in [0, 1] pixels (ImageNet
        normalisation undone, for 3 channels); with norm_pix_loss each tubelet and channel
        standardised as VideoMAE does: (x - mean) / (unbiased std + 1e-6), on the [0, 1] pixels."""
        x = gather_tokens(patches, ids_mask).float()  # [B, n, C, P], a fresh copy: edited in place
        mean, std = self._pixel_stats(x)
        if not self.cfg.norm_pix_loss:
            return x.mul_(std).add_(mean)
        # Standardising is invariant to the per-channel affine un-normalisation except for the
        # epsilon, which scales by 1/std: same numbers, two fewer passes over the pixels.
        # (Two-pass mean / norm: torch.var_mean is ~30x slower than both on this layout.)
        x.sub_(x.mean(dim=-1, keepdim=True))
        sd = torch.linalg.vector_norm(x, dim=-1, keepdim=True).div_(math.sqrt(x.shape[-1] - 1))
        return x.div_(sd.add_(1e-6 / std))

    def _pixel_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """ImageNet mean and std as `[C, 1]` (identity for other channel counts)."""
        if self.cfg.in_chans != 3:
            return x.new_zeros(x.shape[-2], 1), x.new_ones(x.shape[-2], 1)
        return x.new_tensor(IMAGENET_MEAN)[:, None], x.new_tensor(IMAGENET_STD)[:, None]

    @torch.no_grad()
    def reconstruct(self, video: Tensor, mask: Tensor) -> Tensor:
        """The predicted clip in [0, 1] pixels `[B, C, T, H, W]`: visible tubelets copied from the
        input, masked ones predicted. With norm_pix_loss the prediction is de-standardised with
        the true tubelet's mean/std (as VideoMAE's visualisation does; the model cannot know them)."""
        _, pred = self.forward(video, mask)
        _, ids_mask = split_ids(mask)
        patches = patchify(video, self.cfg.tubelet, self.cfg.patch).float()
        mean, std = self._pixel_stats(patches)
        patches = patches * std + mean  # [B, N, C, P] pixels
        b, n, c, p = patches.shape
        pred = pred.float().reshape(b, -1, p, c).transpose(-1, -2)  # [B, n_masked, C, P]
        if self.cfg.norm_pix_loss:
            true = gather_tokens(patches, ids_mask)
            pred = pred * (true.std(dim=-1, keepdim=True) + 1e-6) + true.mean(dim=-1, keepdim=True)
        patches[torch.arange(b, device=ids_mask.device)[:, None], ids_mask] = pred
        return unpatchify(patches, self.cfg.geometry.grid, self.cfg.tubelet, self.cfg.patch)

    def no_weight_decay(self) -> set[str]:
        return _no_weight_decay(self, ("mask_token",))


class VideoMAEClassifier(nn.Module):
    """Encoder on all tokens, mean pooling, LayerNorm, dropout, linear head (VideoMAE fine-tuning);
    with cfg.pooling "slots" the head reads the T' per-slot features [T' * D] instead of their mean."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = VideoMAEEncoder(cfg, final_norm=not cfg.use_mean_pooling)
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps) if cfg.use_mean_pooling else None
        self.fc_dropout = nn.Dropout(cfg.fc_drop)
        head_in = cfg.embed_dim * (cfg.geometry.grid[0] if cfg.pooling == "slots" else 1)
        self.head = nn.Linear(head_in, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.apply(self._init)
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.mul_(cfg.head_init_scale)
                self.head.bias.mul_(cfg.head_init_scale)

    @staticmethod
    def _init(m: nn.Module):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def features(self, video: Tensor) -> Tensor:
        """Clip embedding `[B, D]`: mean over all tokens, then fc_norm (first token if no mean pooling)."""
        x = self.encoder(video)
        if self.fc_norm is None:
            return x[:, 0]
        return self.fc_norm(x.mean(1))

    def features_per_slot(self, video: Tensor) -> Tensor:
        """Order-aware embedding `[B, T', D]`: mean over space per tubelet slot, then fc_norm."""
        x = self.encoder(video)
        t = self.cfg.geometry.grid[0]
        x = x.reshape(x.shape[0], t, -1, x.shape[-1]).mean(2)
        return x if self.fc_norm is None else self.fc_norm(x)

    def forward(self, video: Tensor) -> Tensor:
        """video `[B, C, T, H, W]` -> logits `[B, num_classes]`."""
        x = self.features_per_slot(video).flatten(1) if self.cfg.pooling == "slots" else self.features(video)
        return self.head(self.fc_dropout(x))

    def no_weight_decay(self) -> set[str]:
        return _no_weight_decay(self)
