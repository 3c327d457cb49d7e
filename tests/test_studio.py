"""The app's UI-free glue: throttling, stopping, status lines, thumbnails."""

import threading

import pytest

from stylize import Settings
from stylize.engine import Frame
from stylize.streaming import Reporter, status_line, throttle
from stylize.studio import Studio

from PIL import Image

from conftest import gradient_photo, stripes_painting


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


def test_the_reporter_asks_for_few_reports_but_at_once_after_stop():
    stop = threading.Event()
    reporter = Reporter(stop, interval=3600)
    assert [reporter(step) for step in range(1, 6)] == [True, False, False, False, False]
    stop.set()
    assert reporter(6)


def test_throttle_sends_the_reported_frames_and_the_last_with_the_full_history():
    log = []
    updates = list(throttle(fake_frames(50, log, Reporter(interval=3600))))
    assert [u.frame.step for u in updates] == [1, 50]  # the first, then nothing until the end
    assert updates[-1].final and updates[-1].status.startswith("Done 50/50")
    assert len(updates[-1].history) == 50 * 3 and updates[-1].history[0] == (1, "content", 1.0)


def test_a_stop_request_ends_the_run_after_the_current_step():
    log, stop = [], threading.Event()
    updates = []
    for update in throttle(fake_frames(100, log, Reporter(stop, interval=0)), stop):
        updates.append(update)
        if update.frame.step == 7:
            stop.set()
    assert updates[-1].frame.step == 8 and updates[-1].final
    assert updates[-1].status.startswith("Stopped at step 8/100") and "ETA" not in updates[-1].status
    assert log[-1] == 8  # the engine was closed: no step after the stop


def test_status_line_reads_well():
    frame = Frame(20, 200, 4.0, (256, 192), item_losses=[{"content": 0.25, "style": 1.5, "total": 1.75}])
    assert status_line(frame) == ("Step 20/200 · loss 1.75 (content 0.25 · style 1.5) · 256×192 · 4.0 s · ETA 36 s")


def test_stop_flags_are_per_session_files_that_end_with_their_run(tmp_path, monkeypatch):
    import tempfile

    from stylize.studio import StopFlag

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    studio = Studio.__new__(Studio)
    assert not studio.request_stop("a")  # no run holds the flag: nothing to stop
    with studio.stop_flag("a") as first, studio.stop_flag("b") as other:
        assert not first.is_set()
        assert studio.request_stop("a") and first.is_set() and not other.is_set()
        assert StopFlag("a").is_set()  # any process that knows the session sees it: it is a file
    assert not list((tmp_path / "stylize-stops").iterdir())  # the run ended: its files are gone
    with studio.stop_flag("a") as newer:
        assert not newer.is_set()  # a new run starts unstopped
    assert "/" not in first.running.name and "a" != first.running.stem  # named by a hash, never by user text


def test_a_stop_flag_set_in_one_process_is_seen_in_a_forked_one(tmp_path, monkeypatch):
    import multiprocessing
    import tempfile

    from stylize.studio import StopFlag

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    ctx = multiprocessing.get_context("fork")
    seen = ctx.Queue()
    with StopFlag("session") as flag:
        child = ctx.Process(target=lambda: seen.put(StopFlag("session").is_set() or _wait_for(flag)))
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
    style, preset_id = studio.load_style("the_scream", None)
    assert preset_id == "the_scream" and style.size == (128, 128)
    thumbs = studio.thumbnails()
    assert len(thumbs) == len(studio.presets) >= 12  # every preset ships with its image
    assert [title for _, title in thumbs][:2] == ["The Starry Night", "The Scream"]
    assert studio.available_presets() == list(studio.presets)
    assert all(path.endswith(".jpg") and max(Image.open(path).size) <= 256 for path, _ in thumbs)
    updates = list(studio.run(gradient_photo(), [stripes_painting()], Settings(size=64, steps=3)))
    assert updates[-1].final and updates[-1].frame.image.size == (64, 43)


def test_saved_results_are_lossless_and_old_ones_are_swept(tmp_path, monkeypatch):
    import os
    import tempfile
    import time
    from pathlib import Path

    from PIL import Image

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    image = gradient_photo()
    first = Path(Studio.save_result(image))
    assert first.parent == tmp_path / "stylize-results"
    assert Image.open(first).format == "PNG" and Image.open(first).tobytes() == image.tobytes()
    old = time.time() - 3600
    os.utime(first, (old, old))
    second = Path(Studio.save_result(image))
    assert second.exists() and not first.exists()


def test_on_thread_runs_ahead_keeps_the_newest_and_always_delivers_the_last():
    """The optimization never waits for its reader: a slow reader gets the newest item each time (older ones are
    dropped), the last item always arrives, and everything runs on the one compute thread."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from stylize.streaming import on_thread

    seen, closed = [], []

    def numbers():
        try:
            for i in range(20):
                seen.append(threading.get_ident())
                time.sleep(0.01)
                yield i
        finally:
            closed.append(threading.get_ident())

    with ThreadPoolExecutor(1) as executor:
        got = []
        for item in on_thread(numbers(), executor):
            got.append(item)
            time.sleep(0.06)  # a reader six times slower than the producer
    assert got[-1] == 19 and got == sorted(got) and len(got) < 10, got
    assert len(seen) == 20  # the producer never waited for the reader
    assert len(set(seen + closed)) == 1 and seen[0] != threading.get_ident()


def test_on_thread_hands_an_error_to_its_reader_after_the_items_before_it():
    from concurrent.futures import ThreadPoolExecutor

    from stylize.errors import StylizeError
    from stylize.streaming import on_thread

    def failing():
        yield "first"
        raise StylizeError("the optimization diverged")

    with ThreadPoolExecutor(1) as executor:
        items = on_thread(failing(), executor)
        assert next(items) == "first"
        with pytest.raises(StylizeError, match="diverged"):
            next(items)


def test_closing_a_run_never_waits_for_the_compute_thread():
    """A cancel closes the run on the web server's event-loop thread: it must return at once, and the close
    still happens on the compute thread once its current step is done."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from stylize.streaming import on_thread

    closed, step_running = [], threading.Event()

    def slow_steps():
        try:
            while True:
                step_running.set()
                time.sleep(0.05)
                yield 1
        finally:
            closed.append(threading.current_thread().name)

    with ThreadPoolExecutor(1, thread_name_prefix="compute") as executor:
        items = on_thread(slow_steps(), executor)
        next(items)
        busy = executor.submit(time.sleep, 1.5)  # the compute thread is busy for a while
        started = time.perf_counter()
        items.close()
        assert time.perf_counter() - started < 0.2
        assert not closed
        busy.result()
    assert closed and closed[0].startswith("compute")


