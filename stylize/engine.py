"""The generator: it optimizes a batch of images with our L-BFGS and yields a `Frame` after every step.

A *step* is one L-BFGS iteration: one forward and backward pass through VGG-19 for the whole batch (no line
search, so exactly one loss evaluation). Each batch item has its own objective (photo, paintings, layers,
strength, init, seed): `Stylizer.run` makes one image, `Stylizer.run_batch` several of the same size at once.

What a frame reports belongs together: its image is each item's best evaluated image so far, and its losses
are that image's losses (L-BFGS evaluates an image before it moves on, so the last iterate is never the
evaluated one). Losses are read back from the device only on frames that report them (`report_every`), at the
end, and when the caller stops the run (`should_stop`).

The parts: plan.py lays the batch out, targets.py computes and caches what fixed images give the objective,
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

from . import images
from .allocator import keep_freed_memory
from .errors import StylizeError
from .lbfgs import HISTORY, LBFGS
from .machine import Precision, default_device, precision_for, requested_precision
from .masks import load_masks
from .objective import COLUMNS, Objective, build, named
from .params import Settings
from .plan import Job, Plan, check_patch_fit, plan_batch
from .targets import Targets, fingerprint
from .vgg import VGGFeatures
from .weights import Weights, load_weights

__all__ = ["Frame", "Job", "Stylizer", "fingerprint"]

keep_freed_memory()  # before any worker thread allocates: see allocator.py

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
        """Seconds left, assuming the remaining steps cost what the finished ones did on average."""
        return self.elapsed / self.step * (self.total_steps - self.step) if self.step else math.nan


ReportEvery = int | Callable[[int], bool]


class Stylizer:
    """A loaded VGG-19 on one device, shared by every run (from any thread), with its targets cached."""

    def __init__(self, weights: Weights | None = None, device: torch.device | str | None = None,
                 precision: str | None = None) -> None:
        """`precision`: 'fp32', 'bf16', or 'auto' (the faster here, measured once per process: machine.py);
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

    def run_batch(self, jobs: Sequence[Job], report_every: ReportEvery = 10,
                  should_stop: Callable[[], bool] | None = None) -> Iterator[Frame]:
        """Several images of the same size optimized together (one VGG pass per step); see `run`.

        Items may differ in photo, paintings, layers, strength, init and seed; they must agree on what fixes
        the shape of the work: output size, steps, levels, pooling and colour mode. Everything that can be
        refused is refused here, before the first step.
        """
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
        return self._optimize(jobs, plan, report, should_stop or (lambda: False))

    def _optimize(self, jobs: list[Job], plan: Plan, report: Callable[[int], bool],
                  should_stop: Callable[[], bool]) -> Iterator[Frame]:
        started = time.perf_counter()
        total_steps, step, b = plan.total_steps, 0, len(jobs)
        trace = torch.zeros(total_steps, b, len(COLUMNS), device=self.device)  # losses of every evaluation
        x: torch.Tensor | None = None
        optimizer: LBFGS | None = None
        for size, steps in zip(plan.sizes, plan.level_steps):
            contents = [images.to_tensor(images.resize(j.content, size), self.device) if j.content is not None else None
                        for j in jobs]
            objective = build(jobs, contents, size, plan, self.targets)
            lower, upper = _bounds(contents, plan)
            x = self._initial(x, size, jobs, contents, plan).clamp(lower, upper).requires_grad_(True)
            optimizer = None  # the last level's history goes before this level's is allocated
            optimizer = LBFGS(x, history=self.history, lower=lower, upper=upper, max_step=self.max_step)
            best_terms = torch.zeros(b, len(COLUMNS), device=self.device)
            for evaluation in range(steps):
                rematch = objective.rematch_due(evaluation)
                with torch.enable_grad():
                    terms = self.losses(x, objective, rematch=rematch)
                    (grad,) = torch.autograd.grad(terms[:, -1].sum(), x)
                if rematch:  # new matches, a new objective for those items: their losses before are not comparable
                    optimizer.rebase(objective.mrf_items)
                optimizer.step(terms[:, -1].detach(), grad)
                terms = terms.detach()
                best_terms = torch.where(optimizer.improved[:, None], terms, best_terms)
                trace[step] = terms
                step += 1
                last = step == total_steps
                stopped = not last and should_stop()
                if not (last or stopped or report(step)):
                    yield Frame(step, total_steps, time.perf_counter() - started, size)
                    continue
                resets = optimizer.resets.tolist()
                _check_finite(optimizer, trace[:step], step)
                yield Frame(step, total_steps, time.perf_counter() - started, size, done=last,
                            images=_images(optimizer.best, contents, plan),
                            item_losses=[named(row, keep) for row, keep in zip(best_terms.tolist(), objective.present)],
                            histories=_histories(trace[:step], objective.present), resets=resets, stopped=stopped)
                if stopped:
                    return

    def _initial(self, previous: torch.Tensor | None, size: tuple[int, int], jobs: list[Job],
                 contents: list[torch.Tensor | None], plan: Plan) -> torch.Tensor:
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
                x = plan.optimized(images.to_tensor(images.resize(job.styles[0], size), self.device))
            else:
                gen = torch.Generator().manual_seed(job.settings.seed)  # on the CPU: one seed, one image anywhere
                x = torch.rand(1, 1 if plan.luminance else 3, height, width, generator=gen).to(self.device)
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
