"""Reconstructions from a pre-training checkpoint: `mgm show --checkpoint` and its checks."""

import numpy as np
import pytest

from mgm.cli import main
from mgm.errors import MGMError


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny pre-training checkpoint (random-tensor data, tube masks): 4 frames of 32x32, patch 16."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["pretrain", "--name", "p", "--set", f"run.out_dir={runs}", "--set", "data.source=random",
                 "--set", "data.num_frames=4", "--set", "data.size=32", "--set", "data.random_len=8",
                 "--set", "data.batch_size=4", "--set", "data.mask_ratio=0.5", "--set", "run.threads=1",
                 "--set", "run.progress=false"]) == 0
    return str(sorted((runs / "p").glob("ckpt-*.pt"))[-1])


def test_reconstruction_copies_visible_tubelets(pretrained):
    from mgm.reconstruct import load_pretrained, reconstruct_frames

    model, geometry = load_pretrained(pretrained)
    assert (geometry.num_frames, geometry.size, geometry.patch) == (4, 32, 16)
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    mask = np.zeros(geometry.grid, bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True
    recon = reconstruct_frames(model, frames, mask)
    assert recon.shape == (4, 32, 32, 3)
    visible = np.ones((4, 32, 32), bool)
    visible[0:2, 0:16, 0:16] = visible[2:4, 16:32, 16:32] = False
    np.testing.assert_allclose(recon[visible], frames[visible] / 255.0, atol=1e-5)
    assert np.abs(recon[~visible] - frames[~visible] / 255.0).max() > 0.05  # predicted, not copied


def test_show_with_checkpoint_adds_a_row_and_checks_geometry(pretrained, square_clip, tmp_path):
    from PIL import Image

    path = square_clip[0]
    base = ["show", path, "--strategy", "tube", "--num-frames", "4", "--stride", "2", "--size", "32"]
    assert main(base + ["--out", str(tmp_path / "a.png")]) == 0
    assert main(base + ["--out", str(tmp_path / "b.png"), "--checkpoint", pretrained]) == 0
    h_without = Image.open(tmp_path / "a.png").height
    h_with = Image.open(tmp_path / "b.png").height
    assert h_with > h_without + 30  # one more row of 32-px tiles
    # No geometry flags: the checkpoint's geometry (4 frames of 32 px), the same picture as b.png.
    assert main(["show", path, "--strategy", "tube", "--stride", "2", "--checkpoint", pretrained,
                 "--out", str(tmp_path / "d.png")]) == 0
    assert (tmp_path / "d.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    # Another geometry than the checkpoint's: one line saying which flags it was trained with.
    assert main(["show", path, "--size", "64", "--num-frames", "4", "--checkpoint", pretrained,
                 "--out", str(tmp_path / "c.png")]) == 1
    with pytest.raises(MGMError, match="--size 32"):
        from mgm.commands.show import reconstruction_tiles
        from mgm.config import Geometry
        from mgm.reconstruct import load_pretrained
        reconstruction_tiles(pretrained, load_pretrained(pretrained)[0], Geometry(num_frames=4, size=64), None, None)
