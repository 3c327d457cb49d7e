"""The generator: it optimizes a batch of images with our L-BFGS and yields a `Frame` after every step.

A *step* is one L-BFGS iteration: one forward and backward pass through VGG-19 for the whole batch (no line
search, so exactly one loss evaluation). Each batch item has its own objective (photo, paintings, layers,
strength, init, seed): `Stylizer.run` makes one image, `Stylizer.run_batch` several of the same size at once.

What a frame reports belongs together: its image is each item's best evaluated image so far, and its losses
are that image's losses (L-BFGS evaluates an image before it moves on, so the last iterate is never the
evaluated one). Losses are read back from the device only on frames that report them (`report_every`), at the
end, and when the caller stops the run (`should_stop`).

A batch's progress is a `Run`: its level, images, L-BFGS state and loss history. `step_together` takes one step
of several runs whose current levels have the same shape (`Run.shape`) in one network pass, each run keeping its
own optimizer, losses and step count; a run alone is the same call with one run. The generator of `run_batch`
steps one run alone; the service's scheduler interleaves many (stylize/service/scheduler.py).

The parts: schedule.py lays the batch out, targets.py computes and caches what fixed images give the objective,
objective.py builds the objective at each level and evaluates it; this module runs the loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from stylize import images
from stylize.errors import StylizeError
from stylize.params import Settings

from .lbfgs import HISTORY, LBFGS
from .masks import load_masks
from .objective import COLUMNS, Objective, build, named
from .precision import Precision, default_device, keep_freed_memory, precision_for, requested_precision
from .schedule import Job, Plan, check_patch_fit, plan_batch
from .targets import Targets, fingerprint
from .vgg import VGGFeatures
from .weights import Weights, load_weights

__all__ = ["Frame", "Job", "Stylizer", "fingerprint"]

keep_freed_memory()  # before any worker thread allocates: see precision.py

MAX_RECOVERIES = 3  # non-finite losses survived (each undone by going back to the best image) before giving up
# The longest L-BFGS step, as the RMS change of a pixel (0–1): healthy steps stay well under it, while the steps
# that blew runs up after a level change were several times longer (README: the trust region, Performance).
MAX_STEP = 0.05


@dataclass
class Frame:
    """One optimization step. On reporting steps (and the last, and a stopped run's last) it carries, per batch
    item, the best image so far, its losses and the loss history; on the others only the step counter and the
    time."""

    step: int
    total_steps: int
    elapsed: float
    size: tuple[int, int] = (0, 0)
    done: bool = False  # the run took all its steps
    images: list[Image.Image] | None = None
    item_losses: list[dict[str, float]] | None = None
    histories: list[list[tuple[int, dict[str, float]]]] | None = None  # (step, losses of the image evaluated then)
    resets: list[int] | None = None  # guard interventions per item (steps undone)
    stopped: bool = False  # the caller's `should_stop` ended the run after this step: the last frame, not done
    compute: float = 0.0  # seconds of the machine's time spent on this run (a shared pass: its share)
    shared: bool = False  # some of its steps shared a network pass with other runs
    eta_s: float | None = None  # seconds left as a scheduler that knows the other runs estimates them

    @property
    def image(self) -> Image.Image | None:
        return self.images[0] if self.images else None

    @property
    def losses(self) -> dict[str, float] | None:
        return self.item_losses[0] if self.item_losses else None

    @property
    def history(self) -> list[tuple[int, dict[str, float]]] | None:
        return self.histories[0] if self.histories else None

    @property
    def eta(self) -> float:
        """Seconds left: the scheduler's estimate where it gave one, else assuming the remaining steps cost what
        the finished ones did on average."""
        if self.eta_s is not None:
            return self.eta_s
        return self.elapsed / self.step * (self.total_steps - self.step) if self.step else math.nan


ReportEvery = int | Callable[[int], bool]


class Stylizer:
    """A loaded VGG-19 on one device, shared by every run (from any thread), with its targets cached."""

    def __init__(self, weights: Weights | None = None, device: torch.device | str | None = None,
                 precision: str | None = None) -> None:
        """`precision`: 'fp32', 'bf16', or 'auto' (the faster here, measured once per process: precision.py);
        None reads $STYLIZE_PRECISION, else 'auto'."""
        self.weights = weights or load_weights()
        self.device = torch.device(device) if device else default_device()
        if self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.benchmark = True  # sizes repeat for hundreds of steps
        self.chosen: Precision = precision_for(self.device, self._network, requested_precision(precision))
        self.precision = self.chosen.name
        self.net = self._network(self.chosen.dtype)
        self.targets = Targets(self.net, self.device)
        self.history = HISTORY  # L-BFGS pairs kept (see lbfgs.HISTORY)
        self.max_step: float | None = MAX_STEP  # L-BFGS trust region (see MAX_STEP)

    def _network(self, dtype: torch.dtype) -> VGGFeatures:
        return VGGFeatures(self.weights.convs, self.weights.preprocess, dtype).to(self.device).eval()

    def __repr__(self) -> str:
        return f"Stylizer({self.weights.source} weights on {self.device}, {self.precision})"

    def scales(self, pooling: str) -> dict[str, float]:
        """Per-layer calibration (RMS response to a fixed image) for a pooling mode, measured once."""
        return self.targets.scales(pooling)

    def losses(self, x: torch.Tensor, objective: Objective, rematch: bool = False) -> torch.Tensor:
        """The objective's weighted terms per item, (B, 5) (`Objective.losses`): every evaluation of a run and
        of `evaluate` goes through here."""
        return objective.losses(self.net, x, rematch)

    @torch.no_grad()
    def evaluate(self, image: Image.Image, content: Image.Image | None, styles: Sequence[Image.Image],
                 settings: Settings, masks: Sequence[images.ImageSource] | None = None) -> dict[str, float]:
        """The objective's terms for a finished (8-bit) image, as a user receives it: how results are judged.

        With luminance-only transfer the delivered image is the optimized luma plus the photo's chroma, so its
        luma is what is scored. `masks` as for `run`.
        """
        job = Job(content, list(styles), settings.replace(size=max(image.size)), masks)
        plan = plan_batch([job])
        photo = images.to_tensor(images.resize(content, image.size), self.device) if content is not None else None
        objective = build([job], [photo], image.size, plan, self.targets)
        values = self.losses(plan.optimized(images.to_tensor(image, self.device)), objective)[0].tolist()
        return named(values, objective.present[0])

    # ---- the generator ------------------------------------------------------------------------

    def run(self, content: Image.Image | None, styles: Sequence[Image.Image], settings: Settings | None = None,
            report_every: ReportEvery = 10, masks: Sequence[images.ImageSource] | None = None,
            should_stop: Callable[[], bool] | None = None) -> Iterator[Frame]:
        """One image: yield a `Frame` after every L-BFGS step, reporting images and losses every `report_every`
        steps (or where the predicate says so) and at the end.

        `content=None` synthesizes the style's texture from noise; no `styles` reconstructs the content
        from the chosen layer (the paper's Fig. 1 experiments). `masks` (one per style) paint each style into
        its region of the photo (Gatys et al. 2017); pixels no mask covers keep the photo.

        Two ways to end early: `should_stop` is asked after every step but the last, and once it answers True
        that step's frame is reported (images, losses, history) with `stopped` set and the iterator ends;
        closing the iterator stops at once, reporting nothing more.
        """
        return self.run_batch([Job(content, list(styles), settings or Settings(), masks)], report_every,
                              should_stop)

    def prepare(self, jobs: Sequence[Job], report_every: ReportEvery = 10,
                should_stop: Callable[[], bool] | None = None) -> Run:
        """A `Run` of several images of one size, checked: everything that can be refused is refused here, before
        the first step (see `run_batch`)."""
        jobs = list(jobs)
        for job in jobs:
            if job.content is None and not job.styles:
                raise StylizeError("give a content image, a style image, or both")
            if job.settings.init == "style" and not job.styles:
                raise StylizeError("init 'style' needs a style image")
        plan = plan_batch(jobs)
        for job in jobs:
            if job.masks:
                if job.content is None:
                    raise StylizeError("masks need a photo: they say where on it each style goes")
                if job.settings.style_model != "gram":
                    raise StylizeError("masks work with the Gram style model; choose style_model 'gram'")
                load_masks(list(job.masks), len(job.styles), plan.sizes[-1])
            if job.settings.style_model == "mrf" and job.styles:
                check_patch_fit(job, plan)
        report = report_every if callable(report_every) else (lambda step, n=max(1, report_every): step % n == 0)
        return Run(self, jobs, plan, report, should_stop or (lambda: False))

    def run_batch(self, jobs: Sequence[Job], report_every: ReportEvery = 10,
                  should_stop: Callable[[], bool] | None = None) -> Iterator[Frame]:
        """Several images of the same size optimized together (one VGG pass per step); see `run`.

        Items may differ in photo, paintings, layers, strength, init and seed; they must agree on what fixes
        the shape of the work: output size, steps, levels, pooling and colour mode. Everything that can be
        refused is refused here, before the first step.
        """
        return alone(self.prepare(jobs, report_every, should_stop))


def alone(run: "Run") -> Iterator[Frame]:
    """A run's frames, stepped by itself (`step_together` with one run: the scheduler's code path)."""
    try:
        while not run.finished:
            (frame,) = step_together([run])
            if frame is None:
                raise run.error
            yield frame
    finally:
        run.release()


class Run:
    """One batch's optimization in progress: its plan, current level, images, L-BFGS state and loss history.

    `step_together` advances it, alone or with other runs of the same `shape`. Each run keeps everything that is
    its own (optimizer, best images, losses, step count, stop), so a run's images do not depend on which others
    shared its passes (tests/test_scheduler.py)."""

    def __init__(self, engine: Stylizer, jobs: list[Job], plan: Plan, report: Callable[[int], bool],
                 should_stop: Callable[[], bool]) -> None:
        self.engine, self.jobs, self.plan = engine, jobs, plan
        self.report, self.should_stop = report, should_stop
        self.step, self.level = 0, -1  # steps taken; the level entered (-1: none yet)
        self.evaluation = 0  # evaluations at this level
        self.started: float | None = None
        self.compute, self.shared = 0.0, False
        self.finished = False
        self.error: BaseException | None = None  # why the run ended without finishing (its own fault only)
        # Items mixed with other runs' items only where every term is a plain Gram or content term (MRF matches
        # follow each run's own schedule; masked terms are kept to their run).
        self.shareable = all(not j.masks and (j.settings.style_model == "gram" or not j.styles) for j in jobs)
        self.x: torch.Tensor | None = None
        self.optimizer: LBFGS | None = None
        self.objective: Objective | None = None
        self.contents: list[torch.Tensor | None] = []
        self.trace: torch.Tensor | None = None
        self.best_terms: torch.Tensor | None = None
        self.together: tuple | None = None  # (runs, levels, their objective): the last shared pass's, reused

    @property
    def size(self) -> tuple[int, int]:
        """The size of the level the next step is at."""
        level = self.level + 1 if self.level_done else self.level
        return self.plan.sizes[min(level, len(self.plan.sizes) - 1)]

    @property
    def level_done(self) -> bool:
        return self.level < 0 or self.evaluation >= self.plan.level_steps[self.level]

    @property
    def shape(self) -> tuple:
        """What runs must share to step in one network pass: engine, size of the next step's level, pooling and
        colour mode; a run whose terms cannot mix with others' has a shape of its own."""
        key = (id(self.engine), self.size, self.plan.pooling, self.plan.luminance)
        return key if self.shareable else (*key, id(self))

    @property
    def items(self) -> int:
        return len(self.jobs)

    def _enter_next_level(self) -> None:
        """The next level's photos, objective, starting images (the last level's upsampled) and a fresh L-BFGS."""
        engine, plan, jobs = self.engine, self.plan, self.jobs
        if self.trace is None:
            self.started = time.perf_counter()
            self.trace = torch.zeros(plan.total_steps, len(jobs), len(COLUMNS), device=engine.device)
        self.level += 1
        self.evaluation = 0
        size = plan.sizes[self.level]
        self.contents = [images.to_tensor(images.resize(j.content, size), engine.device) if j.content is not None
                         else None for j in jobs]
        self.objective = build(jobs, self.contents, size, plan, engine.targets, self._style_side(size))
        lower, upper = _bounds(self.contents, plan)
        x = _initial(self.x, size, jobs, self.contents, plan, engine.device).clamp(lower, upper).requires_grad_(True)
        self.optimizer = None  # the last level's history goes before this level's is allocated
        self.x = x
        self.optimizer = LBFGS(x, history=self._history(), lower=lower, upper=upper, max_step=self._max_step())
        self.best_terms = torch.zeros(len(jobs), len(COLUMNS), device=engine.device)

    def _style_side(self, size: tuple[int, int]) -> int | None:
        """The longest side the paintings are sized against at a level (None: the level's own)."""
        return None

    def _history(self) -> int:
        """L-BFGS pairs kept at the level being entered."""
        return self.engine.history

    def _max_step(self) -> float | None:
        """The L-BFGS trust region at the level being entered (see MAX_STEP)."""
        return self.engine.max_step

    def _prepare(self) -> None:
        if self.level_done:
            self._enter_next_level()

    def evaluate(self, rematch: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """This run's terms per item (B, 5) and the gradient of their totals at its current images, in one
        network pass (a run stepped alone; an enlargement overrides it to work in tiles)."""
        return losses_and_gradient(self.engine, self.x, self.objective, rematch)

    def _advance(self, terms: torch.Tensor, grad: torch.Tensor, rematch: bool, seconds: float,
                 shared: bool) -> Frame:
        """This run's half of a step: its L-BFGS step from its own losses and gradient, and its frame."""
        optimizer = self.optimizer
        if rematch:  # new matches, a new objective for those items: their losses before are not comparable
            optimizer.rebase(self.objective.mrf_items)
        optimizer.step(terms[:, -1].detach(), grad)
        terms = terms.detach()
        self.best_terms = torch.where(optimizer.improved[:, None], terms, self.best_terms)
        self.trace[self.step] = terms
        self.step += 1
        self.evaluation += 1
        self.compute += seconds
        self.shared |= shared
        total = self.plan.total_steps
        last = self.step == total
        stopped = not last and self.should_stop()
        self.finished = last or stopped
        elapsed = time.perf_counter() - self.started
        size = self.plan.sizes[self.level]
        if not (last or stopped or self.report(self.step)):
            return Frame(self.step, total, elapsed, size, compute=self.compute, shared=self.shared)
        _check_finite(optimizer, self.trace[:self.step], self.step)
        return Frame(self.step, total, elapsed, size, done=last,
                     images=_images(optimizer.best, self.contents, self.plan),
                     item_losses=[named(row, keep) for row, keep in zip(self.best_terms.tolist(),
                                                                         self.objective.present)],
                     histories=_histories(self.trace[:self.step], self.objective.present),
                     resets=optimizer.resets.tolist(), stopped=stopped, compute=self.compute, shared=self.shared)

    def release(self) -> None:
        """Let go of the run's tensors (images, history, objective) now: a finished or stopped run's memory is
        free for the next one at once, not when the last reference to it goes."""
        self.finished = True
        self.x = self.optimizer = self.objective = self.together = None
        self.contents, self.trace, self.best_terms = [], None, None


def losses_and_gradient(engine: Stylizer, x: torch.Tensor, objective: Objective, rematch: bool
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The terms per item (B, 5) at images `x` and the gradient of their totals, in one network pass."""
    with torch.enable_grad():
        terms = engine.losses(x, objective, rematch=rematch)
        (grad,) = torch.autograd.grad(terms[:, -1].sum(), x)
    return terms, grad


def step_together(runs: Sequence[Run]) -> list[Frame | None]:
    """One step of every run in `runs` (all of one `shape`) in one network pass: their images stacked, the loss
    of each item from its own terms, each run's L-BFGS stepped on its own slice. A frame per run, or None for a
    run that failed on its own (a diverged optimization: `run.error` says why; the others go on). An error of
    the shared pass itself (out of memory) is raised."""
    started = time.perf_counter()
    ready, failed = [], []
    for run in runs:  # a run that cannot enter its next level (a painting refused at its size) fails alone
        try:
            run._prepare()
            ready.append(run)
        except StylizeError as exc:
            run.error, run.finished = exc, True
            failed.append(run)
    if failed:
        frames = dict(zip(map(id, ready), step_together(ready))) if ready else {}
        return [frames.get(id(run)) for run in runs]
    first = runs[0]
    if len(runs) == 1:
        rematch = first.objective.rematch_due(first.evaluation)
        terms, grad = first.evaluate(rematch)
    else:
        x = torch.cat([run.x.detach() for run in runs]).requires_grad_(True)
        rematch = False  # runs with MRF terms never share a pass (Run.shareable)
        terms, grad = losses_and_gradient(first.engine, x, _objective_of(runs), rematch)
    share = (time.perf_counter() - started) / sum(run.items for run in runs)
    frames, offset = [], 0
    for run in runs:
        part = slice(offset, offset + run.items)
        offset += run.items
        try:
            frames.append(run._advance(terms[part], grad[part], rematch, share * run.items, len(runs) > 1))
        except StylizeError as exc:
            run.error, run.finished = exc, True
            frames.append(None)
    return frames


def _objective_of(runs: Sequence[Run]) -> Objective:
    """The objective of several runs' items as one batch, built once for as long as the same runs share passes
    at the same levels (the targets come from the engine's cache)."""
    first = runs[0]
    levels = tuple(run.level for run in runs)
    cached = first.together
    if cached is not None and len(cached[0]) == len(runs) and all(a is b for a, b in zip(cached[0], runs)) \
            and cached[1] == levels:
        return cached[2]
    jobs = [job for run in runs for job in run.jobs]
    contents = [c for run in runs for c in run.contents]
    objective = build(jobs, contents, first.plan.sizes[first.level], first.plan, first.engine.targets)
    first.together = (tuple(runs), levels, objective)
    return objective


def _initial(previous: torch.Tensor | None, size: tuple[int, int], jobs: list[Job],
             contents: list[torch.Tensor | None], plan: Plan, device: torch.device) -> torch.Tensor:
    """The level's starting images: the last level's result upsampled, or each job's init (photo, painting,
    seeded noise)."""
    width, height = size
    if previous is not None:
        return F.interpolate(previous.detach(), size=(height, width), mode="bicubic", align_corners=False)
    starts = []
    for job, photo in zip(jobs, contents):
        init = job.settings.init if photo is not None or job.settings.init == "style" else "noise"
        if init == "content":
            x = plan.optimized(photo)
        elif init == "style":
            x = plan.optimized(images.to_tensor(images.resize(job.styles[0], size), device))
        else:
            gen = torch.Generator().manual_seed(job.settings.seed)  # on the CPU: one seed, one image anywhere
            x = torch.rand(1, 1 if plan.luminance else 3, height, width, generator=gen).to(device)
        starts.append(x)
    return torch.cat(starts).contiguous()


def _check_finite(optimizer: LBFGS, trace: torch.Tensor, step: int) -> None:
    """Give up on a run whose best loss is not finite, or that needed more than MAX_RECOVERIES recoveries."""
    if not torch.isfinite(optimizer.best_loss).all():
        raise StylizeError("the optimization diverged (no finite loss); try a lower style strength or "
                           "TV weight, or another init")
    failures = int((~torch.isfinite(trace[:, :, -1])).sum(0).max())
    if failures > MAX_RECOVERIES:
        raise StylizeError(f"the optimization diverged (non-finite loss at step {step}, "
                           f"{MAX_RECOVERIES} recoveries tried); try a lower style strength or "
                           "TV weight, or another init")


def _histories(trace: torch.Tensor, present: list[tuple[str, ...]]) -> list[list[tuple[int, dict[str, float]]]]:
    """Each item's losses at every evaluation so far, by step."""
    rows = trace.tolist()  # one transfer for the whole history
    return [[(k + 1, named(row[i], keep)) for k, row in enumerate(rows)] for i, keep in enumerate(present)]


def _bounds(contents: list[torch.Tensor | None], plan: Plan) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """Pixel bounds for the projection: [0, 1], or for luma the range that keeps each pixel's RGB in [0, 1]
    with the photo's chroma (so the delivered image is exactly the optimized luma plus that chroma)."""
    if not plan.luminance:
        return 0.0, 1.0
    ranges = [images.luma_range(c) for c in contents]
    return torch.cat([r[0] for r in ranges]), torch.cat([r[1] for r in ranges])


@torch.no_grad()
def _images(x: torch.Tensor, contents: list[torch.Tensor | None], plan: Plan) -> list[Image.Image]:
    """The delivered images: RGB, or the optimized luma with the photo's chroma."""
    out = []
    for item, photo in zip(x.detach(), contents):
        item = item.unsqueeze(0)
        rgb = images.with_content_colour(item, photo) if plan.luminance else item.expand(-1, 3, -1, -1)
        out.append(images.to_pil(rgb))
    return out
