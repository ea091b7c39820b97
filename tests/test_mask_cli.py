"""`mgm mask` and `mgm show` on clips encoded in fixtures: exact masks, that MGM follows the object, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import moving_square_frames
from mgm.cli import main
from mgm.masking import STRATEGIES

# Object 32 px moving +4 px/frame right over a static textured background; 128 x 128 frames are
# resized to --size 128 unchanged, so its patch is known exactly. Sampling: 8 frames, start 4, stride 2.
N, SIZE, SPEED, START, STRIDE, NUM_FRAMES = 24, 128, 4, 4, 2, 8
SLOT_FRAMES = [(START + STRIDE * 2 * s, START + STRIDE * (2 * s + 1)) for s in range(NUM_FRAMES // 2)]


@pytest.fixture(scope="module")
def object_clip(encode):
    frames, boxes = moving_square_frames(n=N, height=SIZE, width=SIZE, vx=SPEED, vy=0, size=32, start=(40, 4))
    return encode("mask_object.mp4", frames), boxes


def slot_centre(boxes, slot, scale_y=1.0, scale_x=1.0, patch=16):
    """(row, col) patch of the object's centre averaged over the slot's frames (both carry its motion)."""
    y0, x0, y1, x1 = np.mean([boxes[f] for f in SLOT_FRAMES[slot]], axis=0)
    return int((y0 + y1) / 2 * scale_y // patch), int((x0 + x1) / 2 * scale_x // patch)


def run_mask(path, out, *extra, size=SIZE):
    argv = ["mask", str(path), "--num-frames", str(NUM_FRAMES), "--stride", str(STRIDE), "--start", str(START),
            "--size", str(size), "--out", str(out), *extra]
    assert main(argv) == 0
    return np.load(out)


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_writes_the_contract_mask(object_clip, tmp_path, name):
    path, _ = object_clip
    mask = run_mask(path, tmp_path / "m.npy", "--strategy", name, "--ratio", "0.75")
    assert mask.dtype == bool and mask.shape == (4, 8, 8)
    if name == "frame":
        assert mask.sum() == 3 * 64  # round(0.75 * 4) slots
    else:
        assert mask.sum() == 4 * 48  # floor(0.75 * 64) per slot


def test_mgm_covers_the_moving_object_tube_does_not_follow(object_clip, tmp_path):
    path, boxes = object_clip
    centres = [slot_centre(boxes, s) for s in range(4)]
    assert len({c for c in centres}) == 4  # the object crosses a new patch column every slot
    hits = {"mgm": [], "tube": []}
    for seed in range(4):
        for name in hits:
            mask = run_mask(path, tmp_path / f"{name}{seed}.npy", "--strategy", name, "--ratio", "0.5",
                            "--seed", str(seed), "--quiet")
            hits[name] += [bool(mask[s][c]) for s, c in enumerate(centres)]
    assert all(hits["mgm"])
    assert np.mean(hits["tube"]) < 0.9


def test_resize_without_crop_maps_the_object(encode, tmp_path):
    """A 64x256 video squeezed to 128x128 (y x2, x /2): the mask sits on the object's scaled position."""
    frames, boxes = moving_square_frames(n=N, height=64, width=256, vx=-SPEED, vy=0, size=32, start=(20, 176))
    path = encode("mask_wide.mp4", frames)
    rows, cols = np.mgrid[:8, :8] + 0.5
    for seed in range(3):
        mask = run_mask(path, tmp_path / "m.npy", "--ratio", "0.25", "--sigma", "1", "--seed", str(seed))
        for s in range(4):
            y0, x0, y1, x1 = np.mean([boxes[f] for f in SLOT_FRAMES[s]], axis=0)
            expected = np.array([(y0 + y1) / 2 * SIZE / 64, (x0 + x1) / 2 * SIZE / 256]) / 16
            centroid = np.array([rows[mask[s]].mean(), cols[mask[s]].mean()])
            assert np.abs(centroid - expected).max() < 1.0, (seed, s, centroid, expected)


