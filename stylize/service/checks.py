"""Each kind of request checked once, before any work: `check_stylize`, `check_compare`, `check_explore` load
and validate everything a request names (images, settings, this machine's limits, on ZeroGPU the duration it
would ask for) and return it ready to run, or raise one `StylizeError` that says what to change. The UI and the
API call these; the engine keeps only the checks that protect itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch
from PIL import Image

from stylize.cost.budget import Budget, Limits, ZeroGpu
from stylize.errors import StylizeError
from stylize.experiments.compare import CompareCell, compare_cells
from stylize.experiments.explore import Grid, make_grid
from stylize.params import ABOUT, Settings

from .assets import Assets
from .inputs import Inputs, load_photo, load_upload

WEIGHT_SOURCES = ("auto", "hub", "embedded")


class Studio(Protocol):
    """What the checks read of the studio (service/studio.py), named here so that the checks do not import it."""

    assets: Assets
    inputs: Inputs
    limits: Limits
    budget: Budget
    device: torch.device

    def compare_seconds(self, cells: Sequence[CompareCell]) -> int: ...

    def enlarge_seconds(self, request: EnlargeRequest) -> float: ...


@dataclass
class StylizeRequest:
    """A checked Stylize request (picklable: it crosses ZeroGPU's process boundary)."""

    photo: Image.Image
    styles: list[Image.Image]
    settings: Settings
    weights: str = "auto"
    masks: list[Image.Image] | None = None
    preset_id: str | None = None
    notices: list[str] = field(default_factory=list)


@dataclass
class EnlargeRequest:
    """A checked enlargement (#33): a finished result, what made it (photo, paintings, settings) and its new size."""

    photo: Image.Image
    styles: list[Image.Image]
    settings: Settings
    result: Image.Image
    longest: int
    weights: str = "auto"
    preset_id: str | None = None


@dataclass
class CompareRequest:
    """A checked comparison: the photo, the results to make, and the paintings that are available."""

    photo: Image.Image
    preset_ids: list[str]
    settings: Settings
    cells: list[CompareCell]
    styles: dict[str, Image.Image]
    weights: str = "auto"
    notes: str = ""  # presets skipped as unavailable


@dataclass
class ExploreRequest:
    """A checked grid and the images it uses (None where its kind needs none)."""

    grid: Grid
    photo: Image.Image | None
    painting: Image.Image | None
    preset_id: str | None
    weights: str = "auto"


def check_weights(weights: str | None) -> str:
    weights = weights or "auto"
    if weights not in WEIGHT_SOURCES:
        raise StylizeError(f"weights must be one of {', '.join(WEIGHT_SOURCES)} (got {str(weights)[:40]!r})")
    return weights


def check_stylize(studio: Studio, settings: Settings, photo: str | None, preset: str | None,
                  painting: str | None = None, extra_paintings: Sequence[str] | None = None,
                  masks: Sequence[str] | None = None, regions: tuple[list, list] | None = None,
                  weights: str | None = "auto") -> StylizeRequest:
    """A Stylize request: painted `regions` (the editor's layers and each region's choice) or mask files say
    where each style goes; masks need the Gram model."""
    weights = check_weights(weights)
    painted = regions and studio.inputs.regions(photo, preset, painting, extra_paintings, *regions)
    notices: list[str] = []
    if painted:
        loaded, styles, mask_images, preset_id = painted
    else:
        loaded = load_photo(photo)
        styles, preset_id = studio.inputs.styles(preset, painting, extra_paintings)
        mask_images, notices = studio.inputs.masks(masks, len(styles), loaded)
    if mask_images and settings.style_model != "gram":
        raise StylizeError("painted regions and masks work with the Gram style model: choose "
                           f"'{ABOUT['style_model'].label_of('gram')}' under Advanced (style_model 'gram')")
    studio.limits.check(settings)
    studio.budget.check(settings, styles=len(styles), aspect=loaded.size)
    return StylizeRequest(loaded, styles, settings, weights, mask_images, preset_id, notices)


ENLARGE_FACTORS = (2, 4)


def check_enlarge(studio: Studio, settings: Settings, result: str | None, factor: int, photo: str | None,
                  preset: str | None, painting: str | None = None, extra_paintings: Sequence[str] | None = None,
                  weights: str | None = "auto") -> EnlargeRequest:
    """An enlargement of a finished `result` by `factor`, with the photo, paintings and settings that made it (a
    Stylize result, a Compare or Explore cell, a shared link's)."""
    weights = check_weights(weights)
    if result is None:
        raise StylizeError("give the finished result to enlarge (make one with Stylize first)")
    try:
        factor = int(factor)
    except (TypeError, ValueError):
        raise StylizeError(f"factor must be one of {ENLARGE_FACTORS} (got {factor!r})") from None
    if factor not in ENLARGE_FACTORS:
        raise StylizeError(f"factor must be one of {ENLARGE_FACTORS} (got {factor})")
    if settings.style_model != "gram":
        raise StylizeError(f"enlarging works with the Gram style model ('{ABOUT['style_model'].label_of('gram')}')")
    image = load_upload(result, "result")
    loaded = load_photo(photo)
    styles, preset_id = studio.inputs.styles(preset, painting, extra_paintings)
    longest = factor * max(image.size)
    studio.limits.check_enlarge(longest)
    request = EnlargeRequest(loaded, styles, settings, image, longest, weights, preset_id)
    seconds = studio.enlarge_seconds(request)
    if studio.budget.zerogpu is not None:
        studio.budget.zerogpu.check(ZeroGpu.request(seconds), "this enlargement")
    studio.budget.check_seconds(seconds, "this enlargement")
    return request


def check_compare(studio: Studio, photo: str | None, preset_ids: Sequence[str] | None, settings: Settings,
                  both_models: bool = False, weights: str | None = "auto") -> CompareRequest:
    """A comparison: known presets (duplicates dropped, at most `max_compare`), each result within this machine's
    limits, and the photo; an unavailable painting is skipped with a note, not fatal."""
    weights = check_weights(weights)
    ids = list(dict.fromkeys(preset_ids or []))
    if not ids:
        raise StylizeError("tick at least one preset to compare")
    for preset_id in ids:
        studio.assets.preset_images.get(preset_id)
    if len(ids) > studio.limits.max_compare:
        raise StylizeError(f"compare at most {studio.limits.max_compare} presets at a time (got {len(ids)})")
    cells = compare_cells([studio.assets.presets[i] for i in ids], settings, both_models)
    for cell in cells:
        studio.limits.check(cell.settings)
        studio.budget.check(cell.settings, what=f"this comparison's {cell.title}")
    if studio.budget.zerogpu is not None:
        studio.budget.zerogpu.check(studio.compare_seconds(cells), "this comparison")
    studio.budget.check_seconds(sum(studio.budget.seconds(cell.settings) for cell in cells), "this comparison")
    loaded = load_photo(photo, "add a photo first (upload, webcam, clipboard or an example photo)")
    styles, skipped = {}, []
    for preset_id in ids:
        try:
            styles[preset_id], _ = studio.inputs.style(preset_id, None)
        except StylizeError as exc:
            skipped.append(str(exc))
    if not styles:
        raise StylizeError("none of the chosen presets is available: " + "; ".join(skipped))
    runnable = [cell for cell in cells if cell.preset_id in styles]
    return CompareRequest(loaded, ids, settings, runnable, styles, weights, "".join(f" · skipped {s}" for s in skipped))


def check_explore(studio: Studio, kind: str, rows, columns, settings: Settings, photo: str | None,
                  painting: str | None, preset: str | None, weights: str | None = "auto") -> ExploreRequest:
    """A grid: its kind, rows and columns, this machine's limits, then its images (a painting upload wins over a
    preset), each checked before any is decoded."""
    weights = check_weights(weights)
    grid = make_grid(kind, rows, columns, settings, studio.device.type)
    studio.limits.check(grid.settings)
    painting = painting or None
    preset = (preset or "") if not painting else ""
    grid.check_images(photo or None, painting or preset or None)  # what to add first, then what it costs
    studio.budget.check(grid.settings, batch=grid.cells, what="this grid")
    loaded = load_upload(photo, "the photo") if grid.kind != "texture" else None
    style, preset_id = (None, None) if grid.kind == "reconstruction" else studio.inputs.style(preset, painting)
    return ExploreRequest(grid, loaded, style, preset_id, weights)
