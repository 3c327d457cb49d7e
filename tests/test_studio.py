"""The app's UI-free glue: throttling, stopping, status lines, thumbnails."""

import sys
import threading
from pathlib import Path

import pytest
from conftest import gradient_photo, stripes_painting
from PIL import Image

from stylize import Settings
from stylize.engine.loop import Frame
from stylize.engine.updates import Reporter, status_line, throttle
from stylize.service.checks import StylizeRequest
from stylize.service.compute import COMPUTE_NICENESS
from stylize.service.studio import Studio


def fake_frames(count: int, log: list, report):
    """Frames as the engine yields them: an image, losses and the history only on steps `report` picks."""
    history = []
    for step in range(1, count + 1):
        log.append(step)
        losses = {"content": 1.0 / step, "style": 2.0 / step, "total": 3.0 / step}
        history.append((step, losses))
        done = step == count
        if done or report(step):
            yield Frame(step, count, step * 0.01, (96, 64), done, images=[gradient_photo()], item_losses=[losses],
                        histories=[list(history)], resets=[0])
        else:
            yield Frame(step, count, step * 0.01, (96, 64))


def test_a_run_reports_less_often_while_others_stream_beside_it():
    """Four runs streaming: each reports four times less often, so the server encodes about as many previews."""
    import time

    alone, shared = Reporter(interval=0.2), Reporter(interval=0.2, share=lambda: 4)
    assert alone(1) and shared(1)  # the first step is always reported
    time.sleep(0.3)
    assert alone(2) and not shared(2)  # past 0.2 s, not past 4 × 0.2 s


def test_the_reporter_asks_for_few_reports():
    reporter = Reporter(interval=3600)
    assert [reporter(step) for step in range(1, 6)] == [True, False, False, False, False]


def test_throttle_sends_the_reported_frames_and_the_last_with_the_full_history():
    log = []
    updates = list(throttle(fake_frames(50, log, Reporter(interval=3600))))
    assert [u.frame.step for u in updates] == [1, 50]  # the first, then nothing until the end
    assert updates[-1].final and updates[-1].status.startswith("Done 50/50")
    assert len(updates[-1].history) == 50 * 3 and updates[-1].history[0] == (1, "content", 1.0)


def test_a_stopped_frame_is_the_final_update_and_says_so(app_module):
    studio = app_module.studio
    request = StylizeRequest(gradient_photo(), [stripes_painting()], Settings(size=64, steps=100))
    steps = []

    def should_stop() -> bool:
        steps.append(len(steps) + 1)
        return len(steps) >= 8

    updates = list(studio.run(request, should_stop))
    assert updates[-1].frame.step == 8 and updates[-1].final and updates[-1].frame.stopped
    assert updates[-1].status.startswith("Stopped at step 8/100") and "ETA" not in updates[-1].status
    assert len(steps) == 8  # asked once a step, and no step ran after the stop


def test_status_line_reads_well():
    frame = Frame(20, 200, 4.0, (256, 192), item_losses=[{"content": 0.25, "style": 1.5, "total": 1.75}])
    assert status_line(frame) == ("Step 20/200 · loss 1.75 (content 0.25 · style 1.5) · 256×192 · 4.0 s · ETA 36 s")


def test_stop_belongs_to_the_run_token_and_may_come_before_the_run(tmp_path, monkeypatch):
    from stylize.service.stopping import StopFlag, new_token

    monkeypatch.setenv("STYLIZE_FILES_DIR", str(tmp_path))
    mine, other = new_token(), new_token()
    assert mine != other and len(mine) >= 20  # 128 random bits
    StopFlag(mine).set()  # Stop pressed while the run still waits in the queue
    with StopFlag(mine) as flag, StopFlag(other) as unrelated:
        assert flag.is_set() and flag() and not unrelated.is_set()  # it ends before it starts; others run on
    assert not list((tmp_path / "stops").iterdir())  # the run ended: its file is gone
    assert mine not in flag.path.name  # named by a hash, never by what a page sends
    assert not StopFlag(None).is_set()  # an API call has its own random token: nobody else can stop it


def test_a_stop_flag_set_in_one_process_is_seen_in_a_forked_one(tmp_path, monkeypatch):
    import multiprocessing

    from stylize.service.stopping import StopFlag

    monkeypatch.setenv("STYLIZE_FILES_DIR", str(tmp_path))
    ctx = multiprocessing.get_context("fork")
    seen = ctx.Queue()
    with StopFlag("token") as flag:
        child = ctx.Process(target=lambda: seen.put(StopFlag("token").is_set() or _wait_for(flag)))
        child.start()
        flag.set()
        assert seen.get(timeout=30) is True
        child.join(30)


