"""How a run is laid out before any work: its coarse-to-fine sizes and steps, and which runs may share a batch.

The engine runs this plan; the cost model (machine.py) and Compare (which groups presets into batches) read the
same rules, so an estimate and a batch never disagree with what the engine does.
"""

from __future__ import annotations

import math

from .images import MIN_SIDE
from .params import Settings

SCALE_RATIO = math.sqrt(2)  # coarse-to-fine levels are a factor √2 apart


def schedule(final: tuple[int, int], levels: int, steps: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Coarse-to-fine sizes a factor √2 apart ending at `final`, and the steps of each level.

    Levels too small for the network (shorter side < 32 px) are skipped; each level gets an equal share of the
    steps, and a level left with no step is dropped, so a run never takes more steps than asked for.
    """
    sizes = []
    for k in range(levels - 1, -1, -1):
        w, h = round(final[0] / SCALE_RATIO**k), round(final[1] / SCALE_RATIO**k)
        if min(w, h) >= MIN_SIDE and (w, h) not in sizes:
            sizes.append((w, h))
    sizes = sizes or [final]
    counts = [steps // len(sizes)] * len(sizes)
    counts[-1] += steps - sum(counts)
    kept = [(s, c) for s, c in zip(sizes, counts) if c > 0]
    return [s for s, _ in kept], [c for _, c in kept]


def batch_key(settings: Settings, has_photo: bool = True) -> tuple:
    """What runs must share to be optimized as one batch: the work's shape (output size, steps, levels), the
    pooling, and whether only luma is optimized. Strength, layers, style scale, model, seed may differ."""
    luminance = settings.preserve_color == "luminance" and has_photo
    return settings.size, settings.steps, settings.scales, settings.pooling, luminance
