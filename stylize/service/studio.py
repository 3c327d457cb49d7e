"""What the app runs, without any UI: one shared engine per weight source on its own compute thread, this
machine's defaults, limits and time budget, and the three runs (Stylize, Compare, Explore) as streams of
updates. Requests are checked before they get here (checks.py); `app.py` and the ui package only wire.

ZeroGPU (Hugging Face's shared GPUs) runs a `@spaces.GPU` function in a *forked child process* and pickles what
it yields back to the parent. Everything a run touches is therefore picklable or read from disk (a stop flag is
a file), the engines are built on the importing thread, and no thread of this process is needed inside the
child (a PID check guards the compute thread).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from PIL import Image

from stylize import images
from stylize.cost.budget import (
    COMPARE_BUDGET_S,
    COMPARE_PRESETS,
    MIN_COMPARE_SIZE,
    RUN_BUDGET_S,
    Budget,
    Limits,
    ZeroGpu,
    admission,
    duration,
    gpu_free_bytes,
    item_memory,
    plan_batches,
    release_cache_if_tight,
    run_memory,
)
from stylize.engine.enlarge import CPU_PASS_BUDGET, ENLARGE_STEPS, Enlargement, pass_bytes, prepare_enlargement
from stylize.engine.loop import Frame, Job, ReportEvery, Run, Stylizer, alone
from stylize.engine.precision import cpu_name, default_device, requested_precision
from stylize.engine.schedule import schedule
from stylize.engine.updates import UPDATE_INTERVAL_S, Reporter, Update, Waiting, throttle
from stylize.engine.weights import load_weights
from stylize.errors import StylizeError
from stylize.experiments.compare import CompareCell, Gallery, compare_batches, run_comparison
from stylize.experiments.explore import (
    GRID_UPDATE_INTERVAL_S,
    GridUpdate,
    default_rows,
    grid_defaults,
    grid_updates,
    run_grid,
)
from stylize.params import Settings, defaults_for

from . import links
from .assets import Assets
from .checks import WEIGHT_SOURCES, CompareRequest, EnlargeRequest, ExploreRequest, StylizeRequest, check_weights
from .compute import behind_the_server, out_of_memory_as_message
from .inputs import Inputs
from .scheduler import Closed, Scheduler

log = logging.getLogger(__name__)

CALIBRATION_STEPS = 5  # per size at start-up: the first (allocation, targets) is left out, the median of the rest
# A batch of this many images at the first level's size is timed too: Compare and Explore step several small images
# in one pass, and a line fitted through one-image steps alone told them apart badly (README, Honest time).
CALIBRATION_BATCH = 4


def first_and_last_level(settings: Settings) -> list[tuple[int, int]]:
    """The sizes of a run's first and last levels (at 4:3): where the time model is calibrated."""
    sizes, _ = schedule(images.fit_size((4, 3), settings.size), settings.scales, settings.steps)
    return [sizes[0], sizes[-1]]

ShouldStop = Callable[[], bool]


