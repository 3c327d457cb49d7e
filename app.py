"""stylize's Gradio Blocks UI: wiring only. The work happens in the `stylize` package (see stylize/studio.py).

ZeroGPU: the two `@spaces.GPU` functions below are the only code that touches the GPU. On a ZeroGPU Space each
runs in a forked worker process and what it yields is pickled back; everything else (loading and checking
inputs, links, result files) runs here, in the web server's process. Elsewhere the decorator does nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import spaces  # noqa: E402  (must come before anything touches CUDA; a no-op off ZeroGPU)

import contextlib  # noqa: E402
import inspect  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
from dataclasses import asdict, fields  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402
from gradio import processing_utils  # noqa: E402

from stylize import Settings, StylizeError  # noqa: E402
from stylize.params import CHOICES, RANGES  # noqa: E402
from stylize.comparison import compare_url, comparison_sheet  # noqa: E402
from stylize.streaming import closing_in_background, preview  # noqa: E402
from stylize.studio import (RUNNING, STYLE_MODEL_NAMES, WEIGHT_CHOICES, Studio, cell_caption,  # noqa: E402
                            row_choices, settings_from_values, share_url, space_base_url)
from stylize.explore import DEFAULT_STRENGTHS, MAX_CELLS, Grid  # noqa: E402
from stylize.regions import KEEP, MAX_REGIONS, UPLOAD  # noqa: E402
from stylize.vgg import FEATURE_LAYERS  # noqa: E402

log = logging.getLogger("stylize.app")
try:
    studio = Studio()  # loads the weights now, on the importing thread (ZeroGPU needs that)
except StylizeError as exc:  # a bad setting in the environment ($STYLIZE_PRECISION): one line, no traceback
    raise SystemExit(f"stylize: {exc}") from None
D, LIMITS, CD = studio.defaults, studio.limits, studio.compare_defaults
PRESET_GALLERY = studio.thumbnails()  # (thumbnail, title) of every preset whose image is present
PRESETS_SHOWN = studio.available_presets()  # their ids, in the same order
EXAMPLES = studio.examples()
PHOTO_IDS = list(studio.photos)
LAYER_SET_LABELS = {"a": "a: conv1", "b": "b: conv1–2", "c": "c: conv1–3", "d": "d: conv1–4", "e": "e: conv1–5 (paper)"}
LOSS_COLOURS = {"total": "#1f2937", "content": "#2563eb", "style": "#dc2626"}  # the legend, in this order
KEEP_ON_PRESET = ("size", "steps")  # choosing a preset leaves these as the user set them
REGION_CHOICES = ([("Keep the photo", KEEP), ("Your uploaded painting", UPLOAD)]
                  + [(studio.presets[i].title, i) for i in PRESETS_SHOWN])  # what a painted region gets
MAX_UPLOAD = "10mb"  # = stylize.studio.MAX_UPLOAD_BYTES


class PhotoInput(gr.Image):
    """gr.Image that hands the app the uploaded file itself, undecoded.

    gr.Image converts uploads with PIL first (to RGB by default: transparency turned black, 16-bit grey
    clipped to white, every pixel decoded before any size check). This one returns the file's path, so
    stylize's own loader sees the original bytes and checks the header before decoding anything.
    """

    is_template = True  # reuse gr.Image's frontend (gradio also writes an app.pyi stub at import; git ignores it)

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):  # base64 from some clients: to a file, undecoded
            return processing_utils.save_base64_to_cache(payload.url, self.GRADIO_CACHE)
        if payload.path is None:
            raise gr.Error("The image arrived without a file.", title="Can't read this image")
        return payload.path


class RegionEditor(gr.ImageEditor):
    """gr.ImageEditor that hands the app its files as uploaded, undecoded: {"background", "layers", "composite"}
    as paths (or None). gr.ImageEditor would decode and convert every layer with PIL first; stylize's mask
    loader reads the layers itself, with its checks before any pixel is decoded (like PhotoInput)."""

    is_template = True  # gr.ImageEditor's frontend

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.id is not None:  # sent as blobs (the editor's fallback): written to files as they came
            blobs = self.blob_storage.pop(payload.id, None)
            if blobs is None:
                return None

            def saved(data, name):
                return None if data is None else processing_utils.save_bytes_to_cache(data, name, self.GRADIO_CACHE)

            return {"background": saved(blobs.background, "background.png"),
                    "layers": [saved(layer, f"layer_{n}.png") for n, layer in enumerate(blobs.layers)],
                    "composite": saved(blobs.composite, "composite.png")}
        return {"background": payload.background.path if payload.background else None,
                "layers": [layer.path for layer in payload.layers],
                "composite": payload.composite.path if payload.composite else None}


class RowsInput(gr.CheckboxGroup):
    """Check boxes for a grid's rows, whose choices change with the experiment (the style layer sets a–e, or
    content layers). The server keeps only the first set of choices, so gr.CheckboxGroup would refuse the others:
    this one passes any list of row names on, and the grid (stylize.explore.Grid) validates them, for the UI and
    the API alike (custom layer lists included)."""

    is_template = True  # gr.CheckboxGroup's frontend

    def preprocess(self, payload):
        if payload is None:
            return []
        return [str(value) for value in (payload if isinstance(payload, list) else [payload])]

    def api_info(self):
        return {"items": {"type": "string"}, "title": "Rows", "type": "array"}


# ---- glue --------------------------------------------------------------------------------------------------

def strength_from_log(log_strength: float) -> float:
    """The strength slider works in log₁₀; three significant digits are what a slider position means."""
    return float(f"{10 ** float(log_strength):.3g}")


def slider_position(strength: float) -> float:
    """Where the log-scale slider shows a strength (display only: the number box holds the exact value)."""
    return round(math.log10(strength), 2)


def session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


def base_url(request: gr.Request | None) -> str:
    if space_base_url():
        return space_base_url()
    if request is not None and getattr(request, "request", None) is not None:
        return str(request.request.base_url)
    return "http://127.0.0.1:7860/"


def loss_table(history) -> pd.DataFrame:
    rows = [(step, term, math.log10(value)) for step, term, value in history if value > 0]  # log scale: no zeros
    return pd.DataFrame(rows, columns=["step", "term", "log10 loss"])


@contextlib.contextmanager
def user_errors(title: str):
    """Errors as one clear message for the user (a gr.Error also crosses ZeroGPU's process boundary intact)."""
    try:
        yield
    except StylizeError as exc:
        raise gr.Error(str(exc), title=title) from None
    except gr.Error:
        raise
    except Exception as exc:  # keep serving; the log has the trace
        log.exception("run failed")
        raise gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). Your inputs are unchanged; try again.",
                       title=title) from None


# ---- the GPU part (on ZeroGPU: a forked worker process) ----------------------------------------------------

def _run_seconds(photo, styles, settings, source, stop, masks=None) -> int:
    return studio.budget.request(settings, styles=len(styles))


@spaces.GPU(duration=_run_seconds)
def run_on_gpu(photo, styles, settings, source, stop, masks=None):
    """The engine's part of /stylize: throttled updates (picklable), stopped by `stop` (a file); `masks` (8-bit
    grey PIL images, one per style) paint each style into its region."""
    with user_errors("Can't stylize this"):
        yield from studio.run(photo, styles, settings, source, stop, masks)


