"""Compare, the product's third use: one photo, many paintings. The results a comparison makes, the batches
they run in, the run itself (results streamed as they form), and the sheet that shows them side by side (one
labelled PNG to download or post). Its link is in links.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from PIL import Image

from stylize import images
from stylize.cost.budget import MAX_COMPARE
from stylize.engine.loop import Job
from stylize.engine.schedule import batch_key
from stylize.engine.updates import Update, batch_status
from stylize.errors import StylizeError
from stylize.params import ABOUT, Settings
from stylize.presets import Preset

from .sheets import labelled_grid

SHEET_COLUMNS = 4  # images a row of the sheet (the photo counts): a phone still shows a row at a useful size
PHOTO_CAPTION = "The photo"
RUNNING = " (running)"  # ends the caption of a result still forming


@dataclass(frozen=True)
class CompareCell:
    """One result of a comparison: a preset, the settings it runs with, its caption and its short title."""

    preset_id: str
    settings: Settings
    caption: str
    title: str


def comparison_sheet(photo: Image.Image, results: Sequence[Image.Image], captions: Sequence[str]) -> Image.Image:
    """The photo first (at the results' size), then each result, captioned, in rows of SHEET_COLUMNS, on white."""
    size = results[0].size if results else photo.size
    images = [photo.convert("RGB").resize(size, Image.Resampling.LANCZOS), *results]
    labels = [PHOTO_CAPTION, *captions]
    rows = [labelled_grid(images[k:k + SHEET_COLUMNS], [""], labels[k:k + SHEET_COLUMNS])
            for k in range(0, len(images), SHEET_COLUMNS)]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height
    return sheet


def compare_cells(presets: Sequence[Preset], base: Settings, both_models: bool = False) -> list[CompareCell]:
    """The results a comparison makes, in the order shown: each preset with its tuned settings over `base`, and
    with `both_models` once with each style model (Gram, then patches). A caption names the model when both are
    shown or when it is the patch model."""
    cells = []
    for preset in presets:
        tuned = preset.apply(base)
        for model in ("gram", "mrf") if both_models else (tuned.style_model,):
            named = f" · {ABOUT['style_model'].label_of(model)}" if both_models or model != "gram" else ""
            cells.append(CompareCell(preset.id, tuned.replace(style_model=model), preset.caption + named,
                                     preset.title + named))
    return cells


def compare_batches(cells: Sequence[CompareCell], indices: Sequence[int], photo_size: tuple[int, int],
                    split: Callable[[list[tuple[int, int]], list[Settings]], list[list[int]] | None]) -> list[list[int]]:
    """`indices` of `cells` grouped into batches, in order of first appearance: results that agree on what a batch
    must share (`plan.batch_key`) run together, at most MAX_COMPARE at a time, each batch split further where
    `split` (the GPU's free memory, given the sizes and settings) says so."""
    groups: dict[tuple, list[int]] = {}
    for k in indices:
        groups.setdefault(batch_key(cells[k].settings), []).append(k)
    batches = [group[i:i + MAX_COMPARE] for group in groups.values() for i in range(0, len(group), MAX_COMPARE)]
    planned = []
    for batch in batches:
        size = images.fit_size(photo_size, cells[batch[0]].settings.size)
        parts = split([size] * len(batch), [cells[k].settings for k in batch])
        planned += [[batch[j] for j in part] for part in parts or [range(len(batch))]]
    return planned


Gallery = list[tuple[Image.Image, str]]


def run_comparison(cells: Sequence[CompareCell], styles: Mapping[str, Image.Image], photo: Image.Image,
                   batches: Sequence[Sequence[int]], run_batch: Callable[[list[Job]], Iterator[Update]],
                   should_stop: Callable[[], bool], notes: str = "") -> Iterator[tuple[Gallery, str]]:
    """Run the batches one after another and yield (gallery, status): the gallery in the order of `cells`, each
    result shown as it forms (captioned RUNNING until done). Stop ends the current batch (its images are kept)
    and skips the rest."""
    results: dict[int, Image.Image] = {}

    def gallery(running: Mapping[int, Image.Image] = {}) -> Gallery:
        shown = {**results, **running}
        return [(shown[k], cells[k].caption if k in results else cells[k].title + RUNNING) for k in sorted(shown)]

    for group in batches:
        if should_stop():
            break
        update = None
        jobs = [Job(photo, [styles[cells[k].preset_id]], cells[k].settings) for k in group]
        for update in run_batch(jobs):
            frame = update.frame
            if frame is None:  # waiting for its turn on a busy machine
                yield gallery(), f"{len(results)}/{len(cells)} done · {update.status}"
                continue
            status = (f"{group[0] + 1}/{len(cells)}: {update.status}" if len(group) == 1 else
                      f"{len(results)}/{len(cells)} done · {batch_status(frame, len(group))}")
            yield gallery(dict(zip(group, frame.images))), status
        if update is None:
            break
        results.update(zip(group, update.frame.images))
        frame = update.frame
        stopped = "" if frame.done else f" · stopped at step {frame.step}/{frame.total_steps}"
        yield gallery(), f"{len(results)}/{len(cells)} done{stopped}" + notes
    if not results:
        raise StylizeError("the comparison ended before any result was finished; try again")
