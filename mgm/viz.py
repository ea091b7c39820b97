"""Pictures of masks and motion: PNG montages and animated GIFs drawn with Pillow (no matplotlib).

Every image here is uint8 [H, W, 3] RGB. The figure of one clip has one column per time slot
(the slot's last frame, resized to size x size) and two rows:
  motion  the slot's motion magnitude as a heat map (transparent where nothing moves) with arrows
          of the displacement over the slot, as the strategy sees it (camera motion removed or not);
  mask    masked patches darkened and tinted blue, the patch grid drawn, a ring at the slot's
          strongest motion, so one can check at a glance that the mask sits where the video moves.
"""

from __future__ import annotations

import numpy as np

from mgm.files import atomic_write

# Anchor colours of a black-red-yellow-white heat scale (like matplotlib's "hot"/"inferno").
_HEAT = np.array([[0, 0, 0], [120, 20, 90], [220, 50, 30], [250, 170, 20], [255, 255, 200]], np.float32)
MASK_TINT = np.array([20, 40, 110], np.float32)


def heat_colors(values: np.ndarray) -> np.ndarray:
    """values in [0, 1], any shape [...] -> uint8 [..., 3] on the heat scale."""
    x = np.clip(values, 0, 1) * (len(_HEAT) - 1)
    i = np.minimum(x.astype(int), len(_HEAT) - 2)
    f = (x - i)[..., None]
    return (_HEAT[i] * (1 - f) + _HEAT[i + 1] * f).astype(np.uint8)


def upsample(grid: np.ndarray, patch: int) -> np.ndarray:
    """[H', W', ...] -> [H' * patch, W' * patch, ...], each cell repeated as a patch."""
    return np.repeat(np.repeat(grid, patch, axis=0), patch, axis=1)


def motion_tile(frame: np.ndarray, magnitude: np.ndarray, vectors: np.ndarray | None, vmax: float,
                patch: int) -> np.ndarray:
    """Frame with its motion.

    frame: uint8 [S, S, 3]; magnitude: [H', W'] px; vectors: [2, H', W'] (dx, dy) px or None;
    vmax: magnitude shown at full heat. Heat opacity grows with magnitude, so static areas stay
    readable. Arrows (where magnitude > vmax / 5) point along the displacement, their length
    proportional to the magnitude, 1.5 patches at vmax: real displacements of compressed-domain
    motion span anything from 0 to the frame width, which true-length arrows cannot show.
    """
    from PIL import Image, ImageDraw

    level = np.clip(magnitude / max(vmax, 1e-6), 0, 1)
    alpha = upsample(0.75 * np.sqrt(level), patch)[..., None]
    out = frame * (1 - alpha) + upsample(heat_colors(level), patch) * alpha
    img = Image.fromarray(out.astype(np.uint8))
    if vectors is not None:
        draw = ImageDraw.Draw(img)
        for y, x in zip(*np.nonzero(level > 0.2)):
            v = vectors[:, y, x]
            length = 1.5 * patch * level[y, x] / max(float(np.hypot(*v)), 1e-6)
            cx, cy = (x + 0.5) * patch, (y + 0.5) * patch
            ex, ey = cx + length * v[0], cy + length * v[1]
            draw.line([(cx, cy), (ex, ey)], fill=(0, 230, 255), width=2)
            draw.ellipse([ex - 2.5, ey - 2.5, ex + 2.5, ey + 2.5], fill=(0, 230, 255))
    return np.asarray(img)


