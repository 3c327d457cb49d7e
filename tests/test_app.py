"""The launched app on 127.0.0.1, driven through gradio_client as an API user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import ROOT, free_port
from PIL import Image


def submit(client, photo, **kwargs):
    from gradio_client import handle_file

    return client.submit(photo=handle_file(photo), api_name="/stylize", **{"preset": "starry_night", **kwargs})


def test_only_the_three_endpoints_are_public(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
        "/stylize", "/compare", "/explore", "/enlarge"}


def test_a_result_is_made_bigger_through_the_api_as_an_srgb_png_named_by_its_size(client, photo_file):
    """/enlarge (#33): the finished result, the photo, painting and settings that made it, a factor."""
    from gradio_client import handle_file

    small, _ = list(submit(client, photo_file, size=64, steps=4))[-1]
    outputs = list(client.submit(result=handle_file(small), factor=2, photo=handle_file(photo_file),
                                 preset="starry_night", size=64, steps=4, api_name="/enlarge"))
    final, status = outputs[-1]
    image = Image.open(final)
    assert image.format == "PNG" and image.size == (128, 85) and image.info.get("icc_profile")
    assert os.path.basename(final).startswith("stylize-128x85-") and status.startswith("Done")
    refused = client.submit(result=handle_file(small), factor=3, photo=handle_file(photo_file),
                            preset="starry_night", api_name="/enlarge")
    with pytest.raises(Exception, match="factor must be one of"):
        refused.result()


def test_every_setting_is_one_component_and_one_documented_api_parameter(app_module, client):
    """Settings ↔ components are mapped once, by field name: a new Settings field needs only a component."""
    from dataclasses import fields

    from stylize import Settings

    names = [f.name for f in fields(Settings)]
    assert list(app_module.SETTINGS) == names and all(n in app_module.C for n in names), "a control per setting"
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/stylize"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["photo", "preset", "painting", "extra_paintings", "masks",
                                                      "weights", *names]
    defaults = {p["parameter_name"]: p["parameter_default"] for p in params}
    assert defaults["size"] == app_module.D.size and defaults["steps"] == app_module.D.steps
    from stylize.params import ABOUT

    doc = app_module.endpoints.stylize.__doc__
    for name in ["photo", "preset", "masks", *names]:
        assert f"\n    {name}: " in doc, name
    assert f"\n    size: {ABOUT['size'].describe()}; default {app_module.D.size}" in doc  # the setting's own words
    assert app_module.C["size"].label == ABOUT["size"].label and app_module.C["size"].maximum == app_module.LIMITS.max_size


def test_stylize_streams_frames_and_ends_with_the_png_once_and_a_status_line(client, photo_file):
    job = submit(client, photo_file, size=64, steps=25)
    outputs = list(job)
    assert all(len(o) == 2 for o in outputs)  # (image, status): what an API client or an agent wants
    streamed = [o for o in outputs if isinstance(o[0], str)]
    # An image at the first step (at once), then about two a second, and the final one: a run this short on a quiet
    # machine streams just the first and the last; an image streamed before the end is what matters.
    assert len(streamed) >= 2, outputs
    assert streamed[0][1].startswith("Step 1/25"), streamed[0][1]
    final = outputs[-1]
    assert Image.open(final[0]).format == "PNG" and Image.open(final[0]).size == (64, 43)
    assert final[1].startswith("Done 25/25")


def test_the_stylize_button_also_gives_the_pair_the_loss_table_and_a_link(app_module, photo_file):
    import gradio as gr

    values = {**{n: getattr(app_module.D, n) for n in app_module.SETTINGS}, "size": 64, "steps": 5,
              "photo": photo_file, "preset": "starry_night", "painting": None, "extra_paintings": None,
              "token": "t", "regions": None, "region_1": None, "region_2": None, "region_3": None, "weights": "auto"}
    outputs = list(app_module.endpoints.stylize_in_page(**values, request=gr.Request()))
    final = outputs[-1]
    assert final["status"].startswith("Done 5/5") and Image.open(final["png"]).format == "PNG"
    assert final["result"] == final["png"] and Image.open(final["result"]).size == (64, 43)
    before, after = final["before_after"]
    assert before.size == after.size == (64, 43)
    table = final["loss_plot"]  # every step's terms, log scale (a zero, content at step 1, has no logarithm)
    assert list(table.columns) == ["step", "term", "log10 loss"] and set(table["step"]) == {1, 2, 3, 4, 5}
    assert set(table["term"]) == {"content", "style", "calm", "total"}
    query = parse_qs(urlparse(final["link"]).query)
    assert query["preset"] == ["starry_night"] and query["steps"] == ["5"] and query["size"] == ["64"]


