"""How a result looks where the photo is calm: the lattice measure (issue #20).

A flat region of the photo (sky, wall, water) should come out as paint, not as a regular grid of dots. Three
numbers, all on the result's 8-bit pixels (0–255), all restricted to where the photo itself is flat:

- `flat_mask(photo)`: where the photo is calm. Its luma's local detail (|Y − G₂·Y|, Gaussian σ = 2 px, averaged
  over a Gaussian window σ = 4 px) is below `FLAT_DETAIL` (1.5 grey levels); a `BORDER` of 8 px is left out.
- `highpass(result, mask)`: mean squared difference from a Gaussian blur (σ = 1.5 px) over the flat pixels,
  averaged over R, G, B: the issue's measure of the sky band, in (grey levels)². It sees all fine texture,
  periodic or not.
- `lattice(result, mask)`: the *periodic* part of the fine texture. The result's high-pass residual (x − G₃·x,
  periods up to ~20 px kept) is cut into 32 × 32 tiles (stride 16) that lie in the flat region (≥ 90 % of
  their pixels flat); their power spectra (per channel, no window: a period dividing 32 px falls on exact
  bins) are averaged, and what stands above the spectrum's own local level (the median of the 5 × 5
  neighbouring bins) is summed over periods of 2–16 px, in (grey levels)² per pixel like `highpass`. Power
  spectra ignore phase, so a lattice whose dots change colour from place to place still adds up. Hand-made
  (tests/test_look.py): grey with a coloured dot every 4 px scores 27, random noise of the same energy 1.4,
  a flat or slowly varying image ~0.

What it found (README, *Calm where the photo is calm*): the paper's objective puts the painting's finest texture
wherever it costs least, which is where the photo is calm; average pooling makes it an even lattice. Max pooling
and the engine's calm term (`losses.calm_loss`, which reads the same `local_detail`) keep those regions smooth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from stylize.engine.losses import gaussian_blur, local_detail

FLAT_DETAIL = 1.5  # grey levels of local detail below which the photo is calm
BORDER = 8  # px left out at the image's edges (padding artefacts are another matter)
TILE = 32
MIN_FLAT_FRACTION = 0.9  # of a tile's pixels, for the tile to count


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (H, W) or (H, W, C) in float64, edges reflected: the engine's (`losses.gaussian_blur`)."""
    t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = gaussian_blur(t, sigma)[0]
    return (out[0] if x.ndim == 2 else out.permute(1, 2, 0)).numpy()


