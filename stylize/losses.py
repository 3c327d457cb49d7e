"""The loss terms of Gatys, Ecker & Bethge (2015), written as in the paper so they can be checked by hand.

For a layer with N_l filters and M_l positions, F is the (N_l, M_l) matrix of the generated image's
responses, P the photo's, and A the painting's Gram matrix.
"""

from __future__ import annotations

import torch


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _product(x: torch.Tensor) -> torch.Tensor:
    """XᵀX for (B, M, N), returned in fp32 (fp64 for fp64 input).

    bf16 features are exact bf16 numbers, but a bf16 matmul *returns* bf16: 0.13–0.36 % max error against
    fp64 on real features, over the 0.05 % allowed. A bf16 matmul accumulates in fp32, though, and adds its
    `beta · input` there before it rounds (oneDNN's sum post-op; torch's fallback GEMM likewise). So two bf16
    products give the exact Gram: hi = bf16(XᵀX), then lo = bf16(XᵀX − hi), which is rounded relative to a
    number ~2⁸ smaller; hi + lo in fp32 is within ~2⁻¹⁸ of XᵀX (≤ 0.0007 % measured). Twice the bf16 work, but
    it reads only the bf16 features: 1.5× faster at relu1_1 at 512 px than widening them to fp32 for an fp32
    matmul. `python -m stylize.bench --only gram` measures it per layer.
    """
    if x.dtype != torch.bfloat16 or x.device.type != "cpu":
        wide = _at_least_fp32(x)
        return torch.bmm(wide.transpose(1, 2), wide)
    xt = x.transpose(1, 2)
    hi = torch.bmm(xt, x)
    lo = torch.baddbmm(hi, xt, x, beta=-1)
    return lo.float().add_(hi)


class _Gram(torch.autograd.Function):
    """XᵀX for (B, M, N) rows of features: batched matmuls each way.

    Forward: the exact product in fp32, even for bf16 features (see `_product`). Backward:
    dL/dX = X (g + gᵀ), one matmul in the features' dtype (the gradient flows on into bf16 convolutions
    anyway) where autograd's generic rule needs two and an add.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _product(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.bmm(x, (grad + grad.transpose(1, 2)).to(x.dtype))


def positions(features: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) maps as (B, H·W, N) rows, one per position: a view of channels-last maps, no copy."""
    b, n, h, w = features.shape
    return features.permute(0, 2, 3, 1).reshape(b, h * w, n)


def gram_rows(x: torch.Tensor) -> torch.Tensor:
    """G = XᵀX for (B, M, N) rows (see `positions`): shape (B, N, N), in fp32 (or fp64 for fp64 input)."""
    return _Gram.apply(x)


def gram(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ for (B, N, H, W) feature maps: shape (B, N, N), in fp32 (or fp64 for fp64 input)."""
    return gram_rows(positions(features))


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