def test_cancel_frees_the_worker_for_the_next_job(client, photo_file):
    job = submit(client, photo_file, size=64, steps=1000)
    started = time.perf_counter()
    while sum(isinstance(o[0], str) for o in job.outputs()) < 2:
        assert time.perf_counter() - started < 60
        time.sleep(0.1)
    job.cancel()
    cancelled_at = time.perf_counter()
    nxt = submit(client, photo_file, size=64, steps=3)
    final = nxt.result()
    assert Image.open(final[0]).size == (64, 43)
    # The cancelled run stopped well before its 1000 steps (≈0.03 s each here): the next job ran soon after.
    assert time.perf_counter() - cancelled_at < 20


@pytest.mark.parametrize("content, message", [
    (b"definitely not an image", "is not an image PIL can read"),
    (b"", "empty|not an image"),
])
def test_a_bad_image_gets_a_clear_error_and_the_server_keeps_serving(client, photo_file, tmp_path, content, message):
    import re

    from gradio_client.exceptions import AppError

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    with pytest.raises(AppError) as info:
        submit(client, str(bad), size=64, steps=3).result()
    assert re.search(message, str(info.value))
    assert Image.open(submit(client, photo_file, size=64, steps=3).result()[0]).size == (64, 43)


def test_unknown_preset_and_invalid_settings_are_clear_errors(client, photo_file):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"unknown preset '\.\./\.\./etc/passwd'; available: starry_night"):
        submit(client, photo_file, preset="../../etc/passwd", size=64, steps=3).result()
    with pytest.raises(AppError, match="style_layers 'relu9_1': unknown relu9_1"):
        submit(client, photo_file, size=64, steps=3, style_layers="relu9_1").result()
    with pytest.raises(AppError, match=r"at most 4 style images per run \(the painting and 3 more\); got 5"):
        submit(client, photo_file, size=64, steps=3,
               extra_paintings=[handle_file(photo_file) for _ in range(4)]).result()
    with pytest.raises(AppError, match="greater than maximum value|above this machine"):
        submit(client, photo_file, size=2048, steps=3).result()


def test_custom_style_layers_are_one_text_value(client, photo_file):
    final = submit(client, photo_file, size=64, steps=2, style_layers="relu1_1,relu3_1", layer_weights="2,1").result()
    assert final[1].startswith("Done 2/2")


def sheet_cells(sheet_path: str, titles: list[str], size=(64, 43)) -> list:
    """The photo's and each result's pixels in a comparison sheet, where the sheet's own layout puts them."""
    import numpy as np

    from stylize.experiments.compare import PHOTO_CAPTION, SHEET_COLUMNS
    from stylize.experiments.sheets import grid_layout

    sheet = Image.open(sheet_path).convert("RGB")
    captions = [PHOTO_CAPTION, *titles]
    rows = [captions[k:k + SHEET_COLUMNS] for k in range(0, len(captions), SHEET_COLUMNS)]
    cells, top = [], 0
    for row in rows:
        layout = grid_layout(size, [""], row)
        for column in range(len(row)):
            x0, y0, x1, y1 = layout.cell_box(0, column, size)
            cells.append(np.asarray(sheet.crop((x0, top + y0, x1, top + y1)), dtype=float))
        top += layout.size[1]
    return cells


def test_compare_returns_one_sheet_with_the_photo_first_and_no_duplicates(client, photo_file):
    import numpy as np
    from gradio_client import handle_file

    job = client.submit(photo=handle_file(photo_file), presets=["starry_night", "the_scream", "starry_night"],
                        size=64, steps=10, api_name="/compare")
    sheet, status = job.result()
    assert status == "2/2 done"
    photo, *results = sheet_cells(sheet, ["The Starry Night", "The Scream"])
    expected = np.asarray(Image.open(photo_file).convert("RGB").resize((64, 43), Image.Resampling.LANCZOS), float)
    assert np.abs(photo - expected).mean() < 3  # the photo first, at the results' size
    assert len(results) == 2 and all(np.abs(r - photo).mean() > 1 for r in results)  # then each (stylized) result


