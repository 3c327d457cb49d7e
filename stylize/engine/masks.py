"""Spatial control: which style goes where, by guided Gram matrices (Gatys et al. 2017, section 4.1).

Each style image comes with a grey mask over the output (white: this style applies here). At every style
layer the mask is brought to the layer's resolution and the Gram matrix is taken over the masked region
only, normalized by the region's area, so each region matches its own style's statistics and a small
region is not drowned by a large one. Pixels that no mask covers get no style loss: they keep the photo.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from stylize import images
from stylize.errors import StylizeError
from stylize.images import ImageSource

from .losses import gram_backward, positions, transposed_product
from .vgg import FEATURE_LAYERS

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601, as images.rgb_to_yiq; sums to 1
BLACK = 2.0 / 255.0  # a mask no brighter than this anywhere (JPEG noise on black) selects nothing
FLAT_COLOUR = 8.0 / 255.0  # visible pixels within this of each other count as one brush colour
ASPECT_TOLERANCE = 0.01


# ---- loading -----------------------------------------------------------------------------------

def load_masks(sources: list[ImageSource], count: int, size: tuple[int, int]) -> tuple[torch.Tensor, list[str]]:
    """One mask per style as a (count, 1, H, W) float32 tensor in [0, 1] at `size` (width, height), and notices.

    Every check (how many, readable, not all black) runs before any optimization, as for images. A mask whose
    shape differs from the output's is stretched to fit (the user drew it for this photo), with a notice.
    """
    if len(sources) != count:
        raise StylizeError(f"{len(sources)} mask{'s' if len(sources) != 1 else ''} for {count} "
                           f"style{'s' if count != 1 else ''}: give one mask per style")
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"output size must be positive, got {size}")
    if not sources:
        return torch.zeros(0, 1, height, width), []
    opened = [_open_mask(source, i) for i, source in enumerate(sources, 1)]  # headers first: fail fast
    masks, notices = [], []
    for i, img in enumerate(opened, 1):
        grey = _decode(img, i)
        mh, mw = grey.shape  # after EXIF rotation
        if abs((mw / mh) / (width / height) - 1.0) > ASPECT_TOLERANCE:
            notices.append(f"mask {i} is {mw}×{mh}, the photo {width}×{height}: stretched to fit")
        mask = _resize(grey, size)
        if mask.max() <= BLACK:
            raise StylizeError(f"mask {i} is all black: it selects no pixels")
        masks.append(torch.from_numpy(mask))
    return torch.stack(masks).unsqueeze(1), notices


def read_mask(source: ImageSource, what: str = "the mask", max_bytes: int | None = None,
              coverage: bool = False) -> np.ndarray:
    """One mask as an (H, W) float32 array in [0, 1], with `load_masks`' checks (readable, not a pixel bomb,
    not empty, at most `max_bytes`) before anything is decoded; errors name it as `what`.

    With `coverage`, the image is a painted layer (brush strokes on a transparent canvas, as an image
    editor exports them): 1 wherever anything is painted (alpha > 0), whatever the colour, 0 elsewhere.
    """
    img = _open_mask(source, what, max_bytes)
    if not coverage:
        return _decode(img, what)
    try:
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or img.mode == "P" and "transparency" in img.info:
            alpha = np.asarray(img.convert("RGBA"), dtype=np.uint8)[..., 3]
            return (alpha > 0).astype(np.float32)
        return (mask_values(img) > BLACK).astype(np.float32)  # no transparency: whatever is not black
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise StylizeError(f"{what} is truncated or corrupt ({exc})") from exc


def _open_mask(source: ImageSource, what: int | str, max_bytes: int | None = None) -> Image.Image:
    """The header checks of `images.load_image` (readable, not a pixel bomb, not empty), naming the mask."""
    what = f"mask {what}" if isinstance(what, int) else what
    try:
        img = images._open(source, max_bytes)
    except StylizeError as exc:
        raise StylizeError(f"{what}: {exc}") from exc
    width, height = img.size
    if width * height > images.MAX_PIXELS:
        raise StylizeError(f"{what} is {width}×{height}: more than the "
                           f"{images.MAX_PIXELS // 1_000_000} MP allowed")
    if width < 1 or height < 1:
        raise StylizeError(f"{what} is empty (0 pixels)")
    return img


def _decode(img: Image.Image, what: int | str) -> np.ndarray:
    what = f"mask {what}" if isinstance(what, int) else what
    try:
        img.seek(0)
        img.load()
        return mask_values(ImageOps.exif_transpose(img))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise StylizeError(f"{what} is truncated or corrupt ({exc})") from exc


def mask_values(img: Image.Image) -> np.ndarray:
    """An (H, W) float32 array in [0, 1]: the image's luma, or its alpha when that is what was drawn.

    With transparency, a layer whose visible pixels are one flat colour (brush strokes in any colour on a
    transparent canvas, as paint tools export them) is its alpha; anything else is composited on black, so
    transparent means "not here", and its luma taken. Without transparency the mask is the luma.
    """
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or img.mode == "P" and "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, alpha = rgba[..., :3], rgba[..., 3]
        if alpha.min() < 1.0:
            visible = rgb[alpha > 0]
            if visible.size and float((visible.max(0) - visible.min(0)).max()) <= FLAT_COLOUR:
                return np.ascontiguousarray(alpha)
            return (rgb @ LUMA) * alpha
        return rgb @ LUMA
    if img.mode == "L":
        return np.asarray(img, dtype=np.float32) / 255.0
    return np.asarray(images._to_rgb(img), dtype=np.float32) / 255.0 @ LUMA


def _resize(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear on 32-bit floats: Pillow widens the filter when shrinking (an area average, no aliasing), and
    its weights are non-negative, so values stay in [0, 1] and edges stay as soft as drawn."""
    img = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32))
    if img.size != size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


