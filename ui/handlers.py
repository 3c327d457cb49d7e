"""The page's own events (not part of the public API): choosing presets, photos and examples, opening links,
estimates, taking a Compare result or an Explore cell to the Stylize tab. Each returns {output name: value}
(components.named maps the names to the page's components), so each is testable without a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from stylize import StylizeError
from stylize.experiments.compare import compare_cells
from stylize.experiments.explore import Grid, cell_caption, default_rows, make_grid
from stylize.params import Settings, settings_from_values
from stylize.service import storage
from stylize.service.inputs import editor_background
from stylize.service.stopping import new_token

from . import disk
from .components import settings_values
from .service import COMPARE_DEFAULTS as CD
from .service import DEFAULTS as D
from .service import GRID_DEFAULTS as EX
from .service import studio
from .text import STYLIZE_HINT, adjusted, estimate_note, plain, row_choices, style_label

PRESETS_SHOWN = studio.assets.available_presets()
PHOTO_IDS = list(studio.assets.photos)
EXPLORE_PRESET = "starry_night" if "starry_night" in PRESETS_SHOWN else (PRESETS_SHOWN or [""])[0]
EXAMPLES = studio.assets.examples
KEEP_ON_PRESET = ("size", "steps")  # choosing a preset leaves these as the user set them
STRENGTHS_TEXT = "2, 20, 200, 2000"
TO_STYLIZE_JS = "() => { document.querySelector('#tab-stylize-button')?.click(); window.scrollTo(0, 0); }"


def fresh_token() -> tuple[str, gr.Button]:
    """A new run's stop token, kept in the page's state (on the server: nobody else sees it), and the run's button
    off until the run ends: a second click during a run does nothing, so the token and Stop name the run on screen."""
    return new_token(), gr.Button(interactive=False)


def run_ended() -> gr.Button:
    """The run's button back on, however the run ended (done, stopped, refused)."""
    return gr.Button(interactive=True)


def _painting(preset_id: str | None) -> dict[str, Any]:
    return {"preset": preset_id, "painting": None, "style_md": style_label(preset_id)}


def choose_preset(evt: gr.SelectData) -> dict[str, Any]:
    """A painting clicked: its id and tuned settings (size and steps stay as the user set them)."""
    if not 0 <= evt.index < len(PRESETS_SHOWN):
        raise gr.Error("That preset is not available.")
    preset_id = PRESETS_SHOWN[evt.index]
    return {**_painting(preset_id), **settings_values(studio.assets.presets[preset_id].apply(D), KEEP_ON_PRESET)}


def choose_photo(evt: gr.SelectData) -> str:
    """An example photo clicked (on either tab): that photo, the same on both tabs."""
    return studio.assets.photo_path(PHOTO_IDS[evt.index])


def same(value):
    """The photo added on one tab is the photo on the other."""
    return value


def region_photo(photo: str | None):
    """The photo under the region editor (upright, at most 1024 px), its painted layers starting afresh."""
    background = editor_background(photo)
    return None if background is None else {"background": background, "layers": [], "composite": background}


def choose_example(evt: gr.SelectData) -> dict[str, Any]:
    """A finished example clicked: its photo, painting and settings in the Stylize tab, and its result shown."""
    example = EXAMPLES[evt.index]
    status = (f"Example: **{example.caption}**, made by stylize with these settings. Press **Stylize** to make it "
              "yourself, change anything first, or press **Make it bigger** under it.")
    shown = shown_result(storage.served(example.image, lossless=True))  # a PNG, like any finished result
    return {"photo": studio.assets.photo_path(example.photo), **_painting(example.preset), **shown,
            "status": status, **settings_values(example.settings)}


def query(request: gr.Request | None) -> dict[str, Any]:
    return dict(request.query_params) if request else {}


def shared_page(request: gr.Request | None) -> bool:
    """A page shared with its images (Gradio's deep link): Gradio restores every value; nothing to prefill."""
    return "deep_link" in query(request)