def test_compare_is_bounded(client, photo_file, app_module):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    too_many = list(app_module.studio.assets.presets)[:7]
    with pytest.raises(AppError, match=r"compare at most 6 presets at a time \(got 7\)"):
        client.submit(photo=handle_file(photo_file), presets=too_many, size=64, steps=3,
                      api_name="/compare").result()
    with pytest.raises(AppError, match="tick at least one preset"):
        client.submit(photo=handle_file(photo_file), presets=[], size=64, steps=3, api_name="/compare").result()


def prefilled(app_module, query: dict) -> dict:
    """prefill's outputs by name: preset id, label, status, autorun, then every setting and the slider."""
    import gradio as gr

    out = app_module.h.prefill(gr.Request(query_params=query))
    assert set(out) == {"preset", "style_md", "status", "autorun", *app_module.SETTINGS, "strength_scale"}
    return out


def test_prefill_reads_the_query_string_with_notices(app_module):
    out = prefilled(app_module, {"preset": "the_scream", "steps": "99999", "style_strength": "100", "run": "1"})
    assert out["preset"] == "the_scream" and "The Scream" in out["style_md"]
    assert out["strength_scale"] == 2.0  # the log-scale slider's position
    assert out["style_strength"] == 100.0 and out["steps"] == app_module.LIMITS.max_steps
    assert out["autorun"] is True  # run=1 with a valid preset starts the run
    assert "steps" in out["status"] and str(app_module.LIMITS.max_steps) in out["status"]

    out = prefilled(app_module, {"preset": "../../etc/passwd", "run": "1"})
    assert out["preset"] == "" and out["autorun"] is False
    assert "unknown preset" in out["status"]


def test_share_links_round_trip_through_prefill(app_module):
    from stylize import Settings
    from stylize.params import settings_from_values
    from stylize.service.links import share_url

    settings = Settings(size=128, steps=77, style_strength=3.5, init="noise", preserve_color="luminance", seed=9,
                        style_layers="relu1_1,relu2_1", layer_weights="1,3")
    url = share_url("https://huggingface.co/spaces/someone/stylize", settings, ["shipwreck"])
    assert url.startswith("https://huggingface.co/spaces/someone/stylize?")
    query = {k: v[0] for k, v in parse_qs(urlparse(url).query, keep_blank_values=True).items()}
    out = prefilled(app_module, query)
    assert out["preset"] == "shipwreck"
    assert settings_from_values({name: out[name] for name in app_module.SETTINGS}) == settings


def test_page_loads_and_ui_events_are_not_queued(app_module):
    """A page load never waits behind running jobs: only the four runs go through the queue."""
    queued = {fn.name for fn in app_module.demo.fns.values() if fn.queue and fn.fn is not None}
    assert queued == {"stylize", "stylize_in_page", "compare", "compare_in_page", "explore", "explore_in_page",
                      "enlarge", "enlarge_in_page"}, queued


def test_private_queue_attributes_still_exist(app_module):
    """launch() tunes two private attributes of Gradio's queue (README, Performance); fail loudly if a Gradio
    upgrade renames them, rather than silently losing the speed-up."""
    queue = app_module.demo._queue
    assert isinstance(queue.sleep_when_free, (int, float)), "gradio's Queue.sleep_when_free is gone"
    assert isinstance(queue.progress_update_sleep_when_free, (int, float)), \
        "gradio's Queue.progress_update_sleep_when_free is gone"


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop has no Windows build")
def test_the_server_is_set_up_to_serve_a_page_s_many_requests_fast(server):
    """A page is ~140 requests: uvicorn serves them with uvloop and httptools (requirements.txt), and launch()
    freezes start-up's objects out of the collector's full passes (README, Files and disk)."""
    import gc

    from uvicorn.loops.auto import auto_loop_factory
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    assert AutoHTTPProtocol.__name__ == "HttpToolsProtocol"
    loop = auto_loop_factory()()
    try:
        assert type(loop).__module__.startswith("uvloop"), type(loop)
    finally:
        loop.close()
    assert gc.get_freeze_count() > 100_000


def test_python_app_py_serves_the_page_within_15_seconds(tmp_path, preset_dir):
    import httpx

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "STYLIZE_PRESETS_DIR": str(preset_dir),
           "STYLIZE_WEIGHTS": "embedded", "GRADIO_ANALYTICS_ENABLED": "False"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.perf_counter() - started < 30, "the page was not served within 30 s"
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        monitoring = httpx.get(f"http://127.0.0.1:{port}/monitoring", timeout=5).status_code
    finally:
        process.terminate()
        process.wait(10)
    print(f"page served after {elapsed:.1f} s")  # 7.5–9.1 s on 2 cores; the bound is for liveness, not speed
    assert elapsed < 30
    assert monitoring != 200  # monitoring is off


