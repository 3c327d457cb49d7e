"""Neural patches with a Markov random field prior: Li & Wand (2016), "Combining Markov Random Fields and
Convolutional Neural Networks for Image Synthesis" (CNNMRF).

Instead of matching Gram statistics, every k×k patch Ψ_i(x) of the generated image's feature map is pulled
towards its most similar patch Ψ_NN(i)(s) of the painting's map at the same layer:

    E_s(x) = Σ_i ‖Ψ_i(x) − Ψ_NN(i)(s)‖²,   NN(i) = argmax_j ⟨Ψ_i(x), Ψ_j(s)⟩ / (‖Ψ_i(x)‖ ‖Ψ_j(s)‖)

The matches are a non-differentiable choice: the caller recomputes them every few optimizer steps and holds
them fixed in between, as CNNMRF does. Omitted here: CNNMRF augments the painting with rotated and scaled
copies before extracting patches, and can skip matches under a confidence threshold.

Usage: `bank = patch_bank(style)`, then per re-match `target = mrf_target(bank, nearest_patches(x, bank), x)`
and per evaluation `target_loss(x, target)`; `mrf_loss` does both at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylize.errors import StylizeError


@dataclass(frozen=True)
class PatchBank:
    """The painting's k×k patches at one layer, in its features' dtype.

    `raw` (P, C, k, k) are the loss targets, a view of (k, k, C, P) storage: each of the k² offsets then
    gathers its targets as one contiguous index_select (5× faster than from (P, C, k, k) storage).
    `normalized` (P, C, k, k, contiguous) are the same patches scaled to unit L2 norm, the convolution filters
    for matching (an all-zero patch stays zero: its response is 0, as if uncorrelated).
    """

    raw: torch.Tensor
    normalized: torch.Tensor

    @property
    def patch(self) -> int:
        return self.raw.shape[-1]

    def __len__(self) -> int:
        return self.raw.shape[0]


@dataclass(frozen=True)
class MrfTarget:
    """What the loss needs from one set of matches, so each evaluation costs O(C·H·W).

    With cover(p) the number of patch windows containing pixel p and mean(p) the average of the target
    patches' values laid over p,  Σ_i ‖Ψ_i(x) − T_i‖² = Σ_p cover(p)·‖x(p) − mean(p)‖² + residual,
    where residual (the spread of overlapping targets, ≥ 0) does not depend on x. Both sides are exact;
    the right one has no cancellation between large terms and no per-patch tensors.
    """

    mean: torch.Tensor  # (1, C, H, W), fp32 (fp64 for fp64 features)
    cover: torch.Tensor  # (1, 1, H, W), same dtype
    residual: torch.Tensor  # scalar, same dtype
    count: int  # positions × C × k × k: the loss is a mean over patch elements


def _where(layer: str | None) -> str:
    return f"{layer}'s" if layer else "the layer's"


def _loss_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_map(features: torch.Tensor, patch: int, layer: str | None) -> None:
    if features.dim() != 4 or features.shape[0] != 1:
        raise StylizeError(f"expected one image's (1, C, H, W) feature map, got shape {tuple(features.shape)}")
    if patch < 1:
        raise StylizeError(f"patch size must be at least 1, got {patch}")
    h, w = features.shape[-2:]
    if patch > h or patch > w:
        raise StylizeError(f"patch {patch} is larger than {_where(layer)} {w}×{h} feature map at this size; "
                           "use a smaller patch or a larger size")


def _check_bank(features: torch.Tensor, bank: PatchBank, layer: str | None) -> None:
    if len(bank) == 0:
        raise StylizeError("the style patch bank is empty")
    _check_map(features, bank.patch, layer)
    if features.shape[1] != bank.raw.shape[1]:
        raise StylizeError(f"{_where(layer)} feature map has {features.shape[1]} channels but the style patches "
                           f"have {bank.raw.shape[1]}: build the bank at the same layer")


def patch_bank(style_features: torch.Tensor, patch: int = 3, stride: int = 1, max_patches: int = 4096,
               seed: int = 0, layer: str | None = None) -> PatchBank:
    """All k×k patches of `style_features` (1, C, H, W) at `stride`, at most `max_patches` of them.

    Over the cap, a seeded random subset (kept in raster order) is taken rather than a larger stride: it keeps
    the requested count exactly, samples every sub-stride offset, and cannot alias with periodic textures.
    Only the chosen patches are gathered, so memory is P·C·k² however large the map.
    """
    _check_map(style_features, patch, layer)
    if stride < 1:
        raise StylizeError(f"patch stride must be at least 1, got {stride}")
    if max_patches < 1:
        raise StylizeError(f"max_patches must be at least 1, got {max_patches}")
    f = style_features.detach()[0]
    h, w = f.shape[-2:]
    ys = torch.arange(0, h - patch + 1, stride)
    xs = torch.arange(0, w - patch + 1, stride)
    chosen = torch.arange(len(ys) * len(xs))
    if len(chosen) > max_patches:
        gen = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(chosen), generator=gen)[:max_patches].sort().values
    offsets = torch.arange(patch)
    rows = ys[chosen // len(xs)].view(-1, 1, 1) + offsets.view(1, -1, 1)
    cols = xs[chosen % len(xs)].view(-1, 1, 1) + offsets.view(1, 1, -1)
    pixels = f.permute(1, 2, 0).reshape(h * w, -1)  # (H·W, C): a view for channels-last maps
    patches = pixels.index_select(0, (rows * w + cols).view(-1).to(f.device)).view(-1, patch, patch, f.shape[0])
    raw = patches.permute(1, 2, 3, 0).contiguous().permute(3, 2, 0, 1)  # (k, k, C, P) storage, (P, C, k, k) view
    norms = patches.to(_loss_dtype(patches)).flatten(1).norm(dim=1).clamp_min(1e-12)
    normalized = (patches / norms.view(-1, 1, 1, 1)).to(patches.dtype).permute(0, 3, 1, 2).contiguous()
    return PatchBank(raw=raw, normalized=normalized)


@torch.no_grad()
def nearest_patches(features: torch.Tensor, bank: PatchBank, chunk: int = 1024,
                    layer: str | None = None) -> torch.Tensor:
    """For each valid k×k window of `features` (stride 1), the bank index with the highest normalized
    cross-correlation: an int64 tensor of shape (H − k + 1, W − k + 1).

    The response is a convolution with the normalized style patches. The window's own norm is the same for
    every bank patch, so dividing by it cannot change the argmax and is skipped. The bank is scanned `chunk`
    patches at a time with a running max, so only a (chunk, H', W') response exists at once. Ties go to the
    lowest index at any chunk size: argmax picks the first maximum within a chunk and a later chunk must be
    strictly better to take over. Runs in the features' dtype: bf16 is faster on AVX512-BF16 CPUs, and its
    coarser responses tie more often. With 4096 patches, 1 thread, channels-last: relu3_1 of a 512×384
    input 980 ms fp32 / 600 ms bf16, relu4_1 310 / 180 ms (chunk size makes no measurable difference).
    """
    _check_bank(features, bank, layer)
    if chunk < 1:
        raise StylizeError(f"chunk must be at least 1, got {chunk}")
    filters = bank.normalized.to(device=features.device, dtype=features.dtype)
    best_value = best_index = None
    for start in range(0, len(bank), chunk):
        response = F.conv2d(features, filters[start:start + chunk])[0]  # (n, H', W')
        index = response.argmax(dim=0, keepdim=True)
        value = response.gather(0, index)[0]
        index = index[0] + start
        if best_value is None:
            best_value, best_index = value, index
        else:
            better = value > best_value
            best_value = torch.where(better, value, best_value)
            best_index = torch.where(better, index, best_index)
    return best_index


def _check_matches(features: torch.Tensor, bank: PatchBank, matches: torch.Tensor) -> None:
    k = bank.patch
    expected = (features.shape[-2] - k + 1, features.shape[-1] - k + 1)
    if tuple(matches.shape) != expected:
        raise StylizeError(f"matches have shape {tuple(matches.shape)}, expected {expected} for a "
                           f"{tuple(features.shape[-2:])} map and patch {k}: re-match after resizing")


@torch.no_grad()
def mrf_target(bank: PatchBank, matches: torch.Tensor, features: torch.Tensor,
               layer: str | None = None) -> MrfTarget:
    """Lay the matched style patches over a map shaped like `features`: once per re-match.

    Works one of the k² offsets at a time, so the largest temporaries are (C, H', W') and the bank in the
    loss dtype (a copy only for bf16 banks), never the (H'·W', C, k, k) stack of target patches.
    """
    _check_bank(features, bank, layer)
    _check_matches(features, bank, matches)
    k = bank.patch
    dtype = _loss_dtype(features)
    _, c, h, w = features.shape
    hp, wp = matches.shape
    flat = matches.reshape(-1).to(bank.raw.device)
    # (k, k, C, P), contiguous for banks from `patch_bank`; converted up front: bf16 gathers are ~3× slower
    by_offset = bank.raw.permute(2, 3, 1, 0).to(dtype)

    def laid(dy: int, dx: int) -> torch.Tensor:
        """Element (dy, dx) of every position's target patch: (C, H', W')."""
        return by_offset[dy, dx].index_select(1, flat).to(features.device).view(c, hp, wp)

    total = torch.zeros(c, h, w, dtype=dtype, device=features.device)
    cover = torch.zeros(1, h, w, dtype=dtype, device=features.device)
    for dy in range(k):
        for dx in range(k):
            total[:, dy:dy + hp, dx:dx + wp] += laid(dy, dx)
            cover[:, dy:dy + hp, dx:dx + wp] += 1
    mean = total / cover
    residual = torch.zeros((), dtype=dtype, device=features.device)
    for dy in range(k):
        for dx in range(k):
            residual += (laid(dy, dx) - mean[:, dy:dy + hp, dx:dx + wp]).pow(2).sum()
    channels_last = features.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return MrfTarget(mean=mean[None].contiguous(memory_format=layout), cover=cover[None], residual=residual,
                     count=hp * wp * c * k * k)