LINK_FILES = ("photo", "painting", "result", "before_after", "png", "compare_photo", "compare_image",
              "compare_gallery", "explore_photo", "explore_painting", "explore_image", "explore_gallery")


def check_link(request: gr.Request) -> dict[str, Any]:
    """A shared page whose images are gone: one message at the top, the image boxes emptied (not broken), the
    settings as shared."""
    if not disk.expired(query(request).get("deep_link")):
        return {"link_notice": ""}
    return {"link_notice": f"**{disk.EXPIRED}**", **dict.fromkeys(LINK_FILES)}


def machine_line() -> dict[str, Any]:
    """The page's first line: where runs happen, and the default run with its estimate as the model stands now."""
    return {"weights_status": studio.weights_status()}


def prefill(request: gr.Request) -> dict[str, Any]:
    """A shared link's query string applied: validated like any input, changes listed in the status line."""
    if shared_page(request):
        return {"autorun": False}
    link = studio.open_link(query(request))
    return {"preset": link.preset_id, "style_md": style_label(link.preset_id), "status": adjusted(link.notices,
            STYLIZE_HINT), "autorun": link.autorun, **settings_values(link.settings)}


# ---- estimates beside the buttons ('' while a value is out of range) -----------------------------------------

def run_estimate(photo, size, steps, scales, style_scale, style_model, extra_paintings) -> str:
    try:
        settings = settings_from_values({"size": size, "steps": steps, "scales": scales, "style_scale": style_scale,
                                         "style_model": style_model}, D)
    except (StylizeError, TypeError, ValueError):
        return ""
    seconds = studio.budget.seconds(settings, styles=1 + len(extra_paintings or []), aspect=aspect_of(photo))
    return estimate_note(studio.estimate(seconds))


def enlarge_estimate(png, factor) -> str:
    """The estimate beside *Make it bigger*, for the finished result shown (its size read from the file)."""
    if not png:
        return ""
    try:
        from PIL import Image

        with Image.open(png) as image:
            size = image.size
        return estimate_note(studio.enlarge_estimate(size, int(factor)))
    except (OSError, TypeError, ValueError, StylizeError):
        return ""


def compare_estimate(photo, presets, size, steps, both_models) -> str:
    """What the comparison will take: each preset with its own tuned settings, as ZeroGPU is asked for."""
    try:
        ids = [i for i in dict.fromkeys(presets or []) if i in studio.assets.presets]
        cells = compare_cells([studio.assets.presets[i] for i in ids], CD.replace(size=int(size), steps=int(steps)),
                              bool(both_models))
    except (StylizeError, TypeError, ValueError):
        return ""
    return estimate_note(studio.estimate(studio.compare_time(cells, aspect_of(photo)))) if cells else ""


def explore_estimate(kind, rows, columns, size, steps) -> str:
    try:
        grid = make_grid(kind, rows or None, columns, EX.replace(size=int(size), steps=int(steps)), studio.device.type)
    except (StylizeError, TypeError, ValueError) as exc:
        return estimate_note(plain(exc)) if isinstance(exc, StylizeError) else ""
    return estimate_note(f"{grid.cells} cells, {studio.estimate(studio.budget.seconds(grid.settings, batch=grid.cells))}")


def aspect_of(photo: str | None) -> tuple[int, int]:
    """The photo's width and height, read from its header (4:3 without a photo or a readable header)."""
    try:
        with Image.open(photo) as image:
            return image.size
    except Exception:  # no photo yet, or one the run itself will refuse with its own message
        return (4, 3)


# ---- Compare --------------------------------------------------------------------------------------------------

