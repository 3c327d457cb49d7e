"""stylize's Gradio Blocks UI: wiring only. The work happens in the `stylize` package (see stylize/studio.py)."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import spaces  # noqa: E402  (must come before anything touches CUDA; a no-op off ZeroGPU)

import logging  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from stylize import Settings, StylizeError, images  # noqa: E402
from stylize.params import CHOICES, RANGES, STYLE_LAYER_SETS  # noqa: E402
from stylize.studio import MAX_INPUT_SIDE, WEIGHT_CHOICES, Studio, gpu_seconds, share_url, space_base_url  # noqa: E402
from stylize.vgg import FEATURE_LAYERS  # noqa: E402

log = logging.getLogger("stylize.app")
studio = Studio()
D = studio.defaults
ON_GPU = studio.device.type == "cuda"
MAX_SIZE = 1024 if ON_GPU else 512
MAX_STEPS = 2000 if ON_GPU else 1000
PRESET_IDS = list(studio.presets)
LAYER_SET_LABELS = {"a": "a: conv1", "b": "b: conv1–2", "c": "c: conv1–3", "d": "d: conv1–4", "e": "e: conv1–5 (paper)"}


class PhotoInput(gr.Image):
    """gr.Image whose decoding failures say what is wrong with the file (stylize's loader), not a stack trace."""

    is_template = True  # reuse gr.Image's frontend (gradio also writes an app.pyi stub at import; git ignores it)

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception as exc:
            try:
                images.load_image(payload.path)
            except StylizeError as reason:
                raise gr.Error(str(reason), title="Can't read this image") from None
            raise gr.Error(f"This image could not be read ({type(exc).__name__}).", title="Can't read this image") from None


# ---- glue: component values <-> engine objects ----------------------------------------------------

def strength_from_log(log_strength: float) -> float:
    """The strength slider works in log₁₀; three significant digits are what a slider position means."""
    return float(f"{10 ** float(log_strength):.3g}")


def slider_position(strength: float) -> float:
    """Where the log-scale slider shows a strength (display only: the number box holds the exact value)."""
    return round(math.log10(strength), 2)


def settings_from_controls(style_strength, size, steps, content_layer, layer_set, custom_layers, layer_weights,
                           tv_weight, init, pooling, preserve_color, scales, style_scale, style_blend, seed) -> Settings:
    return Settings(size=int(size), steps=int(steps), style_strength=float(style_strength),
                    content_layer=content_layer, style_layers=custom_layers if layer_set == "custom" else layer_set,
                    layer_weights=layer_weights or "", tv_weight=float(tv_weight), init=init, pooling=pooling,
                    preserve_color=preserve_color, scales=int(scales), style_scale=float(style_scale),
                    style_blend=style_blend or "", seed=int(seed))


def controls_from_settings(s: Settings) -> list:
    custom = s.style_layers not in STYLE_LAYER_SETS
    return [s.style_strength, s.size, s.steps, s.content_layer, "custom" if custom else s.style_layers,
            s.style_layers if custom else "", s.layer_weights, s.tv_weight, s.init, s.pooling, s.preserve_color,
            s.scales, s.style_scale, s.style_blend, s.seed]


def session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


def stop_run(request: gr.Request):
    """Stop: the session's run ends after its current step and keeps its image as the result."""
    studio.request_stop(session(request))


def base_url(request: gr.Request | None) -> str:
    if space_base_url():
        return space_base_url()
    if request is not None and getattr(request, "request", None) is not None:
        return str(request.request.base_url)
    return "http://127.0.0.1:7860/"


def loss_table(history) -> pd.DataFrame:
    rows = [(step, term, math.log10(value)) for step, term, value in history if value > 0]  # log scale: no zeros
    return pd.DataFrame(rows, columns=["step", "term", "log10 loss"])


def credits_markdown() -> str:
    lines = []
    for preset_id, reason in studio.preset_images.availability().items():
        preset = studio.presets[preset_id]
        note = "" if reason is None else f" — *unavailable: {reason}*"
        lines.append(f"- **{preset.title}** ({preset_id}): {preset.credit}{note}")
    return "\n".join(lines)


# ---- events -------------------------------------------------------------------------------------------

def _duration(content, preset, style_upload, extra_styles, *controls, **_):
    return gpu_seconds(int(controls[1]), int(controls[2]), 1 + len(extra_styles or []))


@spaces.GPU(duration=_duration)
def stylize(content, preset="", style_upload=None, extra_styles=None, style_strength=D.style_strength,
            size=D.size, steps=D.steps, content_layer=D.content_layer, layer_set=D.style_layers, custom_layers="",
            layer_weights="", tv_weight=D.tv_weight, init=D.init, pooling=D.pooling, preserve_color=D.preserve_color,
            scales=D.scales, style_scale=D.style_scale, style_blend="", seed=D.seed, weights="auto",
            request: gr.Request = None):
    """Stylize `content` with a preset painting (or an uploaded one, plus optional extra styles).

    Streams (result image, status, before/after, PNG file, loss curve, share link); the image updates about
    twice a second, the rest at the end.
    """
    try:
        settings = settings_from_controls(style_strength, size, steps, content_layer, layer_set, custom_layers,
                                          layer_weights, tv_weight, init, pooling, preserve_color, scales,
                                          style_scale, style_blend, seed)
        style, preset_id = studio.load_style(preset, style_upload)
        styles = [style] + [images.load_image(f, MAX_INPUT_SIDE) for f in (extra_styles or [])]
        link = share_url(base_url(request), settings, [preset_id] if preset_id else [])
        photo = images.load_image(content, MAX_INPUT_SIDE) if content else None
        updates = studio.run(photo, styles, settings, weights, stop=studio.stop_flag(session(request)))
        yield None, "Starting…", gr.skip(), gr.skip(), gr.skip(), link
        for update in updates:
            if not update.final:
                yield update.frame.image, update.status, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        final = update.frame.image
        before = photo.resize(final.size, images.Image.Resampling.LANCZOS)
        png = studio.save_result(final)
        try:
            yield final, update.status, (before, final), png, loss_table(update.history), link
        finally:
            Path(png).unlink(missing_ok=True)  # gradio has copied it to its own cache (which delete_cache cleans)
    except StylizeError as exc:
        raise gr.Error(str(exc), title="Can't stylize this") from None
    except gr.Error:
        raise
    except Exception as exc:  # keep serving; the log has the trace
        log.exception("run failed")
        raise gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). Your inputs are unchanged; try again.") from None