def target_loss(features: torch.Tensor, target: MrfTarget) -> torch.Tensor:
    """The MRF loss against a prepared target: Σ_i ‖Ψ_i(x) − T_i‖² / (positions · C · k²), in fp32 or fp64.

    Measured forward + backward, 3×3 patches, 4096-patch bank, channels-last, 1 thread of a shared AMD EPYC
    Zen 4 (best of 3, noisy): relu3_1 of a 512×384 input (256 × 128×96) this form 3.5 ms fp32 / 4.3 ms bf16,
    plus `mrf_target` 60 / 58 ms once per re-match; the direct form (gather the (positions, C·k²) targets,
    subtract F.unfold(x)) 700 / 630 ms per evaluation. relu4_1 (512 × 64×48): 1.3 / 1.9 ms (+ 33 / 56 ms)
    against 300 / 280 ms.
    """
    x = features.to(_loss_dtype(features))
    # Channels summed before weighting: broadcasting `cover` over channels is 3× slower on channels-last maps.
    return ((x - target.mean).pow(2).sum(1, keepdim=True) * target.cover).sum().add(target.residual) / target.count


def mrf_loss(features: torch.Tensor, bank: PatchBank, matches: torch.Tensor,
             layer: str | None = None) -> torch.Tensor:
    """Σ_i ‖Ψ_i(x) − Ψ_NN(i)(s)‖² over all stride-1 windows, divided by (positions · C · k²): the mean squared
    difference per patch element, so one strength means the same across sizes and layers.

    Differentiable w.r.t. `features`; `matches` come from `nearest_patches` and are held fixed. When the
    matches are reused for several evaluations, build `mrf_target` once and call `target_loss` instead.
    """
    return target_loss(features, mrf_target(bank, matches, features, layer))