def test_closing_in_background_does_not_wait_for_a_slow_close():
    import time

    from stylize.streaming import closing_in_background

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


def test_runs_advance_in_place_in_a_forked_child(app_module, monkeypatch):
    """In a forked process (ZeroGPU's worker) the compute thread does not exist: work must not be sent to it."""
    import os

    studio = app_module.studio

    def where():
        yield threading.current_thread().name

    assert list(studio._on_compute_thread(where()))[0].startswith("stylize-compute")  # here: the compute thread
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen from a forked child
    assert list(studio._on_compute_thread(where())) == [threading.current_thread().name]  # in place


def test_settings_come_from_values_by_field_name():
    from stylize.studio import settings_from_values

    settings = settings_from_values({"size": 128.0, "steps": "50", "seed": 3.0, "style_strength": 5, "layer_weights": None,
                                     "style_layers": "relu1_1,relu2_1", "unknown": 1})
    assert settings == Settings(size=128, steps=50, seed=3, style_strength=5.0, style_layers="relu1_1,relu2_1")
    assert isinstance(settings.size, int) and isinstance(settings.style_strength, float)
    assert settings_from_values({}, Settings(size=96)) == Settings(size=96)


def test_limits_and_bounded_work(app_module, photo_file):
    import pytest

    from stylize import StylizeError

    studio = app_module.studio
    limits = studio.limits
    assert limits.max_size >= studio.defaults.size and limits.max_steps >= studio.defaults.steps
    studio.check(studio.defaults)
    with pytest.raises(StylizeError, match=f"size {limits.max_size + 32} is above this machine's {limits.max_size} px"):
        studio.check(studio.defaults.replace(size=limits.max_size + 32))
    with pytest.raises(StylizeError, match="at most 4 style images per run"):
        studio.load_inputs(photo_file, "starry_night", None, [photo_file] * 4)
    photo, styles, preset_id = studio.load_inputs(photo_file, "starry_night", None, [photo_file] * 3)
    assert len(styles) == 4 and preset_id == "starry_night" and photo.size == (96, 64)
    assert studio.compare_ids(["the_scream", "starry_night", "the_scream"]) == ["the_scream", "starry_night"]
    with pytest.raises(StylizeError, match="compare at most 6 presets"):
        studio.compare_ids(list(studio.presets)[:7])
    with pytest.raises(StylizeError, match="unknown preset"):
        studio.compare_ids(["starry_night", "../../etc/passwd"])
    # On ZeroGPU a request is also bounded by the duration a task may ask for (the platform's maximum).
    from stylize.budget import Budget, ZeroGpu
    from stylize.machine import StepCost

    zero = Studio.__new__(Studio)
    zero.limits, zero.budget = limits.__class__(4096, 5000), Budget("cuda", StepCost.from_floor(None), ZeroGpu(1.5))
    zero.check(Settings(size=1024, steps=500))
    with pytest.raises(StylizeError, match="more than the 300 s a task may take"):
        zero.check(Settings(size=2048, steps=5000), presets=6)


def test_a_shared_link_is_clamped_to_this_machine(app_module):
    studio = app_module.studio
    link = studio.open_link({"preset": "the_scream,starry_night", "size": "2048", "steps": "5000", "run": "1",
                             "bogus": "1"})
    assert link.preset_id == "the_scream" and link.autorun
    assert link.settings.size == studio.limits.max_size and link.settings.steps == studio.limits.max_steps
    assert any("size 2048 is above" in n for n in link.notices) and any("bogus" in n for n in link.notices)
    assert not studio.open_link({"preset": "../../x", "run": "1"}).autorun


def test_examples_and_example_photos_ship_with_the_app(app_module):
    studio = app_module.studio
    assert len(studio.photos) >= 4
    for path, caption in studio.photo_thumbnails():
        assert max(Image.open(path).size) == 256 and caption and " (" not in caption  # a short title
    examples = studio.examples()
    assert len(examples) >= 2
    for example in examples:
        assert example.photo in studio.photos and example.preset in studio.presets
        assert Image.open(example.image).size[0] > 0 and example.settings.seed == 0
        assert Image.open(studio.photo_path(example.photo)).size == Image.open(studio.photos[example.photo].path).size


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
    from stylize.budget import RUN_BUDGET_S, SAFETY, Budget
    from stylize.machine import StepCost

    studio = Studio.__new__(Studio)
    studio.device, studio.budget = app_module.studio.device, Budget("cpu", StepCost(1.0, "a fast probe"))
    assert studio.current_defaults().size == 512
    studio.budget.cost.observe(Settings(size=512, steps=150, scales=3), 150.0)  # a run slower than the probe said
    slower = studio.current_defaults()
    assert slower.size < 512 and studio.budget.seconds(slower) <= RUN_BUDGET_S * SAFETY
