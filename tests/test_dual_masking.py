"""VideoMAE V2's dual masking: the decoder decodes only the tokens its running-cell mask keeps, and
the loss scores exactly those of them the encoder did not see (targets built here by hand)."""

import numpy as np
import pytest
import torch

from mgm.config import Geometry
from mgm.data.clip import Clip
from mgm.data.dataset import build_dataset as build_video_dataset, collate_views
from mgm.data.lists import Sample
from mgm.data.memory import DecodedSplit, MemoryClips
from mgm.masking import build_mask_generator
from mgm.config import IMAGENET_MEAN, IMAGENET_STD
from mgm.model import ModelConfig, VideoMAEPretrain

GEO = Geometry(num_frames=8, size=32, tubelet=2, patch=8)  # grid 4 x 4 x 4 = 64 tokens
N = GEO.num_tokens


def model(norm_pix_loss: bool = True) -> VideoMAEPretrain:
    torch.manual_seed(0)
    return VideoMAEPretrain(ModelConfig(img_size=32, num_frames=8, tubelet=2, patch=8, embed_dim=24, depth=2,
                                        num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2,
                                        norm_pix_loss=norm_pix_loss))


def inputs(batch: int = 3, seed: int = 0):
    """video [B, 3, 8, 32, 32]; tube mask at 0.75 (12 of 16 per slot) and running-cell decoder mask
    at 0.5 (8 of 16 per slot dropped), both bool [B, 64]."""
    video = torch.randn(batch, 3, 8, 32, 32, generator=torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    mask = build_mask_generator("tube", GEO, 0.75).batch(None, rng, batch).reshape(batch, -1)
    dec = build_mask_generator("running-cell", GEO, 0.5).batch(None, rng, batch).reshape(batch, -1)
    return video, torch.from_numpy(mask), torch.from_numpy(dec)


def hand_targets(video: torch.Tensor, norm: bool) -> torch.Tensor:
    """[B, N, tubelet*patch*patch*C] in V2's 'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c'
    layout: un-normalised pixels, standardised per tubelet and channel with the unbiased std."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    x = video * std + mean
    b = x.shape[0]
    x = x.reshape(b, 3, 4, 2, 4, 8, 4, 8).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, N, 128, 3)
    if norm:
        x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return x.reshape(b, N, -1)


def decode_input_lengths(m: VideoMAEPretrain) -> list[int]:
    lengths = []
    m.decoder.blocks[0].register_forward_pre_hook(lambda mod, args: lengths.append(args[0].shape[1]))
    return lengths


@pytest.mark.parametrize("norm", [True, False])
def test_loss_is_the_mse_over_the_decoded_masked_tokens(norm):
    m, (video, mask, dec) = model(norm), inputs()
    lengths = decode_input_lengths(m)
    loss, pred = m(video, mask, dec)
    kept = ~dec
    n_vis, n_kept = int((~mask[0]).sum()), int(kept[0].sum())
    assert (n_vis, n_kept) == (16, 32)
    assert lengths == [n_vis + n_kept]  # the decoder sees visible + decoded tokens, nothing else
    assert pred.shape == (3, n_kept, 2 * 8 * 8 * 3)
    # pred rows are the kept positions in ascending order; only the masked ones are scored
    target = hand_targets(video, norm)[kept].view(3, n_kept, -1)
    scored = mask[kept].view(3, n_kept).float()
    assert 0 < scored.sum() < scored.numel()  # tube vs running cell: some decoded tokens were visible
    expect = (((pred.detach() - target) ** 2).mean(-1) * scored).sum() / scored.sum()
    torch.testing.assert_close(loss.detach(), expect, rtol=1e-5, atol=1e-6)


def test_only_decoded_masked_tokens_move_the_loss():
    m, (video, mask, dec) = model(), inputs(batch=1)
    base, _ = m(video, mask, dec)
    dropped = torch.nonzero(mask[0] & dec[0]).flatten()  # masked, not decoded
    scored = torch.nonzero(mask[0] & ~dec[0]).flatten()  # masked and decoded

    def with_tubelet_changed(token: int) -> torch.Tensor:
        t, rest = divmod(int(token), 16)
        h, w = divmod(rest, 4)
        v = video.clone()
        v[..., 2 * t:2 * t + 2, 8 * h:8 * h + 8, 8 * w:8 * w + 8] += torch.randn(3, 2, 8, 8)
        return m(v, mask, dec)[0]

    for token in dropped[:3]:
        assert torch.equal(with_tubelet_changed(token), base)
    for token in scored[:3]:
        assert not torch.allclose(with_tubelet_changed(token), base)


def test_decoder_mask_of_the_visible_tokens_is_the_plain_model():
    """V2 without decoder masking decodes ~mask: the same as passing no decoder mask."""
    m, (video, mask, _) = model(), inputs()
    loss, pred = m(video, mask)
    loss2, pred2 = m(video, mask, ~mask)
    torch.testing.assert_close(loss2, loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(pred2, pred, rtol=0, atol=0)


def test_decoder_masks_with_different_counts_are_refused():
    m, (video, mask, dec) = model(), inputs(batch=2)
    dec[1, torch.nonzero(~dec[1])[0]] = True
    with pytest.raises(ValueError, match="same number"):
        m(video, mask, dec)


def test_running_cell_decoder_mask_keeps_the_expected_count():
    gen = build_mask_generator("running-cell", GEO, 0.5)
    masks = gen.batch(None, np.random.default_rng(0), 16)  # [16, 4, 4, 4]
    assert (masks.sum(axis=(2, 3)) == 8).all()  # 8 of 16 dropped in every slot of every clip
    cells = masks.reshape(16, 4, 2, 2, 2, 2).sum(axis=(3, 5))  # [B, T', cell row, cell col]
    assert (cells == 2).all()  # V2's pattern at 0.5: two of each 2x2 cell
    # another ratio still gives floor(ratio * H'W') per slot
    assert (build_mask_generator("running-cell", GEO, 0.3).batch(None, 1, 4).sum(axis=(2, 3)) == 4).all()


# ---------------------------------------------------------------------------------------------
# every pre-training data path emits the decoder mask


def generator_with_decoder():
    from mgm.train.config import load_config
    from mgm.train.datasets import mask_generator

    cfg = load_config("pretrain", None, ["data.num_frames=8", "data.size=32", "data.patch=8", "data.mask=tube",
                                         "data.mask_ratio=0.75", "data.decoder_mask=running-cell"])
    return mask_generator(cfg)


def check_items(items, gen):
    for item in items:
        assert item["decoder_mask"].dtype == torch.bool and item["decoder_mask"].shape[-1] == N
        assert (item["decoder_mask"].sum(-1) == gen.decoder.num_masked).all()
        assert (item["mask"].sum(-1) == gen.num_masked).all()


def test_random_clips_emit_it_and_keep_their_encoder_masks():
    from mgm.train.datasets import RandomClips

    gen = generator_with_decoder()
    assert gen.decoder.name == "running-cell" and gen.decoder.num_masked == 32
    ds = RandomClips(4, GEO, mask_generator=gen)
    check_items([ds[i] for i in range(4)], gen)
    plain = RandomClips(4, GEO, mask_generator=build_mask_generator("tube", GEO, 0.75))
    assert "decoder_mask" not in plain[0] and torch.equal(plain[2]["mask"], ds[2]["mask"])


def test_memory_clips_emit_it():
    split = DecodedSplit(video=np.zeros((2, 16, 32, 32, 3), np.uint8), dx=np.zeros((2, 16, 2, 2), np.float16),
                         dy=np.zeros((2, 16, 2, 2), np.float16), labels=np.array([0, 1]), paths=["a", "b"])
    gen = generator_with_decoder()
    check_items([MemoryClips(split, GEO, 1, mask_generator=gen)[i] for i in range(2)], gen)


@pytest.mark.parametrize("num_sample", [1, 2])
def test_video_dataset_emits_it_and_collates_views(num_sample):
    gen = generator_with_decoder()
    ds = build_video_dataset([Sample("a.mp4", 0), Sample("b.mp4", 1)], geometry=GEO, mode="pretrain",
                             mask_generator=gen, num_sample=num_sample)
    frames = np.random.default_rng(0).integers(0, 255, (8, 48, 48, 3), dtype=np.uint8)
    ds._read = lambda sample, tview, rng: Clip(frames, np.arange(8))  # no decoding
    items = [ds[0], ds[1]]
    check_items(items, gen)
    batch = collate_views(items) if num_sample > 1 else torch.utils.data.default_collate(items)
    assert batch["decoder_mask"].shape == batch["mask"].shape == (2 * num_sample, N)


def test_motion_decoder_masks_are_refused():
    from mgm.errors import MGMError
    from mgm.train.config import load_config
    from mgm.train.datasets import mask_generator

    cfg = load_config("pretrain", None, ["data.decoder_mask=mgm"])
    with pytest.raises(MGMError, match="needs motion"):
        mask_generator(cfg)


def test_pretrain_cli_with_running_cell_decoder_mask(tmp_path, monkeypatch):
    from mgm.cli import main

    seen = []
    forward = VideoMAEPretrain.forward

    def spy(self, video, mask, decoder_mask=None):
        seen.append(None if decoder_mask is None else tuple(decoder_mask.shape))
        return forward(self, video, mask, decoder_mask)

    monkeypatch.setattr(VideoMAEPretrain, "forward", spy)
    args = ["pretrain", "--name", "dual", "--set", f"run.out_dir={tmp_path}", "--set", "data.source=random",
            "--set", "data.decoder_mask=running-cell", "--set", "data.num_frames=4", "--set", "data.size=32",
            "--set", "data.batch_size=4", "--set", "data.random_len=8", "--set", "run.progress=false",
            "--set", "run.threads=1", "--set", "optim.max_steps=2"]
    assert main(args) == 0
    assert seen and all(s == (4, 8) for s in seen)  # 2 x 2 x 2 tokens, one decoder mask per clip