# ---- combining and downsampling ----------------------------------------------------------------

def normalize_masks(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Style weights (R, 1, H, W) that sum to at most 1 at each pixel, and the photo's share (1, 1, H, W).

    Where masks overlap to more than 1 they are divided by their sum, so two styles share a pixel instead of
    each claiming all of it; elsewhere they are unchanged, so soft (feathered) edges stay soft. The photo
    keeps 1 − Σ weights: 1 where no mask reaches, where only the content loss pulls.
    """
    total = masks.sum(0, keepdim=True)
    weights = masks / total.clamp_min(1.0)
    keep = (1.0 - weights.sum(0, keepdim=True)).clamp(0.0, 1.0)
    return weights, keep


def block_of(layer: str) -> int:
    """The VGG block a layer belongs to: relu3_1 -> 3 (the number of pools before it, plus one)."""
    match = re.fullmatch(r"(?:relu|conv)(\d)_\d", layer)
    if not match or layer not in FEATURE_LAYERS:
        raise KeyError(f"unknown layer {layer!r}")
    return int(match.group(1))


def layer_masks(masks: torch.Tensor, layers: Iterable[str], pooling: str = "avg") -> dict[str, torch.Tensor]:
    """Each (R, 1, H, W) mask at every layer's resolution: pooled 2×2 with stride 2 once per block before it.

    This is the network's own pooling, not a resize: it gives exactly the feature maps' sizes, odd ones
    included (both floor: 37 -> 18 -> 9), and position p of block b covers exactly the 2^(b−1)-pixel square
    pooled into it, where a resize to 18 pixels would sample at a stride of 37/18 and drift off the
    features towards the far edge. With "avg" (the default, right for either network pooling) a position
    gets the fraction of its square inside the region, so soft edges stay soft and the mask's mean is kept;
    "max" lets a position count fully if any of its square is inside, growing regions by a block per level.
    """
    if pooling not in ("avg", "max"):
        raise ValueError(f"pooling must be 'avg' or 'max' (got {pooling!r})")
    pool = F.avg_pool2d if pooling == "avg" else F.max_pool2d
    blocks = {layer: block_of(layer) for layer in layers}
    pooled = [masks]
    for _ in range(max(blocks.values(), default=1) - 1):
        pooled.append(pool(pooled[-1], 2))
    return {layer: pooled[b - 1] for layer, b in blocks.items()}


# ---- guided Gram matrices ----------------------------------------------------------------------

class _WeightedGram(torch.autograd.Function):
    """G_r = Σ_p w_rp f_p f_pᵀ = (w_r ⊙ F)ᵀ F for R weight maps over (B, M, N) rows of features, B = 1 or R.

    The weight goes on one side only, so the gradient is dF = Σ_r (w_r ⊙ F)(g_r + g_rᵀ): the weighted rows the
    forward made, times a small matrix. With one image (B = 1) the R weighted copies are laid out side by side,
    (M, R·N), and each way is one matmul over all regions. Weighting √w on both sides instead (a symmetric
    product) left autograd to scale R gradient maps by √w and sum them, most of it a slow reduction over the
    region axis (README, Performance). Soft weights are rounded to the features' dtype (bf16: 2⁻⁹), as √w was.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """rows (B, M, N), weights (R, M) in the rows' dtype: returns (R, N, N) in fp32 (fp64 for fp64)."""
        r, (b, m, n) = weights.shape[0], rows.shape
        if b == 1:  # (M, R, N): region r's weighted rows are columns r·N … r·N + N − 1
            weighted = torch.empty(m, r, n, dtype=rows.dtype, device=rows.device)
            torch.mul(rows[0].unsqueeze(1), weights.t().unsqueeze(2), out=weighted)
            weighted = weighted.view(m, r * n)
            gram = transposed_product(weighted, rows[0]).view(r, n, n)
        else:
            weighted = rows * weights.unsqueeze(2)
            gram = transposed_product(weighted, rows)
        ctx.save_for_backward(weighted)
        ctx.shape = rows.shape
        return gram

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (weighted,) = ctx.saved_tensors
        b, m, n = ctx.shape
        if b == 1:  # all regions in one matmul: (M, R·N) × (R·N, N), each region's g + gᵀ stacked
            sym = (grad + grad.transpose(1, 2)).to(weighted.dtype)
            return torch.mm(weighted, sym.reshape(-1, n)).view(1, m, n), None
        return gram_backward(weighted, grad), None


def _weighted_gram(features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_p m_p f_p f_pᵀ (B, N, N) and the area Σ_p m_p (B, 1, 1), both fp32 (fp64 for fp64 features)."""
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != features.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match features {tuple(features.shape)}: "
                         "expected (B, 1, H, W) at the layer's resolution (see layer_masks)")
    if 1 not in (features.shape[0], mask.shape[0]) and features.shape[0] != mask.shape[0]:
        raise ValueError(f"{features.shape[0]} feature maps for {mask.shape[0]} masks")
    rows = positions(features)
    weights = mask.clamp_min(0).to(features.dtype).expand(max(mask.shape[0], features.shape[0]), -1, -1, -1)
    g = _WeightedGram.apply(rows, positions(weights).squeeze(2))  # weight 1 exactly: an all-ones mask gives gram(F)
    area = mask.to(g.dtype).sum((1, 2, 3)).view(-1, 1, 1)
    return g, area


