"""`fit`: the wiring every training command shares -- run dir, log, lr scaling, optimizer and
schedule, sampler and loader, resume, epochs, checkpoints, evaluation.

Commands build a `Task` (model + how a batch becomes a loss / logits) and datasets, then call fit.
Resuming is exact: the checkpoint holds the data-loader position (epoch, micro-batches done) and
every rank's RNG state, and the data order and masks derive from (seed, epoch, index) only.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mgm.data.dataset import collate_views
from mgm.heap import reuse_freed_memory
from mgm.errors import MGMError
from mgm.train import checkpoint as C
from mgm.train import distributed as D
from mgm.train import rundir
from mgm.train.config import TrainConfig
from mgm.train.log import RunLog, read_log
from mgm.train.loop import (NonFiniteLossError, evaluate, make_scaler, poisoned, resolve_precision,
                            train_one_epoch, weights_finite)
from mgm.train.optim import CosineSchedule, build_optimizer, scaled_lr
from mgm.train.stopping import StopRequest, shield_worker


@dataclass
class Task:
    """What differs between pre-training, fine-tuning and linear probing."""

    name: str
    model: torch.nn.Module                      # unwrapped; fit moves it to the device and wraps DDP
    loss: Callable                              # loss(model, batch) -> scalar tensor
    predict: Callable | None = None             # predict(model, video [B,C,T,H,W]) -> logits [B,K]
    group_kw: dict = field(default_factory=dict)  # extra param_groups() arguments (layer decay)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(cfg: TrainConfig) -> D.DistInfo:
    """Join the process group (if launched by torchrun), set threads, seed model initialisation
    identically on every rank (DDP also broadcasts rank 0's weights)."""
    if cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    info = D.init_distributed(cfg.run.device)
    seed_everything(cfg.run.seed)
    return info


def _init_worker(worker_id: int) -> None:
    reuse_freed_memory()  # each clip's large blocks reused, not page-faulted anew
    shield_worker()       # a SIGTERM to the whole job is the main process's to honour (a checkpoint)


def make_loader(dataset, cfg: TrainConfig, info: D.DistInfo, *, train: bool):
    """DataLoader over a ShardedSampler. A private generator keeps the loader from drawing on the
    global torch RNG (which would shift the RNG stream when a run resumes mid-epoch)."""
    sampler = D.ShardedSampler(len(dataset), num_replicas=info.world_size, rank=info.rank,
                               shuffle=train, seed=cfg.run.seed)
    views = getattr(dataset, "num_sample", 1)  # repeated augmentation: each item holds N views
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.data.batch_size, sampler=sampler, num_workers=cfg.data.num_workers,
        drop_last=train, pin_memory=info.device.type == "cuda",
        collate_fn=collate_views if views > 1 else None,
        generator=torch.Generator().manual_seed(cfg.run.seed),
        worker_init_fn=_init_worker,
        persistent_workers=False)
    return loader, sampler


def _find_resume(cfg: TrainConfig) -> tuple[Path | None, dict | None]:
    """The checkpoint to resume from and its state, or (None, None) to start fresh. `auto` takes
    the newest checkpoint that loads and holds finite weights, skipping damaged newer ones."""
    if not cfg.run.resume:
        return None, None
    if cfg.run.resume == "auto":
        warn = lambda m: D.print0(f"[{cfg.run.name}] warning: {m}")  # noqa: E731
        path, state = C.last_good_checkpoint(cfg.run_dir, warn=warn)
        if path is None:
            D.print0(f"[{cfg.run.name}] --resume auto: no usable checkpoint in {cfg.run_dir}, starting fresh")
        return path, state
    return Path(cfg.run.resume), C.load_checkpoint(cfg.run.resume)


def _config_diff(old: dict, new: dict) -> list[str]:
    diffs = []
    for section, values in new.items():
        for key, value in values.items():
            if section == "run" and key in ("resume", "overwrite"):
                continue
            before = old.get(section, {}).get(key)
            if before != value:
                diffs.append(f"{section}.{key}: {before!r} -> {value!r}")
    return diffs