def test_the_weights_line_speaks_plainly_and_is_ready_at_import(app_module):
    assert app_module.studio.ready
    line = app_module.studio.weights_status()
    assert line.startswith("Running on CPU (") and (" in fp32 — " in line or " in bf16 — " in line), line
    assert "with the original VGG-19, offline copy. Default run: " in line and " on this CPU (speed " in line, line


# ---- painted regions (masks), both style models, batched compare ---------------------------------------------------

def coloured_painting(light, dark, seed: int, side: int = 96):
    """A textured painting in one hue: stripes of `light` and `dark` (RGB in [0, 1]) over noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    stripes = (np.sin((x + y) * 0.6) > 0)[..., None]
    img = np.where(stripes, light, dark) + rng.normal(0, 0.05, (side, side, 3))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")


def test_two_masks_paint_each_half_of_the_photo_with_its_own_painting(client, photo_file, tmp_path):
    import numpy as np
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    coloured_painting([0.95, 0.2, 0.1], [0.6, 0.05, 0.1], 1).save(red)
    coloured_painting([0.1, 0.3, 0.95], [0.05, 0.1, 0.5], 2).save(blue)
    left, right = tmp_path / "left.png", tmp_path / "right.png"
    for path, box in ((left, (0, 0, 48, 64)), (right, (48, 0, 96, 64))):
        mask = Image.new("L", (96, 64), 0)
        mask.paste(255, box)
        mask.save(path)
    final = submit(client, photo_file, preset="", painting=handle_file(str(red)),
                   extra_paintings=[handle_file(str(blue))], masks=[handle_file(str(left)), handle_file(str(right))],
                   size=64, steps=30, style_strength=200.0).result()
    assert final[1].startswith("Done 30/30"), final[1]
    out = np.asarray(Image.open(final[0]).convert("RGB"), dtype=float)
    assert out.shape == (43, 64, 3)
    halves = out[:, :30].reshape(-1, 3).mean(0), out[:, 34:].reshape(-1, 3).mean(0)
    means = [np.asarray(Image.open(p).convert("RGB"), dtype=float).reshape(-1, 3).mean(0) for p in (red, blue)]
    distance = [[float(np.linalg.norm(half - mean)) for mean in means] for half in halves]
    print("left half to red, blue:", distance[0], "right half to red, blue:", distance[1])
    assert distance[0][0] < distance[0][1] / 4 and distance[1][1] < distance[1][0] / 4
    # One mask for two style images: one clear message, before any work.
    with pytest.raises(AppError, match=r"masks: got 1 for 2 style images \(the painting and 1 more\): give one "
                                       r"mask per style image"):
        submit(client, photo_file, extra_paintings=[handle_file(str(blue))], masks=[handle_file(str(left))],
               size=64, steps=3).result()
    with pytest.raises(AppError, match="painted regions and masks work with the Gram style model"):
        submit(client, photo_file, masks=[handle_file(str(left))], style_model="mrf", size=64, steps=3).result()


def test_compare_with_both_models_runs_every_preset_twice(client, photo_file, app_module):
    from gradio_client import handle_file

    job = client.submit(photo=handle_file(photo_file), presets=["starry_night", "the_scream"], size=64, steps=3,
                        both_models=True, api_name="/compare")
    sheet, status = job.result()
    assert status == "4/4 done"
    assert Image.open(sheet).height > 2 * 43  # the photo and four results: two rows
    from stylize.experiments.compare import compare_cells

    presets = app_module.studio.assets.presets
    cells = compare_cells([presets["starry_night"], presets["the_scream"]], app_module.CD, both_models=True)
    assert [c.title for c in cells] == ["The Starry Night · Gram (Gatys 2015)",
                                        "The Starry Night · Patches (Li & Wand 2016)",
                                        "The Scream · Gram (Gatys 2015)", "The Scream · Patches (Li & Wand 2016)"]


def test_a_batched_compare_streams_every_preset_together_and_ends_with_a_sheet(client, photo_file, monkeypatch):
    import numpy as np
    from gradio_client import handle_file

    ids = ["starry_night", "the_scream", "shipwreck"]
    job = client.submit(photo=handle_file(photo_file), presets=ids, size=64, steps=40, api_name="/compare")
    outputs = list(job)
    statuses = [status for _, status in outputs]
    assert any("3 images of 64×43 in one batch" in s for s in statuses), statuses
    assert all(sheet is None for sheet, _ in outputs[:-1])  # an agent gets the image once, at the end
    sheet, status = outputs[-1]
    assert status == "3/3 done"
    photo, *results = sheet_cells(sheet, ["The Starry Night", "The Scream", "The Shipwreck of the Minotaur"])
    assert len(results) == 3
    assert min(np.abs(a - b).mean() for i, a in enumerate(results) for b in results[i + 1:]) > 1.0  # each different


def test_the_compare_button_streams_a_captioned_gallery_a_sheet_and_a_link(app_module, photo_file):
    from types import SimpleNamespace

    app = app_module
    request = SimpleNamespace(session_hash="compare-page", request=None, query_params={}, headers={})
    outputs = list(app.endpoints.compare_in_page(photo_file, ["the_scream", "starry_night"], 64, 3, 5, "auto", False,
                                                 "token", request))
    final = {k: v for out in outputs for k, v in out.items()}  # what the page shows at the end
    gallery, status, sheet, link, state = (final[f"compare_{n}"] for n in ("gallery", "status", "image", "link", "state"))
    assert [caption for _, caption in gallery] == ["The Scream — Edvard Munch, 1893",
                                                   "The Starry Night — Vincent van Gogh, 1889"]
    assert status == "2/2 done" and Image.open(sheet).format == "PNG"
    assert "tab=compare" in link and "presets=the_scream%2Cstarry_night" in link and "seed=5" in link
    assert "photo=" not in link  # an uploaded photo is not an example: the page's share button carries it
    assert [cell["preset"] for cell in state] == ["the_scream", "starry_night"]
    assert state[0]["settings"]["style_strength"] == app.studio.assets.presets["the_scream"].apply(app.CD).style_strength


# ---- Explore: the paper's experiments as grids ------------------------------------------------------------------

def explore_job(client, **kwargs):
    from gradio_client import handle_file

    for name in ("photo", "painting"):
        if kwargs.get(name):
            kwargs[name] = handle_file(kwargs[name])
    return client.submit(api_name="/explore", **{"size": 64, "steps": 5, "preset": "starry_night", **kwargs})


def test_explore_streams_a_2x2_style_grid_with_captions_a_labelled_image_and_a_link(app_module, photo_file):
    from types import SimpleNamespace

    from stylize.experiments.explore import Grid

    request = SimpleNamespace(session_hash="explore-page", request=None, query_params={}, headers={})
    outputs = list(app_module.endpoints.explore_in_page("style", photo_file, None, ["a", "e"], "2, 200", 64, 20, 0,
                                                        "starry_night", "auto", "token", request))
    galleries = [o["explore_gallery"] for o in outputs if o.get("explore_gallery")]
    assert len(galleries) >= 2, [o.get("explore_status") for o in outputs]  # streamed: every update, every cell
    labelled, cells, status = (outputs[-1][f"explore_{n}"] for n in ("image", "gallery", "status"))
    link = outputs[0]["explore_link"]
    assert status.startswith("Done 20/20 · 2 × 2 grid: 4 cells of 64×43 in one batch"), status
    images = [Image.open(png).convert("RGB") for png, _ in cells]  # the finished cells, as their lossless PNGs
    assert len(images) == 4 and all(image.size == (64, 43) for image in images)
    assert outputs[-1]["explore_state"]["cells"] == [png for png, _ in cells]  # what a click hands to Stylize
    assert len({image.tobytes() for image in images}) == 4
    captions = [caption for _, caption in cells]
    assert [c.rsplit(" · loss ", 1)[0] for c in captions] == ["a · β/α=2", "a · β/α=200", "e · β/α=2", "e · β/α=200"]
    assert all(float(c.rsplit(" · loss ", 1)[1]) > 0 for c in captions)
    grid_image = Image.open(labelled)
    assert grid_image.format == "PNG"
    assert grid_image.size == Grid("style", ("a", "e"), (2, 200)).labelled(images).size
    query = parse_qs(urlparse(link).query)
    assert query["tab"] == ["explore"] and query["kind"] == ["style"] and query["rows"] == ["a;e"]
    assert query["columns"] == ["2;200"] and query["size"] == ["64"] and query["preset"] == ["starry_night"]


@pytest.mark.parametrize("kind, rows, size", [
    ("texture", ["a", "c"], (64, 64)),  # the painting's shape: there is no photo
    ("reconstruction", ["relu1_1", "relu3_1"], (64, 43)),
])
def test_explore_runs_texture_synthesis_and_content_reconstruction(client, photo_file, kind, rows, size):
    job = explore_job(client, kind=kind, photo=photo_file if kind == "reconstruction" else None, rows=rows, seed=4)
    outputs = list(job)
    assert all(labelled is None for labelled, _ in outputs[:-1])  # an agent gets the grid once, at the end
    labelled, status = outputs[-1]
    assert status.startswith("Done 5/5 · 2 × 1 grid"), status
    assert Image.open(labelled).width > 2 * size[0] and Image.open(labelled).format == "PNG"  # one row of two



@pytest.mark.parametrize("kwargs, message", [
    ({"rows": list("abcde"), "columns": "1, 2, 3, 4, 5, 6, 7"}, "a 5 × 7 grid has 35 cells; at most 30"),
    ({"photo": None}, "the style-transfer grid needs a photo and a painting"),
    ({"kind": "texture", "preset": ""}, "texture synthesis needs a painting"),
    ({"kind": "reconstruction", "photo": None}, "content reconstruction needs a photo"),
    ({"rows": ["a", "f"]}, "unknown style layer set 'f'; valid: a, b, c, d, e"),
    ({"kind": "reconstruction", "rows": ["relu1_1", "relu9_1"]}, "unknown content layer 'relu9_1'; valid: conv1_1"),
    ({"columns": "2, lots"}, "columns must be numbers"),
    ({"size": 4096}, "above this machine|greater than maximum"),
])
def test_explore_refuses_bad_input_with_one_clear_message_before_any_work(client, photo_file, kwargs, message):
    from gradio_client.exceptions import AppError

    started = time.perf_counter()
    with pytest.raises(AppError, match=message):
        explore_job(client, **{"kind": "style", "photo": photo_file, "steps": 1000, **kwargs}).result()
    assert time.perf_counter() - started < 10  # refused at once, not after 1000 steps


def explore_prefilled(app_module, query: dict) -> list:
    """prefill_explore's outputs for a grid link, in the tab's order."""
    import gradio as gr

    out = app_module.h.prefill_explore(gr.Request(query_params=query))
    return [out[f"explore_{n}"] for n in ("kind", "rows", "columns", "photo", "preset", "painting", "size", "steps",
                                          "seed", "status", "opened")]


def test_an_explore_link_opens_the_explore_tab_validated_and_clamped(app_module):
    import gradio as gr

    from stylize.experiments.explore import Grid

    grid = Grid("texture", ("a", "relu1_1,relu3_1"), (0, 7), app_module.EX.replace(size=96, steps=40, seed=3))
    from stylize.service.links import explore_url

    url = explore_url("https://huggingface.co/spaces/someone/stylize", grid, "the_scream")
    query = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    out = explore_prefilled(app_module, query)
    kind, rows, columns, photo, preset, painting, size, steps, seed, status, opened = out
    assert kind == "texture" and rows["value"] == ["a", "relu1_1,relu3_1"] and columns["value"] == "0, 7"
    assert ("relu1_1, relu3_1", "relu1_1,relu3_1") in rows["choices"]  # a custom row gets its own check box
    assert photo["visible"] is False and preset["value"] == "the_scream"
    assert (size, steps, seed, opened) == (96, 40, 3, True) and "adjusted" not in status
    # The Stylize tab ignores a grid link (no notices about kind, rows, columns).
    stylize_tab = prefilled(app_module, query)
    assert stylize_tab["status"].startswith("Pick a painting") and stylize_tab["autorun"] is False

    out = explore_prefilled(app_module, {
        "tab": "explore", "kind": "collage", "rows": "a;zz;e", "columns": "2;1e9;x", "size": "99999",
        "preset": "../../etc/passwd", "colour": "red"})
    kind, rows, columns, _, preset, _, size, _, _, status, opened = out
    assert kind == "style" and rows["value"] == ["a", "e"] and columns["value"] == "2, 10000"
    assert size == app_module.LIMITS.max_size and opened is True
    for notice in ("unknown experiment 'collage'", "unknown style layer set 'zz'", "column 'x' is not a number",
                   "using 10000", "unknown preset '../../etc/passwd'", "ignored 'colour'", "above this machine"):
        assert notice in re.sub(r"\\(.)", r"\1", status), (notice, status)  # shown as text: Markdown escaped
    out = explore_prefilled(app_module, {  # 30 cells of 512 px: more than one batch may hold
        "tab": "explore", "rows": "a;b;c;d;e", "columns": "1;2;3;4;5;6", "size": "512", "seed": "5"})
    kind, rows, columns, _, _, _, size, steps, seed, status, opened = out
    assert "too large for one batch" in status and "using the default grid" in status
    assert (size, seed) == (app_module.EX.size, 5) and len(rows["value"]) * len(columns["value"].split(",")) <= 30
    out = app_module.h.prefill_explore(gr.Request(query_params={"preset": "the_scream"}))  # not a grid link:
    assert out["explore_opened"] is False and out["explore_rows"]["value"] == ["a", "c", "e"]
    assert out["explore_columns"]["value"] == "2, 20, 200, 2000"


def test_every_file_the_app_writes_is_one_its_sweep_may_remove(app_module, tmp_path):
    """The sweep removes only names that match its folders' layouts (ui/disk.py): a writer whose names do not match
    fills the disk past its cap (the print-size PNGs did), so every writer's names are checked against them."""
    from stylize.service import storage
    from stylize.service.stopping import StopFlag
    from ui import disk

    image, source = Image.new("RGB", (64, 48)), tmp_path / "shipped.jpg"
    image.save(source)
    stop = StopFlag("a token")
    stop.set()
    written = {"results": [storage.save_result(image), storage.save_print(image)],
               "regions": [storage.save_background(image)], "stops": [str(stop.path)],
               "thumbnails": [storage.served(source), storage.served(source, lossless=True)]}
    for kind, paths in written.items():
        for path in paths:
            name = os.path.relpath(path, storage.folder(kind))
            assert disk.LAYOUTS[kind].fullmatch(name), (kind, name)
            os.remove(path)


