"""Explore: the paper's experiments as grids of cells, all optimized together as one batch.

Three kinds (Gatys, Ecker & Bethge 2015):

- ``style`` (Fig. 3): rows are style layer sets (a–e, or comma-separated layer names), columns style strengths
  (β/α); one photo and one painting, each cell from the base settings' init (the photo by default).
- ``texture`` (Fig. 1, style side): one painting and no photo; rows are style layer sets, columns seeds (one by
  default), every cell from noise.
- ``reconstruction`` (Fig. 1, content side): one photo and no painting; rows are content layers (relu1_1 …
  relu5_1 by default; any feature layer, conv ones included), columns seeds, every cell from noise.

A `Grid` is validated when it is made (cell count, layers, strengths, seeds), and its images when its jobs are
made, so bad input is refused before any work. `run_grid` streams the engine's frames for the whole batch;
`labelled_grid` draws the cells as one image with row and column labels.

A request's side lives here too: a grid from what a visitor or an API call asks for (`make_grid`), its defaults on
this machine, and its run streamed as `GridUpdate`s (every cell, captioned, about once a second).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterator, Mapping, Sequence

from PIL import Image

from stylize.engine.loop import Frame, Job, Stylizer
from stylize.engine.updates import Waiting, progress
from stylize.engine.vgg import FEATURE_LAYERS
from stylize.errors import StylizeError
from stylize.params import RANGES, STYLE_LAYER_SETS, Settings, _parse

from .sheets import BACKGROUND, labelled_grid

KINDS = ("style", "texture", "reconstruction")
MAX_CELLS = 30  # one batch: 30 cells at 128 px take ~30× one image's memory and time per step
# Memory of one batch grows with cells × pixels: at most 30 cells of 256 px (≈ 2.3 GB of activations and history,
# computed as in README: Performance), so 7 cells at 512 px, one at 1448 px.
MAX_GRID_PIXELS = MAX_CELLS * 256 * 256

# Four strengths a decade apart around the default (20). The paper's Fig. 3 spans α/β = 1e-5 … 1e-2, three decades
# in four columns; its numbers do not carry over, because our strength is β/α against a per-element content term
# with every layer calibrated (README: the losses), so only the spacing does. At 2 the photo dominates, 20 is the
# app's balanced default, 200 is mostly painting and at 2000 the photo's layout barely survives: the same
# progression from "photo" to "texture" as the paper's columns.
DEFAULT_STRENGTHS: tuple[float, ...] = (2.0, 20.0, 200.0, 2000.0)
DEFAULT_STYLE_ROWS: tuple[str, ...] = tuple(STYLE_LAYER_SETS)  # a–e
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = tuple(f"relu{b}_1" for b in range(1, 6))

TITLES = {
    "style": "Style layers × style strength (Gatys et al. 2015, Fig. 3)",
    "texture": "Texture synthesis from noise, by style layers (Gatys et al. 2015, Fig. 1)",
    "reconstruction": "Content reconstruction from noise, by layer (Gatys et al. 2015, Fig. 1)",
}
GRID_KEYS = ("kind", "rows", "columns")  # to_dict's own keys; the rest are Settings fields
SEPARATOR = ";"  # between rows (and columns) in to_dict: a style row may itself be a comma-separated layer list


def _valid_style_rows() -> str:
    return (f"valid: {', '.join(STYLE_LAYER_SETS)} (the paper's sets: a = relu1_1 … e = relu1_1…relu5_1) or "
            f"comma-separated layer names from {', '.join(FEATURE_LAYERS)}")


def style_set_label(row: str) -> str:
    """A style layer set as a person reads it: "a: relu1_1", "b: relu1_1, relu2_1", "c: relu1_1…relu3_1"."""
    if row in STYLE_LAYER_SETS:
        names = STYLE_LAYER_SETS[row]
        listed = ", ".join(names) if len(names) <= 2 else f"{names[0]}…{names[-1]}"
        return f"{row}: {listed}"
    return ", ".join(part.strip() for part in row.split(",") if part.strip())


def _number(value: float) -> str:
    """Shortest text that reads back as the same float."""
    text = format(value, "g")
    return text if float(text) == value else repr(float(value))


@dataclass(frozen=True)
class Grid:
    """One experiment: its kind, its rows and columns (defaults per kind when None) and the base settings every
    cell starts from (size, steps, seed, pooling, content layer for the style grid, …)."""

    kind: str = "style"
    rows: tuple[str, ...] | None = None
    columns: tuple[float, ...] | None = None  # style: strengths; texture and reconstruction: seeds (ints)
    settings: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StylizeError(f"the kind of grid must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if not isinstance(self.settings, Settings):
            raise StylizeError("a grid's settings must be a Settings object")
        rows = self.rows
        if rows is None:
            rows = DEFAULT_CONTENT_LAYERS if self.kind == "reconstruction" else DEFAULT_STYLE_ROWS
        elif isinstance(rows, str):
            rows = (rows,)
        rows = tuple(str(r).strip() for r in rows)
        columns = self.columns
        if columns is None:
            columns = DEFAULT_STRENGTHS if self.kind == "style" else (self.settings.seed,)
        elif isinstance(columns, (int, float)):
            columns = (columns,)
        columns = tuple(columns)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "columns", columns)
        problems = self._problems()
        if problems:
            raise StylizeError("; ".join(problems))
        # Normalize numbers once they are known to be valid: strengths as floats, seeds as ints.
        object.__setattr__(self, "columns", tuple(float(c) if self.kind == "style" else int(c) for c in columns))

    # ---- validation ---------------------------------------------------------------------------

    def _problems(self) -> list[str]:
        found = []
        rows, columns = self.rows, self.columns
        if not rows:
            found.append("a grid needs at least one row")
        if not columns:
            found.append("a grid needs at least one column")
        cells = len(rows) * len(columns)
        if cells > MAX_CELLS:
            found.append(f"a {len(rows)} × {len(columns)} grid has {cells} cells; at most {MAX_CELLS}")
        elif cells * self.settings.size ** 2 > MAX_GRID_PIXELS:
            fit = MAX_GRID_PIXELS // self.settings.size ** 2
            found.append(f"{cells} cells of {self.settings.size} px are too large for one batch: at most {fit} at that "
                         f"size, or a smaller size")
        if self.kind == "reconstruction":
            unknown = [r for r in rows if r not in FEATURE_LAYERS]
            if unknown:
                found.append(f"unknown content layer{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(FEATURE_LAYERS)}")
        else:
            unknown = [r for r in rows if not known_row("style", r)]
            if unknown:
                found.append(f"unknown style layer set{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))}; {_valid_style_rows()}")
            if self.settings.style_model != "gram":
                found.append("the grid's rows are the Gram model's style layers; choose style_model 'gram'")
        repeated = sorted({r for r in rows if rows.count(r) > 1})
        if repeated:
            found.append(f"rows repeat: {', '.join(repeated)}")
        found += self._column_problems(columns)
        if not found:  # every cell's own settings (e.g. a size × style scale too large)
            try:
                self.cell_settings()
            except StylizeError as exc:
                found.append(str(exc))
        return found

    def _column_problems(self, columns: tuple) -> list[str]:
        found = []
        numbers = []
        for c in columns:
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
                found.append(f"columns must be numbers (got {c!r})")
            else:
                numbers.append(c)
        if self.kind == "style":
            low, high = RANGES["style_strength"]
            outside = [c for c in numbers if not low <= c <= high]
            if outside:
                found.append(f"style strength{'s' if len(outside) > 1 else ''} {', '.join(f'{c:g}' for c in outside)} "
                             f"outside {low:g}–{high:g}")
        else:
            low, high = RANGES["seed"]
            bad = [c for c in numbers if c != int(c) or not low <= c <= high]
            if bad:
                found.append(f"seeds must be whole numbers from {int(low)} to {int(high)} "
                             f"(got {', '.join(f'{c:g}' for c in bad)})")
            numbers = [int(c) for c in numbers]
        repeated = sorted({c for c in numbers if numbers.count(c) > 1})
        if repeated:
            found.append(f"columns repeat: {', '.join(f'{c:g}' for c in repeated)}")
        return found

    def check_images(self, content: Image.Image | None, style: Image.Image | None) -> None:
        """Refuse a grid without the images its kind needs (images it does not use are ignored). Only whether each
        is None matters, so a caller may check paths or uploads before decoding them."""
        if self.kind == "style" and (content is None or style is None):
            raise StylizeError("the style-transfer grid needs a photo and a painting")
        if self.kind == "texture" and style is None:
            raise StylizeError("texture synthesis needs a painting")
        if self.kind == "reconstruction" and content is None:
            raise StylizeError("content reconstruction needs a photo")

    # ---- cells --------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.columns)

    @property
    def cells(self) -> int:
        return len(self.rows) * len(self.columns)

    def cell_settings(self) -> list[Settings]:
        """Each cell's full settings, row-major (what a click on a cell hands to the Stylize tab)."""
        base = self.settings
        out = []
        for row in self.rows:
            for column in self.columns:
                if self.kind == "style":
                    s = base.replace(style_layers=row, layer_weights="", style_blend="", style_strength=float(column))
                elif self.kind == "texture":
                    s = base.replace(style_layers=row, layer_weights="", style_blend="", seed=int(column), init="noise")
                else:
                    # the paper's reconstructions show what a layer keeps: nothing smooths them
                    s = base.replace(content_layer=row, seed=int(column), init="noise", calm=0.0)
                out.append(s)
        return out

    def jobs(self, content: Image.Image | None, style: Image.Image | None) -> list[Job]:
        """One engine job per cell, row-major; a `StylizeError` if an image the kind needs is missing."""
        self.check_images(content, style)
        photo = content if self.kind != "texture" else None
        paintings = [style] if self.kind != "reconstruction" else []
        return [Job(photo, paintings, s) for s in self.cell_settings()]

    @property
    def layers_in_use(self) -> set[str]:
        """Every feature layer some cell reads (for loading the weights only as deep as needed)."""
        layers: set[str] = set()
        for s in self.cell_settings():
            if self.kind != "texture":
                layers.add(s.content_layer)
            if self.kind != "reconstruction":
                layers.update(s.style_layer_names)
        return layers

    # ---- labels -------------------------------------------------------------------------------

    @property
    def row_labels(self) -> list[str]:
        if self.kind == "reconstruction":
            return list(self.rows)
        return [style_set_label(r) for r in self.rows]

    @property
    def column_labels(self) -> list[str]:
        if self.kind == "style":
            return [f"β/α = {_number(c)}" for c in self.columns]
        return [f"seed {c}" for c in self.columns]

    @property
    def cell_labels(self) -> list[str]:
        """"row label, column label" per cell, row-major."""
        return [f"{r}, {c}" for r in self.row_labels for c in self.column_labels]

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    def labelled(self, images: Sequence[Image.Image], title: str | None = None) -> Image.Image:
        """The cells as one labelled image. A grid of one column (texture or reconstruction with one seed) is
        laid out as one row, as in the paper's Fig. 1."""
        title = self.title if title is None else title
        if len(self.columns) == 1 and len(self.rows) > 1:
            return labelled_grid(list(images), self.column_labels, self.row_labels, title)
        return labelled_grid(list(images), self.row_labels, self.column_labels, title)

    # ---- a plain-value round trip (for links) -------------------------------------------------

    def to_dict(self) -> dict[str, str | int | float]:
        """Flat plain values: kind, rows and columns as ';'-joined text, then every Settings field."""
        columns = SEPARATOR.join(_number(c) if self.kind == "style" else str(c) for c in self.columns)
        return {"kind": self.kind, "rows": SEPARATOR.join(self.rows), "columns": columns, **asdict(self.settings)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Grid":
        """The inverse of `to_dict`; values may be text (as in a query string) and rows and columns lists.
        Missing keys take the defaults; unknown keys or bad values raise a `StylizeError`."""
        known = {f.name: f for f in fields(Settings)}
        unknown = [k for k in data if k not in GRID_KEYS and k not in known]
        if unknown:
            raise StylizeError(f"unknown grid field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")
        defaults, values = Settings(), {}
        for key, raw in data.items():
            if key in GRID_KEYS:
                continue
            kind = type(getattr(defaults, key))
            try:
                values[key] = _parse(raw, kind)
            except ValueError:
                raise StylizeError(f"{key}={raw!r} is not a valid {kind.__name__}") from None
        settings = Settings(**values)
        rows = split_list(data["rows"]) if "rows" in data else None
        columns = None
        if "columns" in data:
            columns = []
            for part in split_list(data["columns"], also_commas=True):
                try:
                    columns.append(float(part))
                except (TypeError, ValueError):
                    raise StylizeError(f"columns must be numbers (got {part!r})") from None
            columns = tuple(columns)
        return cls(str(data.get("kind", "style")), tuple(rows) if rows is not None else None, columns, settings)


def known_row(kind: str, row: str) -> bool:
    """Whether a grid of `kind` accepts `row`: a content layer, or a style layer set a–e or a list of layers."""
    if kind == "reconstruction":
        return row in FEATURE_LAYERS
    if row in STYLE_LAYER_SETS:
        return True
    names = [part.strip() for part in row.split(",") if part.strip()]
    return bool(names) and all(n in FEATURE_LAYERS for n in names)


def split_list(value: Any, also_commas: bool = False) -> list[str]:
    """A list as given, or text split at ';' (and ',' if `also_commas`: a style row may itself be a layer list)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    if also_commas:
        text = text.replace(",", SEPARATOR)
    return [part.strip() for part in text.split(SEPARATOR) if part.strip()]


def run_grid(stylizer: Stylizer, grid: Grid, content: Image.Image | None, style: Image.Image | None,
             report_every: int | Callable[[int], bool] = 10,
             chunks: Sequence[Sequence[int]] | None = None,
             should_stop: Callable[[], bool] | None = None) -> Iterator[Frame]:
    """All cells as one batch, or (`chunks`: lists of cell indices) as several batches one after another, where one
    would not fit the GPU: a `Frame` per step whose `.images`, `.item_losses` and `.histories` are row-major and
    cover every cell (cells not yet started are blank, without losses).

    Bad input (missing image, anything the engine refuses) raises here, before any work; `should_stop` ends the
    run after a step with a stopped frame (as the engine's), and closing the iterator ends it at once.
    """
    jobs = grid.jobs(content, style)
    if not chunks or len(chunks) == 1:
        return stylizer.run_batch(jobs, report_every, should_stop=should_stop)
    runs = [stylizer.run_batch([jobs[k] for k in chunk], report_every, should_stop=should_stop)
            for chunk in chunks]  # all checked now
    return _one_after_another(runs, [list(chunk) for chunk in chunks], len(jobs), should_stop)


def _one_after_another(runs: list[Iterator[Frame]], chunks: list[list[int]], count: int,
                       should_stop: Callable[[], bool] | None = None) -> Iterator[Frame]:
    images: list[Image.Image | None] = [None] * count
    losses: list[dict] = [{} for _ in range(count)]
    histories: list[list] = [[] for _ in range(count)]
    started, offset = time.perf_counter(), 0
    for n, (run, chunk) in enumerate(zip(runs, chunks)):
        last_chunk = n == len(chunks) - 1
        for frame in run:
            if isinstance(frame, Waiting):
                yield frame
                continue
            total = frame.total_steps * len(chunks)
            elapsed = time.perf_counter() - started
            if frame.images is None:
                yield Frame(offset + frame.step, total, elapsed, frame.size)
                continue
            for j, k in enumerate(chunk):
                images[k], losses[k], histories[k] = frame.images[j], frame.item_losses[j], frame.histories[j]
            blank = Image.new("RGB", frame.size, BACKGROUND)
            # The engine does not ask after its run's last step; between chunks, this loop does.
            stopped_between = frame.done and not last_chunk and should_stop is not None and should_stop()
            yield Frame(offset + frame.step, total, elapsed, frame.size, done=frame.done and last_chunk,
                        images=[image or blank for image in images], item_losses=list(losses),
                        histories=list(histories), stopped=frame.stopped or stopped_between)
            if frame.stopped or stopped_between:
                return
        offset += frame.total_steps


# ---- requests and their streamed updates ----------------------------------------------------------------------

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


def grid_updates(grid: Grid, frames: Iterator[Frame | Waiting]) -> Iterator[GridUpdate]:
    """One update per reported frame, or per change of place in line (no cells yet); the last one (done or
    stopped) is final."""
    for frame in frames:
        if isinstance(frame, Waiting):
            yield GridUpdate([], frame.status)
        elif frame.images is not None:
            cells = [(image, cell_caption(grid, k, losses))
                     for k, (image, losses) in enumerate(zip(frame.images, frame.item_losses))]
            yield GridUpdate(cells, grid_status(grid, frame), final=frame.done or frame.stopped)
