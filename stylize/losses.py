"""The loss terms of Gatys, Ecker & Bethge (2015), written as in the paper so they can be checked by hand.

For a layer with N_l filters and M_l positions, F is the (N_l, M_l) matrix of the generated image's
responses, P the photo's, and A the painting's Gram matrix.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


@contextmanager
def _bf16_products():
    """fp32 matmuls done by oneDNN with bf16 multiplies and fp32 accumulation and output (CPU only).

    Exact for inputs that are bf16 numbers held in fp32, which is all `_product` gives it. The setting is
    process-wide, so it is held only around that one matmul.
    """
    matmul = torch.backends.mkldnn.matmul
    saved = matmul.fp32_precision
    matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        matmul.fp32_precision = saved


_scratch = threading.local()  # per thread: fp32 buffers by shape, reused step after step
SCRATCH_BYTES = 256 * 2**20  # what the buffers may keep per thread between runs (one 512 px run needs ~95 MB)


def _widened(x: torch.Tensor) -> torch.Tensor:
    """x in fp32, written into a buffer kept per shape: a fresh 50 MB tensor every step (relu1_1 at 512 px)
    costs ~10 ms of page faults, 9× the copy itself. The most recent shapes are kept, up to SCRATCH_BYTES."""
    buffers: dict = _scratch.__dict__.setdefault("buffers", {})
    key = (tuple(x.shape), x.device)
    buf = buffers.pop(key, None)
    if buf is None:
        buf = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    buffers[key] = buf  # most recent last
    while sum(b.numel() * 4 for b in buffers.values()) > SCRATCH_BYTES:
        buffers.pop(next(iter(buffers)))  # oldest first (the new one too, if it alone is larger)
    return buf.copy_(x)


def _product(x: torch.Tensor) -> torch.Tensor:
    """XᵀX for (B, M, N), returned in fp32 (fp64 for fp64 input).

    bf16 features are exact bf16 numbers, but a bf16 matmul *returns* bf16: 0.13–0.33 % max error against
    fp64 on real features, and splitting the positions into chunks summed in fp32 does not bring sparse
    features (a photo's) reliably under 0.05 %. So the features are widened to fp32 (exact) and, on a CPU,
    multiplied by oneDNN in bf16 with fp32 accumulation and an fp32 result: the exact product (≤ 0.0004 %)
    at ~2.3× the speed of an fp32 matmul. `python -m stylize.bench --only gram` measures it per layer.
    """
    if x.dtype != torch.bfloat16 or x.device.type != "cpu":
        wide = _at_least_fp32(x)
        return torch.bmm(wide.transpose(1, 2), wide)
    wide = _widened(x)
    with _bf16_products():
        return torch.bmm(wide.transpose(1, 2), wide)


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