def _pixels(img: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 in grey levels 0–255."""
    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"), dtype=np.float64)
    arr = np.asarray(img, dtype=np.float64)
    return np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr


def _inside(mask: np.ndarray) -> np.ndarray:
    """`mask` with the BORDER left out (padding artefacts are another matter), in place."""
    mask[:BORDER], mask[-BORDER:], mask[:, :BORDER], mask[:, -BORDER:] = False, False, False, False
    return mask


def flat_mask(photo: Image.Image | np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) bool: where the photo is calm, at `size` (width, height; default the photo's own)."""
    if isinstance(photo, Image.Image) and size is not None and photo.size != tuple(size):
        photo = photo.convert("RGB").resize(tuple(size), Image.LANCZOS)
    rgb = torch.from_numpy(_pixels(photo) / 255.0).permute(2, 0, 1)[None]
    mask = local_detail(rgb)[0, 0].numpy() < FLAT_DETAIL  # the detail the engine's calm term reads
    return _inside(mask)


def highpass(result: Image.Image | np.ndarray, mask: np.ndarray, sigma: float = 1.5) -> float:
    """Mean over the flat pixels of (x − G_σ·x)², averaged over R, G, B, in (grey levels)²."""
    x = _pixels(result)
    if not mask.any():
        return float("nan")
    residual = x - blur(x, sigma)
    return float((residual[mask] ** 2).mean())


def _tiles(mask: np.ndarray, tile: int = TILE) -> list[tuple[int, int]]:
    h, w = mask.shape
    step = tile // 2
    return [(i, j) for i in range(0, h - tile + 1, step) for j in range(0, w - tile + 1, step)
            if mask[i:i + tile, j:j + tile].mean() >= MIN_FLAT_FRACTION]


def _median5(s: np.ndarray) -> np.ndarray:
    """Median over each bin's 5 × 5 neighbourhood (the spectrum is periodic: wrap around)."""
    stack = [np.roll(np.roll(s, dy, 0), dx, 1) for dy in range(-2, 3) for dx in range(-2, 3)]
    return np.median(np.stack(stack), axis=0)


def spectrum(result: Image.Image | np.ndarray, mask: np.ndarray, tile: int = TILE) -> np.ndarray | None:
    """The flat tiles' mean power spectrum of the high-pass residual, (tile, tile), normalized so that it
    sums to the residual's mean square per pixel; None without a flat tile."""
    x = _pixels(result)
    residual = x - blur(x, 3.0)
    corners = _tiles(mask, tile)
    if not corners:
        return None
    acc = np.zeros((tile, tile))
    for i, j in corners:
        patch = residual[i:i + tile, j:j + tile]
        patch = patch - patch.mean(axis=(0, 1))
        acc += (np.abs(np.fft.fft2(patch, axes=(0, 1))) ** 2).sum(axis=2)
    return acc / (len(corners) * 3 * tile**4)


def lattice(result: Image.Image | np.ndarray, mask: np.ndarray, tile: int = TILE) -> float:
    """Periodic high-frequency energy in the flat region, (grey levels)² per pixel (see the module's doc)."""
    s = spectrum(result, mask, tile)
    if s is None:
        return float("nan")
    excess = np.clip(s - _median5(s), 0, None)
    k = np.abs(np.fft.fftfreq(tile) * tile)
    excess[np.maximum(k[:, None], k[None, :]) < tile // 16] = 0.0  # periods over 16 px on both axes: not a lattice
    return float(excess.sum())


@dataclass
class Look:
    lattice: float  # periodic fine energy where the photo is flat, (grey levels)²
    highpass: float  # all fine energy there (σ = 1.5 px), (grey levels)²
    flat: float  # fraction of the image that is flat
    tiles: int  # flat tiles the lattice measure averaged
    texture: float  # all fine energy where the photo is *not* flat, (grey levels)²: what calm must leave alone

    def __str__(self) -> str:
        return (f"lattice {self.lattice:7.2f}  highpass {self.highpass:7.2f}  texture {self.texture:7.2f}  "
                f"flat {self.flat:5.1%} ({self.tiles} tiles)")


def measure(result: Image.Image, photo: Image.Image) -> Look:
    """The look of a finished result against its photo (resized to the result's size)."""
    mask = flat_mask(photo, result.size)
    busy = _inside(~mask)
    return Look(lattice(result, mask), highpass(result, mask), float(mask.mean()), len(_tiles(mask)),
                highpass(result, busy))


# ---- seams (issue #33): tile borders against everywhere else ------------------------------------------------------

SEAM_NEIGHBOURS = range(2, 9)  # px either side of a border that it is compared with


def seam_ratio(result: Image.Image | np.ndarray, xs: list[int], ys: list[int]) -> float:
    """How much more the picture jumps across tile borders than just beside them: the mean |difference| of
    neighbouring pixels across the borders (columns `xs`, rows `ys`: a border at c lies between pixels c − 1 and
    c), over the same 2–8 px either side of each border (the same strokes, so content does not count). 1: no
    seam; a visible step along a border scores several times more."""
    a = _pixels(result)
    dx = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # dx[c − 1]: between columns c − 1 and c
    dy = np.abs(np.diff(a, axis=0)).mean(axis=(1, 2))
    across, beside = [], []
    for d, borders in ((dx, xs), (dy, ys)):
        for b in borders:
            near = [d[b - 1 + k] for k in (*SEAM_NEIGHBOURS, *(-k for k in SEAM_NEIGHBOURS)) if 0 <= b - 1 + k < len(d)]
            if 0 < b <= len(d) and near:
                across.append(d[b - 1])
                beside.append(np.mean(near))
    if not across:
        return 1.0
    return float(np.mean(across) / max(np.mean(beside), 1e-9))
