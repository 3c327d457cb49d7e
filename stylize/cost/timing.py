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


def megapixel_steps(settings: Settings, aspect: tuple[int, int] = (4, 3), batch: int = 1, styles: int = 1) -> float:
    """The work of a run in megapixel-steps: every level's steps × its pixels × the batch, plus one network pass
    per style image and level (the targets); the patch model also matches every step against each painting."""
    sizes, steps = schedule(fit_size(aspect, settings.size), settings.scales, settings.steps)
    work = sum(n * w * h for (w, h), n in zip(sizes, steps)) / 1e6
    if settings.style_model == "mrf":
        work *= 1 + styles * settings.style_scale ** 2
    targets = styles * sum(w * h for w, h in sizes) * settings.style_scale ** 2 / 1e6
    return batch * work + targets


class StepCost:
    """Seconds per megapixel-step on this device: the probe's prior (a bare pass × ENGINE_FACTOR) until runs are
    observed, then the median of the last few runs' own rate. Thread-safe; a run reports with `observe`."""

    def __init__(self, seconds_per_mpx: float, source: str) -> None:
        self.prior, self.source = seconds_per_mpx, source
        self._seen: deque[float] = deque(maxlen=OBSERVATIONS)
        self._lock = threading.Lock()

    @classmethod
    def from_floor(cls, seconds: float | None, size: tuple[int, int] = PROBE_SIZE) -> "StepCost":
        """From a bare pass's time at `size` (None: not measured, as in ZeroGPU's server process)."""
        if seconds is None:
            return cls(GPU_SECONDS_PER_MPX, "a computed default, not yet measured here")
        return cls(ENGINE_FACTOR * seconds / (size[0] * size[1] / 1e6), "measured by a probe at start-up")

    @property
    def seconds_per_mpx(self) -> float:
        with self._lock:
            return statistics.median(self._seen) if self._seen else self.prior

    def seconds(self, settings: Settings, aspect: tuple[int, int] = (4, 3), batch: int = 1, styles: int = 1) -> float:
        return self.seconds_per_mpx * megapixel_steps(settings, aspect, batch, styles)

    def observe(self, settings: Settings, seconds: float, aspect: tuple[int, int] = (4, 3), batch: int = 1,
                styles: int = 1, steps_done: int | None = None) -> None:
        """Learn from a run: its wall time for `steps_done` of its steps (a stopped run counts what it did)."""
        done = settings.steps if steps_done is None else steps_done
        work = megapixel_steps(settings, aspect, batch, styles) * done / settings.steps
        if work < MIN_OBSERVED_MPX or seconds <= 0:
            return
        with self._lock:
            self._seen.append(seconds / work)
            self.source = f"measured over {len(self._seen)} run{'s' if len(self._seen) > 1 else ''} here"