def test_seed_is_deterministic_and_matters(object_clip, tmp_path):
    path, _ = object_clip
    a = run_mask(path, tmp_path / "a.npy", "--strategy", "random", "--seed", "1")
    b = run_mask(path, tmp_path / "b.npy", "--strategy", "random", "--seed", "1")
    c = run_mask(path, tmp_path / "c.npy", "--strategy", "random", "--seed", "2")
    assert (a == b).all() and (a != c).any()


def test_static_video_gets_a_valid_mask_and_a_one_line_warning(encode, tmp_path, capsys):
    frames, _ = moving_square_frames(n=20, height=SIZE, width=SIZE)
    path = encode("mask_intra.mp4", frames, options={"x264-params": "keyint=1"})  # all-intra: no vectors
    mask = run_mask(path, tmp_path / "m.npy", "--strategy", "mgm", "--ratio", "0.75", "--quiet")
    assert mask.shape == (4, 8, 8) and (mask.reshape(4, -1).sum(axis=1) == 48).all()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mgm mask: warning:") and "no motion" in err[0]


def test_bad_options_are_one_line_errors(object_clip, tmp_path, capsys):
    path, _ = object_clip
    for argv, reason in [
        (["--strategy", "tube", "--sigma", "2"], "--sigma does not apply to --strategy tube (its options: none)"),
        (["--strategy", "mgm-warp", "--no-camera-comp"], "(its options: --min-motion)"),
        (["--ratio", "1.0"], "ratio must be in"),
        (["--size", "100"], "not a multiple of patch"),
        (["--stride", "0"], "--stride must be positive"),
    ]:
        assert main(["mask", path, "--out", str(tmp_path / "x.npy"), *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and reason in err[0], (argv, err)
    assert main(["mask", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "x.npy")]) == 1
    assert capsys.readouterr().err.strip() == f"mgm mask: error: {tmp_path / 'missing.mp4'}: no such file"
    assert not (tmp_path / "x.npy").exists()


def test_vp9_exits_1_with_one_line_and_no_traceback(encode, tmp_path):
    frames, _ = moving_square_frames(n=6, height=64, width=64, size=16)
    path = encode("mask_clip.webm", frames, codec="libvpx-vp9")
    proc = subprocess.run([sys.executable, "-m", "mgm.cli", "mask", path, "--num-frames", "4", "--size", "64",
                           "--out", str(tmp_path / "m.npy")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "mask_clip.webm" in lines[0] and "H.264" in lines[0], proc.stderr


def test_show_writes_png_montage_and_gif(object_clip, tmp_path):
    path, _ = object_clip
    common = ["--num-frames", str(NUM_FRAMES), "--stride", str(STRIDE), "--start", str(START), "--size", str(SIZE)]
    assert main(["show", path, *common, "--out", str(tmp_path / "m.png")]) == 0
    png = Image.open(tmp_path / "m.png")
    from mgm.commands.show import DISPLAY

    tile = SIZE * -(-DISPLAY // SIZE)  # small clips are drawn an integer factor larger
    assert tile >= DISPLAY and png.format == "PNG"
    assert png.width > 4 * tile and 2 * tile < png.height < 3 * tile  # 4 slots x 2 rows
    assert main(["show", path, *common, "--strategy", "tube", "--out", str(tmp_path / "m.gif")]) == 0
    gif = Image.open(tmp_path / "m.gif")
    assert gif.format == "GIF" and gif.n_frames == NUM_FRAMES
    assert main(["show", path, *common, "--out", str(tmp_path / "m.jpg")]) == 1


def test_mask_tile_darkens_exactly_the_masked_patches():
    from mgm import viz

    frame = np.full((64, 64, 3), 200, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    tile = viz.mask_tile(frame, mask, 16).astype(int)
    inner = (slice(1, 16), slice(1, 16))  # skip the grid line on each patch's first row/column
    patches = tile.reshape(4, 16, 4, 16, 3)[:, inner[0], :, inner[1]]
    brightness = patches.mean(axis=(1, 3, 4))
    assert brightness[1, 2] < 120
    assert (np.delete(brightness.ravel(), 1 * 4 + 2) == 200).all()


def test_heat_colors_span_black_to_light():
    from mgm import viz

    c = viz.heat_colors(np.array([0.0, 0.5, 1.0])).astype(int)
    assert (c[0] == 0).all() and c[2].min() >= 200
    assert c[0].sum() < c[1].sum() < c[2].sum()


# --- mgm follows one object: two squares whose speeds alternate which is faster every slot ---------

def two_squares_frames(stride, fast, slow, size=224, side=48, seed=0):
    """Frames uint8 [15 * stride + 1, size, size, 3] of two textured squares on a textured background,
    sampled as `--num-frames 16 --stride STRIDE` samples them: the first (rows 40..88) moves right, the
    second (rows 136..184) left; in slot s the first moves `fast` px/frame and the second `slow` when s
    is even, the other way round when s is odd (slot s's motion is that of frames (2s-1)*stride+1 ..
    (2s+1)*stride, the decoded frames summed into its two sampled frames).

    Returns (frames, centres float [16, 2 squares, 2 (y, x)] in px, of the sampled frames).
    """
    rng = np.random.default_rng(seed)
    bg = np.kron(rng.integers(0, 255, (size // 4, size // 4, 3)), np.ones((4, 4, 1)))
    tex = [np.kron(rng.integers(0, 255, (side // 4, side // 4, 3)), np.ones((4, 4, 1))) for _ in range(2)]
    corner = np.array([[40.0, 16.0], [136.0, 160.0]])  # (y, x) top-left of each square
    frames, centres = [], []
    for f in range(15 * stride + 1):
        if f:
            slot = (f + stride - 1) // (2 * stride)
            corner[:, 1] += np.array([1, -1]) * ([fast, slow] if slot % 2 == 0 else [slow, fast])
        img = bg.copy()
        for (y, x), t in zip(corner.astype(int), tex):
            img[y:y + side, x:x + side] = t
        frames.append(img.astype(np.uint8))
        centres.append(corner + side / 2)
    return np.stack(frames), np.array(centres)[::stride]


def followed_square(mask, centres, patch=16):
    """(int [T'], float [T']): per slot the square (0 or 1) nearest the masked patches' centroid, and
    that distance in patches."""
    yy, xx = np.mgrid[:mask.shape[1], :mask.shape[2]]
    centroid = np.array([[yy[m].mean(), xx[m].mean()] for m in mask])  # [T', 2] in patch indices
    squares = (centres[0::2] + centres[1::2]) / 2 / patch - 0.5  # [T', 2, 2]: mean of the slot's two frames
    dist = np.hypot(*np.moveaxis(squares - centroid[:, None], -1, 0))  # [T', 2]
    return dist.argmin(axis=1), dist.min(axis=1)


@pytest.mark.parametrize("stride, fast, slow", [(2, 4, 2), (4, 3, 1), (1, 5, 4)])
def test_mgm_stays_on_one_of_two_squares_whose_speeds_alternate(encode, tmp_path, stride, fast, slow):
    frames, centres = two_squares_frames(stride, fast, slow)
    path = encode(f"two_squares_{stride}_{fast}_{slow}.mp4", frames)
    same, near, argmax_same = [], [], []
    for seed in range(3):
        masks = {}
        for option in ([], ["--no-track"]):  # --no-track: the per-slot argmax, for comparison
            out = tmp_path / f"m{seed}{len(option)}.npy"
            assert main(["mask", path, "--strategy", "mgm", "--ratio", "0.3", "--num-frames", "16", "--stride",
                         str(stride), "--size", "224", "--seed", str(seed), "--out", str(out), "--quiet",
                         *option]) == 0
            masks[bool(option)] = np.load(out)
        mask = masks[False]
        assert mask.shape == (8, 14, 14) and (mask.reshape(8, -1).sum(axis=1) == 58).all()
        square, dist = followed_square(mask, centres)
        same += list(square[1:] == square[:-1])
        near += list(dist)
        square, _ = followed_square(masks[True], centres)
        argmax_same += list(square[1:] == square[:-1])
    print(f"same square in {np.mean(same):.0%} of slot transitions (argmax: {np.mean(argmax_same):.0%}), "
          f"{np.mean(near):.2f} patches from it")
    assert np.mean(same) >= 0.9
    assert np.mean(near) < 1.5  # on the square, not between the two
    assert np.mean(argmax_same) < 0.5  # the per-slot argmax jumps to whichever square is faster
