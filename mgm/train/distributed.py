"""torch.distributed plumbing: ranks from the torchrun environment, process group, DDP wrap,
a resumable sharded sampler, rank-0 printing and metric reduction.

Single process (plain `python` / `mgm`): world size 1, no process group, every helper is a no-op.
Under torchrun: RANK, WORLD_SIZE, LOCAL_RANK come from the environment; backend nccl on GPUs,
gloo on CPU.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from mgm.errors import MGMError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise MGMError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(device: str = "auto") -> DistInfo:
    """Read ranks from the environment (torchrun sets them) and join the process group if needed.

    device: "auto" = cuda:LOCAL_RANK when CUDA is available, else cpu; or an explicit torch device.
    """
    rank, world, local = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    if device == "auto":
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise MGMError(f"run.device={device!r} but CUDA is not available on this machine")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        _import_group_default_modules()
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def _import_group_default_modules() -> None:
    """Import, before the process group exists, the torch modules whose functions take the default
    group as a default argument (`def gather(..., group=group.WORLD)` in torch.distributed.nn).

    Such a default is evaluated once, at import. DistributedDataParallel's constructor imports
    torch._dynamo, which imports torch.distributed.nn: imported then, ten function defaults hold the
    live default group for good, destroy_process_group cannot free it, and its gloo worker threads
    outlive cleanup(). At interpreter exit a worker still releasing the tensors of the last
    collective (evaluation's all_gather_object) then needs the GIL while Python finalizes: the
    thread is unwound through a C++ destructor and the process aborts ("terminate called without an
    active exception", SIGABRT). Imported first, those defaults are None.
    """
    try:
        import torch.distributed.nn  # noqa: F401
    except Exception:  # a workaround: never the reason a run fails
        pass


def cleanup() -> None:
    """Leave and free the process group. On return no collective of ours is in flight and its
    worker threads are joined: nothing of it may still run while the interpreter shuts down."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # a DDP wrapper caught in a reference cycle would still hold the group
        dist.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel when world > 1, else the model itself."""
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def print0(*args, **kwargs) -> None:
    """print on rank 0 only, so N processes don't print N copies."""
    if rank() == 0:
        print(*args, **kwargs, flush=True)


def all_reduce_mean(values: dict[str, float], device=None) -> dict[str, float]:
    """Average scalar metrics over ranks (identity in a single process)."""
    if world_size() == 1 or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= world_size()
    return dict(zip(keys, t.tolist()))


def all_gather_objects(obj) -> list:
    """Every rank's `obj` (picklable), in rank order."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class ShardedSampler(torch.utils.data.Sampler):
    """Distributed sampler whose order depends only on (seed, epoch) and which can start mid-epoch.

    The epoch's permutation of range(n) (identical on every rank) is dealt round-robin:
    rank r gets perm[r], perm[r + world], ... -- so with per-rank batch b, optimizer step k covers
    exactly perm[k*b*world : (k+1)*b*world] whatever the world size, which makes 2 processes with
    half the batch equal to 1 process with the whole batch. `start` skips the first `start` of this
    rank's indices: the data-loader position restored on resume. No padding; shards may differ by
    one index (evaluation gathers by video index, training runs a fixed number of full steps).
    """

    def __init__(self, n: int, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0):
        self.n, self.num_replicas, self.rank = n, num_replicas, rank
        self.shuffle, self.seed = shuffle, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def indices(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        return order[self.rank::self.num_replicas][self.start:]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return max(0, len(range(self.rank, self.n, self.num_replicas)) - self.start)