def _compare_seconds(photo, preset_ids, settings, source, stop, both_models=False) -> int:
    return studio.compare_seconds(preset_ids, settings, both_models)


@spaces.GPU(duration=_compare_seconds)
def compare_on_gpu(photo, preset_ids, settings, source, stop, both_models=False):
    """The engine's part of /compare: (gallery items, status) as the presets run (batched where that is faster)."""
    with user_errors("Can't compare"):
        yield from studio.compare(photo, preset_ids, settings, source, stop, both_models)


def _explore_seconds(grid, content, style, source, stop) -> int:
    return studio.explore_seconds(grid)


@spaces.GPU(duration=_explore_seconds)
def explore_on_gpu(grid, content, style, source, stop):
    """The engine's part of /explore: every cell in one batch, `GridUpdate`s (picklable), stopped by `stop`."""
    with user_errors("Can't run this grid"):
        yield from studio.explore(grid, content, style, source, stop)


# ---- public endpoints (API and MCP tools) --------------------------------------------------------------------

SETTINGS: dict[str, gr.components.Component] = {}  # one input component per Settings field, filled by the layout


def settings_api(fixed: list[tuple[str, type, object, str]], summary: str, returns: str):
    """Give `body(values, request)` the public signature `fixed` + one parameter per Settings field (named like
    the field, defaulting to this machine's default) + `request`, and a docstring with one `Args:` line per
    parameter: Gradio's API page and its MCP server read both. A new Settings field needs only a component."""
    def describe(name: str, component) -> str:
        text = component.label or name
        if getattr(component, "minimum", None) is not None and getattr(component, "maximum", None) is not None:
            text += f"; {component.minimum:g} to {component.maximum:g}"
        elif name in CHOICES:
            text += f"; one of {', '.join(CHOICES[name])}"
        return f"{text}; default {getattr(D, name)!r}"

    def decorate(body):
        P = inspect.Parameter
        params = [P(name, P.POSITIONAL_OR_KEYWORD, default=default, annotation=kind) for name, kind, default, _ in fixed]
        params += [P(name, P.POSITIONAL_OR_KEYWORD, default=getattr(D, name), annotation=type(getattr(D, name)))
                   for name in SETTINGS]
        params.append(P("request", P.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request))
        signature = inspect.Signature(params)

        def endpoint(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            request = values.pop("request")
            yield from body(values, request)

        args = [f"    {name}: {text}" for name, _, _, text in fixed]
        args += [f"    {name}: {describe(name, component)}" for name, component in SETTINGS.items()]
        endpoint.__name__ = endpoint.__qualname__ = body.__name__
        endpoint.__signature__ = signature
        endpoint.__annotations__ = {p.name: p.annotation for p in params}
        endpoint.__doc__ = f"{summary}\n\nArgs:\n" + "\n".join(args) + f"\n\nReturns:\n    {returns}\n"
        return endpoint
    return decorate


def stylize(values: dict, request: gr.Request | None):
    yield from run_stylize(values, request)


def stylize_in_page(values: dict, request: gr.Request | None):
    """The Stylize button: /stylize's run, with the painted regions (the editor's layers and each region's
    choice) as one style image and one mask per style (stylize/regions.py)."""
    editor = values.pop("regions") or {}
    choices = [values.pop(f"region_{n}") for n in range(1, MAX_REGIONS + 1)]
    yield from run_stylize(values, request, (editor.get("layers") or [], choices))


def run_stylize(values: dict, request: gr.Request | None, regions: tuple[list, list] | None = None):
    with user_errors("Can't stylize this"):
        settings = settings_from_values(values, D)
        painted = regions and studio.region_inputs(values["content"], values["preset"], values["style_upload"],
                                                   values["extra_styles"], *regions)
        notices = []
        if painted:
            photo, styles, masks, preset_id = painted
        else:
            photo, styles, preset_id = studio.load_inputs(values["content"], values["preset"], values["style_upload"],
                                                          values["extra_styles"])
            if photo is None:
                raise StylizeError("add a photo first (upload, webcam or clipboard)")
            masks, notices = studio.load_masks(values.get("masks"), len(styles), photo)
        if masks and settings.style_model != "gram":
            raise StylizeError("painted regions and masks work with the Gram style model: choose "
                               f"'{STYLE_MODEL_NAMES['gram']}' under Advanced (style_model 'gram')")
        studio.check(settings, styles=len(styles))
        link = share_url(base_url(request), settings, [preset_id] if preset_id else [])
        note = "".join(f" · {notice}" for notice in notices)
        yield None, "Starting…" + note, gr.skip(), gr.skip(), gr.skip(), link
        update = None
        with studio.stop_flag(session(request)) as stop:
            for update in closing_in_background(run_on_gpu(photo, styles, settings, values["weights"], stop, masks)):
                if not update.final:
                    yield preview(update.frame.image), update.status + note, *[gr.skip()] * 4
        if update is None or not update.final:
            raise StylizeError("the run ended without a result; try again")
        studio.observe(settings, update.frame, styles=len(styles))  # the estimates learn this machine's speed
        pair, png = studio.finish(photo, update.frame.image)
        yield png, update.status + note, pair, png, loss_table(update.history), link


def compare(content: str, preset_ids: list[str], size: int = CD.size, steps: int = CD.steps, seed: int = CD.seed,
            weights: str = "auto", both_models: bool = False, request: gr.Request = None):
    """Stylize one photo with several preset paintings, each with its own tuned settings, and return one comparison
    sheet: the photo first, then each result captioned with its painting's title (and style model when both are
    asked), as a PNG, with a status line. The status streams while the results form; the sheet comes at the end.

    Args:
        content: the photo (an image file, URL or data: URL)
        preset_ids: preset painting ids, at most 6, e.g. ["starry_night", "the_scream"]; duplicates are ignored
        size: longest side of each result in pixels
        steps: optimizer steps per painting
        seed: random seed (noise initialization)
        weights: which VGG-19 weights to use; one of auto, hub, embedded
        both_models: also run each preset with the other style model: every preset twice, side by side, once with Gram matrices (Gatys 2015) and once with patches (Li & Wand 2016); captions name the model

    Returns:
        the comparison sheet (PNG; None until the end), and a status line
    """
    for _, status, sheet, _, _ in run_compare(content, preset_ids, size, steps, seed, weights, both_models, request):
        yield sheet, status


def run_compare(content, preset_ids, size, steps, seed, weights, both_models, request: gr.Request = None):
    """The Compare button's run: (gallery, status, sheet PNG or None, link, the shown results' cells)."""
    with user_errors("Can't compare"):
        ids = studio.compare_ids(preset_ids)
        settings = CD.replace(size=int(size), steps=int(steps), seed=int(seed))
        cells = studio.compare_cells(ids, settings, bool(both_models))
        studio.check_compare(cells)
        photo = studio.load_upload(content, "the photo") if content else None
        if photo is None:
            raise StylizeError("add a photo first (upload, webcam, clipboard or an example photo)")
        link = compare_url(base_url(request), ids, settings, studio.example_photo_id(content), bool(both_models))
        by_caption = {**{cell.caption: cell for cell in cells}, **{cell.title + RUNNING: cell for cell in cells}}
        saved: dict[str, str] = {}  # caption -> lossless PNG of a finished result, written once
        shown, status = [], ""
        with studio.stop_flag(session(request)) as stop:
            for gallery, status in closing_in_background(compare_on_gpu(photo, ids, settings, weights, stop,
                                                                         bool(both_models))):
                # A finished result is sent as its file from then on: Gradio would otherwise encode it again for
                # every update, rewriting the same cache file while a browser may be downloading it.
                for image, caption in gallery:
                    if not caption.endswith(RUNNING) and caption not in saved:
                        saved[caption] = studio.save_result(image)
                shown = [(saved.get(caption) or preview(image), caption) for image, caption in gallery]
                state = [cell_state(by_caption[caption]) for _, caption in gallery]
                yield shown, status, None, link, state
        finished = [cell for cell in cells if cell.caption in saved]
        if not finished:
            raise StylizeError("the comparison ended before any result was finished; try again")
        sheet = comparison_sheet(photo, [Image.open(saved[c.caption]) for c in finished], [c.title for c in finished])
        yield shown, status, studio.save_result(sheet), link, [cell_state(c) for c in finished]


def cell_state(cell) -> dict:
    """What a click on a comparison's result needs of it (kept in the page's state)."""
    return {"preset": cell.preset_id, "caption": cell.caption, "settings": asdict(cell.settings)}


def stop_run(request: gr.Request):
    """Stop: the session's run ends after its current step and keeps its image as the result."""
    studio.request_stop(session(request))


EX = studio.explore_defaults()  # a grid's base settings here (small cells: a grid is many images at once)
EXPLORE_PRESET = "starry_night" if "starry_night" in PRESETS_SHOWN else (PRESETS_SHOWN or [""])[0]
STRENGTHS_TEXT = ", ".join(f"{c:g}" for c in DEFAULT_STRENGTHS)
KIND_CHOICES = [("Style transfer grid (Fig. 3)", "style"), ("Texture synthesis (Fig. 1)", "texture"),
                ("Content reconstruction (Fig. 1)", "reconstruction")]


def explore(kind: str = "style", photo: str | None = None, painting: str | None = None, rows: list[str] | None = None,
            columns: str = "", size: int = EX.size, steps: int = EX.steps, seed: int = EX.seed,
            preset: str = EXPLORE_PRESET, weights: str = "auto", request: gr.Request = None):
    """Run one of the experiments of Gatys et al. (2015) as a grid of images, every cell optimized at once in one
    batch and streamed about once a second as the cells converge; the last update has the labelled grid image.

    Args:
        kind: the experiment; one of style (style transfer, the paper's Fig. 3: needs a photo and a painting), texture (texture synthesis from noise, Fig. 1: needs a painting), reconstruction (content reconstruction from noise, Fig. 1: needs a photo)
        photo: the photo (an image file or URL); used by style and reconstruction
        painting: your own painting (an image file or URL), instead of preset; used by style and texture
        rows: one grid row per entry. For style and texture, style layer sets: the paper's a, b, c, d, e (a = relu1_1, b = relu1_1 and relu2_1, ..., e = relu1_1 to relu5_1) or your own comma-separated list such as "relu1_1,relu3_1"; for reconstruction, content layers such as relu1_1 ... relu5_1 or relu4_2. Empty: {style_rows} (style, texture); {content_rows} (reconstruction)
        columns: comma-separated numbers, one grid column each. For style, style strengths beta/alpha from {low:g} to {high:g} (empty: 2, 20, 200, 2000); for texture and reconstruction, seeds of the starting noise (empty: one column, the seed). At most {cells} cells (rows x columns)
        size: longest side of each cell in pixels; 64 to {size}
        steps: optimizer steps; 1 to {steps}
        seed: seed of the random noise that texture and reconstruction cells start from (used when columns is empty)
        preset: preset painting id, used when no painting is given; one of {presets}
        weights: which VGG-19 weights to use; one of auto, hub, embedded

    Returns:
        the labelled grid image (PNG: row and column labels and a title drawn on it; on the last update), the cells as (image, caption) pairs row by row (caption: row, column and loss), a status line, and a link that reopens the Explore tab with this grid
    """
    with user_errors("Can't run this grid"):
        settings = EX.replace(size=int(size), steps=int(steps), seed=int(seed))
        grid = studio.explore_grid(kind, rows, columns, settings)
        painting = painting or None
        preset = (preset or "") if not painting else ""
        grid.check_images(photo or None, painting or preset or None)  # before any image is decoded
        content = studio.load_upload(photo, "the photo") if grid.kind != "texture" else None
        style, preset_id = (None, None) if grid.kind == "reconstruction" else studio.load_style(preset, painting)
        link = studio.explore_url(base_url(request), grid, preset_id)
        state = {"grid": grid.to_dict(), "photo": photo if content is not None else None,
                 "painting": painting if style is not None else None, "preset": preset_id}
        yield None, gr.Gallery(value=[], columns=gallery_columns(grid)), "Starting…", link, state
        update = None
        with studio.stop_flag(session(request)) as stop:
            for update in closing_in_background(explore_on_gpu(grid, content, style, weights, stop)):
                if not update.final:
                    yield gr.skip(), update.cells, update.status, gr.skip(), gr.skip()
        if update is None or not update.final:
            raise StylizeError("the grid ended without a result; try again")
        yield grid.labelled(update.images), update.cells, update.status, link, state


explore.__doc__ = explore.__doc__.format(
    style_rows=", ".join(studio.explore_rows("style")), content_rows=", ".join(studio.explore_rows("reconstruction")),
    low=RANGES["style_strength"][0], high=RANGES["style_strength"][1], cells=MAX_CELLS, size=LIMITS.max_size,
    steps=LIMITS.max_steps, presets=", ".join(studio.presets))


def gallery_columns(grid: Grid) -> int:
    """The cells' gallery shows the grid's columns (a one-column grid as one row, like the labelled image)."""
    return len(grid.rows) if len(grid.columns) == 1 else len(grid.columns)


# ---- internal events ------------------------------------------------------------------------------------------

def estimate_note(text: str) -> str:
    return f"<small>{text}</small>" if text else ""


def run_estimate(size, steps, scales, style_scale, style_model, extra_styles):
    """What the Stylize button will take here, before the click ('' while a value is out of range)."""
    try:
        settings = D.replace(size=int(size), steps=int(steps), scales=int(scales), style_scale=float(style_scale),
                             style_model=style_model)
    except (StylizeError, TypeError, ValueError):
        return ""
    return estimate_note(studio.budget.estimate(settings, styles=1 + len(extra_styles or [])))


def compare_estimate(preset_ids, size, steps, both_models):
    try:
        return estimate_note(studio.compare_estimate(list(dict.fromkeys(preset_ids or [])),
                                                     CD.replace(size=int(size), steps=int(steps)), bool(both_models)))
    except (StylizeError, TypeError, ValueError):
        return ""


def explore_estimate(kind, rows, columns, size, steps):
    try:
        grid = studio.explore_grid(kind, rows or None, columns, EX.replace(size=int(size), steps=int(steps)))
    except (StylizeError, TypeError, ValueError) as exc:
        return estimate_note(str(exc)[:200]) if isinstance(exc, StylizeError) else ""
    return estimate_note(f"{grid.cells} cells, {studio.budget.estimate(grid.settings, batch=grid.cells)}")


def settings_values(settings: Settings, keep: tuple[str, ...] = ()) -> list:
    """Values for [*SETTINGS components, the strength slider]; fields in `keep` stay as they are."""
    return [gr.skip() if name in keep else getattr(settings, name) for name in SETTINGS] + [
        slider_position(settings.style_strength)]


def style_label(preset_id: str | None) -> str:
    return f"Style: **{studio.presets[preset_id].caption}**" if preset_id else "Style: *none chosen yet*"


def choose_preset(evt: gr.SelectData):
    """Gallery click -> preset id and its tuned settings (size and steps stay as the user set them)."""
    if not 0 <= evt.index < len(PRESETS_SHOWN):
        raise gr.Error("That preset is not available.")
    preset_id = PRESETS_SHOWN[evt.index]
    return [preset_id, None, style_label(preset_id)] + settings_values(studio.presets[preset_id].apply(D), KEEP_ON_PRESET)


def region_photo(photo: str | None):
    """The photo under the region editor (upright, at most 1024 px), its painted layers starting afresh."""
    background = studio.region_background(photo)
    return None if background is None else {"background": background, "layers": [], "composite": background}


def choose_photo(evt: gr.SelectData):
    """Example photo click (on either tab) -> that photo (the photo is the same on both tabs)."""
    return studio.photo_path(PHOTO_IDS[evt.index])


def same_photo(photo: str | None):
    """The photo added on one tab is the photo on the other."""
    return photo


def toggle_compare_preset(chosen: list[str] | None, evt: gr.SelectData):
    """A click on a painting in Compare adds it to the comparison, or removes it if it was chosen."""
    chosen = list(chosen or [])
    preset_id = PRESETS_SHOWN[evt.index]
    if preset_id in chosen:
        chosen.remove(preset_id)
    elif len(chosen) >= LIMITS.max_compare:
        gr.Warning(f"At most {LIMITS.max_compare} paintings in a comparison: remove one first.")
    else:
        chosen.append(preset_id)
    return chosen


def compare_result(state: list[dict] | None, evt: gr.SelectData):
    """A click on a comparison's result -> its painting and tuned settings in the Stylize tab (size and steps stay
    the Stylize tab's), as a click on an Explore cell does; the photo is already the same on both tabs."""
    if not state or not 0 <= evt.index < len(state):
        raise gr.Error("Run a comparison first, then click one of its results.")
    cell = state[evt.index]
    settings = Settings(**cell["settings"])
    status_text = (f"Settings of the comparison's **{cell['caption']}**. Press **Stylize** to make it at this tab's "
                   "size and steps.")
    note = f"**{cell['caption']}**: its painting and settings are in the *Stylize* tab now."
    return [cell["preset"], None, style_label(cell["preset"]), status_text, *settings_values(settings, KEEP_ON_PRESET),
            note, gr.update(visible=True)]


def prefill_compare(request: gr.Request):
    """A comparison link (tab=compare): presets, size, steps, seed, both models and an example photo set from it,
    validated like any input, and the tab opened (and, with run=1, the comparison started)."""
    link = studio.open_compare_link(dict(request.query_params) if request else {})
    if link is None:
        return [gr.skip()] * 7 + [False, False]
    photo = studio.photo_path(link.photo_id) if link.photo_id else gr.skip()
    status = "Opened from a link." + ("" if link.photo_id else " Add a photo and press **Compare**.")
    if link.notices:
        status = "This link was adjusted: " + "; ".join(link.notices) + ". " + status
    return [link.preset_ids, link.settings.size, link.settings.steps, link.settings.seed, link.both_models, photo,
            status, True, link.autorun]


def choose_example(evt: gr.SelectData):
    """Finished example click -> its photo, painting and settings in the Stylize tab, and its result shown."""
    example = EXAMPLES[evt.index]
    status = (f"Example: **{example.caption}**, made by stylize with these settings. Press **Stylize** to make it "
              "yourself, or change anything first.")
    return ([studio.photo_path(example.photo), example.preset, None, style_label(example.preset),
             studio.served(example.image), status] + settings_values(example.settings))


def prefill(request: gr.Request):
    """Apply a shared link's query string: validated like any input, changes listed in the status line."""
    link = studio.open_link(dict(request.query_params) if request else {})
    status = "Pick a painting, add a photo, press **Stylize**."
    if link.notices:
        status = "This link was adjusted: " + "; ".join(link.notices) + "."
    return [link.preset_id, style_label(link.preset_id), status, link.autorun] + settings_values(link.settings)


def explore_kind_controls(kind: str, rows: list[str] | None = None, columns: str = "", preset: str | None = None) -> list:
    """The Explore tab's controls for an experiment: its rows' check boxes and columns' box, and the images
    it uses (the photo for style and reconstruction, a painting for style and texture; `preset` chosen if given)."""
    rows = list(studio.explore_rows(kind)) if rows is None else rows
    row_label = "Rows: content layers" if kind == "reconstruction" else "Rows: style layer sets (the paper's a–e)"
    column_label = ("Columns: style strengths β/α, comma-separated" if kind == "style" else
                    "Columns: seeds, comma-separated (empty: one column, the seed below)")
    return [gr.update(choices=row_choices(kind, rows), value=rows, label=row_label),
            gr.update(value=columns, label=column_label),
            gr.update(visible=kind != "texture"),
            gr.update(visible=kind != "reconstruction", **({"value": preset} if preset else {})),
            gr.update(visible=kind != "reconstruction")]


def explore_kind_changed(kind: str) -> list:
    """Another experiment: its default rows and columns."""
    return explore_kind_controls(kind, None, STRENGTHS_TEXT if kind == "style" else "")


def explore_sort_rows(kind: str, rows: list[str]) -> list[str]:
    """Ticked rows in the check boxes' order (a click adds at the end), so the grid reads a → e, top to bottom."""
    order = [value for _, value in row_choices(kind, rows)]
    return sorted(rows or [], key=lambda r: order.index(r) if r in order else len(order))


def explore_cell(state: dict | None, evt: gr.SelectData):
    """A click on a grid cell -> its settings (layers, strength, init, seed, content layer), and the grid's photo
    and painting, in the Stylize tab; size and steps stay as set there."""
    if not state:
        raise gr.Error("Run a grid first.")
    grid = Grid.from_dict(state["grid"])  # written by explore() itself: already valid
    if not 0 <= evt.index < grid.cells:
        raise gr.Error("That cell is not in the grid.")
    caption = cell_caption(grid, evt.index)
    settings = grid.cell_settings()[evt.index]
    photo = state.get("photo") or gr.skip()
    if state.get("painting"):
        painting = [None, state["painting"], "Style: **your painting** (from the Explore grid)"]
    elif state.get("preset"):
        painting = [state["preset"], None, style_label(state["preset"])]
    else:
        painting = [gr.skip()] * 3
    what = {"texture": "a texture from noise: with a photo it becomes a style transfer from noise",
            "reconstruction": "a reconstruction from noise: pick a painting to stylize with these settings"}
    note = f" ({what[grid.kind]})" if grid.kind in what else ""
    status_text = (f"Settings from the Explore grid's cell **{caption}**{note}. Press **Stylize** (size and steps "
                   "are this tab's).")
    explore_note = (f"Cell **{caption}**: its settings are in the *Stylize* tab now. Download it with the "
                    "button above the picture.")
    return [photo, *painting, status_text, *settings_values(settings, KEEP_ON_PRESET), explore_note,
            gr.update(visible=True)]


def prefill_explore(request: gr.Request):
    """An Explore link (tab=explore): the tab's controls set from it, validated like any input, and the tab opened.
    Any other page: the default rows and columns shown (the components start empty, which the API reads as "the
    experiment's defaults": a texture or reconstruction call must not inherit the style grid's strengths)."""
    link = studio.open_explore_link(dict(request.query_params) if request else {})
    if link is None:
        return [gr.skip(), *explore_kind_changed("style")[:2]] + [gr.skip()] * 7 + [False]
    grid = link.grid
    status = "Opened from a link: add the images it needs and press **Run the grid**."
    if link.notices:
        status = "This link was adjusted: " + "; ".join(link.notices) + ". " + status
    return [grid.kind, *explore_kind_controls(grid.kind, list(grid.rows), link.columns, link.preset_id),
            grid.settings.size, grid.settings.steps, grid.settings.seed, status, True]


# ---- layout ---------------------------------------------------------------------------------------------------

CSS = """
/* The result fills its box: a 256 px result is shown large, not as a thumbnail (smoothly scaled). */
#result img { width: 100% !important; height: 100% !important; object-fit: contain; image-rendering: auto; }
footer { display: none !important; }
/* The loss plot's legend (below the chart) is not clipped. */
#loss-plot, #loss-plot * { overflow: visible !important; }
#loss-plot { padding-bottom: 2.2rem !important; }
/* Galleries (examples, photos, paintings, compare results): every item shown, no scrolling, whole captions
   beneath the pictures instead of cut-off labels over them. Thumbnails (.thumbs) are cropped square. */
.captions-below .grid-wrap { min-height: 0 !important; max-height: none !important; height: auto !important;
                             overflow: visible !important; }
.captions-below .grid-container { grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important;
                                  grid-template-rows: none !important; grid-auto-rows: auto !important;
                                  padding-top: 2.4rem !important; }
.captions-below .thumbnail-item { aspect-ratio: auto !important; height: auto !important; display: flex !important;
                                  flex-direction: column; }
.captions-below .thumbnail-item img { width: 100%; height: auto; object-fit: contain; }
.thumbs .thumbnail-item img { aspect-ratio: 1 / 1; object-fit: cover; }
.captions-below .caption-label { position: static !important; max-width: none !important; white-space: normal !important;
                                 overflow: visible !important; text-overflow: clip !important; opacity: 1 !important;
                                 border: none !important; border-radius: 0 !important; line-height: 1.25;
                                 overflow-wrap: break-word; hyphens: auto; font-size: 0.8rem; }
#photos .caption-label { display: none; }  /* the pictures speak for themselves; titles and credits are below */
#examples .thumbnail-item img { aspect-ratio: 4 / 3; }
@media (max-width: 640px) {
  #result { height: min(520px, 90vw) !important; }
  #slider { height: min(440px, 80vw) !important; max-height: min(440px, 80vw) !important; }
  #presets .grid-container, #photos .grid-container { --grid-cols: 3 !important; }
  #examples .grid-container { --grid-cols: 2 !important; }
}
/* Explore: cell captions break between words only ("β/α=200" stays whole); the labelled grid is shown whole
   (crisp at its own size, shrunk to fit a phone), below its label rather than under it. */
#explore-cells .caption-label { overflow-wrap: normal !important; word-break: keep-all; hyphens: none !important; }
#explore-grid { padding-top: 2.4rem !important; }
#explore-grid img { max-width: 100% !important; height: auto !important; max-height: none !important; }
#explore-grid .image-container, #explore-grid .image-frame { height: auto !important; max-height: none !important; }
@media (max-width: 640px) {  /* two cells a row: a caption fits in two lines (the labelled grid keeps the layout) */
  #explore-cells .grid-container { --grid-cols: 2 !important; }
}
"""


def results_column(prefix: str, hint: str, gallery_id: str, gallery_label: str, columns: int, preview_format: str,
                   image_id: str, image_label: str, link_of: str) -> tuple:
    """Compare's and Explore's results: status, a gallery of results to click, a note with "Open it in Stylize",
    the labelled image (PNG), and the link."""
    status_md = gr.Markdown(hint, elem_id=f"{prefix}-status")
    gallery_ = gr.Gallery(label=gallery_label, columns=columns, height="auto", format=preview_format,
                          buttons=["download"], elem_id=gallery_id, elem_classes="captions-below")
    with gr.Row():
        note = gr.Markdown("", elem_id=f"{prefix}-note")
        open_btn = gr.Button("Open it in Stylize →", visible=False, size="sm", elem_id=f"{prefix}-open")
    image = gr.Image(label=image_label, format="png", interactive=False, buttons=["download", "fullscreen"],
                     elem_id=image_id)
    link_box = gr.Textbox(label=f"Link to {link_of}", buttons=["copy"], elem_id=f"{prefix}-link")
    return status_md, gallery_, note, open_btn, image, link_box


def number_slider(name: str, low, high, step, label, **kwargs):
    return gr.Slider(low, high, value=getattr(D, name), step=step, label=label, elem_id=name.replace("_", "-"), **kwargs)


with gr.Blocks(title="stylize — neural style transfer", delete_cache=(600, 3600)) as demo:
    gr.Markdown("# stylize\nPaint your photo in the style of a painting — the algorithm of Gatys, Ecker & Bethge (2015).")
    gr.Markdown(studio.weights_status(), elem_id="weights-status")
    preset_state = gr.Textbox("", visible=False, elem_id="preset-id")
    autorun = gr.State(False)
    with gr.Tab("Stylize", elem_id="tab-stylize"):
        if EXAMPLES:
            examples = gr.Gallery(studio.example_thumbnails(), label="Made with stylize: click one to load it",
                                  columns=6, height="auto", allow_preview=False, buttons=[], interactive=False,
                                  elem_id="examples", elem_classes=["thumbs", "captions-below"])
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                content = PhotoInput(label="1 · Your photo", type="filepath", sources=["upload", "webcam", "clipboard"],
                                     elem_id="content", height=240)
                photos = gr.Gallery(studio.photo_thumbnails(), label="…or an example photo", columns=6, height="auto",
                                    allow_preview=False, buttons=[], interactive=False, elem_id="photos",
                                    elem_classes=["thumbs", "captions-below"])
                gr.Markdown("<small>Example photos: " + " · ".join(
                    f"{studio.photo_title(p.id)}, {p.licence}" for p in studio.photos.values())
                    + " (full credits at the bottom of the page)</small>", elem_id="photo-credits")
                gallery = gr.Gallery(PRESET_GALLERY, label="2 · Pick a painting", columns=5, height="auto",
                                     allow_preview=False, buttons=[], interactive=False, elem_id="presets",
                                     elem_classes=["thumbs", "captions-below"])
                with gr.Accordion("…or use your own painting(s)", open=False):
                    style_upload = PhotoInput(label="Your painting", type="filepath", sources=["upload", "clipboard"],
                                              height=160, elem_id="style-upload")
                    extra_styles = gr.File(label=f"More style images, blended (up to {LIMITS.max_styles - 1})",
                                           file_count="multiple", file_types=["image"], height=80)
                    SETTINGS["style_blend"] = gr.Textbox(label="Blend weights, one per style image (e.g. 2,1)", value="")
                with gr.Accordion("Paint regions", open=False, elem_id="regions-accordion"):
                    gr.Markdown(f"Paint up to {MAX_REGIONS} regions over your photo with the brush, one per layer "
                                "(*Region 1–3* in the editor's layer menu), and choose a painting for each, or *keep "
                                "the photo*. The painting picked above fills the rest of the photo; with none picked, "
                                "the rest keeps the photo too. Works with the Gram style model.",
                                elem_id="regions-help")
                    region_editor = RegionEditor(
                        label="Regions over your photo", type="filepath", sources=[], transforms=[], image_mode="RGBA",
                        format="png", height=380, elem_id="region-editor",
                        layers=gr.LayerOptions(layers=[f"Region {n}" for n in range(1, MAX_REGIONS + 1)]),
                        brush=gr.Brush(colors=["#e11d48", "#2563eb", "#16a34a", "#f59e0b"], color_mode="defaults"),
                        placeholder="Add a photo above: it appears here to paint on.")
                    with gr.Row():
                        region_choices = [gr.Dropdown(REGION_CHOICES, value=None, label=f"Region {n}",
                                                      elem_id=f"region-{n}", min_width=120)
                                          for n in range(1, MAX_REGIONS + 1)]
            with gr.Column(scale=6, min_width=320):
                style_md = gr.Markdown(style_label(None), elem_id="style-label")
                with gr.Row(equal_height=True):
                    strength_scale = gr.Slider(*[math.log10(v) for v in RANGES["style_strength"]],
                                               value=slider_position(D.style_strength), step=0.01, scale=3,
                                               label="Style strength (log scale)", elem_id="strength-scale")
                    SETTINGS["style_strength"] = gr.Number(
                        D.style_strength, minimum=RANGES["style_strength"][0], maximum=RANGES["style_strength"][1],
                        label="Style strength β/α", scale=1, min_width=110, elem_id="strength")
                with gr.Row():
                    SETTINGS["size"] = number_slider("size", 64, LIMITS.max_size, 32, "Size (longest side, px)")
                    SETTINGS["steps"] = number_slider("steps", 1, LIMITS.max_steps, 1, "Steps")
                with gr.Row(equal_height=True):
                    run_btn = gr.Button("3 · Stylize", variant="primary", elem_id="run", scale=2)
                    run_estimate_md = gr.Markdown(estimate_note(studio.budget.estimate(D)), elem_id="run-estimate")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
                status = gr.Markdown("Pick a painting, add a photo, press **Stylize**.", elem_id="status")
                result = gr.Image(label="Result", format="jpeg", interactive=False, buttons=["download", "fullscreen"],
                                  elem_id="result", height=520)
                before_after = gr.ImageSlider(label="Before / after", type="pil", format="png", interactive=False,
                                              elem_id="slider", height=440, max_height=440, visible=False)
                png_file = gr.File(label="Download PNG (lossless)", elem_id="png", visible=False)
                loss_plot = gr.LinePlot(x="step", y="log10 loss", color="term", label="Loss (log₁₀) per step",
                                        x_title="step", y_title="log₁₀ loss", color_title="loss term",
                                        color_map=LOSS_COLOURS, colors_in_legend=list(LOSS_COLOURS), height=260,
                                        visible=False, elem_id="loss-plot")
                link = gr.Textbox(label="Link to these settings", buttons=["copy"], elem_id="share-link")
                gr.DeepLinkButton(value="Share this page with your images")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        SETTINGS["content_layer"] = gr.Dropdown(list(FEATURE_LAYERS), value=D.content_layer,
                                                                label="Content layer")
                        SETTINGS["style_layers"] = gr.Dropdown(
                            [(v, k) for k, v in LAYER_SET_LABELS.items()], value=D.style_layers, allow_custom_value=True,
                            label="Style layers: the paper's set a–e, or your own list (relu1_1,relu3_1)")
                    SETTINGS["layer_weights"] = gr.Textbox("", label="Style layer weights, one per layer (e.g. 1,1,1,1,1)")
                    with gr.Row():
                        SETTINGS["tv_weight"] = gr.Number(value=D.tv_weight, minimum=0, maximum=RANGES["tv_weight"][1],
                                                          label="Smoothing (TV weight)")
                        SETTINGS["seed"] = gr.Number(value=D.seed, precision=0, minimum=0, maximum=RANGES["seed"][1],
                                                     label="Seed")
                    with gr.Row():
                        SETTINGS["scales"] = number_slider("scales", 1, 4, 1, "Multi-scale levels")
                        SETTINGS["style_scale"] = number_slider("style_scale", *RANGES["style_scale"], 0.05, "Style scale")
                    SETTINGS["init"] = gr.Radio(list(CHOICES["init"]), value=D.init, label="Start from")
                    SETTINGS["pooling"] = gr.Radio(list(CHOICES["pooling"]), value=D.pooling, label="Pooling")
                    SETTINGS["preserve_color"] = gr.Radio(list(CHOICES["preserve_color"]), value=D.preserve_color,
                                                          label="Preserve the photo's colours")
                    SETTINGS["style_model"] = gr.Radio([(name, model) for model, name in STYLE_MODEL_NAMES.items()],
                                                       value=D.style_model, label="Style model", elem_id="style-model")
                    with gr.Row():
                        SETTINGS["mrf_layers"] = gr.Textbox(D.mrf_layers,
                                                            label="Patch model: layers (e.g. relu3_1,relu4_1)")
                        SETTINGS["mrf_patch"] = number_slider("mrf_patch", *RANGES["mrf_patch"], 1,
                                                              "Patch model: patch size")
                    weights = gr.Radio(list(WEIGHT_CHOICES), value="auto", label="Weights")
    with gr.Tab("Compare presets", elem_id="tab-compare"):
        gr.Markdown("One photo, several paintings: each runs with its tuned settings, all at once. The photo is the "
                    "same as on the *Stylize* tab. Click a result to take its painting and settings there.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                compare_content = PhotoInput(label="Your photo", type="filepath", sources=["upload", "webcam", "clipboard"],
                                             height=220, elem_id="compare-content")
                compare_photos = gr.Gallery(studio.photo_thumbnails(), label="…or an example photo", columns=6,
                                            height="auto", allow_preview=False, buttons=[], interactive=False,
                                            elem_id="compare-photos", elem_classes=["thumbs", "captions-below"])
                compare_picker = gr.Gallery(PRESET_GALLERY, label=f"Paintings: click to add or remove (up to "
                                            f"{LIMITS.max_compare})", columns=5, height="auto", allow_preview=False,
                                            buttons=[], interactive=False, elem_id="compare-picker",
                                            elem_classes=["thumbs", "captions-below"])
                compare_presets = gr.CheckboxGroup([(studio.presets[i].title, i) for i in PRESETS_SHOWN],
                                                   value=PRESETS_SHOWN[:3], label="Chosen paintings",
                                                   elem_id="compare-presets")
                compare_both = gr.Checkbox(False, label=f"Also with the patch model: each preset twice, "
                                           f"{STYLE_MODEL_NAMES['gram']} and {STYLE_MODEL_NAMES['mrf']}",
                                           elem_id="compare-both")
                with gr.Row():
                    compare_size = gr.Slider(64, LIMITS.max_size, value=CD.size, step=32, label="Size (px)",
                                             elem_id="compare-size")
                    compare_steps = gr.Slider(1, LIMITS.max_steps, value=CD.steps, step=1, label="Steps",
                                              elem_id="compare-steps")
                with gr.Row(equal_height=True):
                    compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-run", scale=2)
                    compare_estimate_md = gr.Markdown(compare_estimate(PRESETS_SHOWN[:3], CD.size, CD.steps, False),
                                                      elem_id="compare-estimate")
                    compare_stop = gr.Button("Stop", variant="stop", elem_id="compare-stop", scale=1)
            with gr.Column(scale=6, min_width=320):
                (compare_status, compare_gallery, compare_note, compare_open, compare_sheet,
                 compare_link) = results_column("compare", "", "compare-results", "Results: click one", 3, "jpeg",
                                                "compare-sheet", "The comparison sheet (PNG)", "this comparison")
        compare_state = gr.State(None)
        compare_opened = gr.Checkbox(False, visible=False)  # a comparison link was opened
        compare_autorun = gr.Checkbox(False, visible=False)
    with gr.Tab("Explore", elem_id="tab-explore"):
        gr.Markdown("The paper's experiments as grids: what the layers and the strength do. Every cell is optimized "
                    "at the same time, in one batch, and the grid fills in as the cells converge. Click a cell to "
                    "see it large, download it, and take its settings to the *Stylize* tab.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                explore_kind = gr.Radio(KIND_CHOICES, value="style", label="Experiment", elem_id="explore-kind")
                with gr.Row(equal_height=False):
                    explore_photo = PhotoInput(label="Photo", type="filepath", sources=["upload", "webcam", "clipboard"],
                                               height=200, min_width=200, elem_id="explore-photo")
                    with gr.Column(min_width=200):  # on a phone: below the photo, full width
                        explore_preset = gr.Dropdown([(studio.presets[i].title, i) for i in PRESETS_SHOWN],
                                                     value=EXPLORE_PRESET or None, label="Painting",
                                                     elem_id="explore-preset",
                                                     allow_custom_value=True)  # any id reaches studio, which names bad ones
                        explore_painting = PhotoInput(label="…or your own painting", type="filepath",
                                                      sources=["upload", "clipboard"], height=150,
                                                      elem_id="explore-painting")
                # Both start empty ("the experiment's defaults" for the API); the page load shows the defaults.
                explore_rows = RowsInput(row_choices("style"), value=[], elem_id="explore-rows",
                                                label="Rows: style layer sets (the paper's a–e)")
                explore_columns = gr.Textbox("", label="Columns: style strengths β/α, comma-separated",
                                             placeholder="empty: the experiment's defaults", elem_id="explore-columns")
                with gr.Row():
                    explore_size = gr.Slider(64, LIMITS.max_size, value=EX.size, step=32, label="Size of a cell (px)",
                                             elem_id="explore-size")
                    explore_steps = gr.Slider(1, LIMITS.max_steps, value=EX.steps, step=1, label="Steps",
                                              elem_id="explore-steps")
                explore_seed = gr.Number(EX.seed, precision=0, minimum=0, maximum=RANGES["seed"][1], label="Seed",
                                         info="of the noise that texture and reconstruction cells start from",
                                         elem_id="explore-seed")
                gr.Markdown(f"<small>At most {MAX_CELLS} cells (rows × columns), all computed together.</small>")
                with gr.Row(equal_height=True):
                    explore_btn = gr.Button("Run the grid", variant="primary", elem_id="explore-run", scale=2)
                    explore_estimate_md = gr.Markdown("", elem_id="explore-estimate")
                    explore_stop = gr.Button("Stop", variant="stop", elem_id="explore-stop", scale=1)
            with gr.Column(scale=6, min_width=320):
                (explore_status, explore_cells, explore_note, explore_open, explore_grid,
                 explore_link) = results_column("explore", "Choose an experiment and its images, then press **Run the "
                                                "grid**.", "explore-cells", "Cells: click one", 4, "png", "explore-grid",
                                                "The whole grid, labelled (PNG)", "this grid")
        explore_state = gr.State(None)
        explore_opened = gr.Checkbox(False, visible=False)  # a grid link was opened (read by the page: no gr.State)
    with gr.Accordion("Credits", open=False):
        gr.Markdown("\n".join(studio.credits()))
        gr.Markdown("Method: L. A. Gatys, A. S. Ecker, M. Bethge, *A Neural Algorithm of Artistic Style* (2015). "
                    "Network: VGG-19 (Simonyan & Zisserman).")

    missing = [f.name for f in fields(Settings) if f.name not in SETTINGS]
    if missing:  # tests/test_app.py fails on this; the app still serves, with these fields at their defaults
        log.warning("Settings fields without a component (not in the UI or the API): %s", ", ".join(missing))
    SETTINGS = {f.name: SETTINGS[f.name] for f in fields(Settings) if f.name in SETTINGS}  # the API's order

    IMAGE_ARGS = [
        ("content", str, None, "the photo to paint (an image file or URL)"),
        ("preset", str, "", f"preset painting id, one of {', '.join(studio.presets)}; ignored if style_upload is given"),
        ("style_upload", str, None, "your own painting (an image file or URL) instead of a preset"),
        ("extra_styles", list, None, f"more style images to blend in (files or URLs), at most {LIMITS.max_styles - 1}")]
    WEIGHTS_ARG = ("weights", str, "auto", "which VGG-19 weights to use; one of auto, hub, embedded")
    SUMMARY = ("Paint a photo in the style of a painting (Gatys et al. 2015). Streams the image about twice a second "
               "while it forms; the last update is the finished result.")
    RETURNS = "(result image, status line, (before, after) pair, path of the lossless PNG, loss table, share link)"
    stylize = settings_api(
        [*IMAGE_ARGS,
         ("masks", list, None, "where each style goes (spatial control, Gatys et al. 2017): one mask per style image "
                               "(files or URLs), in order: the painting's first, then one per extra_styles entry. White "
                               "(or, on a transparent image, whatever is painted) marks that style's region; pixels no "
                               "mask covers keep the photo; overlapping masks share. Stretched to the photo (a notice "
                               "says so if its shape differs). Empty: each style everywhere. Needs style_model gram"),
         WEIGHTS_ARG], summary=SUMMARY, returns=RETURNS)(stylize)
    # The Stylize button runs the same with the painted regions (editor layers, one choice per region) instead of
    # mask files; a private event, so the public API and MCP tool keep plain parameters.
    stylize_in_page = settings_api(
        [*IMAGE_ARGS, ("regions", dict, None, "the region editor's value"),
         *[(f"region_{n}", str, None, f"region {n}'s painting") for n in range(1, MAX_REGIONS + 1)], WEIGHTS_ARG],
        summary=SUMMARY, returns=RETURNS)(stylize_in_page)

    api_masks = gr.File(file_count="multiple", file_types=["image"], visible=False, elem_id="api-masks")
    api_run = gr.Button(visible=False, elem_id="api-run")  # the trigger of the public /stylize endpoint
    image_inputs = [content, preset_state, style_upload, extra_styles]
    outputs = [result, status, before_after, png_file, loss_plot, link]
    settings_outputs = [*SETTINGS.values(), strength_scale]
    private = dict(api_visibility="private", queue=False)

    api_run.click(stylize, [*image_inputs, api_masks, weights, *SETTINGS.values()], outputs, api_name="stylize",
                  concurrency_id="gpu")
    run_event = run_btn.click(stylize_in_page, [*image_inputs, region_editor, *region_choices, weights,
                                                *SETTINGS.values()], outputs, api_visibility="private",
                              show_progress="minimal", concurrency_id="gpu")
    run_event.success(lambda: [gr.update(visible=True)] * 3, None, [before_after, png_file, loss_plot],
                      **private)  # shown once there is a finished result
    # Stop is cooperative (the run ends after its step and delivers its image); API clients use job.cancel().
    stop_btn.click(stop_run, None, None, **private)
    strength_scale.release(strength_from_log, strength_scale, SETTINGS["style_strength"], **private)
    SETTINGS["style_strength"].submit(lambda v: math.log10(max(float(v), RANGES["style_strength"][0])),
                                      SETTINGS["style_strength"], strength_scale, **private)
    gallery.select(choose_preset, None, [preset_state, style_upload, style_md, *settings_outputs], **private)
    photos.select(choose_photo, None, content, **private)
    if EXAMPLES:
        examples.select(choose_example, None, [content, preset_state, style_upload, style_md, result, status,
                                               *settings_outputs], **private)
    compare_args = [compare_content, compare_presets, compare_size, compare_steps, SETTINGS["seed"], weights,
                    compare_both]
    api_compare = gr.Button(visible=False, elem_id="api-compare")  # the trigger of the public /compare endpoint
    api_compare.click(compare, compare_args, [compare_sheet, compare_status], api_name="compare", concurrency_id="gpu")
    compare_btn.click(run_compare, compare_args, [compare_gallery, compare_status, compare_sheet, compare_link,
                                                  compare_state], api_visibility="private", show_progress="minimal",
                      show_progress_on=compare_status, concurrency_id="gpu")
    compare_picker.select(toggle_compare_preset, compare_presets, compare_presets, **private)
    compare_photos.select(choose_photo, None, content, **private)
    # One photo on both tabs: whatever sets the Stylize tab's photo (upload, example, link) sets Compare's; an
    # upload on Compare sets Stylize's (a user's input only, so the two never echo each other).
    content.change(same_photo, content, compare_content, **private)
    compare_content.input(same_photo, compare_content, content, **private)
    compare_gallery.select(compare_result, compare_state,
                           [preset_state, style_upload, style_md, status, *settings_outputs, compare_note, compare_open],
                           **private)
    compare_open.click(None, None, None, js="() => { document.querySelector('#tab-stylize-button')?.click(); "
                                            "window.scrollTo(0, 0); }", api_visibility="private")
    # A comparison link (tab=compare) fills the Compare tab, opens it, and with run=1 starts it.
    demo.load(prefill_compare, None, [compare_presets, compare_size, compare_steps, SETTINGS["seed"], compare_both,
                                      content, compare_status, compare_opened, compare_autorun],
              **private).then(same_photo, content, compare_content, **private).then(
        None, [compare_opened, compare_autorun], None,
        js="(go, run) => { if (go) document.querySelector('#tab-compare-button')?.click(); "
           "if (run) document.querySelector('#compare-run')?.click(); }", api_visibility="private")
    # The estimate beside each button follows the settings it depends on (examples and links included).
    estimate_inputs = [SETTINGS[n] for n in ("size", "steps", "scales", "style_scale", "style_model")] + [extra_styles]
    for component in estimate_inputs:
        component.change(run_estimate, estimate_inputs, run_estimate_md, **private)
    compare_inputs = [compare_presets, compare_size, compare_steps, compare_both]
    for component in compare_inputs:
        component.change(compare_estimate, compare_inputs, compare_estimate_md, **private)
    explore_inputs = [explore_kind, explore_rows, explore_columns, explore_size, explore_steps]
    for component in explore_inputs:
        component.change(explore_estimate, explore_inputs, explore_estimate_md, **private)
    # The region editor shows the photo to paint on; a new photo starts with fresh layers.
    content.change(region_photo, content, region_editor, **private)
    compare_stop.click(stop_run, None, None, **private)
    explore_btn.click(explore, [explore_kind, explore_photo, explore_painting, explore_rows, explore_columns,
                                explore_size, explore_steps, explore_seed, explore_preset, weights],
                      [explore_grid, explore_cells, explore_status, explore_link, explore_state], api_name="explore",
                      show_progress="minimal", show_progress_on=explore_status, concurrency_id="gpu")
    explore_stop.click(stop_run, None, None, **private)
    explore_kind.input(explore_kind_changed, explore_kind,
                       [explore_rows, explore_columns, explore_photo, explore_preset, explore_painting], **private)
    explore_rows.input(explore_sort_rows, [explore_kind, explore_rows], explore_rows, **private)
    explore_cells.select(explore_cell, explore_state,
                         [content, preset_state, style_upload, style_md, status, *settings_outputs, explore_note,
                          explore_open], **private)
    explore_open.click(None, None, None, js="() => { document.querySelector('#tab-stylize-button')?.click(); "
                                            "window.scrollTo(0, 0); }", api_visibility="private")
    # Not queued: a page load never waits behind running jobs, and everything it needs is already in memory.
    load_event = demo.load(prefill, None, [preset_state, style_md, status, autorun, *settings_outputs], **private)
    # run=1 in a shared link presses Stylize once the page is prefilled (so Stop works as usual).
    load_event.then(None, autorun, None, js="(go) => { if (go) document.querySelector('#run').click(); }",
                    api_visibility="private")
    # A grid link (tab=explore) fills the Explore tab's controls and opens that tab.
    demo.load(prefill_explore, None, [explore_kind, explore_rows, explore_columns, explore_photo, explore_preset,
                                      explore_painting, explore_size, explore_steps, explore_seed, explore_status,
                                      explore_opened], **private).then(
        None, explore_opened, None, js="(go) => { if (go) document.querySelector('#tab-explore-button')?.click(); }",
        api_visibility="private")


def launch(**overrides):
    """Queue and serve: one run at a time per GPU (STYLIZE_CONCURRENCY), uploads capped, monitoring off, MCP on."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    demo.queue(max_size=int(os.environ.get("STYLIZE_QUEUE_SIZE", 32)),
               default_concurrency_limit=int(os.environ.get("STYLIZE_CONCURRENCY", 1)))
    # Private attributes, kept because they pay: Gradio's queue loop polls every 1 ms when idle; on 2 cores those
    # wake-ups took 12 % of a run's speed (measured; README, Performance: with the compute thread and warm-up,
    # the default run went from 58.4 s to 50.6 s). tests/test_app.py fails if a Gradio upgrade removes them.
    demo._queue.sleep_when_free = max(demo._queue.sleep_when_free, 0.05)
    demo._queue.progress_update_sleep_when_free = max(demo._queue.progress_update_sleep_when_free, 0.1)
    options = dict(max_file_size=MAX_UPLOAD, enable_monitoring=False, css=CSS, theme=gr.themes.Soft(), mcp_server=True)
    return demo.launch(**{**options, **overrides})


if __name__ == "__main__":
    launch()