def compare(content, preset_ids=PRESET_IDS[:3], size=D.size, steps=D.steps, seed=D.seed, weights="auto",
            request: gr.Request = None):
    """One photo × several presets, each with its tuned settings: a captioned gallery filled as each finishes."""
    try:
        if not preset_ids:
            raise StylizeError("tick at least one preset to compare")
        photo = images.load_image(content, MAX_INPUT_SIDE) if content else None
        stop = studio.stop_flag(session(request))
        done, skipped = [], []
        for n, preset_id in enumerate(preset_ids, 1):
            if stop.is_set():
                break
            preset = studio.preset_images.get(preset_id)
            try:
                style, _ = studio.load_style(preset_id, None)
            except StylizeError as exc:  # an unavailable painting is skipped, not fatal
                skipped.append(str(exc))
                continue
            settings = preset.apply(D.replace(size=int(size), steps=int(steps), seed=int(seed)))
            for update in studio.run(photo, [style], settings, weights, stop=stop):
                yield done + [(update.frame.image, f"{preset.title} (running)")], f"{n}/{len(preset_ids)}: {update.status}"
            done.append((update.frame.image, preset.caption))
            yield done, f"{n}/{len(preset_ids)} done" + "".join(f" · skipped {s}" for s in skipped)
        if skipped and not done:
            raise StylizeError("none of the chosen presets is available: " + "; ".join(skipped))
    except StylizeError as exc:
        raise gr.Error(str(exc), title="Can't compare") from None


def choose_preset(evt: gr.SelectData):
    """Gallery click -> preset id and its tuned settings (size and steps stay as the user set them)."""
    caption = (evt.value or {}).get("caption", "")
    preset = next((p for p in studio.presets.values() if p.caption == caption), None)
    if preset is None:
        raise gr.Error("That preset is not available.")
    tuned = preset.apply(D)
    values = controls_from_settings(tuned)
    return ([preset.id, None, f"Style: **{preset.caption}**", slider_position(tuned.style_strength)]
            + [values[0], gr.skip(), gr.skip()] + values[3:])


def refresh_weights_status():
    """Until the weights are loaded, the status line is refreshed; then the timer switches itself off."""
    return studio.weights_status(timeout=0), gr.Timer(active=not studio.ready)


def prefill(request: gr.Request):
    """Apply a shared link's query string: validated like any input, with notices for what was changed."""
    params = dict(request.query_params) if request else {}
    notices = []
    preset_id = params.get("preset", "").split(",")[0]
    settings, setting_notices = Settings.from_query(params, ignore=("preset", "run", "deep_link", "__theme"), base=D)
    notices += setting_notices
    if preset_id and preset_id not in studio.presets:
        notices.append(f"unknown preset {preset_id[:40]!r}; choose one from the gallery")
        preset_id = ""
    if settings.size > MAX_SIZE:
        notices.append(f"size {settings.size} is above this machine's {MAX_SIZE}; using {MAX_SIZE}")
        settings = settings.replace(size=MAX_SIZE)
    if settings.steps > MAX_STEPS:
        notices.append(f"steps {settings.steps} is above this machine's {MAX_STEPS}; using {MAX_STEPS}")
        settings = settings.replace(steps=MAX_STEPS)
    for notice in notices:
        gr.Warning(notice)
    label = f"Style: **{studio.presets[preset_id].caption}**" if preset_id else "Style: *none chosen yet*"
    autorun = params.get("run") == "1" and bool(preset_id)
    return [preset_id, label, slider_position(settings.style_strength), *controls_from_settings(settings),
            studio.weights_status(timeout=5), autorun, studio.thumbnails(), credits_markdown()]