def test_clicking_a_cell_sends_it_and_its_settings_to_the_stylize_tab(app_module, tmp_path):
    """A style cell goes to Stylize with its picture, ready for *Make it bigger*; a texture cell (no photo) and a
    swept file hide the tab's finished part, so no picture is enlarged with settings that did not make it."""
    import gradio as gr

    from stylize.experiments.explore import Grid

    grid = Grid("style", ("a", "relu2_1,relu4_1"), (2, 200), app_module.EX.replace(size=64, steps=5, seed=2))
    pngs = [str(tmp_path / f"cell{i}.png") for i in range(4)]
    for png in pngs:
        Image.new("RGB", (64, 48), "red").save(png)
    state = {"grid": grid.to_dict(), "photo": "/tmp/photo.png", "painting": None, "preset": "the_scream",
             "cells": pngs}
    values = app_module.h.explore_cell(state, gr.SelectData(None, {"index": 3, "value": None}))
    assert set(values) == {"photo", "preset", "painting", "style_md", "status", *app_module.SETTINGS,
                           "strength_scale", "explore_note", "explore_open", *app_module.h.SHOWN_RESULT} - {
                               "size", "steps"}
    assert values["photo"] == "/tmp/photo.png" and values["preset"] == "the_scream" and values["painting"] is None
    assert values["style_layers"] == "relu2_1,relu4_1" and values["style_strength"] == 200.0
    assert values["init"] == "content" and values["seed"] == 2 and values["content_layer"] == grid.settings.content_layer
    assert "relu2_1,relu4_1 · β/α=200" in values["status"] and values["explore_open"]["visible"] is True
    assert values["result"] == values["png"] == pngs[3] and values["finished"].visible is True
    assert values["big_png"] is None and values["before_after"] is None and "Make it bigger" in values["status"]

    os.remove(pngs[3])  # swept since: the settings still go, the finished part hides
    values = app_module.h.explore_cell(state, gr.SelectData(None, {"index": 3, "value": None}))
    assert "png" not in values and values["finished"].visible is False and "Make it bigger" not in values["status"]

    texture = Grid("texture", ("b",), (5,), app_module.EX)
    state = {"grid": texture.to_dict(), "photo": None, "painting": "/tmp/mine.png", "preset": None,
             "cells": pngs[:1]}
    values = app_module.h.explore_cell(state, gr.SelectData(None, {"index": 0, "value": None}))
    assert values["painting"] == "/tmp/mine.png" and values["preset"] is None
    assert values["init"] == "noise" and values["seed"] == 5 and values["style_layers"] == "b"
    assert "png" not in values and values["finished"].visible is False  # a texture has no photo to enlarge with


