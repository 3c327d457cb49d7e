"""The app's UI-free glue: throttling, stopping, status lines, thumbnails."""

import threading

from stylize import Settings
from stylize.engine import Frame
from stylize.studio import Studio, status_line, throttle

from conftest import gradient_photo, stripes_painting


def fake_frames(count: int, log: list):
    for step in range(1, count + 1):
        log.append(step)
        yield Frame(step, count, {"content": 1.0 / step, "style": 2.0 / step, "total": 3.0 / step}, step * 0.01,
                    image=gradient_photo(), size=(96, 64), done=step == count)


def test_throttle_sends_few_updates_but_always_the_last_with_the_full_history():
    log = []
    updates = list(throttle(fake_frames(50, log), interval=3600))
    assert [u.frame.step for u in updates] == [1, 50]  # the first, then nothing until the end
    assert updates[-1].final and updates[-1].status.startswith("Done 50/50")
    assert len(updates[-1].history) == 50 * 3 and updates[-1].history[0] == (1, "content", 1.0)


def test_a_stop_request_ends_the_run_after_the_current_step():
    log, stop = [], threading.Event()
    updates = []
    for update in throttle(fake_frames(100, log), stop, interval=0):
        updates.append(update)
        if update.frame.step == 7:
            stop.set()
    assert updates[-1].frame.step == 8 and updates[-1].final
    assert updates[-1].status.startswith("Stopped at step 8/100") and "ETA" not in updates[-1].status
    assert log[-1] == 8  # the engine was closed: no step after the stop


def test_status_line_reads_well():
    frame = Frame(20, 200, {"content": 0.25, "style": 1.5, "total": 1.75}, 4.0, size=(256, 192))
    assert status_line(frame) == ("Step 20/200 · loss 1.75 (content 0.25 · style 1.5) · 256×192 · 4.0 s · ETA 36 s")


def test_stop_flags_are_per_session_and_end_with_their_run():
    import gc
    import weakref

    studio = Studio.__new__(Studio)
    studio._stops = weakref.WeakValueDictionary()
    first, other = studio.stop_flag("a"), studio.stop_flag("b")
    assert studio.request_stop("a") and first.is_set() and not other.is_set()
    assert not studio.request_stop("nobody")
    newer = studio.stop_flag("a")
    assert not newer.is_set()  # a new run starts unstopped
    del first, other, newer  # the runs ended
    gc.collect()
    assert len(studio._stops) == 0 and not studio.request_stop("a")


def test_studio_runs_a_preset_and_makes_thumbnails(app_module):
    studio = app_module.studio
    style, preset_id = studio.load_style("the_scream", None)
    assert preset_id == "the_scream" and style.size == (128, 128)
    thumbs = studio.thumbnails()
    assert [caption for _, caption in thumbs][:1] == ["The Starry Night — Vincent van Gogh, 1889"]
    assert all(path.endswith(".jpg") for path, _ in thumbs)
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


def test_on_thread_advances_on_one_thread_and_closing_reaches_it():
    from concurrent.futures import ThreadPoolExecutor

    from stylize.studio import on_thread

    seen, closed = [], []

    def numbers():
        try:
            for i in range(10):
                seen.append(threading.get_ident())
                yield i
        finally:
            closed.append(threading.get_ident())

    with ThreadPoolExecutor(1) as executor:
        items = on_thread(numbers(), executor)
        assert [next(items) for _ in range(3)] == [0, 1, 2]
        items.close()
    assert len(set(seen + closed)) == 1 and seen[0] != threading.get_ident()
