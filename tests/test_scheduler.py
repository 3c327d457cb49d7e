"""The scheduler that serves the crowd (stylize/service/scheduler.py), on the real engine at small sizes: runs of one
shape share a network pass and come out as they would alone, runs join and leave between steps, shapes take turns
by the time they have had, a closed reader takes its run out and frees it, a full machine makes a run wait with its
place, and the estimates follow processor sharing (checked by hand)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import gradient_photo, stripes_painting

from stylize import Settings
from stylize.engine.loop import Job
from stylize.engine.updates import Waiting
from stylize.service.scheduler import Scheduler, finish_times

SMALL = Settings(size=64, steps=12, scales=1)


def steps_left(run) -> float:
    """A stand-in for the time model: a second a step."""
    return run.plan.total_steps - run.step


def pixels(frame) -> np.ndarray:
    return np.asarray(frame.image, dtype=np.int16)


def make_run(stylizer, seed: int = 0, steps: int = 12, size: int = 64, log: list | None = None, name: str = ""):
    """A real one-image run; `log` records (name, step) on the thread that steps it, in stepping order."""
    job = Job(gradient_photo(seed=seed), [stripes_painting(seed=seed + 1)],
              SMALL.replace(seed=seed, steps=steps, size=size))
    run = stylizer.prepare([job], report_every=1, should_stop=lambda: log is not None and bool(
        log.append((name, run.step, threading.current_thread().name))))
    return run


def read_all(scheduler: Scheduler, run, out: dict, key: str) -> None:
    out[key] = list(scheduler.frames(run))


def lone_result(stylizer, **kw):
    return list(stylizer.run_batch(make_run(stylizer, **kw).jobs, report_every=1))[-1]


def test_finish_times_follow_processor_sharing_by_hand():
    # Two runs of 10 s and 20 s share the machine: both progress at half speed until the first ends at 20 s;
    # the second then has 10 s left alone: 30 s.
    assert finish_times([10, 20], [], 4) == ([20, 30], [])
    # One slot free for two: a, b run; w (5 s) waits until a ends at 20 s, then shares with b (10 s left):
    # w ends at 20 + 2 × 5 = 30 s, b at 30 + 5 = 35 s.
    assert finish_times([10, 20], [5], 2) == ([20, 35], [30])
    assert finish_times([], [8, 8], 1) == ([], [8, 16])  # one at a time: one after another


def test_runs_of_one_shape_share_a_pass_and_come_out_as_they_would_alone(stylizer):
    """fp32: two visitors' runs batched give each the image and losses of its lone run (identical)."""
    scheduler = Scheduler(4, float("inf"), steps_left)
    runs = {"a": make_run(stylizer, seed=0), "b": make_run(stylizer, seed=3)}
    out: dict = {}
    readers = [threading.Thread(target=read_all, args=(scheduler, run, out, key)) for key, run in runs.items()]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(120)
    for key, seed in (("a", 0), ("b", 3)):
        last = out[key][-1]
        assert last.done and last.step == 12 and last.shared
        alone = lone_result(stylizer, seed=seed)
        assert np.array_equal(pixels(last), pixels(alone))
        assert last.losses["total"] == pytest.approx(alone.losses["total"], rel=1e-5)
    assert not np.array_equal(pixels(out["a"][-1]), pixels(out["b"][-1]))  # each got its own image
    assert scheduler.load() == (0, 0)


def test_a_run_joins_the_batch_of_its_shape_at_its_next_step_and_leaves_when_done(stylizer):
    log: list = []
    scheduler = Scheduler(4, float("inf"), steps_left)
    long_run = make_run(stylizer, seed=0, steps=30, log=log, name="long")
    out: dict = {}
    first = threading.Thread(target=read_all, args=(scheduler, long_run, out, "long"))
    first.start()
    while len(log) < 5:
        time.sleep(0.01)
    short_run = make_run(stylizer, seed=3, steps=8, log=log, name="short")
    read_all(scheduler, short_run, out, "short")
    first.join(120)
    assert out["short"][-1].done and out["short"][-1].shared
    assert out["long"][-1].done and out["long"][-1].step == 30
    # The newcomer's 8 steps were taken beside the long run's, which went on by itself after they ended.
    short_steps = [i for i, (name, *_) in enumerate(log) if name == "short"]
    beside = [name for name, *_ in log[short_steps[0]:short_steps[-1] + 1]]
    assert beside.count("long") >= 6 and log[-1][0] == "long"
    assert {thread for *_, thread in log} == {scheduler.thread_name}  # every step on the one compute thread
    for key, seed, steps in (("long", 0, 30), ("short", 3, 8)):  # joining and leaving changed nobody's image
        assert np.array_equal(pixels(out[key][-1]), pixels(lone_result(stylizer, seed=seed, steps=steps)))