def _restore(path: Path, state: dict, cfg: TrainConfig, info: D.DistInfo, model, optimizer, schedule, scaler):
    """Load a training checkpoint's state into the live objects and this rank's RNG streams.
    Returns (step, epoch, batches_done): where the data loader resumes."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    step, epoch, batches_done = int(state["step"]), int(state["epoch"]), int(state["batches_done"])
    rngs = state["rng"]
    if len(rngs) == info.world_size:
        C.restore_rng(rngs[info.rank])
    else:  # another world size: the run continues, but not bit for bit
        seed_everything(cfg.run.seed + 7919 * (step + 1) + info.rank)
        D.print0(f"[{cfg.run.name}] checkpoint from {len(rngs)} processes, now {info.world_size}: "
                 f"RNG streams reseeded")
    for line in _config_diff(state.get("config", {}), cfg.to_dict()):
        D.print0(f"[{cfg.run.name}] config changed since the checkpoint: {line}")
    D.print0(f"[{cfg.run.name}] resumed from {path} at step {step} (epoch {epoch + 1}/{cfg.optim.epochs}, "
             f"{batches_done} batches into it)")
    return step, epoch, batches_done


def _on_all_ranks(info: D.DistInfo, work: Callable[[], None]) -> None:
    """Run `work` on rank 0; if it raises MGMError, raise it on every rank (the others would
    otherwise wait for rank 0 forever in the next collective)."""
    message = None
    if info.is_main:
        try:
            work()
        except MGMError as e:
            message = str(e)
    message = D.all_gather_objects(message)[0]
    if message is not None:
        raise MGMError(message)


def _claim_run_dir(cfg: TrainConfig, info: D.DistInfo):
    """rank 0 claims the run directory (mgm.train.rundir); every rank raises if it cannot."""
    held = []
    _on_all_ranks(info, lambda: held.append(rundir.claim(cfg.run_dir, fresh=not cfg.run.resume,
                                                          overwrite=cfg.run.overwrite)))
    return held[0] if held else None


def _warn_lr(cfg: TrainConfig, task: Task, lr: float, effective_batch: int) -> None:
    """The MAE rule scales lr by batch / 256: at CPU batch sizes it can fall to where nothing learns."""
    o, fix = cfg.optim, "raise optim.base_lr, data.batch_size or optim.accum_steps"
    if lr < o.min_lr:
        D.print0(f"[{cfg.run.name}] warning: the scaled lr {lr:.3g} (effective batch {effective_batch}) is "
                 f"below optim.min_lr {o.min_lr:.3g}, so the cosine schedule would rise, not decay; {fix}")
    elif task.name == "pretrain" and lr < 1e-5:
        D.print0(f"[{cfg.run.name}] warning: the scaled lr {lr:.3g} (effective batch {effective_batch}) is "
                 f"so small that pre-training will barely move; {fix}")


def fit(cfg: TrainConfig, task: Task, train_set, val_set=None, info: D.DistInfo | None = None) -> dict:
    """Train task.model on train_set for cfg.optim.epochs (or max_steps), evaluating on val_set.

    The run directory is claimed for the run's lifetime (mgm.train.rundir); SIGTERM / SIGUSR1 stop the
    run at the next step boundary with a checkpoint (mgm.train.stopping).
    Returns {"step", "epoch", "loss", "eval" (last evaluation or None), "checkpoint" (last path),
    "stopped" (the signal's name, or None)}.
    """
    info = info or D.init_distributed(cfg.run.device)
    held = _claim_run_dir(cfg, info)
    log = None
    try:
        log = RunLog(cfg.run_dir, active=info.is_main, name=cfg.run.name)
        with StopRequest() as stop:
            return _fit(cfg, task, train_set, val_set, info, stop, log)
    finally:
        if log is not None:
            log.close()  # also on an error: TensorBoard's writer thread must not outlive the run
        if held is not None:
            held.release()


def _fit(cfg: TrainConfig, task: Task, train_set, val_set, info: D.DistInfo, stop: StopRequest,
         log: RunLog) -> dict:
    run_dir = cfg.run_dir
    model = task.model.to(info.device)
    precision = resolve_precision(cfg.run.precision, info.device)
    scaler = make_scaler(info.device, precision)

    o = cfg.optim
    effective_batch = cfg.data.batch_size * o.accum_steps * info.world_size
    lr = scaled_lr(o.base_lr, effective_batch)
    steps_per_epoch = len(train_set) // effective_batch
    if steps_per_epoch < 1:
        raise MGMError(f"training set of {len(train_set)} clips is smaller than one effective batch "
                       f"({effective_batch} = batch {cfg.data.batch_size} x accum {o.accum_steps} x "
                       f"{info.world_size} processes)")
    total_steps = o.epochs * steps_per_epoch
    last_step = min(total_steps, o.max_steps) if o.max_steps > 0 else total_steps
    optimizer = build_optimizer(model, lr, o.weight_decay, betas=o.betas, **task.group_kw)
    schedule = CosineSchedule(optimizer, lr, total_steps, round(o.warmup_epochs * steps_per_epoch), o.min_lr)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    dropped = len(train_set) - steps_per_epoch * effective_batch  # drop_last: whole batches only
    D.print0(f"[{cfg.run.name}] {task.name}: base lr {o.base_lr:.3g} x effective batch {effective_batch} "
             f"({cfg.data.batch_size} x {o.accum_steps} accum x {info.world_size} procs) / 256 "
             f"= lr {lr:.3g}; {steps_per_epoch} steps/epoch"
             f"{f' ({dropped} of {len(train_set)} clips left out of each epoch)' if dropped else ''}, "
             f"{last_step} steps; {count(n_train)} of {count(n_params)} params trained; "
             f"{precision} on {info.device}")
    _warn_lr(cfg, task, lr, effective_batch)

    step, epoch, batches_done = 0, 0, 0
    resume, state = _find_resume(cfg)
    if resume is not None:
        step, epoch, batches_done = _restore(resume, state, cfg, info, model, optimizer, schedule, scaler)
        del state
        log.write("resume", step=step, epoch=epoch + 1, path=str(resume))
    else:
        # Training randomness (drop path, mixup) differs per rank; initialisation did not.
        seed_everything(cfg.run.seed * 1000 + 1 + info.rank)
        log.write("start", task=task.name, config=cfg.to_dict(), base_lr=o.base_lr, lr=lr,
                  effective_batch=effective_batch, world_size=info.world_size,
                  steps_per_epoch=steps_per_epoch, total_steps=total_steps, precision=precision,
                  params=n_params, trainable_params=n_train)

    if cfg.run.compile:
        model.compile()  # in place: state_dict keys stay the same (no "_orig_mod." prefix)
    net = D.wrap_ddp(model, info)
    loader, sampler = make_loader(train_set, cfg, info, train=True)
    last_ckpt = [resume]
    best = [best_top1(run_dir) if resume is not None else float("-inf")]  # best eval so far (best.pt)

    def save(step_: int, epoch_: int, batches_: int) -> None:
        # The loop checks the weights lazily (when a loss turns NaN); a checkpoint is never written
        # without a check. Every rank holds the same weights, so every rank stops here alike.
        if not weights_finite(list(model.parameters())):
            raise NonFiniteLossError(poisoned(step_, optimizer.param_groups[0]["lr"]))
        rngs = D.all_gather_objects(C.capture_rng())  # every rank's stream, for exact resume

        def write():
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": schedule.state_dict(),
                     "scaler": scaler.state_dict() if scaler is not None else {},
                     "step": step_, "epoch": epoch_, "batches_done": batches_, "config": cfg.to_dict(),
                     "rng": rngs, "task": task.name, "world_size": info.world_size}
            try:
                last_ckpt[0] = C.save_checkpoint(C.checkpoint_path(run_dir, step_), state)
                C.link_as(last_ckpt[0], C.LAST)
            except MGMError as e:  # logged by the epoch loop, as every error of a step
                raise MGMError(f"{e}; the previous checkpoint {last_ckpt[0] or '(none)'} is intact") from None
            C.prune_checkpoints(run_dir, cfg.run.keep_ckpts, cfg.run.keep_steps)

        _on_all_ranks(info, write)

    result_eval, mean_loss = None, float("nan")
    if step >= last_step:
        D.print0(f"[{cfg.run.name}] already at step {step} of {last_step}: nothing to train")
    t_start = time.perf_counter()
    timing = {"steps": 0, "step_s": 0.0, "data_s": 0.0}  # this call's steps (a resumed run: since resuming)
    stopped = None  # the signal's name once a stop request ended the run
    while epoch < o.epochs and step < last_step:
        if D.all_reduce_mean({"stop": float(bool(stop))}, info.device)["stop"] > 0:  # all ranks agree
            stopped = _signal_name(stop)
            break
        steps_left = min(steps_per_epoch - batches_done // o.accum_steps, last_step - step)
        sampler.set_epoch(epoch, start=batches_done * cfg.data.batch_size)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        epoch_start_step = step - batches_done // o.accum_steps
        shown = epoch + 1  # epochs are numbered from 1 wherever a user reads them (logs included)

        def on_step(global_step: int, metrics: dict) -> None:
            if info.is_main and (global_step % max(1, cfg.run.log_every) == 0 or global_step == last_step):
                log.write("step", step=global_step, epoch=shown, **metrics,
                          clips_per_s=effective_batch / max(metrics["step_time"], 1e-9))
            if cfg.run.ckpt_every > 0 and global_step % cfg.run.ckpt_every == 0:
                done = (global_step - epoch_start_step) * o.accum_steps
                if done < steps_per_epoch * o.accum_steps:  # the epoch-end save covers the rest
                    save(global_step, epoch, done)

        try:
            stats = train_one_epoch(net, task.loss, loader, optimizer, schedule, device=info.device,
                                    steps=steps_left, precision=precision, scaler=scaler,
                                    accum_steps=o.accum_steps, clip_grad=o.clip_grad, step_offset=step,
                                    on_step=on_step, desc=f"{task.name} epoch {shown}/{o.epochs}",
                                    progress=cfg.run.progress, stop=stop)
            _log_bad_videos(log, train_set, epoch, shown, step)
            step += stats["steps"]
            mean_loss = stats["loss"]
            for key in timing:
                timing[key] += stats[key]
            finished_epoch = step - epoch_start_step == steps_per_epoch
            log.write("epoch", step=step, epoch=shown, complete=finished_epoch, loss=mean_loss,
                      elapsed=round(time.perf_counter() - t_start, 3), step_s=round(stats["step_s"], 3),
                      data_s=round(stats["data_s"], 3))
            D.print0(f"[{cfg.run.name}] step {step}/{last_step}, epoch {shown}/{o.epochs}"
                     f"{'' if finished_epoch else ' (stopped inside it)'}: mean loss {mean_loss:.4f}")
            if finished_epoch:
                epoch, batches_done = epoch + 1, 0
            else:
                batches_done = (step - epoch_start_step) * o.accum_steps
            save(step, epoch, batches_done)
        except NonFiniteLossError as e:
            good = C.last_good_checkpoint(run_dir)[0] if info.is_main else None
            where = (f"the last good checkpoint (finite weights) is {good}: lower optim.base_lr (or set "
                     f"optim.clip_grad) and continue from it with --resume {good}") if good else \
                f"no checkpoint with finite weights in {run_dir}"
            log.write("error", step=step, epoch=shown, message=str(e), last_checkpoint=str(good))
            raise NonFiniteLossError(f"{e}; {where}") from None
        except MGMError as e:
            log.write("error", step=step, epoch=shown, message=str(e),
                      last_checkpoint=str(C.latest_checkpoint(run_dir)) if info.is_main else None)
            raise
        if stats["stopped"]:
            stopped = _signal_name(stop)
            break
        last = step >= last_step or epoch >= o.epochs
        if val_set is not None and task.predict is not None and (
                last or (cfg.run.eval_every > 0 and finished_epoch and epoch % cfg.run.eval_every == 0)):
            result_eval = run_evaluation(task, model, val_set, cfg, info, precision)
            log.write("eval", step=step, epoch=shown, **result_eval)
            D.print0(f"[{cfg.run.name}] eval at step {step} (epoch {shown}/{o.epochs}): "
                     f"{format_scores(result_eval)}")
            if info.is_main and result_eval["top1"] > best[0]:
                best[0] = result_eval["top1"]
                C.link_as(last_ckpt[0], C.BEST)  # the checkpoint just saved is the one evaluated
    if timing["steps"]:
        D.print0(f"[{cfg.run.name}] {_timing_line(timing, time.perf_counter() - t_start)}")
    if stopped:
        # epoch: the one a resumed run continues in, as the "resume" record numbers it
        log.write("stopped", step=step, epoch=epoch + 1, signal=stopped, checkpoint=str(last_ckpt[0]))
        D.print0(f"[{cfg.run.name}] {stopped} received: stopped at step {step} of {last_step} with "
                 f"checkpoint {last_ckpt[0]}; continue with --resume auto")
    return {"step": step, "epoch": epoch, "loss": mean_loss, "eval": result_eval,
            "checkpoint": str(last_ckpt[0]) if last_ckpt[0] else None, "stopped": stopped}


def _timing_line(timing: dict, wall: float) -> str:
    """Where the training's wall time went: the steps (and their wait for data) and the rest
    (checkpoints, evaluation, loader workers starting each epoch). A high data share says the loader,
    not the model, sets the pace: more workers, `data.num_sample`, or a motion cache."""
    n, step_s, data_s = timing["steps"], timing["step_s"], timing["data_s"]
    return (f"{n} steps in {wall:.1f} s: {step_s / n * 1e3:.1f} ms a step, {data_s / max(step_s, 1e-9):.0%} "
            f"of it waiting for data; {max(0.0, wall - step_s):.1f} s outside the steps (checkpoints, "
            f"evaluation, loader start-up)")


def _signal_name(stop: StopRequest) -> str:
    """The stop signal's name as any rank received it (torchrun may deliver it to one rank first)."""
    return next((s for s in D.all_gather_objects(stop.signal) if s), "SIGTERM")


def _log_bad_videos(log: RunLog, dataset, epoch: int, shown: int, step: int) -> None:
    """Bad videos skipped during the epoch (data.bad_videos=skip) go to log.jsonl as well."""
    if getattr(dataset, "bad_videos", None) != "skip" or not hasattr(dataset, "epoch_summary"):
        return
    summary = dataset.epoch_summary(epoch)
    if summary["bad"]:
        log.write("bad_videos", step=step, epoch=shown, count=summary["bad"], videos=summary["videos"])


def count(n: int) -> str:
    """A parameter count a reader can compare: 1,536 / 52.1K / 0.99M / 86.2M."""
    if n < 10_000:
        return f"{n:,}"
    if n < 1_000_000:
        return f"{n / 1e3:.1f}K"
    return f"{n / 1e6:.2f}M"


def format_scores(metrics: dict) -> str:
    """'top-1 41.67% top-5 83.33% over 12 videos (12 views)'; top-5 only where it means something
    (more than 5 classes: with 3 it is always 100%)."""
    top5 = f" top-5 {metrics['top5']:.2f}%" if metrics.get("top5") is not None else ""
    return (f"top-1 {metrics['top1']:.2f}%{top5} over {metrics['videos']} videos "
            f"({metrics['views']} views)")


def best_top1(run_dir: Path) -> float:
    """The best evaluation top-1 a run logged so far (-inf if none): a resumed run keeps best.pt."""
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        return float("-inf")
    scores = [r["top1"] for r in read_log(path) if r.get("event") == "eval" and r.get("top1") is not None]
    return max(scores, default=float("-inf"))


def run_evaluation(task: Task, model, dataset, cfg: TrainConfig, info: D.DistInfo, precision: str) -> dict:
    loader, _ = make_loader(dataset, cfg, info, train=False)
    return evaluate(task.predict, model, loader, device=info.device, precision=precision,
                    progress=cfg.run.progress)
