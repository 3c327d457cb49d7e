"""The loss terms of Gatys, Ecker & Bethge (2015), written as in the paper so they can be checked by hand.

For a layer with N_l filters and M_l positions, F is the (N_l, M_l) matrix of the generated image's
responses, P the photo's, and A the painting's Gram matrix.
"""

from __future__ import annotations

import torch


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def transposed_product(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """AᵀB for (B, M, N) and (B, M, K) rows, or (M, N) and (M, K) (AᵀA without B), in fp32 (fp64 for fp64 input).

    bf16 features are exact bf16 numbers, but a bf16 matmul *returns* bf16: 0.13–0.36 % max error against
    fp64 on real features, over the 0.05 % allowed. A bf16 matmul accumulates in fp32, though, and adds its
    `beta · input` there before it rounds (oneDNN's sum post-op; torch's fallback GEMM likewise). So two bf16
    products give the exact Gram: hi = bf16(AᵀB), then lo = bf16(AᵀB − hi), which is rounded relative to a
    number ~2⁸ smaller; hi + lo in fp32 is within ~2⁻¹⁸ of AᵀB (≤ 0.0007 % measured). Twice the bf16 work, but
    it reads only the bf16 features: 1.5× faster at relu1_1 at 512 px than widening them to fp32 for an fp32
    matmul. `python -m benchmarks.bench --only gram` measures it per layer.
    """
    b = a if b is None else b
    batched = a.dim() == 3  # bmm and mm, not `@`: matmul took a 10× slower path for (1, N, M) @ (1, M, N)
    if a.dtype != torch.bfloat16 or a.device.type != "cpu":
        wide = _at_least_fp32(a)
        return (torch.bmm if batched else torch.mm)(wide.transpose(-1, -2), wide if b is a else _at_least_fp32(b))
    at = a.transpose(-1, -2)
    hi = torch.bmm(at, b) if batched else torch.mm(at, b)
    lo = torch.baddbmm(hi, at, b, beta=-1) if batched else torch.addmm(hi, at, b, beta=-1)
    return lo.float().add_(hi)


def gram_backward(rows: torch.Tensor, grad: torch.Tensor, through: torch.Tensor | None = None) -> torch.Tensor:
    """dL/dX = X (g + gᵀ) for G = XᵀX, in the features' dtype (the gradient flows on into bf16 convolutions
    anyway): one matmul, where autograd's generic rule needs two and an add. `through` (rows like X), if
    given, is added in the same matmul."""
    sym = (grad + grad.transpose(1, 2)).to(rows.dtype)
    return torch.bmm(rows, sym) if through is None else torch.baddbmm(through, rows, sym)


class _Gram(torch.autograd.Function):
    """XᵀX for (B, M, N) rows of features: exact in fp32 (`transposed_product`) forward, one matmul back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return transposed_product(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return gram_backward(x, grad)


class _GramTap(torch.autograd.Function):
    """A network's (B, N, H, W) channels-last map passed on unchanged, and its Gram matrix.

    Where a style layer's map feeds both its Gram and the next convolution, autograd computes the Gram's
    gradient as a new map and then adds the two maps: at relu1_1 at 512 px a 25 MB sum, read twice and
    written. Here the gradient from the rest of the network comes in and the Gram's is added to it within
    the matmul that computes it (a baddbmm): a 512 px bf16 step 7–13 ms faster (Intel Xeon with AMX).
    """

    @staticmethod
    def forward(ctx, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)  # None, not zeros, where an output is unused
        ctx.save_for_backward(maps)
        return maps.view_as(maps), transposed_product(positions(maps))

    @staticmethod
    def backward(ctx, through: torch.Tensor | None, grad: torch.Tensor | None) -> torch.Tensor | None:
        (maps,) = ctx.saved_tensors
        if grad is None:
            return through
        b, n, h, w = maps.shape
        rows = gram_backward(positions(maps), grad, None if through is None else positions(through))
        return rows.view(b, h, w, n).permute(0, 3, 1, 2)  # channels-last, like the maps


def gram_tap(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps, G): use the returned maps downstream and G = F Fᵀ as `gram` gives it; the backward of both
    is one matmul (see `_GramTap`)."""
    return _GramTap.apply(maps)


def positions(features: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) maps as (B, H·W, N) rows, one per position: a view of channels-last maps, no copy."""
    b, n, h, w = features.shape
    return features.permute(0, 2, 3, 1).reshape(b, h * w, n)


def gram(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ for (B, N, H, W) feature maps: shape (B, N, N), in fp32 (or fp64 for fp64 input)."""
    return _Gram.apply(positions(features))


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½ Σ (F − P)² per batch item, eq. 1 of the paper: shape (B,).

    Summed over dimensions, not flattened: flattening channels-last maps would copy them, and so would the
    gradient on its way back."""
    diff = _at_least_fp32(features) - target
    return 0.5 * diff.pow(2).sum(tuple(range(1, diff.dim())))


def style_layer_loss(gram_matrix: torch.Tensor, target_gram: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """E_l = 1 / (4 N_l² M_l²) Σ (G − A)² per batch item, eq. 4 of the paper: shape (B,)."""
    return (gram_matrix - target_gram).pow(2).flatten(1).sum(1) / (4.0 * n * n * m * m)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (horizontal plus vertical) per item: size-independent."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).flatten(1).mean(1) + dy.pow(2).flatten(1).mean(1)


# ---- calm: smoothness where the photo is calm ---------------------------------------------------

CALM_DETAIL = 3.0  # grey levels of the photo's local detail at which a pixel stops counting as calm


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), edges reflected (as numpy's 'reflect'), radius 3σ."""
    radius = max(1, round(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = image.shape[1]
    out = torch.nn.functional.pad(image, (radius, radius, 0, 0), mode="reflect")
    out = torch.nn.functional.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = torch.nn.functional.pad(out, (0, 0, radius, radius), mode="reflect")
    return torch.nn.functional.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def local_detail(rgb: torch.Tensor) -> torch.Tensor:
    """How busy the photo is around each pixel, (B, 1, H, W) in grey levels: its luma's fine detail
    |Y − G₂·Y|, averaged over a Gaussian window of σ = 4 px. A clear sky or a plain wall measures ~0–1."""
    y = 255.0 * (0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3])
    return gaussian_blur((y - gaussian_blur(y, 2.0)).abs(), 4.0)


def calm_weights(rgb: torch.Tensor) -> torch.Tensor:
    """Per pixel, how calm the photo is (B, 1, H, W): 1 where it has no detail, falling to 0 at CALM_DETAIL."""
    return (1.0 - local_detail(rgb) / CALM_DETAIL).clamp(0.0, 1.0)


def calm_loss(image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`tv_loss` weighted per pixel by the photo's calm (`calm_weights`) per item: smoothness asked only where
    the photo is smooth, so texture stays wherever the photo has some."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2) * weights[..., :, 1:]
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2) * weights[..., 1:, :]
    return dx.flatten(1).mean(1) + dy.flatten(1).mean(1)
