"""VideoMAE's whole fine-tuning recipe in the data path: RandAugment and random erasing per clip,
repeated augmentation (N views per video read), and the shipped configs running as shipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mgm.cli import main
from mgm.config import Geometry
from mgm.data.dataset import build_dataset, collate_views
from mgm.train.log import read_log

G = Geometry(num_frames=4, size=32, tubelet=2, patch=16)


@pytest.fixture(scope="module")
def tiny_list(tmp_path_factory):
    """A list of 4 encoded clips (2 classes) with known motion."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import moving_square_frames

    from mgm.codec import write_video

    root = tmp_path_factory.mktemp("recipe")
    lines = []
    for i in range(4):
        frames, _ = moving_square_frames(n=20, vx=(2 if i % 2 else -2) + 4, vy=0, seed=i)
        write_video(root / f"v{i}.mp4", frames)
        lines.append(f"v{i}.mp4 {i % 2}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


def test_views_of_one_read_differ_and_read_once(tiny_list, monkeypatch):
    from mgm import codec
    from mgm.masking import build_mask_generator

    reads = []
    real = codec.read_clip
    monkeypatch.setattr(codec, "read_clip", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    data = build_dataset(str(tiny_list / "list.txt"), root=str(tiny_list), geometry=G, mode="pretrain",
                         stride=2, mask_generator=build_mask_generator("mgm", G, 0.5), num_sample=3)
    item = data[0]
    assert len(reads) == 1  # one read of the video ...
    assert item["video"].shape == (3, 3, 4, 32, 32) and item["mask"].shape == (3, 8)
    views = item["video"].flatten(1)
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])  # ... three views
    assert (item["mask"].sum(1) == 4).all()  # each view masks exactly k, from its own motion crop
    again = data[0]
    assert torch.equal(again["video"], item["video"]) and torch.equal(again["mask"], item["mask"])
    single = build_dataset(str(tiny_list / "list.txt"), root=str(tiny_list), geometry=G, mode="pretrain",
                           stride=2, mask_generator=build_mask_generator("mgm", G, 0.5))[0]
    assert torch.equal(single["video"], item["video"][0])  # view 0 is the one-view item


def test_collate_views_flattens_into_the_batch(tiny_list):
    data = build_dataset(str(tiny_list / "list.txt"), root=str(tiny_list), geometry=G, mode="train", stride=2,
                         num_sample=2)
    batch = collate_views([data[0], data[1]])
    assert batch["video"].shape == (4, 3, 4, 32, 32)
    assert batch["label"].tolist() == [0, 0, 1, 1] and batch["index"].tolist() == [0, 0, 1, 1]


def test_augmentations_apply_per_clip_in_training_only(tiny_list):
    plain = build_dataset(str(tiny_list / "list.txt"), root=str(tiny_list), geometry=G, mode="train", stride=2)
    aug = build_dataset(str(tiny_list / "list.txt"), root=str(tiny_list), geometry=G, mode="train", stride=2,
                        rand_augment="rand-m9-n4-mstd0.5-inc1", erase_prob=1.0)
    a, b = plain[0]["video"], aug[0]["video"]
    assert a.shape == b.shape and not torch.equal(a, b)
    # erasing: one box, the same on every frame -> the pixels erased in frame 0 are erased in all
    changed = (a != b).all(0)  # [T, H, W]
    assert changed.any()
    val = build_dataset(str(tiny_list / "list.txt"), root=str(tiny_list), geometry=G, mode="val", stride=2,
                        rand_augment="rand-m9-n4-mstd0.5-inc1", erase_prob=1.0)
    ref = build_dataset(str(tiny_list / "list.txt"), root=str(tiny_list), geometry=G, mode="val", stride=2)
    assert torch.equal(val[0]["video"], ref[0]["video"])  # evaluation is never augmented


def test_pretraining_refuses_fine_tuning_augmentations(tmp_path, capsys):
    assert main(["pretrain", "--set", f"run.out_dir={tmp_path}", "--set", "data.train_list=x.txt",
                 "--set", "data.rand_augment=rand-m7-n4-mstd0.5-inc1"]) == 1
    assert "fine-tuning augmentations" in capsys.readouterr().err
    assert main(["finetune", "--set", f"run.out_dir={tmp_path}", "--set", "data.rand_augment=rand-m7-x"]) == 1
    assert "config key 'data.rand_augment'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_k400_recipe_runs_as_shipped_on_a_tiny_list(tiny_list, tmp_path):
    """configs/k400_finetune.yaml with only the lists, geometry, model size and length overridden:
    RandAugment, erasing, repeated augmentation, mixup / cutmix, layer decay, 5 x 3 test views."""
    config = Path(__file__).parent.parent / "configs" / "k400_finetune.yaml"
    lst = str(tiny_list / "list.txt")
    assert main(["finetune", "--config", str(config), "--set", f"data.train_list={lst}",
                 "--set", f"data.val_list={lst}", "--set", f"data.root={tiny_list}", "--set", "data.num_frames=4",
                 "--set", "data.size=32", "--set", "data.stride=2", "--set", "model.preset=tiny",
                 "--set", "data.batch_size=2", "--set", "data.num_workers=0", "--set", "optim.epochs=1",
                 "--set", "optim.warmup_epochs=0", "--set", f"run.out_dir={tmp_path}", "--set", "run.progress=false",
                 "--set", "run.threads=1"]) == 0
    records = read_log(tmp_path / "k400-vitb-mgm-ft" / "log.jsonl")
    data = records[0]["config"]["data"]
    assert (data["rand_augment"], data["erase_prob"], data["num_sample"]) == ("rand-m7-n4-mstd0.5-inc1", 0.25, 2)
    ev = [r for r in records if r["event"] == "eval"][-1]
    assert ev["videos"] == 4 and ev["views"] == 4 * 5 * 3
    assert np.isfinite([r["loss"] for r in records if r["event"] == "step"]).all()
