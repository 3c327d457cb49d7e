"""The launched app on 127.0.0.1, driven through gradio_client as an API user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import pytest
from PIL import Image

from conftest import ROOT, free_port


def submit(client, photo, **kwargs):
    from gradio_client import handle_file

    return client.submit(content=handle_file(photo), api_name="/stylize", **{"preset": "starry_night", **kwargs})


def test_only_the_two_endpoints_are_public(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/stylize", "/compare"}


def test_stylize_streams_frames_and_ends_with_a_full_result(client, photo_file):
    job = submit(client, photo_file, size=64, steps=25)
    outputs = list(job)
    images = [o[0] for o in outputs if isinstance(o[0], str)]
    assert len(images) >= 3, outputs
    final = outputs[-1]
    assert Image.open(final[0]).size == (64, 43)
    assert final[1].startswith("Done 25/25")
    assert Image.open(final[3]).format == "PNG" and Image.open(final[3]).size == (64, 43)
    before, after = (Image.open(item) for item in final[2])
    assert before.size == after.size == (64, 43)
    link = urlparse(final[5])
    query = parse_qs(link.query)
    assert query["preset"] == ["starry_night"] and query["steps"] == ["25"] and query["size"] == ["64"]


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
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"unknown preset '\.\./\.\./etc/passwd'; available: starry_night"):
        submit(client, photo_file, preset="../../etc/passwd", size=64, steps=3).result()
    with pytest.raises(AppError, match="style_layers 'relu9_1': unknown relu9_1"):
        submit(client, photo_file, size=64, steps=3, layer_set="custom", custom_layers="relu9_1").result()


def test_compare_fills_a_captioned_gallery(client, photo_file):
    from gradio_client import handle_file

    job = client.submit(content=handle_file(photo_file), preset_ids=["starry_night", "the_kiss", "the_scream"], size=64,
                        steps=3, api_name="/compare")
    gallery, status = job.result()
    assert [item["caption"] for item in gallery] == ["The Starry Night — Vincent van Gogh, 1889",
                                                    "The Scream — Edvard Munch, 1893"]
    assert status.startswith("3/3 done · skipped The Kiss: no local image, and downloads are off")


def test_prefill_reads_the_query_string_with_notices(app_module, monkeypatch):
    import gradio as gr

    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    request = gr.Request(query_params={"preset": "the_scream", "steps": "99999", "style_strength": "100", "run": "1"})
    values = app_module.prefill(request)
    assert values[0] == "the_scream" and "The Scream" in values[1]
    assert values[2] == 2.0  # the log-scale slider's position
    controls = dict(zip(["style_strength", "size", "steps"], values[3:6]))
    assert controls["style_strength"] == 100.0 and controls["steps"] == app_module.MAX_STEPS
    assert values[-3] is True  # run=1 with a valid preset starts the run
    assert any("steps" in w for w in warnings)

    warnings.clear()
    values = app_module.prefill(gr.Request(query_params={"preset": "../../etc/passwd", "run": "1"}))
    assert values[0] == "" and values[-3] is False
    assert any("unknown preset" in w for w in warnings)


def test_share_links_round_trip_through_prefill(app_module):
    import gradio as gr

    from stylize import Settings
    from stylize.studio import share_url

    settings = Settings(size=128, steps=77, style_strength=3.5, init="noise", preserve_color="luminance", seed=9)
    url = share_url("https://huggingface.co/spaces/someone/stylize", settings, ["shipwreck"])
    assert url.startswith("https://huggingface.co/spaces/someone/stylize?")
    query = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    values = app_module.prefill(gr.Request(query_params=query))
    assert values[0] == "shipwreck"
    assert app_module.settings_from_controls(*values[3:18]) == settings


def test_gpu_duration_grows_with_size_and_steps_within_bounds():
    from stylize.studio import gpu_seconds

    small, large, longer = gpu_seconds(256, 200), gpu_seconds(1024, 500), gpu_seconds(1024, 2000)
    assert 20 <= small < large < longer <= 300
    assert gpu_seconds(2048, 5000) == 300


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
    print(f"page served after {elapsed:.1f} s")
    assert elapsed < 15
    assert monitoring != 200  # monitoring is off


def test_the_weights_line_refreshes_until_loaded_then_stops(app_module):
    app_module.studio._ready.wait(60)
    text, timer = app_module.refresh_weights_status()
    assert text.startswith("Weights: original VGG-19") and "Running on CPU" in text
    assert timer.active is False
