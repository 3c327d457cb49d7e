"""Links that reopen the app: a Stylize run's settings, an Explore grid, a comparison. Opening one validates it
like any input: unknown values are dropped and numbers clamped to this machine's limits, one notice each, so a
link someone edited by hand still opens."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlencode

from stylize.errors import StylizeError
from stylize.experiments.explore import KINDS, MAX_CELLS, Grid, known_row, split_list
from stylize.params import RANGES, Settings, within_limits

GRID_FIELDS = ("kind", "rows", "columns", "size", "steps", "seed")
COMPARE_FIELDS = ("presets", "size", "steps", "seed", "photo", "both")
EXTRAS = ("tab", "run", "deep_link", "__theme")  # what any link may carry besides its own fields


def space_base_url() -> str | None:
    """The public page of this Space, when running on Hugging Face Spaces."""
    space = os.environ.get("SPACE_ID")
    return f"https://huggingface.co/spaces/{space}" if space else None


def _url(base: str, query: Mapping[str, str]) -> str:
    return f"{base.split('?')[0]}?{urlencode(query)}"


def _single(query: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters with one value each (the first of repeated ones)."""
    return {k: (v[0] if isinstance(v, (list, tuple)) and v else v) for k, v in dict(query).items()}


def _tab(params: Mapping[str, Any]) -> str:
    params = _single(params)
    return "explore" if "explore" in params else str(params.get("tab", ""))


def _ignored(params: Mapping[str, Any], known: Sequence[str], what: str) -> list[str]:
    ignored = [k for k in params if k not in (*known, *EXTRAS)]
    return [f"ignored {', '.join(repr(k[:40]) for k in ignored)} ({what})"] if ignored else []


# ---- Stylize ---------------------------------------------------------------------------------------------------

@dataclass
class Link:
    """What a shared link asks for, made valid: clamped settings, a known preset, and a notice per change."""

    preset_id: str
    settings: Settings
    notices: list[str]
    autorun: bool


def share_url(base: str, settings: Settings, preset_ids: Sequence[str] = (), run: bool = False) -> str:
    """A link that reopens the app with these settings (and presets); `run` starts it at once."""
    extra = {"preset": ",".join(preset_ids)} if preset_ids else {}
    if run:
        extra["run"] = "1"
    return f"{base.split('?')[0]}?{settings.to_query(extra)}"


def open_link(query: Mapping[str, Any], presets: Sequence[str], base: Settings, max_size: int,
              max_steps: int) -> Link:
    """A shared link's query string over `base`; links to another tab leave Stylize at `base`."""
    params = _single(query)
    if _tab(params) in ("explore", "compare"):
        return Link("", base, [], autorun=False)
    preset_id = str(params.get("preset", "")).split(",")[0]
    settings, notices = Settings.from_query(params, ignore=("preset", *EXTRAS), base=base)
    if preset_id and preset_id not in presets:
        notices.append(f"unknown preset {preset_id[:40]!r}; choose one from the gallery")
        preset_id = ""
    settings = within_limits(settings, max_size, max_steps, notices)
    return Link(preset_id, settings, notices, autorun=params.get("run") == "1" and bool(preset_id))


# ---- Explore ---------------------------------------------------------------------------------------------------

@dataclass
class ExploreLink:
    """What an Explore link asks for, made valid: the grid, its columns as the tab shows them, a known preset,
    and a notice per change."""

    grid: Grid
    columns: str
    preset_id: str
    notices: list[str]


def explore_url(base: str, grid: Grid, preset_id: str | None = None) -> str:
    """A link that opens the Explore tab with this grid's kind, rows, columns, size, steps and seed."""
    data = grid.to_dict()
    query = {"tab": "explore", **{key: data[key] for key in GRID_FIELDS}}
    if preset_id and grid.kind != "reconstruction":
        query["preset"] = preset_id
    return _url(base, query)


def columns_text(grid: Grid) -> str:
    """The columns as the Explore tab's text box shows them; a texture or reconstruction grid of one column
    with the base seed shows none (the seed box says it)."""
    if grid.kind != "style" and grid.columns == (grid.settings.seed,):
        return ""
    return ", ".join(f"{c:g}" for c in grid.columns)


def _columns(kind: str, raw: Any, notices: list[str]) -> list[float]:
    columns: list[float] = []
    low, high = RANGES["style_strength"] if kind == "style" else RANGES["seed"]
    for part in split_list(raw, also_commas=True):
        try:
            value = float(part)
            if not math.isfinite(value):
                raise ValueError(part)
        except (TypeError, ValueError):
            notices.append(f"column {str(part)[:40]!r} is not a number")
            continue
        if kind != "style":
            value = float(round(value))
        clamped = min(max(value, low), high)
        if clamped != value:
            notices.append(f"column {part} is outside {low:g}–{high:g}; using {clamped:g}" if kind == "style" else
                           f"seed {part} is outside {low:.0f}–{high:.0f}; using {clamped:.0f}")
        if clamped not in columns:
            columns.append(clamped)
    return columns


