"""The loss terms of Gatys, Ecker & Bethge (2015), written as in the paper so they can be checked by hand.

For a layer with N_l filters and M_l positions, F is the (N_l, M_l) matrix of the generated image's
responses, P the photo's, and A the painting's Gram matrix.
"""

from __future__ import annotations

import torch


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


GRAM_CHUNKS = 128  # bf16 partial Grams summed in fp32; see _product


def _product(x: torch.Tensor) -> torch.Tensor:
    """XᵀX for (B, M, N), returned in fp32 (fp64 for fp64 input) within 0.05 % of the exact product.

    bf16 features are exact bf16 numbers, and the matmul accumulates in fp32; only its bf16 *result* is
    coarse (0.13–0.29 % max error against fp64 on real features). Split into 128 chunks of positions, each
    chunk's rounding error is a 128th of the total's size and the errors add like a random walk (0.02–0.03 %),
    at the speed of one bf16 matmul (relu1_1 at 512 px: 2.7 ms, against 21 ms converting to fp32 first).
    Where there are few positions per channel (deep layers, M < 64 N) the chunks' N×N outputs would cost more
    than they save, and the features are converted to fp32 instead. `python -m stylize.bench` measures both.
    """
    b, m, n = x.shape
    if x.dtype != torch.bfloat16 or m < 64 * n:
        wide = _at_least_fp32(x)
        return torch.bmm(wide.transpose(1, 2), wide)
    rows = m // GRAM_CHUNKS
    head = x[:, : rows * GRAM_CHUNKS].reshape(b * GRAM_CHUNKS, rows, n)
    g = torch.bmm(head.transpose(1, 2), head).view(b, GRAM_CHUNKS, n, n).float().sum(1)
    if rows * GRAM_CHUNKS < m:
        tail = x[:, rows * GRAM_CHUNKS:].float()
        g = g + torch.bmm(tail.transpose(1, 2), tail)
    return g


class _Gram(torch.autograd.Function):
    """F Fᵀ computed as XᵀX on the (H·W, N) view of channels-last maps: no copy, batched matmuls each way.

    Forward: fp32 result within 0.05 % of exact even for bf16 features (see `_product`). Backward:
    dL/dX = X (g + gᵀ), one matmul in the features' dtype (the gradient flows on into bf16 convolutions
    anyway) where autograd's generic rule needs two and an add.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        b, n, h, w = features.shape
        x = features.permute(0, 2, 3, 1).reshape(b, h * w, n)  # a view when channels-last
        ctx.save_for_backward(x)
        ctx.shape = features.shape
        return _product(x)

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
