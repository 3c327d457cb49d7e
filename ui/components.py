"""Custom components and the controls made from the settings' descriptions (stylize.params.About)."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable

import gradio as gr
from gradio import processing_utils

from stylize.params import ABOUT, RANGES, Settings

from .text import LOSS_COLOURS, slider_position

Components = dict[str, gr.components.Component]


class PhotoInput(gr.Image):
    """gr.Image that hands the app the uploaded file itself, undecoded.

    gr.Image converts uploads with PIL first (to RGB by default: transparency turned black, 16-bit grey clipped to
    white, every pixel decoded before any size check). This one returns the file's path, so stylize's own loader
    sees the original bytes and checks the header before decoding anything.
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
    as paths (or None). gr.ImageEditor would decode and convert every layer with PIL first; stylize's mask loader
    reads the layers itself, with its checks before any pixel is decoded (like PhotoInput)."""

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
    """Check boxes for a grid's rows, whose choices change with the experiment (style layer sets a–e, or content
    layers). The server keeps only the first set of choices, so gr.CheckboxGroup would refuse the others: this one
    passes any list of row names on, and the grid validates them, for the UI and the API alike."""

    is_template = True  # gr.CheckboxGroup's frontend

    def preprocess(self, payload):
        if payload is None:
            return []
        return [str(value) for value in (payload if isinstance(payload, list) else [payload])]

    def api_info(self):
        return {"items": {"type": "string"}, "title": "Rows", "type": "array"}


def control(name: str, value: Any, maximum: float | None = None, **kwargs: Any) -> gr.components.Component:
    """The control of one setting, from its description: choices as a radio (or a dropdown when many or open),
    a range with a step as a slider, other numbers as a number box, text as a text box."""
    about = ABOUT[name]
    options = {"label": about.label, "elem_id": name.replace("_", "-"), **kwargs}
    if about.choices:
        choices = [(label, v) for v, label in about.choices]
        if about.custom or len(choices) > 4:
            return gr.Dropdown(choices, value=value, allow_custom_value=about.custom, **options)
        return gr.Radio(choices, value=value, **options)
    if about.step is not None:
        return gr.Slider(about.low, maximum or about.high, value=value, step=about.step, **options)
    if about.low is not None:
        whole = isinstance(value, int)
        return gr.Number(value, minimum=about.low, maximum=maximum or about.high, precision=0 if whole else None,
                         **options)
    return gr.Textbox(value, **options)


def strength_controls(value: float) -> tuple[gr.Slider, gr.Number]:
    """Style strength on a log-scale slider beside the exact number (the setting is the number)."""
    low, high = RANGES["style_strength"]
    scale = gr.Slider(math.log10(low), math.log10(high), value=slider_position(value), step=0.01, scale=3,
                      label="Style strength (log scale)", elem_id="strength-scale")
    number = control("style_strength", value, scale=1, min_width=110, elem_id="strength")
    return scale, number


def settings_values(settings: Settings, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every setting's control (and the strength slider) set to `settings`; fields in `keep` stay as they are."""
    values = {name: getattr(settings, name) for name in ABOUT if name not in keep}
    values["strength_scale"] = slider_position(settings.style_strength)
    return values


def thumbs(value, label: str, elem_id: str, columns: int, **kwargs: Any) -> gr.Gallery:
    """A gallery of thumbnails to click (cropped square, whole captions beneath)."""
    return gr.Gallery(value, label=label, columns=columns, height="auto", allow_preview=False, buttons=[],
                      interactive=False, elem_id=elem_id, elem_classes=["thumbs", "captions-below"], **kwargs)


