"""stylize's web page: the layout and the events. What the events do is in ui/ (handlers, public endpoints, custom
components, words, CSS) and the work in the `stylize` package."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from stylize.service import storage  # noqa: E402  (torch is imported, CUDA untouched)

try:  # gradio's cache goes into the app's own folder, set before gradio is imported (by spaces on ZeroGPU)
    storage.gradio_cache()
except storage.RootError as exc:  # one line saying what to set, no traceback
    raise SystemExit(f"stylize: {exc}") from None

import gradio as gr  # noqa: E402
import spaces  # noqa: E402,F401  (must come before anything touches CUDA; a no-op off ZeroGPU)

from stylize.experiments.explore import MAX_CELLS  # noqa: E402
from stylize.params import ABOUT  # noqa: E402
from stylize.service.regions import MAX_REGIONS  # noqa: E402
from ui import endpoints, runs, serve  # noqa: E402
from ui import handlers as h
from ui import text as t
from ui.components import (  # noqa: E402
    PhotoInput,
    RowsInput,
    control,
    finished_result,
    named,
    region_editor,
    results_column,
    strength_controls,
    thumbs,
)
from ui.service import COMPARE_DEFAULTS as CD  # noqa: E402,E501
from ui.service import DEFAULTS as D
from ui.service import GRID_DEFAULTS as EX
from ui.service import LIMITS, studio

SHOWN = h.PRESETS_SHOWN
SETTINGS = list(ABOUT)  # one control per Settings field, named like it: the API's parameters, in this order
C: dict[str, gr.components.Component] = {}  # every component the events use, by name


def on(trigger, fn, inputs: list[str], outputs: list[str], **options):
    """Wire `fn` from named inputs to named outputs (it returns {name: value}, or its outputs in order)."""
    wired = named(fn, C, outputs) if fn is not None else None
    return trigger(wired, [C[n] for n in inputs], [C[n] for n in outputs], **options)


with gr.Blocks(title="stylize — neural style transfer") as demo:  # files: ui/disk.py sweeps them
    gr.Markdown(t.TITLE)
    C["weights_status"] = gr.Markdown(studio.weights_status(), elem_id="weights-status")
    C["link_notice"] = gr.Markdown("", elem_id="link-notice")
    C["preset"] = gr.Textbox("", visible=False, elem_id="preset-id")
    C.update(autorun=gr.State(False), stylize_token=gr.State(None), compare_token=gr.State(None),
             explore_token=gr.State(None), enlarge_token=gr.State(None))
    with gr.Tab("Stylize", elem_id="tab-stylize"):
        if h.EXAMPLES:
            C["examples"] = thumbs(studio.assets.example_thumbnails(), "Made with stylize: click one to load it",
                                   "examples", 6)
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                C["photo"] = PhotoInput(label="1 · Your photo", type="filepath", elem_id="photo", height=240,
                                          sources=["upload", "webcam", "clipboard"])
                C["photos"] = thumbs(studio.assets.photo_thumbnails(), "…or an example photo", "photos", 6)
                gr.Markdown(t.photo_credits(), elem_id="photo-t.credits")
                C["presets"] = thumbs(studio.assets.thumbnails(), "2 · Pick a painting", "presets", 5)
                with gr.Accordion("…or use your own painting(s)", open=False):
                    C["painting"] = PhotoInput(label="Your painting", type="filepath", height=160,
                                                   sources=["upload", "clipboard"], elem_id="painting")
                    C["extra_paintings"] = gr.File(label=f"More style images, blended (up to {LIMITS.max_styles - 1})",
                                                file_count="multiple", file_types=["image"], height=80)
                    C["style_blend"] = control("style_blend", D.style_blend)
                with gr.Accordion("Paint regions", open=False, elem_id="regions-accordion"):
                    gr.Markdown(t.REGIONS_HELP.format(n=MAX_REGIONS), elem_id="regions-help")
                    C["regions"] = region_editor(MAX_REGIONS)
                    with gr.Row():
                        for n in range(1, MAX_REGIONS + 1):
                            C[f"region_{n}"] = gr.Dropdown(t.region_choices(SHOWN), value=None, label=f"Region {n}",
                                                           elem_id=f"region-{n}", min_width=120)
            with gr.Column(scale=6, min_width=320):
                C["style_md"] = gr.Markdown(t.style_label(None), elem_id="style-label")
                with gr.Row(equal_height=True):
                    C["strength_scale"], C["style_strength"] = strength_controls(D.style_strength)
                with gr.Row():
                    C["size"] = control("size", D.size, maximum=LIMITS.max_size)
                    C["steps"] = control("steps", D.steps, maximum=LIMITS.max_steps)
                with gr.Row(equal_height=True):
                    C["stylize_run"] = gr.Button("3 · Stylize", variant="primary", elem_id="run", scale=2)
                    C["stylize_estimate"] = gr.Markdown(t.estimate_note(studio.budget.estimate(D)),
                                                        elem_id="run-estimate")
                    C["stylize_stop"] = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
                C["status"] = gr.Markdown(t.STYLIZE_HINT, elem_id="status")
                C["result"] = gr.Image(label="Result", format="jpeg", interactive=False, elem_id="result", height=520,
                                       buttons=["download", "fullscreen"])
                C.update(finished_result())
                C["link"] = gr.Textbox(label="Link to these settings", buttons=["copy"], elem_id="share-link")
                gr.DeepLinkButton(value="Share this page with your images")
                with gr.Accordion("Advanced", open=False):
                    for row in (("content_layer", "style_layers"), ("layer_weights",), ("calm", "tv_weight", "seed"),
                                ("scales", "style_scale"), ("init",), ("pooling",), ("preserve_color",),
                                ("style_model",), ("mrf_layers", "mrf_patch")):
                        with gr.Row():
                            for name in row:
                                C[name] = control(name, getattr(D, name), info=ABOUT[name].help)
                    C["weights"] = gr.Radio(["auto", "hub", "embedded"], value="auto", label="Weights")
    with gr.Tab("Compare presets", elem_id="tab-compare"):
        gr.Markdown(t.COMPARE_INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                C["compare_photo"] = PhotoInput(label="Your photo", type="filepath", height=220,
                                                  sources=["upload", "webcam", "clipboard"], elem_id="compare-photo")
                C["compare_photos"] = thumbs(studio.assets.photo_thumbnails(), "…or an example photo",
                                             "compare-photos", 6)
                C["compare_picker"] = thumbs(studio.assets.thumbnails(), f"Paintings: click to add or remove (up to "
                                             f"{LIMITS.max_compare})", "compare-picker", 5)
                C["compare_presets"] = gr.CheckboxGroup(t.preset_choices(SHOWN), value=SHOWN[:3],
                                                        label="Chosen paintings", elem_id="compare-presets")
                C["compare_both"] = gr.Checkbox(False, label=t.BOTH_MODELS, elem_id="compare-both")
                with gr.Row():
                    C["compare_size"] = control("size", CD.size, maximum=LIMITS.max_size, label="Size (px)",
                                                elem_id="compare-size")
                    C["compare_steps"] = control("steps", CD.steps, maximum=LIMITS.max_steps, elem_id="compare-steps")
                with gr.Row(equal_height=True):
                    C["compare_run"] = gr.Button("Compare", variant="primary", elem_id="compare-run", scale=2)
                    C["compare_estimate"] = gr.Markdown(h.compare_estimate(None, SHOWN[:3], CD.size, CD.steps, False),
                                                        elem_id="compare-estimate")
                    C["compare_stop"] = gr.Button("Stop", variant="stop", elem_id="compare-stop", scale=1)
            with gr.Column(scale=6, min_width=320):
                C.update(results_column("compare", "", "compare-results", "Results: click one", 3, "jpeg",
                                        "compare-sheet", "The comparison sheet (PNG)", "this comparison"))
        C.update(compare_state=gr.State(None), compare_opened=gr.Checkbox(False, visible=False),  # a link was opened
                 compare_autorun=gr.Checkbox(False, visible=False))
    with gr.Tab("Explore", elem_id="tab-explore"):
        gr.Markdown(t.EXPLORE_INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                C["explore_kind"] = gr.Radio(t.KIND_CHOICES, value="style", label="Experiment", elem_id="explore-kind")
                with gr.Row(equal_height=False):
                    C["explore_photo"] = PhotoInput(label="Photo", type="filepath", height=200, min_width=200,
                                                    sources=["upload", "webcam", "clipboard"], elem_id="explore-photo")
                    with gr.Column(min_width=200):  # on a phone: below the photo, full width
                        C["explore_preset"] = gr.Dropdown(t.preset_choices(SHOWN), value=h.EXPLORE_PRESET or None,
                                                          label="Painting", elem_id="explore-preset",
                                                          allow_custom_value=True)  # the check names bad ones
                        C["explore_painting"] = PhotoInput(label="…or your own painting", type="filepath", height=150,
                                                           sources=["upload", "clipboard"], elem_id="explore-painting")
                # Both start empty ("the experiment's defaults" for the API); the page load shows the defaults.
                C["explore_rows"] = RowsInput(t.row_choices("style"), value=[], elem_id="explore-rows",
                                              label="Rows: style layer sets (the paper's a–e)")
                C["explore_columns"] = gr.Textbox("", label="Columns: style strengths β/α, comma-separated",
                                                  placeholder="empty: the experiment's defaults",
                                                  elem_id="explore-columns")
                with gr.Row():
                    C["explore_size"] = control("size", EX.size, maximum=LIMITS.max_size, label="Size of a cell (px)",
                                                elem_id="explore-size")
                    C["explore_steps"] = control("steps", EX.steps, maximum=LIMITS.max_steps, elem_id="explore-steps")
                C["explore_seed"] = control("seed", EX.seed, elem_id="explore-seed",
                                            info="of the noise that texture and reconstruction cells start from")
                gr.Markdown(f"<small>At most {MAX_CELLS} cells (rows × columns), all computed together.</small>")
                with gr.Row(equal_height=True):
                    C["explore_run"] = gr.Button("Run the grid", variant="primary", elem_id="explore-run", scale=2)
                    C["explore_estimate"] = gr.Markdown("", elem_id="explore-estimate")
                    C["explore_stop"] = gr.Button("Stop", variant="stop", elem_id="explore-stop", scale=1)
            with gr.Column(scale=6, min_width=320):
                C.update(results_column("explore", t.GRID_HINT, "explore-cells", "Cells: click one", 4, "png",
                                        "explore-grid", "The whole grid, labelled (PNG)", "this grid"))
        C.update(explore_state=gr.State(None), explore_opened=gr.Checkbox(False, visible=False))  # a link was opened
    with gr.Accordion("Credits", open=False):
        gr.Markdown(t.credits())

    # ---- events -------------------------------------------------------------------------------------------------
    private = dict(api_visibility="private", queue=False)
    gpu = dict(concurrency_id="gpu")
    images_in = ["photo", "preset", "painting", "extra_paintings"]
    stylize_out = ["result", "status", "before_after", "png", "loss_plot", "link"]  # [1]: where progress shows
    settings_out = [*SETTINGS, "strength_scale"]
    painting_out = ["preset", "painting", "style_md"]
    regions_in = [f"region_{n}" for n in range(1, MAX_REGIONS + 1)]
    # Public endpoints (API and MCP tools): the image once, at the end, and a status line.
    C.update(api_masks=gr.File(file_count="multiple", file_types=["image"], visible=False, elem_id="api-masks"),
             api_stylize=gr.Button(visible=False, elem_id="api-run"), api_compare=gr.Button(visible=False),
             api_explore=gr.Button(visible=False), api_enlarge=gr.Button(visible=False),
             api_result=gr.Image(type="filepath", visible=False), api_factor=gr.Number(2, precision=0, visible=False))
    explore_in = ["explore_kind", "explore_photo", "explore_painting", "explore_rows", "explore_columns",
                  "explore_size", "explore_steps", "explore_seed", "explore_preset", "weights"]
    compare_in = ["compare_photo", "compare_presets", "compare_size", "compare_steps", "seed", "weights",
                  "compare_both"]
    for name, inputs, outputs in (("stylize", [*images_in, "api_masks", "weights", *SETTINGS], ["result", "status"]),
                                  ("compare", compare_in, ["compare_image", "compare_status"]),
                                  ("explore", explore_in, ["explore_image", "explore_status"]),
                                  ("enlarge", ["api_result", "api_factor", *images_in, "weights", *SETTINGS],
                                   ["result", "status"])):
        on(C[f"api_{name}"].click, getattr(endpoints, name), inputs, outputs, api_name=name, **gpu)
    # The page's runs: a fresh stop token first (unqueued) and the button off, then the run, then the button on again;
    # Stop names the token, even while queued, and a click during a run does nothing (README, The app).
    page = dict(api_visibility="private", show_progress="minimal", **gpu)
    for prefix, fn, inputs, outputs in (
            ("stylize", endpoints.stylize_in_page, [*images_in, "stylize_token", "regions", *regions_in, "weights",
                                                    *SETTINGS], stylize_out),
            ("compare", endpoints.compare_in_page, [*compare_in, "compare_token"],
             ["compare_gallery", "compare_status", "compare_image", "compare_link", "compare_state"]),
            ("explore", endpoints.explore_in_page, [*explore_in, "explore_token"],
             ["explore_gallery", "explore_status", "explore_image", "explore_link", "explore_state"])):
        started = on(C[f"{prefix}_run"].click, h.fresh_token, [], [f"{prefix}_token", f"{prefix}_run"],
                     trigger_mode="once", **private)
        event = on(started.then, fn, inputs, outputs, **page, show_progress_on=C[outputs[1]])
        on(event.then, h.run_ended, [], [f"{prefix}_run"], **private)
        on(C[f"{prefix}_stop"].click, runs.stop, [f"{prefix}_token"], [], **private)
        if prefix == "stylize":  # shown once there is a finished result
            event.success(lambda: gr.Column(visible=True), None, C["finished"], **private)
    # Make it bigger (#33): the finished result's PNG, with the photo, paintings and settings that made it; its
    # button off while it runs, like the others.
    started = on(C["enlarge_run"].click, h.fresh_token, [], ["enlarge_token", "enlarge_run"], trigger_mode="once",
                 **private)
    event = on(started.then, endpoints.enlarge_in_page, ["png", "enlarge_factor", *images_in, "enlarge_token",
                                                         "weights", *SETTINGS], ["big_result", "big_status", "big_png"],
               **page, show_progress_on=C["big_status"])
    on(event.then, h.run_ended, [], ["enlarge_run"], **private)
    on(C["enlarge_stop"].click, runs.stop, ["enlarge_token"], [], **private)
    for name in ("png", "enlarge_factor"):
        on(C[name].change, h.enlarge_estimate, ["png", "enlarge_factor"], ["enlarge_estimate"], **private)
    on(C["strength_scale"].release, t.strength_from_log, ["strength_scale"], ["style_strength"], **private)
    on(C["presets"].select, h.choose_preset, [], [*painting_out, *settings_out], **private)
    on(C["photos"].select, h.choose_photo, [], ["photo"], **private)
    on(C["compare_photos"].select, h.choose_photo, [], ["photo"], **private)
    if h.EXAMPLES:
        on(C["examples"].select, h.choose_example, [], ["photo", *painting_out, "status", *settings_out,
                                                        *h.SHOWN_RESULT], **private)
    # One photo on both tabs: whatever sets the Stylize tab's photo (upload, example, link) sets Compare's; an
    # upload on Compare sets Stylize's (a user's input only, so the two never echo each other).
    on(C["photo"].change, h.same, ["photo"], ["compare_photo"], **private)
    on(C["compare_photo"].input, h.same, ["compare_photo"], ["photo"], **private)
    on(C["photo"].change, h.region_photo, ["photo"], ["regions"], **private)
    on(C["compare_picker"].select, h.toggle_compare_preset, ["compare_presets"], ["compare_presets"],
       **private)
    on(C["compare_gallery"].select, h.compare_result, ["compare_state"],
       [*painting_out, "status", *settings_out, "compare_note", "compare_open", *h.SHOWN_RESULT], **private)
    on(C["explore_gallery"].select, h.explore_cell, ["explore_state"],
       ["photo", *painting_out, "status", *settings_out, "explore_note", "explore_open", *h.SHOWN_RESULT], **private)
    for prefix in ("compare", "explore"):
        C[f"{prefix}_open"].click(None, None, None, js=h.TO_STYLIZE_JS, api_visibility="private")
    on(C["explore_kind"].input, h.explore_kind_changed, ["explore_kind"],
       ["explore_rows", "explore_columns", "explore_photo", "explore_preset", "explore_painting"], **private)
    on(C["explore_rows"].input, h.explore_sort_rows, ["explore_kind", "explore_rows"], ["explore_rows"],
       **private)
    # The estimate beside each button follows what it depends on (examples and links included).
    for fn, inputs, output in (
            (h.run_estimate, ["photo", "size", "steps", "scales", "style_scale", "style_model", "extra_paintings"],
             "stylize_estimate"),
            (h.compare_estimate, ["compare_photo", "compare_presets", "compare_size", "compare_steps", "compare_both"],
             "compare_estimate"),
            (h.explore_estimate, ["explore_kind", "explore_rows", "explore_columns", "explore_size", "explore_steps"],
             "explore_estimate")):
        for name in inputs:
            on(C[name].change, fn, inputs, [output], **private)
    # The machine's line, made at each page load: after the start-up calibration or a refit, as it is now.
    on(demo.load, h.machine_line, [], ["weights_status"], **private)
    # A shared page whose images are gone: one message, the images emptied, the settings kept.
    on(demo.load, h.check_link, [], ["link_notice", *h.LINK_FILES], **private)
    # Links: unqueued (a page load never waits behind running jobs). run=1 presses the tab's button once prefilled.
    click = "document.querySelector('{}')?.click();"
    on(demo.load, h.prefill, [], ["preset", "style_md", "status", "autorun", *settings_out], **private).then(
        None, C["autorun"], None, js=f"(go) => {{ if (go) {click.format('#run')} }}", api_visibility="private")
    on(demo.load, h.prefill_compare, [], ["compare_presets", "compare_size", "compare_steps", "seed", "compare_both",
                                         "photo", "compare_status", "compare_opened", "compare_autorun"],
       **private).then(h.same, C["photo"], C["compare_photo"], **private).then(
        None, [C["compare_opened"], C["compare_autorun"]], None, api_visibility="private",
        js=f"(go, run) => {{ if (go) {click.format('#tab-compare-button')} if (run) {click.format('#compare-run')} }}")
    on(demo.load, h.prefill_explore, [], ["explore_kind", "explore_rows", "explore_columns", "explore_photo",
                                         "explore_preset", "explore_painting", "explore_size", "explore_steps",
                                         "explore_seed", "explore_status", "explore_opened"], **private).then(
        None, C["explore_opened"], None, js=f"(go) => {{ if (go) {click.format('#tab-explore-button')} }}",
        api_visibility="private")


def launch(**overrides):
    return serve.launch(demo, **overrides)


if __name__ == "__main__":
    launch()