def open_explore_link(query: Mapping[str, Any], presets: Sequence[str], base: Settings,
                      default_rows: Callable[[str], tuple[str, ...] | None], max_size: int,
                      max_steps: int) -> ExploreLink | None:
    """An Explore link's grid over `base` (None if the link is not one): unknown kinds, rows, columns, presets and
    parameters are dropped and out-of-range values clamped, one notice each."""
    params = _single(query)
    if _tab(params) != "explore":
        return None
    notices = _ignored(params, (*GRID_FIELDS, "preset", "explore"),
                       "a grid link sets kind, rows, columns, size, steps and seed")
    kind = str(params.get("kind", "style"))
    if kind not in KINDS:
        notices.insert(0, f"unknown experiment {kind[:40]!r}; valid: {', '.join(KINDS)}")
        kind = "style"
    settings, more = Settings.from_query({k: params[k] for k in ("size", "steps", "seed") if k in params}, base=base)
    notices += more
    settings = within_limits(settings, max_size, max_steps, notices)
    rows: list[str] = []
    for row in split_list(params.get("rows")):
        if row in rows:
            continue
        if known_row(kind, row):
            rows.append(row)
        else:
            notices.append(f"unknown {'content layer' if kind == 'reconstruction' else 'style layer set'} {row[:40]!r}")
    columns = _columns(kind, params.get("columns"), notices)
    if len(rows) * max(len(columns), 1) > MAX_CELLS:
        columns = columns[:max(1, MAX_CELLS // max(len(rows), 1))]
        rows = rows[:MAX_CELLS // len(columns)]
        notices.append(f"at most {MAX_CELLS} cells in a grid; using the first {len(rows)} × {len(columns)}")
    preset_id = str(params.get("preset", ""))
    if preset_id and preset_id not in presets:
        notices.append(f"unknown preset {preset_id[:40]!r}")
        preset_id = ""
    try:
        grid = Grid(kind, tuple(rows) or default_rows(kind), tuple(columns) or None, settings)
    except StylizeError as exc:  # e.g. too many pixels for one batch: the default grid instead
        notices.append(f"{exc}; using the default grid")
        grid = Grid(kind, default_rows(kind), None, base.replace(seed=settings.seed))
    return ExploreLink(grid, columns_text(grid), preset_id, notices)


# ---- Compare ---------------------------------------------------------------------------------------------------

@dataclass
class CompareLink:
    """What a comparison link asks for, made valid: presets, size/steps/seed, an example photo, both models."""

    preset_ids: list[str]
    settings: Settings
    photo_id: str
    both_models: bool
    notices: list[str]
    autorun: bool


def compare_url(base: str, preset_ids: Sequence[str], settings: Settings, photo_id: str | None = None,
                both_models: bool = False, run: bool = False) -> str:
    """A link that reopens the Compare tab with these presets, size, steps and seed (and an example photo)."""
    query = {"tab": "compare", "presets": ",".join(preset_ids), "size": str(settings.size),
             "steps": str(settings.steps), "seed": str(settings.seed)}
    query.update({k: v for k, v in (("photo", photo_id), ("both", "1" if both_models else ""),
                                    ("run", "1" if run else "")) if v})
    return _url(base, query)


def open_compare_link(query: Mapping[str, Any], presets: Sequence[str], photos: Sequence[str], base: Settings,
                      max_size: int, max_steps: int, max_presets: int) -> CompareLink | None:
    """A comparison link (tab=compare) over `base`, or None if the link is not one."""
    params = _single(query)
    if _tab(params) != "compare":
        return None
    notices = _ignored(params, COMPARE_FIELDS, "a comparison link sets presets, size, steps, seed, photo and both")
    ids: list[str] = []
    for preset_id in split_list(params.get("presets"), also_commas=True):
        if preset_id in ids:
            continue
        if preset_id in presets:
            ids.append(preset_id)
        else:
            notices.append(f"unknown preset {preset_id[:40]!r}")
    if len(ids) > max_presets:
        notices.append(f"at most {max_presets} presets in a comparison; using the first {max_presets}")
        ids = ids[:max_presets]
    settings, more = Settings.from_query({k: params[k] for k in ("size", "steps", "seed") if k in params}, base=base)
    notices += more
    settings = within_limits(settings, max_size, max_steps, notices)
    photo_id = str(params.get("photo", ""))
    if photo_id and photo_id not in photos:
        notices.append(f"unknown example photo {photo_id[:40]!r}; add your own")
        photo_id = ""
    both = str(params.get("both", "")).lower() in ("1", "true", "yes", "on")
    autorun = params.get("run") == "1" and bool(ids) and bool(photo_id)
    return CompareLink(ids, settings, photo_id, both, notices, autorun)