def test_shapes_take_turns_and_a_short_run_started_later_finishes_first(stylizer):
    """A long run of one size, then a short one of another: the newcomer's first step comes after at most one
    of the long run's, and it finishes while the long run has taken at most a step or two beside it."""
    log: list = []
    scheduler = Scheduler(4, float("inf"), steps_left)
    long_run = make_run(stylizer, seed=0, steps=60, size=96, log=log, name="long")
    out: dict = {}
    first = threading.Thread(target=read_all, args=(scheduler, long_run, out, "long"))
    first.start()
    while len(log) < 10:
        time.sleep(0.01)
    submitted = len(log)
    read_all(scheduler, make_run(stylizer, seed=3, steps=10, size=64, log=log, name="short"), out, "short")
    short_steps = [i for i, (name, *_) in enumerate(log) if name == "short"]
    assert short_steps[0] - submitted <= 1  # its first image: after at most the long run's current step
    assert [name for name, *_ in log[short_steps[0]:short_steps[-1] + 1]].count("long") <= 2
    assert not out["short"][-1].shared  # another shape: turns, not a shared pass
    first.join(120)
    assert out["long"][-1].done


def test_closing_a_reader_takes_its_run_out_and_frees_it(stylizer):
    log: list = []
    scheduler = Scheduler(4, float("inf"), steps_left)
    run = make_run(stylizer, steps=500, log=log, name="gone")
    frames = scheduler.frames(run)
    next(frames)
    started = time.perf_counter()
    frames.close()  # a closed tab, a cancelled API job
    assert time.perf_counter() - started < 0.5  # the reader never waits for the compute thread
    deadline = time.time() + 30
    while scheduler.load() != (0, 0) and time.time() < deadline:
        time.sleep(0.01)
    assert scheduler.load() == (0, 0)
    assert run.x is None and run.optimizer is None  # its images and history are let go at once
    steps = len(log)
    time.sleep(0.3)
    assert len(log) == steps and steps < 500


def test_a_full_machine_makes_a_run_wait_with_its_place_and_estimate(stylizer):
    """One slot: the second run is told its place and an ETA, then runs when the first ends. Memory counts too."""
    scheduler = Scheduler(1, float("inf"), steps_left)
    out: dict = {}
    first = threading.Thread(target=read_all, args=(scheduler, make_run(stylizer, steps=40), out, "first"))
    first.start()
    while scheduler.load() != (1, 0):
        time.sleep(0.01)
    second = scheduler.frames(make_run(stylizer, seed=3, steps=5))
    waiting = next(second)
    assert isinstance(waiting, Waiting) and waiting.place == 1 and waiting.running == 1
    assert waiting.eta_s > 0 and "1st in line" in waiting.status
    rest = list(second)
    first.join(120)
    assert rest[-1].done and out["first"][-1].done and not rest[-1].shared

    tight = Scheduler(4, 100.0, steps_left)  # room for one run's memory only
    out = {}
    first = threading.Thread(target=lambda: out.setdefault("first", list(tight.frames(make_run(stylizer, steps=40),
                                                                                        memory=80.0))))
    first.start()
    while tight.load() != (1, 0):
        time.sleep(0.01)
    assert isinstance(next(tight.frames(make_run(stylizer, seed=3, steps=5), memory=80.0)), Waiting)
    first.join(120)


def test_a_slow_reader_gets_the_newest_frame_and_always_the_last(stylizer):
    scheduler = Scheduler(4, float("inf"), steps_left)
    got = []
    for frame in scheduler.frames(make_run(stylizer, steps=30)):
        got.append(frame.step)
        time.sleep(0.2)  # far slower than a step at 64 px
    assert got[-1] == 30 and got == sorted(got) and len(got) < 30


def test_the_estimate_beside_a_button_says_when_others_share_the_machine(app_module):
    studio = app_module.studio
    assert studio.warmed.wait(300)  # the start-up calibration is a run too
    alone = studio.budget.seconds(studio.defaults)
    assert "on this CPU" in studio.estimate(alone) and "share" not in studio.estimate(alone)
    frames = studio.frames(make_run(studio.engine(), steps=2000))
    next(frames)  # a run on the machine now
    try:
        busy = studio.estimate(alone)
        assert "— 1 other run shares the machine now" in busy, busy
    finally:
        frames.close()
