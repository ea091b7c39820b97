"""Mixup / CutMix for video batches and soft-target cross-entropy (label smoothing included).

One (lam, partner) per batch as in timm: the batch is mixed with itself reversed. CutMix cuts the
same spatial box out of every frame (motion inside the box stays coherent). Randomness comes from
the global torch RNG, which the checkpoint stores, so resumed runs mix identically.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """labels [B] int -> [B, K] float: 1 - smoothing + smoothing/K on the label, smoothing/K elsewhere."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels[:, None].long(), 1.0 - smoothing + off)


def _beta(alpha: float) -> float:
    g = torch.distributions.Gamma(torch.tensor([alpha, alpha]), torch.tensor([1.0, 1.0])).sample()
    return float(g[0] / g.sum())


def cutmix_box(h: int, w: int, lam: float) -> tuple[int, int, int, int]:
    """A box of area ~ (1 - lam) * h * w at a random centre, clipped to the frame: (y0, y1, x0, x1)."""
    ratio = math.sqrt(1.0 - lam)
    bh, bw = int(h * ratio), int(w * ratio)
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, w)
    return y0, y1, x0, x1


def mix_batch(video: torch.Tensor, labels: torch.Tensor, num_classes: int, *, mixup: float = 0.0,
              cutmix: float = 0.0, prob: float = 1.0, smoothing: float = 0.0):
    """video [B, C, T, H, W], labels [B] -> (mixed video [B, C, T, H, W], targets [B, K] summing to 1).

    mixup / cutmix are the Beta(alpha, alpha) parameters (0 = off); with both on, each batch picks
    one at random. With both off (or with probability 1 - prob) only label smoothing applies.
    """
    targets = smooth_one_hot(labels, num_classes, smoothing)
    if (mixup <= 0 and cutmix <= 0) or float(torch.rand(())) >= prob:
        return video, targets
    use_cutmix = cutmix > 0 and (mixup <= 0 or float(torch.rand(())) < 0.5)
    lam = _beta(cutmix if use_cutmix else mixup)
    partner = video.flip(0)
    if use_cutmix:
        h, w = video.shape[-2:]
        y0, y1, x0, x1 = cutmix_box(h, w, lam)
        video = video.clone()
        video[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the box may have been clipped
    else:
        video = video * lam + partner * (1.0 - lam)
    return video, targets * lam + targets.flip(0) * (1.0 - lam)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k targets[k] * log softmax(logits)[k]; logits, targets [B, K]."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
