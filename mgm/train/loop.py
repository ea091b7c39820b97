"""The loops shared by pre-training, fine-tuning and linear probing: `train_one_epoch` and `evaluate`.

A task differs only in how a batch becomes a loss (`loss_fn(model, batch) -> scalar tensor`) or
logits; everything else -- autocast, gradient accumulation, DDP no_sync, clipping, GradScaler,
the per-step lr schedule, the non-finite check, progress and step callbacks -- lives here once.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable

import torch

from mgm.data.transforms import normalise_video
from mgm.train import distributed as D
from mgm.errors import MGMError


class NonFiniteLossError(MGMError):
    """The loss, the gradients or the updated weights became NaN/inf: training stops, and no
    checkpoint of the non-finite state is ever written (checkpoint.save_checkpoint refuses one)."""


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU (CPU bf16 is opt-in:
    it is often slower than fp32 there and changes results)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """Context manager for the forward pass; a no-op in fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(device: torch.device, precision: str):
    """A GradScaler only for fp16 (bf16 has fp32's exponent range and needs none)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on `device`, its video normalised there if the loader handed over uint8."""
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    if "video" in out:
        out["video"] = video_to_device(out["video"], device)
    return out


def video_to_device(video: torch.Tensor, device: torch.device) -> torch.Tensor:
    """video [B, 3, T, S, S] on `device`, float32 normalised: a uint8 batch (data.video_dtype) is
    normalised after the copy, on the device (the same numbers as the workers' float32 path)."""
    video = video.to(device, non_blocking=True)
    return normalise_video(video) if video.dtype == torch.uint8 else video


def _progress(total: int, desc: str, enabled: bool):
    if not enabled or D.rank() != 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False)


