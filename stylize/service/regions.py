"""Painted regions: brush layers over the photo turned into one mask per style (UI-free; the app's *Paint regions*).

The user paints up to `MAX_REGIONS` regions over the photo, one per layer of an image editor, and gives each
a painting or "keep the photo". The painting chosen for the whole photo (if any) fills what no region covers.
A layer's region is wherever it is painted (alpha > 0), whatever the brush colour. "Keep the photo" wins where
it overlaps another region; other overlapping regions share their pixels (`masks.normalize_masks`). Pixels no
style's mask covers keep the photo (the engine's rule), so a "keep the photo" region needs no mask of its own.

Layers are read with the masks loader's checks (size cap, header before decoding, not a pixel bomb), from the
files as uploaded: no conversion happens before these checks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from stylize.engine.masks import BLACK, _resize, read_mask
from stylize.errors import StylizeError
from stylize.images import ImageSource

KEEP = "keep"  # a region that keeps the photo
UPLOAD = "upload"  # a region painted with the user's uploaded painting
MAIN = "main"  # the mask of the painting chosen for the whole photo: what no region covers
MAX_REGIONS = 3


def _label(choice: str) -> str:
    return "'keep the photo'" if choice == KEEP else "a painting"


def read_regions(layers: Sequence[ImageSource | None], choices: Sequence[str | None],
                 max_regions: int = MAX_REGIONS, max_bytes: int | None = None) -> list[tuple[int, str, np.ndarray]]:
    """The painted regions as (number from 1, choice, coverage (H, W) in {0, 1} at the layer's size); empty
    when no layer is painted and no region has a choice (a plain run).

    One clear `StylizeError` for a painted region without a choice, a choice whose layer is empty, and more
    painted layers than `max_regions`; a layer file that is not a readable image names its region.
    """
    choices = [c or None for c in choices]
    count = max(len(layers), len(choices))
    covered: list[np.ndarray | None] = []
    for i in range(count):
        layer = layers[i] if i < len(layers) else None
        cover = read_mask(layer, f"region {i + 1}'s layer", max_bytes, coverage=True) if layer else None
        covered.append(cover if cover is not None and cover.max() > 0 else None)
    extra = [i + 1 for i, cover in enumerate(covered) if cover is not None and i >= max_regions]
    if extra:
        many = len(extra) > 1
        raise StylizeError(f"at most {max_regions} painted regions (one per layer); layer{'s' if many else ''} "
                           f"{', '.join(map(str, extra))} {'are' if many else 'is'} painted too: erase "
                           f"{'them' if many else 'it'}, or paint that area on one of the first {max_regions} layers")
    regions = []
    for i in range(count):
        choice = choices[i] if i < len(choices) else None
        if covered[i] is not None and choice is None:
            raise StylizeError(f"region {i + 1} is painted but has no painting: choose one for it, or "
                               "'keep the photo'")
        if covered[i] is None and choice is not None:
            raise StylizeError(f"region {i + 1} has {_label(choice)} but nothing is painted on its layer: paint it "
                               f"(layer 'Region {i + 1}' in the editor), or clear its choice")
        if covered[i] is not None:
            regions.append((i + 1, choice, covered[i]))
    return regions


def region_masks(regions: Sequence[tuple[int, str, np.ndarray]], size: tuple[int, int],
                 has_main: bool) -> list[tuple[str, Image.Image]]:
    """(choice, mask) per style to run: MAIN (what no region covers) first if `has_main`, then each region
    with a painting (a preset id or UPLOAD); masks are 8-bit grey images at `size` (white: this style).
    "Keep the photo" regions are carved out of every other region."""
    width, height = size
    at_size = [(number, choice, _resize(cover, (width, height))) for number, choice, cover in regions]
    keep = np.zeros((height, width), np.float32)
    for _, choice, cover in at_size:
        if choice == KEEP:
            keep = np.maximum(keep, cover)
    plan: list[tuple[str, np.ndarray]] = []
    rest = np.clip(1.0 - np.maximum.reduce([cover for *_, cover in at_size]), 0.0, 1.0)
    if has_main and rest.max() > BLACK:
        plan.append((MAIN, rest))
    for number, choice, cover in at_size:
        if choice == KEEP:
            continue
        mask = cover * (1.0 - keep)
        if mask.max() <= BLACK:
            raise StylizeError(f"region {number} lies entirely under a 'keep the photo' region: move one of them")
        plan.append((choice, mask))
    if not plan:
        raise StylizeError("every painted region keeps the photo and no painting is chosen for the rest: choose a "
                           "painting for a region, or one for the whole photo")
    return [(choice, grey_image(mask)) for choice, mask in plan]


def grey_image(values: np.ndarray) -> Image.Image:
    """An (H, W) array in [0, 1] as an 8-bit grey image (picklable; the engine's mask loader reads it as is)."""
    return Image.fromarray(np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8), "L")
