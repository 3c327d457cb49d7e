"""The loss terms of Gatys, Ecker & Bethge (2015), written as in the paper so they can be checked by hand.

For a layer with N_l filters and M_l positions, F is the (N_l, M_l) matrix of the generated image's
responses, P the photo's, and A the painting's Gram matrix.
"""

from __future__ import annotations

import torch


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class _Gram(torch.autograd.Function):
    """F Fᵀ computed as XᵀX on the (H·W, N) view of channels-last maps: no copy, one batched matmul each way.

    Forward: the product accumulates and is returned in fp32 even for bf16 features (a bf16 result is rounded
    to 8 bits of mantissa: 0.36 % max relative error against fp64, where fp32 output keeps it under 0.05 %;
    `python -m stylize.bench` measures both). Backward: dL/dX = X (g + gᵀ), one matmul in the features' dtype
    (the gradient flows on into bf16 convolutions anyway) where autograd's generic rule needs two and an add.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        b, n, h, w = features.shape
        x = features.permute(0, 2, 3, 1).reshape(b, h * w, n)  # a view when channels-last
        ctx.save_for_backward(x)
        ctx.shape = features.shape
        wide = _at_least_fp32(x)
        return torch.bmm(wide.transpose(1, 2), wide)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        b, n, h, w = ctx.shape
        sym = (grad + grad.transpose(1, 2)).to(x.dtype)
        return torch.bmm(x, sym).view(b, h, w, n).permute(0, 3, 1, 2)


def gram(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ for (B, N, H, W) feature maps: shape (B, N, N), in fp32 (or fp64 for fp64 input)."""
    return _Gram.apply(features)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½ Σ (F − P)² per batch item, eq. 1 of the paper: shape (B,)."""
    return 0.5 * (_at_least_fp32(features) - target).pow(2).flatten(1).sum(1)


def style_layer_loss(gram_matrix: torch.Tensor, target_gram: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """E_l = 1 / (4 N_l² M_l²) Σ (G − A)² per batch item, eq. 4 of the paper: shape (B,)."""
    return (gram_matrix - target_gram).pow(2).flatten(1).sum(1) / (4.0 * n * n * m * m)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (horizontal plus vertical) per item: size-independent."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).flatten(1).mean(1) + dy.pow(2).flatten(1).mean(1)
