"""The loss terms of Gatys, Ecker & Bethge (2015), written as in the paper so they can be checked by hand.

For a layer with N_l filters and M_l positions, F is the (N_l, M_l) matrix of the generated image's
responses, P the photo's, and A the painting's Gram matrix.
"""

from __future__ import annotations

import torch


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class _Gram(torch.autograd.Function):
    """F Fᵀ with a one-matmul backward: dL/dF = (g + gᵀ) F, where autograd's generic rule needs two and an add."""

    @staticmethod
    def forward(ctx, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        return torch.bmm(f, f.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), f)


def gram(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ for (B, N, H, W) feature maps, in fp32 whatever the features' dtype: shape (B, N, N)."""
    return _Gram.apply(_at_least_fp32(features.flatten(2)))


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½ Σ (F − P)², eq. 1 of the paper."""
    return 0.5 * (_at_least_fp32(features) - target).pow(2).sum()


def style_layer_loss(gram_matrix: torch.Tensor, target_gram: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """E_l = 1 / (4 N_l² M_l²) Σ (G − A)², eq. 4 of the paper."""
    return (gram_matrix - target_gram).pow(2).sum() / (4.0 * n * n * m * m)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (horizontal plus vertical): size-independent."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()
