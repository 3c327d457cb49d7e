"""How a run is laid out before any work: what to make (`Job`), its coarse-to-fine sizes and steps, and which
runs may share a batch (`batch_key`, `plan_batch`).

The engine runs this plan; the cost model (cost/timing.py) and Compare (which groups presets into batches) read the
same rules, so an estimate and a batch never disagree with what the engine does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from PIL import Image

from stylize import images
from stylize.errors import StylizeError
from stylize.images import MIN_SIDE
from stylize.params import Settings

SCALE_RATIO = math.sqrt(2)  # coarse-to-fine levels are a factor √2 apart


@dataclass
class Job:
    """One image to make: a photo (None: texture synthesis), paintings (none: content reconstruction), settings."""

    content: Image.Image | None
    styles: Sequence[Image.Image]
    settings: Settings = field(default_factory=Settings)
    masks: Sequence[images.ImageSource] | None = None  # one per style: where on the photo each style goes

    def output_size(self) -> tuple[int, int]:
        """The finished image's size: the photo's aspect ratio (without a photo, the first painting's) at
        `settings.size` on the longer side."""
        shape_of = self.content if self.content is not None else self.styles[0]
        return images.fit_size(shape_of.size, self.settings.size)


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


def luminance_only(settings: Settings, has_photo: bool = True) -> bool:
    """Whether only luma is optimized: colour is kept by luminance transfer, which needs a photo's chroma."""
    return settings.preserve_color == "luminance" and has_photo


def batch_key(settings: Settings, has_photo: bool = True) -> tuple:
    """What runs must share to be optimized as one batch: the work's shape (output size, steps, levels), the
    pooling, and whether only luma is optimized. Strength, layers, style scale, model, seed may differ."""
    return settings.size, settings.steps, settings.scales, settings.pooling, luminance_only(settings, has_photo)


@dataclass(frozen=True)
class Plan:
    """What a batch shares: sizes per level, steps per level, pooling, whether only luma is optimized."""

    sizes: list[tuple[int, int]]
    level_steps: list[int]
    pooling: str
    luminance: bool

    @property
    def total_steps(self) -> int:
        return sum(self.level_steps)

    def optimized(self, rgb: torch.Tensor) -> torch.Tensor:
        """An RGB image as the optimizer sees it: its luma alone with luminance-only transfer, else as it is."""
        return images.luma(rgb) if self.luminance else rgb


def plan_batch(jobs: Sequence[Job]) -> Plan:
    """The plan of jobs run as one batch, or a `StylizeError` if they differ in what fixes the work's shape.

    Besides `batch_key`, the jobs must agree on the output size itself (photos of different aspect ratios at one
    `size` do not share a batch)."""
    if not jobs:
        raise StylizeError("nothing to run")
    keys = {(job.output_size(), batch_key(job.settings, job.content is not None)) for job in jobs}
    if len(keys) > 1:
        raise StylizeError("a batch's images must share output size, steps, levels, pooling and colour mode")
    first = jobs[0]
    sizes, level_steps = schedule(first.output_size(), first.settings.scales, first.settings.steps)
    return Plan(sizes, level_steps, first.settings.pooling, luminance_only(first.settings, first.content is not None))


def check_patch_fit(job: Job, plan: Plan) -> None:
    """A `StylizeError` unless the job's MRF patch fits every map it will be matched on: the output's and each
    painting's, at each MRF layer, at the smallest (first) level."""
    s = job.settings
    size = plan.sizes[0]
    for layer in s.mrf_layer_names:
        down = 2 ** (int(layer[4]) - 1)  # relu<block>_<n>: each block before it halves the map
        for style in job.styles:
            for w, h in (size, images.fit_at_least(style.size, round(max(size) * s.style_scale))):
                if min(w // down, h // down) < s.mrf_patch:
                    raise StylizeError(f"patch {s.mrf_patch} is larger than {layer}'s {w // down}×{h // down} "
                                       "feature map at this size; use a smaller patch, a shallower layer or a "
                                       "larger size")
