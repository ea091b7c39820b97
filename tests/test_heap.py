"""Training loader workers reuse the memory a clip frees (mgm.heap), instead of faulting it in anew."""

import resource
import sys

import numpy as np
import pytest
import torch
from numpy._core.multiarray import _set_madvise_hugepage

from mgm.train.config import TrainConfig
from mgm.train.distributed import DistInfo
from mgm.train.fit import make_loader

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

BLOCK = 48 << 20  # bytes: a 720p clip's 16 decoded frames (44 MB), over glibc's dynamic mmap limit (32 MiB)


class Clips(torch.utils.data.Dataset):
    """Items that allocate, fill and free a clip-sized block twice, like consecutive clips; the item
    is the second block's page faults."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        _set_madvise_hugepage(False)  # 4-kB pages, so that the faults count the pages filled anew
        np.ones(BLOCK, np.uint8)  # the previous clip's block, freed at once
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        np.ones(BLOCK, np.uint8)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_training_loader_worker_refills_a_freed_clip_block_without_page_faults():
    cfg = TrainConfig()
    cfg.data.num_workers, cfg.data.batch_size = 1, 1
    loader, _ = make_loader(Clips(), cfg, DistInfo(), train=False)
    faults = [int(b) for b in loader]
    # Unmapped and mapped afresh, the block costs a fault per page (12,288 4-kB pages); kept in the
    # heap, the few pages where other allocations moved it
    pages = BLOCK // 4096
    assert max(faults) < pages // 50, faults
    plain = torch.utils.data.DataLoader(Clips(), batch_size=1, num_workers=1)  # glibc's defaults
    assert min(int(b) for b in plain) > pages * 0.9