def test_three_visitors_at_once_each_get_their_own_result_as_if_alone(client, photo_file, app_module):
    """Three concurrent API jobs of one shape are stepped together by the scheduler; each gets its own image, the
    one its lone run gives (identical in fp32, the batch's own rounding in bf16: then nearest its own)."""
    import threading

    import numpy as np

    presets = ["starry_night", "the_scream", "shipwreck"]
    lone = {p: np.asarray(Image.open(submit(client, photo_file, preset=p, size=64, steps=8).result()[0]), float)
            for p in presets}
    shared, results = {}, {}

    def visit(preset: str) -> None:
        job = submit(client, photo_file, preset=preset, size=64, steps=8)
        results[preset] = job.result()

    threads = [threading.Thread(target=visit, args=(p,)) for p in presets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    for p in presets:
        image, status = results[p]
        assert status.startswith("Done 8/8")
        shared[p] = np.asarray(Image.open(image), float)
    for p in presets:
        distances = {q: np.abs(shared[p] - lone[q]).mean() for q in presets}
        assert min(distances, key=distances.get) == p, distances  # its own image, not another visitor's
        if app_module.studio.engine().precision == "fp32":
            assert distances[p] == 0.0


def test_an_api_error_quoting_the_request_is_text_and_short(client, photo_file):
    """Issue 30: an error message that quotes a request's value escapes it (gradio's message box renders HTML)
    and is cut short, however long the value."""
    from gradio_client.exceptions import AppError

    crafted = "<img src=http://127.0.0.1:9/a.png>" + "[l](http://127.0.0.1:9/b)" * 40
    with pytest.raises(AppError) as refused:
        submit(client, photo_file, size=64, steps=3, style_layers=crafted).result()
    message = str(refused.value)
    assert "&lt;img src=" in message and "<img" not in message and len(message) <= 420


def test_a_comparison_longer_than_its_files_age_keeps_them_until_it_ends(app_module, photo_file):
    """Issue 30: the app's own sweep runs between every update with its clock two hours on (past the results'
    10 min and the cache's hour): the results a live comparison sends and its sheet are made from stay; once it
    ended, they age like any other file."""
    import os
    from types import SimpleNamespace

    from ui import disk

    keeper = disk.housekeeper(app_module.demo)
    later = time.time() + 2 * 3600
    request = SimpleNamespace(session_hash="compare-long", request=None, query_params={}, headers={})
    run = app_module.endpoints.compare_in_page(photo_file, ["the_scream", "starry_night"], 64, 3, 5, "auto", False,
                                               "token-long", request)
    results = set()
    for out in run:
        keeper.sweep(now=later)
        results |= {path for path, _ in out.get("compare_gallery") or () if isinstance(path, str)}
        assert all(os.path.exists(p) for p in results)
        assert not out.get("compare_image") or os.path.exists(out["compare_image"])
        final = out
    assert results and final["compare_image"].endswith(".png")
    keeper.sweep(now=later)
    assert not any(os.path.exists(p) for p in [*results, final["compare_image"]])  # over: they aged like others


def test_every_kind_of_request_obeys_the_ceiling(client, photo_file, app_module, monkeypatch):
    """Issue 30: with the ceiling per request lowered, a run, a comparison and a grid that would take longer are
    refused before any work, with one message naming what to lower (a link's run=1 presses the same button)."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    monkeypatch.setattr(app_module.studio.budget, "max_seconds", 0.5)
    lower = "one request may take here: lower the steps, the size or the number of images"
    with pytest.raises(AppError, match=f"this run would take .*{lower}"):
        submit(client, photo_file, size=256, steps=1000).result()
    with pytest.raises(AppError, match=f"this comparison.* would take .*{lower}"):
        client.predict(handle_file(photo_file), ["the_scream", "starry_night"], 256, 1000, api_name="/compare")
    with pytest.raises(AppError, match=f"this grid would take .*{lower}"):
        client.predict(kind="texture", painting=handle_file(photo_file), size=256, steps=1000, api_name="/explore")


def test_gradio_s_own_refusal_is_one_log_line_not_a_traceback(client, photo_file, capfd, caplog):
    """Issue 30: a number over its control's maximum is refused by gradio itself, with its message; the server
    logs one line for it instead of a traceback."""
    import logging

    from gradio_client.exceptions import AppError

    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="stylize.app"):
        with pytest.raises(AppError, match="greater than maximum value"):
            submit(client, photo_file, size=4096, steps=3).result()
    assert "Traceback" not in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records if "refused input" in r.getMessage()] == [
        "refused input: Value 4096 is greater than maximum value 512."]