def toggle_compare_preset(chosen: list[str] | None, evt: gr.SelectData) -> list[str]:
    """A painting clicked in Compare: added to the comparison, or removed if it was chosen."""
    chosen = list(chosen or [])
    preset_id = PRESETS_SHOWN[evt.index]
    if preset_id in chosen:
        chosen.remove(preset_id)
    elif len(chosen) >= studio.limits.max_compare:
        gr.Warning(f"At most {studio.limits.max_compare} paintings in a comparison: remove one first.")
    else:
        chosen.append(preset_id)
    return chosen


# What a click on a Compare result or an Explore cell sets in the Stylize tab besides its settings: the result
# shown there, with *Make it bigger* under it (#33). The before/after, loss plot and enlargement of the tab's last
# run go: they were of another picture.
SHOWN_RESULT = ("result", "png", "before_after", "loss_plot", "big_result", "big_png", "big_status", "finished")
ENLARGE_HINT = " Press **Make it bigger** under it for print size, or **Stylize** to make it anew at this tab's size."


def shown_result(png: str | None) -> dict[str, Any]:
    """The Stylize tab showing a finished result from elsewhere (a Compare result, an Explore cell) ready to be
    enlarged; with no file (swept, or a cell without both a photo and a painting) the tab's finished part hides, so
    *Make it bigger* never enlarges a picture with settings that did not make it."""
    if not png or not Path(png).is_file():
        return {"finished": gr.Column(visible=False)}
    return {"result": png, "png": png, "before_after": None, "loss_plot": None, "big_result": None, "big_png": None,
            "big_status": "", "finished": gr.Column(visible=True)}


def compare_result(state: list[dict] | None, evt: gr.SelectData) -> dict[str, Any]:
    """A comparison's result clicked: its painting and tuned settings in the Stylize tab (size and steps stay the
    Stylize tab's), and the result itself, to enlarge; the photo is already the same on both tabs."""
    if not state or not 0 <= evt.index < len(state):
        raise gr.Error("Run a comparison first, then click one of its results.")
    cell = state[evt.index]
    shown = shown_result(cell.get("png"))
    return {**_painting(cell["preset"]), **settings_values(Settings(**cell["settings"]), KEEP_ON_PRESET), **shown,
            "status": f"The comparison's **{cell['caption']}**, with its settings." + (
                ENLARGE_HINT if "png" in shown else " Press **Stylize** to make it at this tab's size and steps."),
            "compare_note": f"**{cell['caption']}**: it, its painting and settings are in the *Stylize* tab now.",
            "compare_open": gr.update(visible=True)}


def prefill_compare(request: gr.Request) -> dict[str, Any]:
    """A comparison link (tab=compare): presets, size, steps, seed, both models and an example photo set from it,
    validated like any input, and the tab opened (and, with run=1, the comparison started)."""
    link = None if shared_page(request) else studio.open_compare_link(query(request))
    if link is None:
        return {"compare_opened": False, "compare_autorun": False}
    values = {"compare_presets": link.preset_ids, "compare_size": link.settings.size,
              "compare_steps": link.settings.steps, "seed": link.settings.seed, "compare_both": link.both_models,
              "compare_status": adjusted(link.notices, "Opened from a link." + (
                  "" if link.photo_id else " Add a photo and press **Compare**.")),
              "compare_opened": True, "compare_autorun": link.autorun}
    if link.photo_id:
        values["photo"] = studio.assets.photo_path(link.photo_id)
    return values


# ---- Explore --------------------------------------------------------------------------------------------------

def explore_controls(kind: str, rows: list[str] | None = None, columns: str = "", preset: str | None = None
                     ) -> dict[str, Any]:
    """The Explore tab's controls for an experiment: its rows' check boxes and columns' box, and the images it uses
    (the photo for style and reconstruction, a painting for style and texture; `preset` chosen if given)."""
    rows = list(default_rows(kind, studio.device.type) or ()) if rows is None else rows
    return {"explore_rows": gr.update(choices=row_choices(kind, rows), value=rows, label=(
                "Rows: content layers" if kind == "reconstruction" else "Rows: style layer sets (the paper's a–e)")),
            "explore_columns": gr.update(value=columns, label=(
                "Columns: style strengths β/α, comma-separated" if kind == "style" else
                "Columns: seeds, comma-separated (empty: one column, the seed below)")),
            "explore_photo": gr.update(visible=kind != "texture"),
            "explore_preset": gr.update(visible=kind != "reconstruction", **({"value": preset} if preset else {})),
            "explore_painting": gr.update(visible=kind != "reconstruction")}