def zero_gpu_enabled() -> bool:
    """True on a ZeroGPU Space (the `spaces` package reads the same variable the same way)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def never() -> bool:
    return False


class Studio:
    """Assets, engines and this machine's budget, loaded once per process on the importing thread and shared by
    every request."""

    def __init__(self, presets_dir: str | None = None, zero_gpu: bool | None = None) -> None:
        requested_precision()  # a bad $STYLIZE_PRECISION is refused now, with the choices, not as missing weights
        self.assets = Assets(presets_dir)
        self.zero_gpu = zero_gpu_enabled() if zero_gpu is None else zero_gpu
        self.device = default_device()
        self._pid = os.getpid()
        self._engines: dict[str, Stylizer] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        # The weights load now, on the importing (main) thread: nothing for a page load to wait for, and under
        # ZeroGPU's CUDA emulation `.to("cuda")` works only on that thread. ZeroGPU gets every source now, so its
        # worker process never builds an engine.
        for weights in WEIGHT_SOURCES if self.zero_gpu else ("auto",):
            try:
                self.engine(weights)
            except StylizeError as exc:
                log.warning("weights %r unavailable: %s", weights, exc)
                self._errors[weights] = str(exc)
        # Defaults sized to this machine's measured speed (budget.py); the limits stay the device type's.
        self.budget = Budget.for_engine(self._engines.get("auto"), self.device.type, self.zero_gpu)
        self.limits = Limits.for_device(self.device.type, defaults_for(self.device.type))
        self.inputs = Inputs(self.assets.preset_images, self.limits.max_styles)
        self._refit()
        self.grid_defaults = grid_defaults(self.defaults, self.device.type)
        self.warmed = threading.Event()
        # Off ZeroGPU, one scheduler steps every run on its one compute thread (torch's OpenMP team belongs to the
        # thread that calls it), batching runs of one shape and sharing the machine fairly (scheduler.py); on a
        # CPU it runs behind the server's threads. On ZeroGPU each run works in its own forked worker process,
        # where threads of this one do not exist: it steps there by itself, with the same code.
        self.scheduler: Scheduler | None = None
        if self.zero_gpu:
            self.warmed.set()
        else:
            self.scheduler = Scheduler(*admission(self.device.type, free_memory(self.device)),
                                       seconds_left=self.seconds_left,
                                       initializer=behind_the_server if self.device.type == "cpu" else None)
            threading.Thread(target=self._warm_up, name="stylize-warm-up", daemon=True).start()

    # ---- this machine ------------------------------------------------------------------------------------------

    def current_defaults(self) -> Settings:
        """The default run as large as fits the time budget at this machine's speed as known now (the probe, then
        the runs made here): every page load starts from it, so the defaults follow what the runs measured."""
        base = defaults_for(self.device.type)
        return self.budget.fit(base, RUN_BUDGET_S, base.size)

    def _refit(self) -> None:
        """The default run and the default comparison, fitted to the time model as it stands."""
        self.defaults = self.current_defaults()
        self.compare_defaults = self.budget.fit(self.defaults, COMPARE_BUDGET_S, self.defaults.size,
                                                batch=COMPARE_PRESETS, min_size=MIN_COMPARE_SIZE)

    def observe(self, settings: Settings, frame: Frame, styles: int = 1, batch: int = 1) -> None:
        """Learn this machine's speed from a finished or stopped run (its frame came back from wherever it ran):
        the machine's time it took, credited the work it did. A run that shared passes with others is not learnt
        from (its share says how busy the machine was, not how fast it is)."""
        if not frame.shared:
            self.budget.cost.observe(settings, frame.compute or frame.elapsed, frame.size, batch, styles,
                                     steps_done=frame.step)

    def reporter(self, interval: float = UPDATE_INTERVAL_S) -> Reporter:
        """A run's report predicate: every `interval` seconds alone, less often while other runs stream beside it
        (the web server's work grows with the previews it sends, not with the runs)."""
        scheduler = self.scheduler
        return Reporter(interval, (lambda: scheduler.load()[0]) if scheduler is not None else None)

    def seconds_left(self, run: Run) -> float:
        """The time a run (any kind: a batch, a grid, an enlargement) still needs by itself: its own levels."""
        return self.budget.cost.seconds_left(run.plan.sizes, run.plan.level_steps, run.step, run.items)

    def compare_time(self, cells: Sequence[CompareCell], aspect: tuple[int, int] = (4, 3)) -> float:
        """A comparison's estimated time: its batches one after another (`compare_batches`, as `compare` runs
        them), each its results' own runs with their presets' tuned settings, less the per-step fixed cost its
        results share (one pass, one optimizer step per step for the whole batch)."""
        total = 0.0
        for batch in compare_batches(cells, range(len(cells)), aspect, self.gpu_batches):
            alone = sum(self.budget.seconds(cells[k].settings, aspect=aspect) for k in batch)
            total += alone - (len(batch) - 1) * self.budget.cost.fixed_seconds(cells[batch[0]].settings, aspect)
        return total

    def compare_seconds(self, cells: Sequence[CompareCell], aspect: tuple[int, int] = (4, 3)) -> int:
        """The ZeroGPU duration a comparison asks for: every result's own run, nothing shared counted (a request
        that asks too little is cut off), with the request's margin."""
        return ZeroGpu.request(sum(self.budget.seconds(cell.settings, aspect=aspect) for cell in cells))

    def estimate(self, alone_s: float) -> str:
        """The estimate beside a button for work of `alone_s` seconds by itself ("≈ 40 s on this CPU"), or, while
        other visitors' runs are on the machine, when it would end beside them ("≈ 1 min 10 s — 3 other runs
        share the machine now")."""
        text = self.budget.describe(alone_s)
        others = sum(self.scheduler.load()) if self.scheduler is not None else 0
        if not others:
            return text
        shared = self.scheduler.estimate(alone_s)
        share = "runs share" if others > 1 else "run shares"
        return f"≈ {duration(shared)} — {others} other {share} the machine now"

    def _warm_up(self) -> None:
        """Real engine steps on the compute thread, at the default run's first and last level sizes: the first
        visitor's first preview does not also pay for kernel selection and allocator growth, and the time model
        is calibrated on what a step costs here, not on a bare pass times a constant; the defaults are refitted."""
        try:
            engine = self._engines.get("auto")
            if engine is not None:
                sizes = sorted(set(first_and_last_level(self.defaults)))
                steps = [self._time_steps(engine, size) for size in sizes]
                steps.append(self._time_steps(engine, sizes[0], CALIBRATION_BATCH))
                self.budget.cost.calibrate(steps)
                self._refit()
                log.info("time model: %.3f s per step + %.2f s per megapixel-step (%s); default run %d px, %d "
                         "steps", self.budget.cost.overhead, self.budget.cost.prior, self.budget.cost.source,
                         self.defaults.size, self.defaults.steps)
        except Closed:  # the process is exiting
            pass
        except Exception:  # a failed warm-up costs speed only
            log.exception("warm-up failed")
        finally:
            self.warmed.set()

    def _time_steps(self, engine: Stylizer, size: tuple[int, int], batch: int = 1) -> tuple[float, float]:
        """(megapixels, seconds) of one engine step over `batch` images of `size`: the median step after the first
        of a short run."""
        width, height = size
        photo, painting = Image.new("RGB", (width, height), "gray"), Image.new("RGB", (width, width), "white")
        settings = self.defaults.replace(size=max(size), steps=CALIBRATION_STEPS, scales=1)
        marks: list[float] = []
        run = engine.prepare([Job(photo, [painting], settings)] * batch, report_every=1_000_000,
                             should_stop=lambda: bool(marks.append(time.perf_counter())))
        list(self.frames(run))
        gaps = sorted(b - a for a, b in zip(marks, marks[1:]))
        return batch * width * height / 1e6, gaps[len(gaps) // 2]

    def engine(self, weights: str = "auto") -> Stylizer:
        """The shared engine for a weight source (auto, hub, embedded), loaded on first use."""
        weights = check_weights(weights)
        with self._lock:
            if weights not in self._engines:
                auto = self._engines.get("auto")
                if weights == "hub" and auto is not None and auto.weights.source == "hub":
                    self._engines["hub"] = auto  # the same file: one copy on the device
                elif weights == "hub" and auto is not None and auto.weights.reason:
                    raise StylizeError(f"the Hub's weights are unavailable ({auto.weights.reason})")  # no 2nd probe
                else:
                    self._engines[weights] = Stylizer(load_weights(weights), self.device)
            return self._engines[weights]

    @property
    def loaded(self) -> dict[str, Stylizer]:
        """The engines loaded so far, by weight source."""
        return dict(self._engines)

    @property
    def has_compute_thread(self) -> bool:
        """Whether runs go to this process's scheduler (not on ZeroGPU, whose runs work in a forked child)."""
        return self.scheduler is not None

    @property
    def ready(self) -> bool:
        """Whether the default weights are loaded (they load while the app is imported)."""
        return "auto" in self._engines

    def weights_status(self) -> str:
        """Where runs happen and with which weights, in plain words."""
        engine = self._engines.get("auto")
        if engine is None:
            return f"The network's weights could not be loaded: {self._errors.get('auto', 'unknown error')}"
        if self.zero_gpu:
            where = "a ZeroGPU GPU (lent for each run)"
        elif engine.device.type == "cuda":
            where = f"GPU ({torch.cuda.get_device_name(engine.device)}) in {engine.chosen.reason}"
        else:
            where = f"CPU ({cpu_name()}, {torch.get_num_threads()} threads) in {engine.chosen.reason}"
        what = {"embedded": "the original VGG-19, offline copy",
                "hub": "VGG-19 (torchvision's ImageNet weights) from the Hugging Face Hub",
                "file": "VGG-19 from a local weights file"}.get(engine.weights.source, engine.weights.description)
        fallback = " (the Hugging Face Hub's copy could not be loaded)" if engine.weights.reason else ""
        d = self.current_defaults()
        return (f"Running on {where}, with {what}{fallback}. Default run: {d.size} px, {d.steps} steps, "
                f"{self.budget.estimate(d)} (speed {self.budget.cost.source}).")

    # ---- links, opened against this machine ------------------------------------------------------------------

    def open_link(self, query: Mapping[str, Any]) -> links.Link:
        return links.open_link(query, list(self.assets.presets), self.current_defaults(), self.limits.max_size,
                               self.limits.max_steps)

    def open_explore_link(self, query: Mapping[str, Any]) -> links.ExploreLink | None:
        return links.open_explore_link(query, list(self.assets.presets), self.grid_defaults,
                                       lambda kind: default_rows(kind, self.device.type), self.limits.max_size,
                                       self.limits.max_steps)

    def open_compare_link(self, query: Mapping[str, Any]) -> links.CompareLink | None:
        return links.open_compare_link(query, self.assets.available_presets(), list(self.assets.photos),
                                       self.compare_defaults, self.limits.max_size, self.limits.max_steps,
                                       self.limits.max_compare)

    # ---- runs (on ZeroGPU: in the GPU worker process) ----------------------------------------------------------

    def frames(self, run: Run) -> Iterator[Frame | Waiting]:
        """A run's frames: from the scheduler, with the other visitors' runs, or stepped by itself where there is
        none (on ZeroGPU, and in any forked child: the scheduler's thread does not exist there). On a GPU whose
        memory is short after the run, PyTorch's unused cache goes back to the driver."""
        if self.scheduler is not None and os.getpid() == self._pid:
            width, height = run.plan.sizes[-1]
            memory = run.memory_bytes() if isinstance(run, Enlargement) else \
                run_memory(width * height, [job.settings for job in run.jobs], run.engine.precision == "bf16")
            frames = self.scheduler.frames(run, memory)
        else:
            frames = alone(run)
        return self._release_after(frames) if self.device.type == "cuda" else frames

    def _release_after(self, items: Iterator) -> Iterator:
        """`items`, then PyTorch's unused cache back to the driver if its free memory is short (`budget`)."""
        try:
            yield from items
        finally:
            if release_cache_if_tight(self.device):
                log.info("GPU memory was short after the run: PyTorch's cache was handed back")

    def run(self, request: StylizeRequest, should_stop: ShouldStop = never) -> Iterator[Update]:
        """Stylize, streaming throttled updates; the last one is final (done, or stopped by `should_stop`)."""
        job = Job(request.photo, request.styles, request.settings, request.masks)
        run = self.engine(request.weights).prepare([job], report_every=self.reporter(), should_stop=should_stop)
        return out_of_memory_as_message(throttle(self.frames(run)))

    def enlarge(self, request: EnlargeRequest, should_stop: ShouldStop = never) -> Iterator[Update]:
        """A finished result made bigger (#33), streamed like `run`: one more run for the scheduler, stepped
        alone (its shape is its own) and taking turns by its cost like any long run."""
        job = Job(request.photo, request.styles, request.settings.replace(size=max(request.result.size)))
        run = prepare_enlargement(self.engine(request.weights), request.result, job, request.longest,
                                  report_every=self.reporter(), should_stop=should_stop)
        return out_of_memory_as_message(throttle(self.frames(run)))

    def enlarge_seconds(self, request: EnlargeRequest) -> float:
        """An enlargement's estimated wall time alone."""
        return self.budget.enlarge_seconds(request.result.size, request.longest, ENLARGE_STEPS, self._tiled_above())

    def _tiled_above(self) -> float:
        """Pixels above which a level goes in tiles (estimates only): the CPU's pass budget; on a GPU no more."""
        engine = self._engines.get("auto")
        return CPU_PASS_BUDGET / pass_bytes(1, engine.precision if engine is not None else "fp32")

    def enlarge_estimate(self, size: tuple[int, int], factor: int) -> str:
        """The estimate beside *Make it bigger* for a result of `size`."""
        longest = factor * max(size)
        if longest > self.limits.max_enlarge:
            return f"×{factor} would be {longest} px: above this machine's {self.limits.max_enlarge} px"
        return self.budget.enlarge_estimate(size, longest, ENLARGE_STEPS, self._tiled_above())

    def run_batch(self, jobs: list[Job], weights: str = "auto", should_stop: ShouldStop = never) -> Iterator[Update]:
        """Several images of one size in one batch, streamed like `run` (images and losses per item)."""
        run = self.engine(weights).prepare(jobs, report_every=self.reporter(), should_stop=should_stop)
        return out_of_memory_as_message(throttle(self.frames(run)))

    def compare(self, request: CompareRequest, should_stop: ShouldStop = never) -> Iterator[tuple[Gallery, str]]:
        """One photo × several presets: (gallery, status) as the results form, in batches that fit this device."""
        batches = compare_batches(request.cells, range(len(request.cells)), request.photo.size, self.gpu_batches)
        return run_comparison(request.cells, request.styles, request.photo, batches,
                              lambda jobs: self.run_batch(jobs, request.weights, should_stop), should_stop,
                              request.notes)

    def explore(self, request: ExploreRequest, should_stop: ShouldStop = never) -> Iterator[GridUpdate]:
        """Every cell of the grid as one batch (or several, where the GPU's memory is short), streamed as
        `GridUpdate`s about once a second."""
        grid = request.grid
        aspect = (request.photo or request.painting).size
        frames = run_grid(Scheduled(self, self.engine(request.weights)), grid, request.photo, request.painting,
                          report_every=self.reporter(GRID_UPDATE_INTERVAL_S), should_stop=should_stop,
                          chunks=self.gpu_batches([images.fit_size(aspect, grid.settings.size)] * grid.cells,
                                                  grid.cell_settings()))
        return out_of_memory_as_message(grid_updates(grid, frames))

    def gpu_batches(self, sizes: Sequence[tuple[int, int]],
                    settings: Sequence[Settings] | None = None) -> list[list[int]] | None:
        """On a GPU, the items (output sizes, and their settings: the patch model needs more) split into batches
        that fit its free memory now (`budget.plan_batches`); None elsewhere (a CPU's memory is not the limit)."""
        if self.device.type != "cuda":
            return None
        bf16 = self.engine().precision == "bf16"
        memory = [item_memory(s, bf16) for s in (settings or [None] * len(sizes))]
        return plan_batches([w * h for w, h in sizes], gpu_free_bytes(self.device), [m[0] for m in memory],
                            max_items=len(sizes), fixed=[m[1] for m in memory])


class Scheduled:
    """An engine whose batches go through the studio's scheduler: what Explore's `run_grid` is handed."""

    def __init__(self, studio: Studio, engine: Stylizer) -> None:
        self.studio, self.engine = studio, engine

    def run_batch(self, jobs: Sequence[Job], report_every: ReportEvery = 10,
                  should_stop: ShouldStop | None = None) -> Iterator[Frame | Waiting]:
        return self.studio.frames(self.engine.prepare(jobs, report_every, should_stop))


def free_memory(device: torch.device) -> float:
    """Bytes this device has free for runs now: the GPU's free memory, or the memory the system has available."""
    if device.type == "cuda":
        return gpu_free_bytes(device)
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not on this system: no memory limit but the run count
        return float("inf")
