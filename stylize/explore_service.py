"""Explore requests: a grid from what a visitor or an API call asks for (checked against this machine), its
defaults here, and its run streamed as `GridUpdate`s (every cell, captioned, about once a second)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from PIL import Image

from .engine import Frame
from .errors import StylizeError
from .explore import DEFAULT_CONTENT_LAYERS, KINDS, Grid, split_list
from .params import STYLE_LAYER_SETS, Settings
from .streaming import progress

GRID_UPDATE_INTERVAL_S = 1.0  # a grid's update carries every cell: about one a second
# One scale: the paper's experiments (and a grid's small cells) need no coarse-to-fine schedule.
GRID_DEFAULTS = {"cpu": {"size": 128, "steps": 100, "scales": 1}, "cuda": {"size": 256, "steps": 300, "scales": 1}}
# Default rows of the style and texture grids: on a CPU three of the paper's five sets keep the default 3 × 4 grid
# near a minute; a GPU takes all five.
STYLE_ROWS = {"cpu": ("a", "c", "e"), "cuda": tuple(STYLE_LAYER_SETS)}


def grid_defaults(defaults: Settings, device_type: str) -> Settings:
    """The base settings of a grid on this device: small cells (a grid is many images at once)."""
    return defaults.replace(**GRID_DEFAULTS[device_type])


def default_rows(kind: str, device_type: str) -> tuple[str, ...] | None:
    """A kind's default rows on this device (None for an unknown kind: the Grid says what is valid)."""
    if kind == "reconstruction":
        return DEFAULT_CONTENT_LAYERS
    return STYLE_ROWS[device_type] if kind in KINDS else None


def make_grid(kind: str, rows: Sequence[str] | str | None, columns: Sequence[float] | str | None,
              settings: Settings, device_type: str) -> Grid:
    """The grid a request asks for (empty rows or columns: the kind's defaults), or one message saying why not."""
    numbers = []
    for part in split_list(columns, also_commas=True):
        try:
            numbers.append(float(part))
        except (TypeError, ValueError):
            raise StylizeError(f"columns must be numbers, comma-separated (got {str(part)[:40]!r})") from None
    rows = split_list(rows)
    return Grid(str(kind), tuple(rows) if rows else default_rows(str(kind), device_type), tuple(numbers) or None,
                settings)


@dataclass
class GridUpdate:
    """One streamed state of a grid run: every cell's (image, caption), row-major, and a status line."""

    cells: list[tuple[Image.Image, str]]
    status: str
    final: bool = False

    @property
    def images(self) -> list[Image.Image]:
        return [image for image, _ in self.cells]


def cell_caption(grid: Grid, index: int, losses: Mapping[str, float] | None = None) -> str:
    """A cell's caption: "b · β/α=20 · loss 0.31", "c · seed 0 · loss 2.1", "relu3_1 · seed 0 · loss 0.05"."""
    r, c = divmod(index, len(grid.columns))
    column = f"β/α={grid.columns[c]:g}" if grid.kind == "style" else f"seed {grid.columns[c]}"
    caption = f"{grid.rows[r]} · {column}"
    return f"{caption} · loss {losses['total']:.3g}" if losses else caption


def grid_status(grid: Grid, frame: Frame) -> str:
    head, eta = progress(frame)
    rows, columns = grid.shape
    return (f"{head} · {rows} × {columns} grid: {grid.cells} "
            f"cell{'s' if grid.cells > 1 else ''} of {frame.size[0]}×{frame.size[1]} in one batch · "
            f"{frame.elapsed:.1f} s{eta}")


def grid_updates(grid: Grid, frames: Iterator[Frame]) -> Iterator[GridUpdate]:
    """One update per reported frame; the last one (done or stopped) is final."""
    for frame in frames:
        if frame.images is not None:
            cells = [(image, cell_caption(grid, k, losses))
                     for k, (image, losses) in enumerate(zip(frame.images, frame.item_losses))]
            yield GridUpdate(cells, grid_status(grid, frame), final=frame.done or frame.stopped)