# ---- layout ---------------------------------------------------------------------------------------------

CSS = """
#result img { image-rendering: auto; }
.preset-gallery { min-height: 180px; }
footer { display: none !important; }
"""

with gr.Blocks(title="stylize — neural style transfer", delete_cache=(600, 3600)) as demo:
    gr.Markdown("# stylize\nPaint your photo in the style of a painting — the algorithm of Gatys, Ecker & Bethge (2015).")
    weights_md = gr.Markdown("Weights: loading…", elem_id="weights-status")
    weights_timer = gr.Timer(2, active=not studio.ready)
    preset_state = gr.Textbox("", visible=False, elem_id="preset-id")
    autorun = gr.State(False)
    with gr.Tab("Stylize"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                content = PhotoInput(label="Your photo", type="filepath", sources=["upload", "webcam", "clipboard"],
                                   elem_id="content", height=260)
                style_label = gr.Markdown("Style: *none chosen yet*", elem_id="style-label")
                gallery = gr.Gallery(label="Pick a painting", columns=4, height=200,
                                     allow_preview=False, elem_id="presets", elem_classes="preset-gallery")
                with gr.Row(equal_height=True):
                    strength_scale = gr.Slider(*[math.log10(v) for v in RANGES["style_strength"]],
                                               value=slider_position(D.style_strength), step=0.01, scale=3,
                                               label="Style strength (log scale)",
                                               elem_id="strength-scale")
                    strength = gr.Number(D.style_strength, minimum=RANGES["style_strength"][0],
                                         maximum=RANGES["style_strength"][1], label="β/α", scale=1,
                                         min_width=110, elem_id="strength")
                with gr.Row():
                    size = gr.Slider(64, MAX_SIZE, value=D.size, step=32, label="Size (longest side, px)", elem_id="size")
                    steps = gr.Slider(1, MAX_STEPS, value=D.steps, step=1, label="Steps", elem_id="steps")
                with gr.Row():
                    run_btn = gr.Button("Stylize", variant="primary", elem_id="run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                with gr.Accordion("Advanced", open=False):
                    style_upload = PhotoInput(label="…or upload your own painting", type="filepath",
                                            sources=["upload", "clipboard"], height=160, elem_id="style-upload")
                    extra_styles = gr.File(label="More style images (blended)", file_count="multiple",
                                           file_types=["image"], height=80)
                    style_blend = gr.Textbox(label="Blend weights, one per style (e.g. 2,1)", value="")
                    with gr.Row():
                        content_layer = gr.Dropdown(list(FEATURE_LAYERS), value=D.content_layer, label="Content layer")
                        layer_set = gr.Dropdown([(v, k) for k, v in LAYER_SET_LABELS.items()] + [("custom", "custom")],
                                                value=D.style_layers, label="Style layers")
                    with gr.Row():
                        custom_layers = gr.Textbox("", label="Custom style layers", placeholder="relu1_1,relu3_1")
                        layer_weights = gr.Textbox("", label="Layer weights", placeholder="1,1,1,1,1")
                    with gr.Row():
                        tv_weight = gr.Number(value=D.tv_weight, minimum=0, maximum=RANGES["tv_weight"][1], label="TV weight")
                        seed = gr.Number(value=D.seed, precision=0, minimum=0, label="Seed")
                        scales = gr.Slider(1, 4, value=D.scales, step=1, label="Multi-scale levels")
                        style_scale = gr.Slider(*RANGES["style_scale"], value=D.style_scale, step=0.05, label="Style scale")
                    init = gr.Radio(list(CHOICES["init"]), value=D.init, label="Start from")
                    pooling = gr.Radio(list(CHOICES["pooling"]), value=D.pooling, label="Pooling")
                    preserve_color = gr.Radio(list(CHOICES["preserve_color"]), value=D.preserve_color, label="Preserve colours")
                    weights = gr.Radio(list(WEIGHT_CHOICES), value="auto", label="Weights")
            with gr.Column(scale=1, min_width=320):
                status = gr.Markdown("Pick a painting, add a photo, press **Stylize**.", elem_id="status")
                result = gr.Image(label="Result", format="png", interactive=False, buttons=["download", "fullscreen"],
                                  elem_id="result", height=380)
                before_after = gr.ImageSlider(label="Before / after", type="pil", interactive=False, elem_id="slider",
                                              visible=False)
                png_file = gr.File(label="Download PNG (lossless)", elem_id="png", visible=False)
                loss_plot = gr.LinePlot(x="step", y="log10 loss", color="term", label="Loss (log₁₀)", height=220, visible=False)
                link = gr.Textbox(label="Link to these settings", buttons=["copy"], elem_id="share-link")
                gr.DeepLinkButton(value="Share this page with your images")
    with gr.Tab("Compare presets"):
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                compare_content = PhotoInput(label="Your photo", type="filepath", sources=["upload", "webcam", "clipboard"], height=240,
                                             elem_id="compare-content")
                compare_presets = gr.CheckboxGroup([(p.caption, p.id) for p in studio.presets.values()],
                                                   value=PRESET_IDS[:3], label="Presets")
                compare_btn = gr.Button("Compare", variant="primary")
                compare_stop = gr.Button("Stop", variant="stop")
            with gr.Column(scale=2):
                gr.Markdown("Each preset runs with its tuned settings, at the size, steps and seed set on the "
                            "*Stylize* tab.")
                compare_status = gr.Markdown("")
                compare_gallery = gr.Gallery(label="Results", columns=3, height="auto", format="png")
    with gr.Accordion("Credits", open=False):
        credits = gr.Markdown("")
        gr.Markdown("Method: L. A. Gatys, A. S. Ecker, M. Bethge, *A Neural Algorithm of Artistic Style* (2015). "
                    "Network: VGG-19 (Simonyan & Zisserman).")

    controls = [strength, size, steps, content_layer, layer_set, custom_layers, layer_weights, tv_weight, init,
                pooling, preserve_color, scales, style_scale, style_blend, seed]
    inputs = [content, preset_state, style_upload, extra_styles, *controls, weights]
    outputs = [result, status, before_after, png_file, loss_plot, link]

    run_event = run_btn.click(stylize, inputs, outputs, api_name="stylize", show_progress="minimal",
                              concurrency_id="gpu")
    run_event.success(lambda: [gr.update(visible=True)] * 3, None, [before_after, png_file, loss_plot],
                      api_visibility="private", queue=False)  # shown once there is a finished result
    # Stop is cooperative (the run ends after its step and delivers its image); API clients use job.cancel().
    stop_btn.click(stop_run, None, None, api_visibility="private", queue=False)
    strength_scale.release(strength_from_log, strength_scale, strength, api_visibility="private", queue=False)
    strength.submit(lambda v: math.log10(max(float(v), RANGES["style_strength"][0])), strength, strength_scale,
                    api_visibility="private", queue=False)
    gallery.select(choose_preset, None, [preset_state, style_upload, style_label, strength_scale, *controls],
                   api_visibility="private", queue=False)
    compare_btn.click(compare, [compare_content, compare_presets, size, steps, seed, weights],
                                      [compare_gallery, compare_status], api_name="compare", concurrency_id="gpu")
    compare_stop.click(stop_run, None, None, api_visibility="private", queue=False)
    load_event = demo.load(prefill, None, [preset_state, style_label, strength_scale, *controls, weights_md, autorun,
                                           gallery, credits],
                           api_visibility="private")
    weights_timer.tick(refresh_weights_status, None, [weights_md, weights_timer], api_visibility="private", queue=False)
    # run=1 in a shared link presses Stylize once the page is prefilled (so Stop works as usual).
    load_event.then(None, autorun, None, js="(go) => { if (go) document.querySelector('#run').click(); }",
                    api_visibility="private")


MAX_UPLOAD = "10mb"


def launch(**overrides):
    """Queue and serve: one run at a time per GPU (STYLIZE_CONCURRENCY), uploads capped, monitoring off."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    demo.queue(max_size=int(os.environ.get("STYLIZE_QUEUE_SIZE", 32)),
               default_concurrency_limit=int(os.environ.get("STYLIZE_CONCURRENCY", 1)))
    # Gradio's queue loop polls every 1 ms when idle (50 ms on Windows): on 2 cores those wake-ups took 12 % of a
    # run's speed (measured; README, Performance). Runs last seconds, so 50 ms more queue latency is nothing.
    demo._queue.sleep_when_free = max(demo._queue.sleep_when_free, 0.05)
    demo._queue.progress_update_sleep_when_free = max(demo._queue.progress_update_sleep_when_free, 0.1)
    options = dict(max_file_size=MAX_UPLOAD, enable_monitoring=False, css=CSS, theme=gr.themes.Soft())
    return demo.launch(**{**options, **overrides})


if __name__ == "__main__":
    launch()