def train_one_epoch(model: torch.nn.Module, loss_fn: Callable, loader, optimizer, schedule, *,
                    device: torch.device, steps: int, precision: str = "fp32", scaler=None,
                    accum_steps: int = 1, clip_grad: float = 0.0, step_offset: int = 0,
                    on_step: Callable[[int, dict], None] | None = None, desc: str = "train",
                    progress: bool = True, stop=None) -> dict:
    """Run `steps` optimizer steps of `accum_steps` micro-batches each, drawn from `loader`.

    loss_fn(model, batch) -> scalar loss of one micro-batch (mean over its samples).
    step_offset: global optimizer steps done before this call (for on_step and logs).
    on_step(global_step, metrics) runs after every optimizer step (logging, checkpoints); metrics
    has loss (averaged over ranks and micro-batches), lr, grad_norm, step_time and data_time (the
    part of step_time spent waiting for the loader's next batches: near step_time means the loader,
    not the model, sets the pace).
    stop: anything whose truth says "stop now" (a stopping.StopRequest); read once per step and
    agreed on by all ranks, the epoch then ends after that step ("stopped": True).
    Raises NonFiniteLossError if the loss or the gradient norm is NaN/inf on any rank (before the
    optimizer step: the weights stay finite), or if the step made a weight NaN/inf (lr too high).
    Returns the mean loss over the epoch, the number of steps run, and the seconds inside steps
    (step_s) and, of those, waiting for data (data_s).
    """
    model.train()
    bar = _progress(steps, desc, progress)
    it = iter(loader)
    total_loss, done, step_s, data_s = 0.0, 0, 0.0, 0.0
    for local_step in range(steps):
        t0 = time.perf_counter()
        lr = schedule.step() if schedule is not None else optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        data_time = 0.0
        for micro in range(accum_steps):
            t_data = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                raise MGMError(f"{desc}: the data loader ran out after {local_step} steps "
                               f"(expected {steps} x {accum_steps} micro-batches)") from None
            batch = to_device(batch, device)
            data_time += time.perf_counter() - t_data
            # DDP averages gradients on every backward; skip that on all but the last micro-batch.
            sync = micro == accum_steps - 1 or not hasattr(model, "no_sync")
            with (contextlib.nullcontext() if sync else model.no_sync()):
                with autocast(device, precision):
                    loss = loss_fn(model, batch)
                scaled = loss.float() / accum_steps
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            loss_sum += loss.detach().double()
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = _grad_norm(params, device)
        # One host sync per step reads both verdicts (loss, gradient norm) at once: on a GPU every
        # read drains the queue the next step's kernels would otherwise be launched into.
        local_loss, grad_norm = torch.stack([loss_sum / accum_steps, norm.double()]).tolist()
        # One reduction per step: the logged loss, a NaN verdict and a stop request all ranks agree on.
        reduced = D.all_reduce_mean({"loss": local_loss, "stop": float(bool(stop))}, device)
        loss_value, stopping = reduced["loss"], reduced["stop"] > 0
        step_no = step_offset + local_step + 1
        if not math.isfinite(loss_value):
            if not weights_finite(params):  # the weights are checked lazily (below): the likeliest cause
                _abort(optimizer, bar, poisoned(step_no - 1, lr))
            _abort(optimizer, bar, f"non-finite loss ({loss_value}) at step {step_no}; stopped before the "
                                   f"optimizer step")
        # A finite loss can still back-propagate NaN/inf gradients (an overflow in one layer). With
        # fp16 the GradScaler skips such steps by design; otherwise they would poison every weight.
        if scaler is None and not math.isfinite(grad_norm):
            _abort(optimizer, bar, f"non-finite gradients (norm {grad_norm}) at step {step_no} with a finite "
                                   f"loss ({loss_value:.4g}); stopped before the optimizer step")
        _clip(params, norm, grad_norm, clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        # Finite gradients times a huge lr can still overflow a weight. Not checked every step (a pass
        # over the weights and a host sync): the next step's loss turns NaN (checked above), and no
        # checkpoint is written without a check (fit's save, checkpoint.save_checkpoint).
        total_loss += loss_value
        done += 1
        metrics = {"loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                   "step_time": time.perf_counter() - t0, "data_time": data_time}
        step_s, data_s = step_s + metrics["step_time"], data_s + data_time
        if bar is not None:
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
            bar.update(1)
        if on_step is not None:
            on_step(step_no, metrics)
        if stopping:
            break
    _close(bar)
    return {"loss": total_loss / max(1, done), "steps": done, "stopped": stopping if done else False,
            "step_s": step_s, "data_s": data_s}


def _abort(optimizer, bar, message: str):
    """Drop the step's gradients (the weights stay as they are) and stop with NonFiniteLossError."""
    optimizer.zero_grad(set_to_none=True)
    _close(bar)
    raise NonFiniteLossError(message)


@torch.no_grad()
def _grad_norm(params: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The global L2 norm of the gradients, a 0-dim tensor on their device (0 on `device` without
    any): the norm of the per-tensor norms, as torch.nn.utils.clip_grad_norm_, in one call."""
    if not params:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in params])))


@torch.no_grad()
def _clip(params: list[torch.Tensor], norm: torch.Tensor, norm_value: float, clip: float) -> None:
    """With clip > 0, scale the gradients to a norm of at most `clip`: torch's clip_grad_norm_ numbers
    bit for bit (coefficient clip / (norm + 1e-6) clamped to 1, computed on the device), but no pass
    over the gradients on a step that cannot clip. clip_grad_norm_ multiplies anyway to avoid a sync;
    the loop has already read the norm (norm_value), so the test is free."""
    if clip <= 0 or norm_value + 1e-6 < clip * (1 - 1e-5):  # surely a multiply by 1
        return
    torch._foreach_mul_([p.grad for p in params], (clip / (norm + 1e-6)).clamp(max=1.0))


@torch.no_grad()
def weights_finite(params: list[torch.Tensor]) -> bool:
    """Whether every tensor of `params` is finite: one fused max-abs norm (a sum of squares would
    overflow to inf on huge but finite weights), one host sync."""
    return not params or math.isfinite(float(torch.stack(torch._foreach_norm(params, float("inf"))).max()))


def poisoned(step: int, lr: float) -> str:
    """The message of NonFiniteLossError when an update made the weights NaN/inf, found up to `step`."""
    return (f"an update up to step {step} made weights NaN/inf (lr {lr:.3g} too high?); the training "
            f"state is not saved")


def _close(bar) -> None:
    if bar is not None:
        bar.close()


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """probs [N, K], labels [N] -> {k: number of rows whose label is among the k highest}."""
    out = {}
    for k in ks:
        k_eff = min(k, probs.shape[1])
        top = probs.topk(k_eff, dim=1).indices
        out[k] = int((top == labels[:, None]).any(dim=1).sum())
    return out


@torch.no_grad()
def evaluate(predict: Callable, model: torch.nn.Module, loader, *, device: torch.device,
             precision: str = "fp32", desc: str = "eval", progress: bool = True) -> dict:
    """Multi-view evaluation: softmax probabilities of all views of a video are averaged.

    predict(model, video [B, C, T, H, W]) -> logits [B, K]. A batch's "video" may also be
    [B, V, C, T, H, W] (V views per item); views of one video may also arrive as separate items
    sharing batch["index"]. Either way the video's prediction is the mean of its views' softmax.
    Distributed: each rank evaluates its shard, rank results are merged by video index.
    Returns top1, top5 (in %; None with 5 classes or fewer), loss (NLL of the averaged
    probabilities), videos, views.
    """
    model.eval()
    sums: dict[int, list] = {}  # video index -> [prob sum [K], views, label]
    bar = _progress(len(loader), desc, progress)
    for batch in loader:
        video = video_to_device(batch["video"], device)
        b = video.shape[0]
        views = 1
        if video.dim() == 6:
            views = video.shape[1]
            video = video.flatten(0, 1)
        with autocast(device, precision):
            logits = predict(model, video)
        probs = logits.float().softmax(-1).view(b, views, -1).sum(1).cpu()
        for i, idx in enumerate(batch["index"].tolist()):
            entry = sums.setdefault(int(idx), [torch.zeros(probs.shape[1], dtype=torch.float64), 0,
                                               int(batch["label"][i])])
            entry[0] += probs[i].double()
            entry[1] += views
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    merged: dict[int, list] = {}
    for part in D.all_gather_objects(sums):
        for idx, (p, v, label) in part.items():
            if idx in merged:
                merged[idx][0] += p
                merged[idx][1] += v
            else:
                merged[idx] = [p.clone(), v, label]
    if not merged:
        raise MGMError(f"{desc}: the evaluation set is empty")
    keys = sorted(merged)
    probs = torch.stack([merged[k][0] / merged[k][1] for k in keys])
    labels = torch.tensor([merged[k][2] for k in keys])
    correct = topk_correct(probs, labels)
    nll = -probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean()
    # top-5 of 5 classes or fewer is 100% whatever the model does: not reported
    return {"top1": 100.0 * correct[1] / len(keys),
            "top5": 100.0 * correct[5] / len(keys) if probs.shape[1] > 5 else None,
            "loss": float(nll), "videos": len(keys), "views": sum(merged[k][1] for k in keys)}


@torch.no_grad()
def extract_features(embed: Callable, model: torch.nn.Module, loader, *, device: torch.device,
                     precision: str = "fp32", progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """embed(model, video [B, C, T, H, W]) -> features [B, ...] for every item of `loader`.

    Items with several views ([B, V, C, T, H, W]) get the mean over their views.
    Returns (features [N, ...] float32, labels [N] int64, indices [N] int64) in loader order.
    """
    model.eval()
    feats, labels, indices = [], [], []
    bar = _progress(len(loader), "features", progress)
    for batch in loader:
        video = video_to_device(batch["video"], device)
        b, views = video.shape[0], (video.shape[1] if video.dim() == 6 else 1)
        with autocast(device, precision):
            f = embed(model, video.flatten(0, 1) if video.dim() == 6 else video)
        feats.append(f.float().reshape(b, views, *f.shape[1:]).mean(1).cpu())
        labels.append(torch.as_tensor(batch["label"]).long())
        indices.append(torch.as_tensor(batch["index"]).long())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not feats:
        raise MGMError("features: the dataset is empty")
    return torch.cat(feats), torch.cat(labels), torch.cat(indices)
