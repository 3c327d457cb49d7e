"""The loss terms of Gatys, Ecker & Bethge (2015), written as in the paper so they can be checked by hand.

For a layer with N_l filters and M_l positions, F is the (N_l, M_l) matrix of the generated image's
responses, P the photo's, and A the painting's Gram matrix.
"""

from __future__ import annotations

import torch


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class _Gram(torch.autograd.Function):
    """F Fᵀ computed as XᵀX on the (H·W, N) view of channels-last maps: no copy, one matmul each way.

    The backward is dL/dX = X (g + gᵀ): one matmul where autograd's generic rule needs two and an add.
    The matmul runs in the features' dtype: bf16 features (oneDNN accumulates in fp32) skip two full-size
    conversions and are ~2.5× faster than fp32 on AVX512-BF16 CPUs; the result is returned in fp32.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        b, n, h, w = features.shape
        x = features.permute(0, 2, 3, 1).reshape(b, h * w, n)  # a view when channels-last
        ctx.save_for_backward(x)
        ctx.shape = features.shape
        g = torch.stack([xi.T @ xi for xi in x])
        return g if g.dtype == torch.float64 else g.float()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        b, n, h, w = ctx.shape
        sym = (grad + grad.transpose(1, 2)).to(x.dtype)
        grad_x = torch.stack([xi @ si for xi, si in zip(x, sym)])
        return grad_x.view(b, h, w, n).permute(0, 3, 1, 2)


def gram(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ for (B, N, H, W) feature maps: shape (B, N, N), in fp32 (or fp64 for fp64 input)."""
    return _Gram.apply(features)


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
