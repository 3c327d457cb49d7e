"""How long a run takes on this machine: seconds per megapixel-step, from the start-up probe's bare network pass
(stylize.engine.precision), then refined by the runs made here."""

from __future__ import annotations

import statistics
import threading
from collections import deque

from stylize.engine.precision import PROBE_SIZE
from stylize.engine.schedule import schedule
from stylize.images import fit_size
from stylize.params import Settings

GPU_PROBE_SIZE = (512, 384)  # a GPU needs a larger image to be busy
# An engine step over the bare network pass (losses, Grams, the optimizer): the bench's step / floor ratio is
# 1.1–1.35 across the machines measured (README, Performance). A prior only: runs replace it.
ENGINE_FACTOR = 1.25
# Seconds per megapixel-step on a GPU that was not measured: ZeroGPU's server process has no GPU to probe, and
# ZeroGPU lends H200 slices (or faster). Computed, not measured: ~1.44 TFLOP per megapixel-step (284 GFLOP at
# 512×384, README) at ~70 TFLOPS, a tenth of an H200's bf16 peak, so the first request over-asks rather than
# under-asks; the worker's reported runs replace it.
GPU_SECONDS_PER_MPX = 0.02
OBSERVATIONS = 8  # runs the model remembers (a median, so one odd run does not swing it)
# Runs smaller than this say more about fixed costs (targets, start-up) than about a step: not learnt from.
MIN_OBSERVED_MPX = 1.0


def level_work(sizes: list[tuple[int, int]], level_steps: list[int],
               steps_done: int | None = None) -> tuple[int, float, float]:
    """(steps, pixel-steps, pixels of the levels entered) of a run's levels up to `steps_done` of its steps (None:
    all). Levels are √2 apart, so a run stopped after its first level has done far less than its share of the
    steps says."""
    left = sum(level_steps) if steps_done is None else steps_done
    taken, pixels, entered = 0, 0.0, 0.0
    for (w, h), n in zip(sizes, level_steps):
        if left <= 0:
            break
        k = min(n, left)
        left -= k
        taken, pixels, entered = taken + k, pixels + k * w * h, entered + w * h
    return taken, pixels, entered


def work(settings: Settings, aspect: tuple[int, int] = (4, 3), batch: int = 1, styles: int = 1,
         steps_done: int | None = None) -> tuple[int, float]:
    """(steps, megapixel-steps) of a run up to `steps_done` of its steps (None: all): each level's steps × its
    pixels × the batch, plus one network pass per style image and level entered (the targets); the patch model
    also matches every step against each painting."""
    sizes, steps = schedule(fit_size(aspect, settings.size), settings.scales, settings.steps)
    taken, pixels, entered = level_work(sizes, steps, steps_done)
    if settings.style_model == "mrf":
        pixels *= 1 + styles * settings.style_scale ** 2
    return taken, (batch * pixels + styles * entered * settings.style_scale ** 2) / 1e6


def megapixel_steps(settings: Settings, aspect: tuple[int, int] = (4, 3), batch: int = 1, styles: int = 1) -> float:
    """The work of a whole run in megapixel-steps (`work`)."""
    return work(settings, aspect, batch, styles)[1]


class StepCost:
    """A run's time on this device: `overhead` seconds per step (the optimizer, the losses, the launches that do
    not grow with the image) plus `seconds_per_mpx` per megapixel-step. It starts from the probe's prior (a bare
    pass × ENGINE_FACTOR, no overhead), is calibrated on real engine steps at two sizes once the app has started
    (`calibrate`), and then follows the runs made here: the median of the last few runs' measured time over the
    model's. Thread-safe; a run reports with `observe`."""

    def __init__(self, seconds_per_mpx: float, source: str, overhead: float = 0.0) -> None:
        self.prior, self.overhead, self.source = seconds_per_mpx, overhead, source
        self._seen: deque[float] = deque(maxlen=OBSERVATIONS)
        self._lock = threading.Lock()

    @classmethod
    def from_floor(cls, seconds: float | None, size: tuple[int, int] = PROBE_SIZE) -> "StepCost":
        """From a bare pass's time at `size` (None: not measured, as in ZeroGPU's server process)."""
        if seconds is None:
            return cls(GPU_SECONDS_PER_MPX, "a computed default, not yet measured here")
        return cls(ENGINE_FACTOR * seconds / (size[0] * size[1] / 1e6), "measured by a probe at start-up")

    def calibrate(self, steps: list[tuple[float, float]]) -> None:
        """Fit the model to real engine steps, (megapixels, seconds) each, at two sizes or more: the least-squares
        line through them gives the overhead (its intercept, at least 0) and the rate (its slope)."""
        xs, ys = [x for x, _ in steps], [y for _, y in steps]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        spread = sum((x - mx) ** 2 for x in xs)
        if len(steps) < 2 or spread <= 0:
            return
        slope = sum((x - mx) * (y - my) for x, y in steps) / spread
        if slope <= 0:  # a noisy machine: keep the prior rather than learn nonsense
            return
        with self._lock:
            self.prior, self.overhead = slope, max(0.0, my - slope * mx)
            self.source = "measured on engine steps at start-up"

    def _model(self, settings: Settings, aspect: tuple[int, int], batch: int, styles: int,
               steps_done: int | None = None) -> tuple[float, float]:
        """(the model's seconds, megapixel-steps) before what the runs taught."""
        steps, mpx = work(settings, aspect, batch, styles, steps_done)
        return self.overhead * steps + self.prior * mpx, mpx

    @property
    def ratio(self) -> float:
        """The runs' measured time over the model's (1 until a run is observed)."""
        with self._lock:
            return statistics.median(self._seen) if self._seen else 1.0

    @property
    def seconds_per_mpx(self) -> float:
        """The rate alone (no overhead): what the scheduler's estimates of the work left use."""
        return self.prior * self.ratio

    def fixed_seconds(self, settings: Settings, aspect: tuple[int, int] = (4, 3)) -> float:
        """The per-step fixed cost of a whole run: what runs batched together pay once."""
        return self.ratio * self.overhead * work(settings, aspect)[0]

    def seconds(self, settings: Settings, aspect: tuple[int, int] = (4, 3), batch: int = 1, styles: int = 1) -> float:
        return self.ratio * self._model(settings, aspect, batch, styles)[0]

    def seconds_left(self, sizes: list[tuple[int, int]], level_steps: list[int], steps_done: int,
                     items: int = 1) -> float:
        """The time the rest of a run of these levels takes after `steps_done` of its steps (its later, larger
        levels included): what the scheduler's ETAs add up."""
        steps, pixels, _ = level_work(sizes, level_steps)
        done, done_pixels, _ = level_work(sizes, level_steps, steps_done)
        return self.ratio * (self.overhead * (steps - done) + self.prior * items * (pixels - done_pixels) / 1e6)

    def observe(self, settings: Settings, seconds: float, aspect: tuple[int, int] = (4, 3), batch: int = 1,
                styles: int = 1, steps_done: int | None = None) -> None:
        """Learn from a run: its time for `steps_done` of its steps (a stopped run is credited the work it did)."""
        predicted, mpx = self._model(settings, aspect, batch, styles, steps_done)
        if mpx < MIN_OBSERVED_MPX or seconds <= 0 or predicted <= 0:
            return
        with self._lock:
            self._seen.append(seconds / predicted)
            self.source = f"measured over {len(self._seen)} run{'s' if len(self._seen) > 1 else ''} here"
