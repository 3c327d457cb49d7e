"""Spatial control: mask loading, per-layer masks and guided Grams against hand-computed values."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from stylize.engine.losses import gram, style_layer_loss
from stylize.engine.masks import block_of, guided_gram, guided_style_loss, layer_masks, load_masks, normalize_masks
from stylize.engine.vgg import VGGFeatures
from stylize.errors import StylizeError

# ---- layer_masks -------------------------------------------------------------------------------

# 6 rows × 5 columns: the last column is dropped by the first 2×2 pool (floor), as avg_pool2d drops it
MASK_6x5 = torch.tensor([
    [1, 1, 0, 0, 1],
    [1, 1, 0, 0, 1],
    [1, 0, 1, 1, 0],
    [0, 0, 1, 1, 0],
    [0, 0, 0, 1, 1],
    [0, 0, 0, 0, 1],
], dtype=torch.float32).view(1, 1, 6, 5)


def test_layer_masks_average_each_2x2_block_once_per_pool():
    out = layer_masks(MASK_6x5, ["relu1_1", "conv2_2", "relu3_1"])
    assert torch.equal(out["relu1_1"], MASK_6x5)
    # block 2: means of the 2×2 squares, 6×5 -> 3×2
    assert torch.equal(out["conv2_2"], torch.tensor([[1.0, 0.0], [0.25, 1.0], [0.0, 0.25]]).view(1, 1, 3, 2))
    # block 3: 3×2 -> 1×1, the mean of the top square (1 + 0 + 0.25 + 1) / 4
    assert torch.equal(out["relu3_1"], torch.tensor([[[[0.5625]]]]))


def test_layer_masks_max_pooling_grows_regions():
    out = layer_masks(MASK_6x5, ["relu2_1", "relu3_1"], pooling="max")
    assert torch.equal(out["relu2_1"], torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]).view(1, 1, 3, 2))
    assert torch.equal(out["relu3_1"], torch.ones(1, 1, 1, 1))


def test_layer_masks_match_the_real_feature_map_sizes(embedded):
    net = VGGFeatures(embedded.convs, embedded.preprocess)
    layers = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "conv4_2", "relu5_1"}
    with torch.no_grad():
        feats = net(torch.rand(1, 3, 37, 29), layers)
    masks = layer_masks(torch.rand(2, 1, 37, 29), layers)
    for name in layers:
        assert masks[name].shape == (2, 1, *feats[name].shape[-2:]), name


def test_block_of_reads_the_block_number():
    assert block_of("relu3_1") == 3 and block_of("conv4_2") == 4
    with pytest.raises(KeyError):
        block_of("pool2")


# ---- normalize_masks ---------------------------------------------------------------------------

def test_overlaps_are_divided_and_uncovered_pixels_keep_the_photo():
    masks = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0],
                          [0.0, 0.5, 0.5, 0.5, 0.0]]).view(2, 1, 1, 5)
    weights, keep = normalize_masks(masks)
    expected = torch.tensor([[1.0, 2 / 3, 2 / 3, 0.0, 0.0],
                             [0.0, 1 / 3, 1 / 3, 0.5, 0.0]]).view(2, 1, 1, 5)
    assert torch.allclose(weights, expected)
    assert torch.allclose(keep, torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0]).view(1, 1, 1, 5))  # soft stays soft


# ---- guided Gram -------------------------------------------------------------------------------

def test_all_ones_mask_gives_gram_over_m():
    f = torch.randn(1, 8, 7, 5).contiguous(memory_format=torch.channels_last)
    assert torch.allclose(guided_gram(f, torch.ones(1, 1, 7, 5)), gram(f) / 35, rtol=1e-6, atol=0)


def test_half_mask_is_the_left_half_gram_over_its_area():
    # channel 0 = [[1, 2], [3, 4]], channel 1 = [[0, 1], [-1, 2]]; left column: (1, 3) and (0, -1)
    f = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [-1.0, 2.0]]]).view(1, 2, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    assert torch.equal(guided_gram(f, mask), torch.tensor([[[10.0, -3.0], [-3.0, 1.0]]]) / 2)


def test_guided_gram_is_a_weighted_mean_and_empty_masks_give_zeros():
    f = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    assert torch.allclose(guided_gram(f, torch.full((1, 1, 6, 6), 0.25)), gram(f) / 36)  # grey = white
    assert torch.equal(guided_gram(f, torch.zeros(1, 1, 6, 6)), torch.zeros(1, 4, 4, dtype=torch.float64))
    assert guided_style_loss(f, torch.zeros(1, 1, 6, 6), torch.eye(4, dtype=torch.float64), 4).item() == 0.0


def test_low_precision_features_give_fp32_and_batches_broadcast():
    f = torch.randn(1, 4, 6, 6).bfloat16().contiguous(memory_format=torch.channels_last)
    masks = torch.rand(3, 1, 6, 6)
    g = guided_gram(f, masks)
    assert g.dtype == torch.float32 and g.shape == (3, 4, 4)
    assert guided_style_loss(f, masks, torch.zeros(3, 4, 4), 4).shape == (3,)
    binary = (masks > 0.5).float()  # exact weights: the bf16 result is the exact Gram of the region
    exact = guided_gram(f.double(), binary.double())
    assert ((guided_gram(f, binary).double() - exact).abs().max() / exact.abs().max()) < 1e-5


def test_all_ones_mask_gives_the_engines_unmasked_style_term():
    f = torch.randn(1, 16, 9, 7).contiguous(memory_format=torch.channels_last)
    target = torch.randn(16, 16).abs()  # gram / M of some style image
    n, m = 16, 63
    ours = guided_style_loss(f, torch.ones(1, 1, 9, 7), target, n)
    unmasked = style_layer_loss(gram(f), target * m, n, m)  # as Stylizer.losses calls it
    assert torch.equal(ours, unmasked.reshape(-1))  # bit for bit; shape (B,) as style_layer_loss's per item


def test_regions_split_the_loss_by_area():
    f = torch.randn(1, 3, 4, 6, dtype=torch.float64)
    target = torch.randn(3, 3, dtype=torch.float64)
    left = torch.zeros(1, 1, 4, 6, dtype=torch.float64)
    left[..., :2] = 1
    g_left = gram(f[..., :2]) / 8
    expected = (2 / 6) * (g_left - target).pow(2).sum() / (4 * 3 * 3)
    assert torch.allclose(guided_style_loss(f, left, target, 3), expected.view(1))


def test_guided_style_loss_gradient():
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 1, 4, 5, dtype=torch.float64)
    target = torch.randn(2, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: guided_style_loss(x, mask, target, 3), (f,))
    one = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)  # one image, two regions
    assert torch.autograd.gradcheck(lambda x: guided_style_loss(x, mask, target, 3), (one,))


# ---- load_masks --------------------------------------------------------------------------------

def _png(array: np.ndarray, path):
    Image.fromarray(array.astype(np.uint8)).save(path)  # L, RGB or RGBA by the array's shape
    return path


def _ramp(width: int = 64, height: int = 48) -> np.ndarray:
    """Every 8-bit level from 0 to 255 across the width, the right end white."""
    return np.tile(np.linspace(0, 255, width).round(), (height, 1))


def test_grey_rgb_and_alpha_masks_read_the_same(tmp_path):
    v = _ramp()
    white, zero = np.full_like(v, 255), np.zeros_like(v)
    sources = [
        _png(v, tmp_path / "l.png"),
        _png(np.stack([v, v, v], -1), tmp_path / "rgb.png"),
        _png(np.stack([v, v, v, white], -1), tmp_path / "rgba_opaque.png"),
        _png(np.stack([white, white, white, v], -1), tmp_path / "white_on_transparent.png"),
        _png(np.stack([white, zero, zero, v], -1), tmp_path / "red_brush.png"),  # a flat colour: its alpha counts
    ]
    sources.append((tmp_path / "l.png").read_bytes())
    sources.append(Image.open(tmp_path / "rgb.png"))
    masks, notices = load_masks(sources, len(sources), (64, 48))
    assert masks.shape == (7, 1, 48, 64) and masks.dtype == torch.float32 and notices == []
    expected = torch.from_numpy(v / 255.0).float()
    for i, mask in enumerate(masks):
        assert torch.allclose(mask[0], expected, atol=1 / 255, rtol=0), i
    assert torch.allclose(masks[:, 0, :, -1], torch.ones(7, 48), atol=1 / 255)


def test_transparency_is_composited_on_black(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3))  # not one flat colour: luma × alpha
    alpha = np.zeros((48, 64))
    alpha[:, :32] = 255
    masks, _ = load_masks([_png(np.dstack([rgb, alpha]), tmp_path / "m.png")], 1, (64, 48))
    assert masks[0, 0, :, 32:].max() == 0 and masks[0, 0, :, :32].max() > 0


def test_masks_are_resized_with_a_notice_if_stretched(tmp_path):
    square = _png(_ramp(40, 40), tmp_path / "square.png")
    same_shape = _png(_ramp(32, 24), tmp_path / "small.png")
    masks, notices = load_masks([square, same_shape], 2, (64, 48))
    assert masks.shape == (2, 1, 48, 64) and 0 <= masks.min() and masks.max() <= 1
    assert notices == ["mask 1 is 40×40, the photo 64×48: stretched to fit"]


def test_mask_count_must_match_the_styles(tmp_path):
    path = _png(_ramp(), tmp_path / "m.png")
    with pytest.raises(StylizeError, match="3 masks for 2 styles: give one mask per style"):
        load_masks([path, path, path], 2, (64, 48))


def test_an_all_black_mask_is_refused(tmp_path):
    good, black = _png(_ramp(), tmp_path / "m.png"), _png(np.zeros((48, 64)), tmp_path / "black.png")
    with pytest.raises(StylizeError, match="mask 2 is all black: it selects no pixels"):
        load_masks([good, black], 2, (64, 48))


def test_unreadable_masks_are_named(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    good = _png(_ramp(), tmp_path / "m.png")
    with pytest.raises(StylizeError, match=r"mask 2: notes.txt is not an image"):
        load_masks([good, text], 2, (64, 48))
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)).save(buffer, "PNG")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(StylizeError, match=r"mask 1 .*truncated or corrupt"):
        load_masks([truncated, good], 2, (64, 48))