def explore_kind_changed(kind: str) -> dict[str, Any]:
    """Another experiment: its default rows and columns."""
    return explore_controls(kind, None, STRENGTHS_TEXT if kind == "style" else "")


def explore_sort_rows(kind: str, rows: list[str]) -> list[str]:
    """Ticked rows in the check boxes' order (a click adds at the end), so the grid reads a → e, top to bottom."""
    order = [value for _, value in row_choices(kind, rows)]
    return sorted(rows or [], key=lambda r: order.index(r) if r in order else len(order))


def explore_cell(state: dict | None, evt: gr.SelectData) -> dict[str, Any]:
    """A grid cell clicked: its settings (layers, strength, init, seed, content layer) and the grid's photo and
    painting in the Stylize tab; size and steps stay as set there."""
    if not state:
        raise gr.Error("Run a grid first.")
    grid = Grid.from_dict(state["grid"])  # written by the run itself: already valid
    if not 0 <= evt.index < grid.cells:
        raise gr.Error("That cell is not in the grid.")
    caption = cell_caption(grid, evt.index)
    values: dict[str, Any] = settings_values(grid.cell_settings()[evt.index], KEEP_ON_PRESET)
    if state.get("photo"):
        values["photo"] = state["photo"]
    if state.get("painting"):
        values.update(preset=None, painting=state["painting"],
                      style_md="Style: **your painting** (from the Explore grid)")
    elif state.get("preset"):
        values.update(_painting(state["preset"]))
    what = {"texture": "a texture from noise: with a photo it becomes a style transfer from noise",
            "reconstruction": "a reconstruction from noise: pick a painting to stylize with these settings"}
    note = f" ({what[grid.kind]})" if grid.kind in what else ""
    cells = state.get("cells") or []  # a style cell has a photo and a painting: it can be enlarged as it is
    values.update(shown_result(cells[evt.index] if grid.kind == "style" and evt.index < len(cells) else None))
    values["status"] = f"The Explore grid's cell **{caption}**{note}, with its settings." + (
        ENLARGE_HINT if "png" in values else " Press **Stylize** (size and steps are this tab's).")
    values["explore_note"] = (f"Cell **{caption}**: its settings{' and the cell' if 'png' in values else ''} are in "
                              "the *Stylize* tab now. Download it with the button above the picture.")
    values["explore_open"] = gr.update(visible=True)
    return values


def prefill_explore(request: gr.Request) -> dict[str, Any]:
    """An Explore link (tab=explore): the tab's controls set from it, validated like any input, and the tab opened.
    Any other page: the default rows and columns shown (the components start empty, which the API reads as "the
    experiment's defaults": a texture or reconstruction call must not inherit the style grid's strengths)."""
    if shared_page(request):
        return {"explore_opened": False}
    link = studio.open_explore_link(query(request))
    if link is None:
        controls = explore_kind_changed("style")
        return {"explore_rows": controls["explore_rows"], "explore_columns": controls["explore_columns"],
                "explore_opened": False}
    grid = link.grid
    return {"explore_kind": grid.kind, **explore_controls(grid.kind, list(grid.rows), link.columns, link.preset_id),
            "explore_size": grid.settings.size, "explore_steps": grid.settings.steps,
            "explore_seed": grid.settings.seed, "explore_opened": True,
            "explore_status": adjusted(link.notices, "Opened from a link: add the images it needs and press **Run the "
                                                     "grid**.")}
