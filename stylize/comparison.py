"""Compare, the product's third use: one photo, many paintings. The results a comparison makes, the sheet that
shows them side by side (one labelled PNG to download or post), and the link that reopens the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence
from urllib.parse import urlencode

from PIL import Image

from .explore import labelled_grid
from .params import Settings, within_limits

SHEET_COLUMNS = 4  # images a row of the sheet (the photo counts): a phone still shows a row at a useful size
PHOTO_CAPTION = "The photo"
LINK_FIELDS = ("presets", "size", "steps", "seed", "photo", "both")
LINK_EXTRAS = ("tab", "run", "deep_link", "__theme")


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


@dataclass
class CompareLink:
    """What a comparison link asks for, made valid: presets, size/steps/seed, an example photo, both models."""

    preset_ids: list[str]
    settings: Settings
    photo_id: str
    both_models: bool
    notices: list[str]
    autorun: bool


def is_compare_link(params: Mapping[str, Any]) -> bool:
    tab = params.get("tab")
    return (tab[0] if isinstance(tab, (list, tuple)) and tab else tab) == "compare"


def compare_url(base: str, preset_ids: Sequence[str], settings: Settings, photo_id: str | None = None,
                both_models: bool = False, run: bool = False) -> str:
    """A link that reopens the Compare tab with these presets, size, steps and seed (and an example photo)."""
    query: dict[str, str] = {"tab": "compare", "presets": ",".join(preset_ids), "size": str(settings.size),
                             "steps": str(settings.steps), "seed": str(settings.seed)}
    if photo_id:
        query["photo"] = photo_id
    if both_models:
        query["both"] = "1"
    if run:
        query["run"] = "1"
    return f"{base.split('?')[0]}?{urlencode(query)}"


def open_compare_link(query: Mapping[str, Any], presets: Sequence[str], photos: Sequence[str], base: Settings,
                      max_size: int, max_steps: int, max_presets: int) -> CompareLink | None:
    """A comparison link (tab=compare) validated like any input: unknown presets, photos and parameters are dropped
    with a notice, numbers clamped to this machine's limits; None if the link is not one."""
    params = {k: (v[0] if isinstance(v, (list, tuple)) and v else v) for k, v in dict(query).items()}
    if not is_compare_link(params):
        return None
    notices: list[str] = []
    ignored = [k for k in params if k not in (*LINK_FIELDS, *LINK_EXTRAS)]
    if ignored:
        notices.append(f"ignored {', '.join(repr(k[:40]) for k in ignored)} (a comparison link sets presets, size, "
                       "steps, seed, photo and both)")
    ids: list[str] = []
    for preset_id in str(params.get("presets", "")).split(","):
        preset_id = preset_id.strip()
        if not preset_id or preset_id in ids:
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