def guided_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """G = Σ_p m_p f_p f_pᵀ / Σ_p m_p: the Gram matrix over the mask's region, per unit of its area.

    features (B, N, H, W), any dtype and layout (bf16 channels-last stays so); mask (B, 1, H, W) at that
    resolution, either batch may be 1 and broadcast. Returns (B, N, N) in fp32 (fp64 for fp64 features).
    An all-ones mask gives gram(F) / M, the engine's size-independent style target, so masked and unmasked
    Grams compare directly. The Gram is weighted by m (on one side of the product: the same number as √m on
    both), where Gatys et al. weight F by m (the Gram by m²): for binary masks the two agree, but only weight m
    makes G a weighted *mean* of f fᵀ, so a uniformly grey mask gives the same statistics as a white one and a
    feathered edge pixel shared 50/50 by two styles counts half to each, as `normalize_masks` intends (m² would
    count it ¼).
    An empty mask gives zeros, not NaN.
    """
    g, area = _weighted_gram(features, mask)
    return g / area.clamp_min(torch.finfo(g.dtype).tiny)


def guided_style_loss(features: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    """E_r = (Σm / M) · 1/(4 N²) Σ (G_r − T_r)² per batch item r (shape (B,)), G_r = guided_gram.

    `target` (B, N, N) or (N, N) is the style's guided_gram (or gram / M_s without a style mask). The second
    factor is losses.style_layer_loss written with the size-normalized Grams the engine already uses; the
    area fraction Σm / M makes every pixel's gradient the same as without masks: one full mask gives the
    unmasked loss, and regions tiling the image split it by area, so one strength means the same thing
    with or without masks and a region's style is as strong as if it filled the image.

    Computed as Σ (F diag(m) Fᵀ − T·Σm)² / (4 N² · Σm · M), the denominator in fp64 as Python computes
    style_layer_loss's: an all-ones mask gives the engine's unmasked term bit for bit.
    """
    g, area = _weighted_gram(features, mask)
    m = features.shape[-2] * features.shape[-1]
    wide = torch.float32 if g.device.type == "mps" else torch.float64  # MPS has no fp64
    denominator = 4.0 * n * n * area.view(-1).to(wide).clamp_min(torch.finfo(wide).tiny) * m
    return (g - target * area).pow(2).sum((1, 2)) / denominator.to(g.dtype)