def results_column(prefix: str, hint: str, gallery_id: str, gallery_label: str, columns: int, preview_format: str,
                   image_id: str, image_label: str, link_of: str) -> Components:
    """Compare's and Explore's results: status, a gallery of results to click, a note with "Open it in Stylize",
    the labelled image (PNG), and the link; named `<prefix>_status`, `<prefix>_gallery`, …"""
    made = {"status": gr.Markdown(hint, elem_id=f"{prefix}-status"),
            "gallery": gr.Gallery(label=gallery_label, columns=columns, height="auto", format=preview_format,
                                  buttons=["download"], elem_id=gallery_id, elem_classes="captions-below")}
    with gr.Row():
        made["note"] = gr.Markdown("", elem_id=f"{prefix}-note")
        made["open"] = gr.Button("Open it in Stylize →", visible=False, size="sm", elem_id=f"{prefix}-open")
    made["image"] = gr.Image(label=image_label, format="png", interactive=False, buttons=["download", "fullscreen"],
                             elem_id=image_id)
    made["link"] = gr.Textbox(label=f"Link to {link_of}", buttons=["copy"], elem_id=f"{prefix}-link")
    return {f"{prefix}_{key}": component for key, component in made.items()}


def named(fn: Callable, outputs: Components, names: list[str]) -> Callable:
    """`fn` returns (or yields) {output name: value}; Gradio gets {component: value}, so a handler names what it
    sets and leaves the rest as they are. Anything else (one value, a tuple in the outputs' order, a dict that is
    itself a value) passes as it is. The signature stays `fn`'s (Gradio reads it for request and event data)."""
    chosen = {n: outputs[n] for n in names}

    def to_components(values: Any) -> Any:
        if isinstance(values, dict) and values and set(values) <= set(chosen):
            return {chosen[n]: v for n, v in values.items()}
        return values

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            for values in fn(*args, **kwargs):
                yield to_components(values)
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return to_components(fn(*args, **kwargs))
    return call


def region_editor(layers: int) -> RegionEditor:
    """The brush over the photo, one layer per region."""
    return RegionEditor(label="Regions over your photo", type="filepath", sources=[], transforms=[], image_mode="RGBA",
                        format="png", height=380, elem_id="region-editor",
                        layers=gr.LayerOptions(layers=[f"Region {n}" for n in range(1, layers + 1)]),
                        brush=gr.Brush(colors=["#e11d48", "#2563eb", "#16a34a", "#f59e0b"], color_mode="defaults"),
                        placeholder="Add a photo above: it appears here to paint on.")


def finished_result() -> Components:
    """What a finished Stylize run adds below the result: before/after, the lossless PNG, the loss per step. In a
    column shown once there is a result (a visibility update on the components themselves would leave them empty
    in links shared later in the session: docs/gradio_files.md)."""
    with gr.Column(visible=False) as column:
        made = {"before_after": gr.ImageSlider(label="Before / after", type="pil", format="png", interactive=False,
                                               elem_id="slider", height=440, max_height=440),
                "png": gr.File(label="Download PNG (lossless)", elem_id="png"),
                **bigger()}
        made.update({
                "loss_plot": gr.LinePlot(x="step", y="log10 loss", color="term", label="Loss (log₁₀) per step",
                                         x_title="step", y_title="log₁₀ loss", color_title="loss term",
                                         color_map=LOSS_COLOURS, colors_in_legend=list(LOSS_COLOURS), height=260,
                                         elem_id="loss-plot")})
    return {"finished": column, **made}


def bigger() -> Components:
    """*Make it bigger* (#33): the factor, the button with its estimate beside it, Stop, and what it makes: a
    streamed, scaled-down preview, a status line and the print-size PNG."""
    with gr.Group():
        with gr.Row(equal_height=True):
            made = {"enlarge_factor": gr.Radio([("×2", 2), ("×4", 4)], value=2, label="Print size",
                                               elem_id="enlarge-factor", scale=1),
                    "enlarge_run": gr.Button("Make it bigger", elem_id="enlarge-run", scale=1),
                    "enlarge_estimate": gr.Markdown("", elem_id="enlarge-estimate"),
                    "enlarge_stop": gr.Button("Stop", variant="stop", elem_id="enlarge-stop", scale=0)}
        made.update({"big_status": gr.Markdown("", elem_id="big-status"),
                     "big_result": gr.Image(label="Bigger (preview, scaled down)", format="jpeg", interactive=False,
                                            elem_id="big-result", height=440, buttons=["fullscreen"]),
                     "big_png": gr.File(label="Download the print (PNG, sRGB)", elem_id="big-png")})
    return made