def mask_tile(frame: np.ndarray, mask: np.ndarray, patch: int, peak: tuple[int, int] | None = None
              ) -> np.ndarray:
    """Frame with its mask: masked patches darkened and tinted, patch grid, optional ring at `peak`.

    frame: uint8 [S, S, 3]; mask: bool [H', W'] (True = masked); peak: (y, x) patch or None.
    """
    from PIL import Image, ImageDraw

    m = upsample(mask, patch)[..., None]
    out = np.where(m, frame * 0.4 + MASK_TINT * 0.6, frame).astype(np.uint8)
    out[::patch] = out[::patch] // 2 + 60  # faint grid: token boundaries
    out[:, ::patch] = out[:, ::patch] // 2 + 60
    img = Image.fromarray(out)
    if peak is not None:
        draw = ImageDraw.Draw(img)
        y, x = peak
        r = 0.5 * patch
        cx, cy = (x + 0.5) * patch, (y + 0.5) * patch
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(255, 220, 0), width=2)
    return np.asarray(img)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def montage(rows: list[list[np.ndarray]], row_labels: list[str], col_labels: list[str], title: str = "",
            gap: int = 4) -> np.ndarray:
    """Tiles (all uint8 [S, S, 3]) in a labelled grid on a white background -> uint8 [H, W, 3]."""
    from PIL import Image, ImageDraw

    s = rows[0][0].shape[0]
    font = _font(max(12, s // 14))
    line = int(font.getbbox("Ag")[3]) + 6
    left = max([s // 8] + [int(font.getlength(t)) + 8 for t in row_labels])
    top = line * (2 if title else 1)
    title_width = int(font.getlength(title)) + 8 if title else 0
    width = max(left + len(rows[0]) * (s + gap), title_width)
    height = top + len(rows) * (s + gap)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((4, 2), title, fill=(0, 0, 0), font=font)
    for j, label in enumerate(col_labels):
        draw.text((left + j * (s + gap) + 4, top - line + 2), label, fill=(0, 0, 0), font=font)
    for i, (row, label) in enumerate(zip(rows, row_labels)):
        y = top + i * (s + gap)
        draw.text((4, y + s // 2 - 8), label, fill=(0, 0, 0), font=font)
        for j, tile in enumerate(row):
            img.paste(Image.fromarray(tile), (left + j * (s + gap), y))
    return np.asarray(img)


def save_png(path, image: np.ndarray, colors: int = 256) -> None:
    """PNG with a `colors`-entry palette: 2-3x smaller than RGB for these photos, no visible loss
    (colors=0: full RGB)."""
    from PIL import Image

    img = Image.fromarray(image)
    with atomic_write(path) as f:
        (img.quantize(colors) if colors else img).save(f, format="PNG", optimize=True)


def save_gif(path, images: list[np.ndarray], ms_per_frame: int = 250, colors: int = 128) -> None:
    """Animated GIF looping forever, a palette of `colors` per frame (keeps colours faithful)."""
    from PIL import Image

    pics = [Image.fromarray(im).quantize(colors) for im in images]
    with atomic_write(path) as f:
        pics[0].save(f, format="GIF", save_all=True, append_images=pics[1:], duration=ms_per_frame, loop=0,
                     optimize=True)


def clip_views(frames: np.ndarray, motion: np.ndarray, mask: np.ndarray, tubelet: int, patch: int,
               camera_comp: bool = True, centres: np.ndarray | None = None):
    """Motion and mask tiles of a clip, per time slot.

    frames: uint8 [T, S, S, 3] (already size x size); motion: float32 [T, 2, H', W'] on the patch
    grid; mask: bool [T', H', W']; centres: [T', 2] (y, x) patches to ring (e.g. MGM's motion
    centres) or None. Returns (motion tiles, mask tiles), each a list of T' uint8 [S, S, 3], drawn
    on each slot's last frame with the slot's summed motion. The heat scale is per slot (its 99th
    percentile, at least 1 px), as each slot's mask is placed by its own motion.
    """
    from mgm.masking import remove_median_motion, slot_magnitude

    t_slots = mask.shape[0]
    vec = remove_median_motion(motion) if camera_comp else motion
    vec = vec.reshape(t_slots, tubelet, *motion.shape[1:]).sum(axis=1)  # [T', 2, H', W'] over the slot
    mag = slot_magnitude(motion[None], tubelet, camera_comp)[0]  # [T', H', W']
    motion_tiles, mask_tiles = [], []
    for s in range(t_slots):
        frame = frames[s * tubelet + tubelet - 1]
        vmax = max(float(np.percentile(mag[s], 99)), 1.0)
        peak = None if centres is None else tuple(np.rint(centres[s]).astype(int))
        motion_tiles.append(motion_tile(frame, mag[s], vec[s], vmax, patch))
        mask_tiles.append(mask_tile(frame, mask[s], patch, peak))
    return motion_tiles, mask_tiles


def reconstruction_rows(video: np.ndarray, recon: np.ndarray, mask: np.ndarray, tubelet: int,
                        patch: int, scale: int = 2):
    """Original, masked input and reconstruction of one clip, one column per time slot.

    video, recon: float [T, S, S, 3] in [0, 1]; mask: bool [T', H', W']. Returns (rows, labels),
    rows = three lists of T' uint8 tiles [S*scale, S*scale, 3] (each slot's last frame), for montage.
    """
    def tile(img):
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        return np.repeat(np.repeat(img, scale, 0), scale, 1)

    rows = [[], [], []]
    for s in range(mask.shape[0]):
        f = s * tubelet + tubelet - 1
        hidden = upsample(mask[s], patch)[..., None]
        rows[0].append(tile(video[f]))
        rows[1].append(tile(np.where(hidden, 0.5 * video[f] + 0.5 * MASK_TINT / 255, video[f])))
        rows[2].append(tile(recon[f]))
    return rows, ["input", "masked", "recon."]


def save_mask_gif(path, frames: np.ndarray, motion: np.ndarray, mask: np.ndarray, centres: np.ndarray,
                  tubelet: int, patch: int, caption, camera_comp: bool = True, ms_per_frame: int = 250) -> None:
    """An animated GIF of a clip frame by frame: each frame's own motion beside its slot's mask.

    frames: uint8 [T, S, S, 3] as drawn (already scaled up if wanted, `patch` in its pixels);
    motion [T, 2, H', W']; mask bool [T', H', W']; centres [T', 2] (y, x) patches to ring;
    caption(i) -> the title of frame i.
    """
    motion_tiles, mask_tiles = clip_views(frames, motion, np.repeat(mask, tubelet, axis=0), 1, patch,
                                          camera_comp, np.repeat(centres, tubelet, axis=0))
    images = [montage([[a, b]], [""], ["motion", f"mask (slot {i // tubelet})"], caption(i))
              for i, (a, b) in enumerate(zip(motion_tiles, mask_tiles))]
    save_gif(path, images, ms_per_frame)