def _wait_for(flag, timeout: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if flag.is_set():
            return True
        time.sleep(0.01)
    return False


def test_studio_runs_a_preset_and_makes_thumbnails(app_module):
    studio = app_module.studio
    style, preset_id = studio.inputs.style("the_scream", None)
    assert preset_id == "the_scream" and style.size == (128, 128)
    thumbs = studio.assets.thumbnails()
    assert len(thumbs) == len(studio.assets.presets) >= 12  # every preset ships with its image
    assert [title for _, title in thumbs][:2] == ["The Starry Night", "The Scream"]
    assert studio.assets.available_presets() == list(studio.assets.presets)
    assert all(path.endswith(".jpg") and max(Image.open(path).size) <= 256 for path, _ in thumbs)
    updates = list(studio.run(StylizeRequest(gradient_photo(), [stripes_painting()], Settings(size=64, steps=3))))
    assert updates[-1].final and updates[-1].frame.image.size == (64, 43)


def test_saved_results_are_lossless_with_unguessable_names(tmp_path, monkeypatch):
    from pathlib import Path

    from stylize.service import storage

    monkeypatch.setenv("STYLIZE_FILES_DIR", str(tmp_path))
    image = gradient_photo()
    first, second = Path(storage.save_result(image)), Path(storage.save_result(image))
    assert first.parent == tmp_path / "results" and first != second
    assert Image.open(first).format == "PNG" and Image.open(first).tobytes() == image.tobytes()
    assert not [p for p in first.parent.iterdir() if p.suffix == ".part"]  # written whole, then renamed


def test_closing_in_background_does_not_wait_for_a_slow_close():
    import time

    from stylize.service.compute import closing_in_background

    closed = threading.Event()

    def slow_close():
        try:
            yield 1
            yield 2
        finally:
            time.sleep(1.0)  # what closing ZeroGPU's wrapper does: wait for the worker's step
            closed.set()

    items = closing_in_background(slow_close())
    assert next(items) == 1
    started = time.perf_counter()
    items.close()
    assert time.perf_counter() - started < 0.2 and not closed.is_set()
    assert closed.wait(5)
    assert list(closing_in_background(iter([1, 2]))) == [1, 2]


def stepping_thread(studio, probe):
    """Run a tiny real run through the studio and return what `probe()` says on the thread that steps it."""
    from stylize.engine.loop import Job

    seen = []
    job = Job(gradient_photo(), [gradient_photo(seed=1)], Settings(size=64, steps=3, scales=1))
    run = studio.engine().prepare([job], should_stop=lambda: bool(seen.append(probe())))
    list(studio.frames(run))
    return seen[0]


def test_runs_advance_in_place_in_a_forked_child(app_module, monkeypatch):
    """In a forked process (ZeroGPU's worker) the scheduler's thread does not exist: a run steps by itself there."""
    import os

    studio = app_module.studio
    name = lambda: threading.current_thread().name  # noqa: E731
    assert stepping_thread(studio, name) == studio.scheduler.thread_name  # here: the compute thread
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen from a forked child
    assert stepping_thread(studio, name) == threading.current_thread().name  # in place


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priority is Linux's")
def test_runs_on_a_cpu_go_behind_the_web_server(app_module):
    """On a CPU the compute thread and the OpenMP workers it starts run at a lower priority than the server's
    threads, so a page loads while a run computes; the server's own threads keep theirs."""
    import os

    import torch

    studio = app_module.studio
    assert studio.device.type == "cpu"
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    niceness = stepping_thread(studio, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert niceness == min(19, here + COMPUTE_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == here
    tasks = Path(f"/proc/{os.getpid()}/task")
    lowered = [t for t in tasks.iterdir() if int((t / "stat").read_text().rsplit(")", 1)[1].split()[16]) > here]
    assert len(lowered) >= min(torch.get_num_threads(), 2)  # the compute thread and its OpenMP workers


def test_settings_come_from_values_by_field_name():
    from stylize.params import settings_from_values

    settings = settings_from_values({"size": 128.0, "steps": "50", "seed": 3.0, "style_strength": 5, "layer_weights": None,
                                     "style_layers": "relu1_1,relu2_1", "unknown": 1})
    assert settings == Settings(size=128, steps=50, seed=3, style_strength=5.0, style_layers="relu1_1,relu2_1")
    assert isinstance(settings.size, int) and isinstance(settings.style_strength, float)
    assert settings_from_values({}, Settings(size=96)) == Settings(size=96)


def test_limits_and_bounded_work(app_module, photo_file):
    from stylize import StylizeError
    from stylize.service.checks import check_compare, check_stylize

    studio = app_module.studio
    limits, d = studio.limits, studio.defaults
    assert limits.max_size >= d.size and limits.max_steps >= d.steps
    limits.check(d)
    with pytest.raises(StylizeError, match=f"size {limits.max_size + 32} is above this machine's {limits.max_size} px"):
        check_stylize(studio, d.replace(size=limits.max_size + 32), photo_file, "starry_night")
    with pytest.raises(StylizeError, match="at most 4 style images per run"):
        check_stylize(studio, d, photo_file, "starry_night", extra_paintings=[photo_file] * 4)
    run = check_stylize(studio, d, photo_file, "starry_night", extra_paintings=[photo_file] * 3)
    assert len(run.styles) == 4 and run.preset_id == "starry_night" and run.photo.size == (96, 64)
    with pytest.raises(StylizeError, match="add a photo first"):
        check_stylize(studio, d, None, "starry_night")
    with pytest.raises(StylizeError, match="weights must be one of auto, hub, embedded"):
        check_stylize(studio, d, photo_file, "starry_night", weights="../x")
    compare = check_compare(studio, photo_file, ["the_scream", "starry_night", "the_scream"], studio.compare_defaults)
    assert compare.preset_ids == ["the_scream", "starry_night"] and len(compare.cells) == 2
    with pytest.raises(StylizeError, match="compare at most 6 presets"):
        check_compare(studio, photo_file, list(studio.assets.presets)[:7], studio.compare_defaults)
    with pytest.raises(StylizeError, match="unknown preset"):
        check_compare(studio, photo_file, ["starry_night", "../../etc/passwd"], studio.compare_defaults)
    with pytest.raises(StylizeError, match="add a photo first"):
        check_compare(studio, None, ["starry_night"], studio.compare_defaults)
    # On ZeroGPU a request is also bounded by the duration a task may ask for (the platform's maximum).
    from stylize.cost.budget import Budget, ZeroGpu
    from stylize.cost.timing import StepCost

    zero = Budget("cuda", StepCost.from_floor(None), ZeroGpu(1.5))
    zero.check(Settings(size=1024, steps=500))
    with pytest.raises(StylizeError, match="more than the 300 s a task may take"):
        zero.check(Settings(size=2048, steps=5000), batch=6)


def test_a_shared_link_is_clamped_to_this_machine(app_module):
    studio = app_module.studio
    link = studio.open_link({"preset": "the_scream,starry_night", "size": "2048", "steps": "5000", "run": "1",
                             "bogus": "1"})
    assert link.preset_id == "the_scream" and link.autorun
    assert link.settings.size == studio.limits.max_size and link.settings.steps == studio.limits.max_steps
    assert any("size 2048 is above" in n for n in link.notices) and any("bogus" in n for n in link.notices)
    assert not studio.open_link({"preset": "../../x", "run": "1"}).autorun


def test_examples_and_example_photos_ship_with_the_app(app_module):
    assets = app_module.studio.assets
    assert len(assets.photos) >= 4
    for path, caption in assets.photo_thumbnails():
        assert max(Image.open(path).size) == 256 and caption and " (" not in caption  # a short title
    assert len(assets.examples) >= 2
    for example in assets.examples:
        assert example.photo in assets.photos and example.preset in assets.presets
        assert Image.open(example.image).size[0] > 0 and example.settings.seed == 0
        assert Image.open(assets.photo_path(example.photo)).size == Image.open(assets.photos[example.photo].path).size


def test_make_examples_writes_images_and_a_manifest(tmp_path, monkeypatch):
    import importlib.util
    import json

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "tools" / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path)
    assert module.main(["--size", "64", "--steps", "2", "--count", "1", "--weights", "embedded"]) == 0
    manifest = json.loads((tmp_path / "examples.json").read_text())
    (entry,) = manifest["examples"]
    assert (entry["photo"], entry["preset"]) == module.PAIRS[0]
    assert Settings(**entry["settings"]).steps == 2 and entry["settings"]["seed"] == 0
    assert max(Image.open(tmp_path / entry["image"]).size) == 64


def test_page_loads_start_from_defaults_that_follow_the_runs_measured(app_module):
    from stylize.cost.budget import RUN_BUDGET_S, SAFETY, Budget
    from stylize.cost.timing import StepCost

    studio = Studio.__new__(Studio)
    studio.device, studio.budget = app_module.studio.device, Budget("cpu", StepCost(1.0, "a fast probe"))
    assert studio.current_defaults().size == 512
    studio.budget.cost.observe(Settings(size=512, steps=150, scales=3), 150.0)  # a run slower than the probe said
    slower = studio.current_defaults()
    assert slower.size < 512 and studio.budget.seconds(slower) <= RUN_BUDGET_S * SAFETY
