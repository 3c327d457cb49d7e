"""What a request may cost on this machine: limits per request, defaults sized to a time budget, GPU batches that fit the GPU's free
memory, and ZeroGPU durations the platform accepts.

Every figure here is computed from the time model (timing.StepCost) or from activation sizes; none is tuned to
one machine.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

from stylize.engine.precision import time_floor
from stylize.engine.targets import MRF_MAX_PATCHES
from stylize.engine.vgg import BLOCKS
from stylize.errors import StylizeError
from stylize.params import Settings

from .timing import GPU_PROBE_SIZE, StepCost

log = logging.getLogger(__name__)

RUN_BUDGET_S = 45  # a default run ends within this on any machine
# Off ZeroGPU, one request (a run, a comparison, a grid, an enlargement) may be estimated at most this long. The
# scheduler shares the machine fairly, so a long request no longer holds later visitors (it takes its share); the
# ceiling bounds what one visitor may take of a shared CPU in all, and room for a 2,048 px print on a CPU. ZeroGPU
# has its own duration check.
MAX_REQUEST_ENV = "STYLIZE_MAX_REQUEST_S"
MAX_REQUEST_S = 900
COMPARE_BUDGET_S = 60  # and a default comparison of COMPARE_PRESETS presets
COMPARE_PRESETS = 3
# Estimates aim this far under a budget: the first comes from a small probe, and a machine's speed drifts.
SAFETY = 0.8
SIZE_STEP = 32
# Below MIN_DEFAULT_SIZE a default run shrinks its steps instead (down to 30 a level over 3 levels: by then a run has
# most of its look); a comparison is many pictures at once, and may be smaller.
MIN_DEFAULT_SIZE = 320
MIN_COMPARE_SIZE = 160
MIN_DEFAULT_STEPS = 90

# GPU memory per pixel of one batch item, computed (not measured): VGG-19 activations kept for the backward pass
# to relu5_1 (each conv's output and its ReLU: 580 values a pixel), the L-BFGS history (2·20 fp32 RGB images) and
# the backward's transient gradients (×1.5): one 1024×768 image in fp32 ≈ 3.3 GB, in bf16 ≈ 2.1 GB.
ACTIVATION_VALUES_PER_PIXEL = 2 * (2 * 64 + 2 * 128 / 4 + 4 * 256 / 16 + 4 * 512 / 64 + 512 / 256)
HISTORY_BYTES_PER_PIXEL = 2 * 20 * 3 * 4
TRANSIENT = 1.5
GPU_RESERVE_BYTES = 1 << 30  # cuDNN workspaces, the weights' copies, the allocator's slack
# Where the driver cannot say what is free (`torch.cuda.mem_get_info` failed): plan as if 8 GB were, half the
# smallest GPU a Space offers (a T4's 16 GB). One 1024×768 image (3.3 GB in fp32) still runs, two to a batch.
GPU_FREE_FALLBACK_BYTES = 8 << 30
# After a run, PyTorch's cache (memory reserved but unused) goes back to the driver when the driver has less than
# this share of the card free: other processes and cuDNN's workspaces (not from the cache) need it more than the
# next run needs the cache's speed.
TIGHT_SHARE = 0.25

# The patch (MRF) model adds, per batch item (mrf.py, targets.py): at each MRF layer one bank of at most
# MRF_MAX_PATCHES k×k patches (all of the item's paintings together), held twice (the targets and the unit-norm
# filters) in the network's dtype, and while the targets are laid a fp32 copy of a bf16 bank; per output pixel, each
# layer's laid target (C channels + the cover, fp32) at the layer's share of the pixels, and while re-matching the
# response of MATCH_CHUNK patches at one layer at a time (mrf.nearest_patches's chunk), in the network's dtype.
MATCH_CHUNK = 1024

# ZeroGPU (Hugging Face's shared GPUs): a task asks for its duration up front; the platform multiplies it by the
# GPU's duration factor (spaces/zero/client.py) and refuses a request over its maximum ("ZeroGPU illegal
# duration"), which is 300 s for a logged-in visitor; the quota left to a visitor is often less.
ZEROGPU_MAX_S = 300
TILE_OVERHEAD = 1.5  # a tiled level's step over a whole pass: halos and the Grams' pass (measured at 2,048 px on a CPU)
ZEROGPU_START_S = 10  # the worker's start, the weights onto the GPU, the targets
ZEROGPU_MARGIN = 1.5  # asked over the estimate: a task that outlives its request is aborted
ZEROGPU_FLOOR_S = 20
ZEROGPU_DEFAULT_S = 60  # what the default run may ask for, so a visitor can run several


def fit_defaults(cost: StepCost, base: Settings, budget_s: float, max_size: int, batch: int = 1,
                 seconds: Callable[[Settings], float] | None = None, safety: float = SAFETY,
                 min_size: int = MIN_DEFAULT_SIZE) -> Settings:
    """`base` at the largest size (a multiple of 32, at most `max_size`) whose estimate fits `budget_s` × `safety`;
    below `min_size` the steps shrink instead (not under MIN_DEFAULT_STEPS). `seconds(settings)` overrides the
    estimate (ZeroGPU budgets the duration asked, not the run)."""
    seconds = seconds or (lambda s: cost.seconds(s, batch=batch))
    target = budget_s * safety
    min_size = min(min_size, max_size)
    top = max(min_size, max_size // SIZE_STEP * SIZE_STEP)
    for size in range(top, min_size - 1, -SIZE_STEP):
        fitted = base.replace(size=size)
        if seconds(fitted) <= target:
            return fitted
    fitted = base.replace(size=min_size)
    steps = min(base.steps, math.floor(base.steps * target / seconds(fitted)))
    while steps > MIN_DEFAULT_STEPS and seconds(fitted.replace(steps=steps)) > target:
        steps -= 1  # the targets' passes do not shrink with the steps
    return fitted.replace(steps=max(steps, MIN_DEFAULT_STEPS))


def bytes_per_pixel(bf16: bool) -> float:
    """GPU memory one batch item needs per output pixel (computed; see ACTIVATION_VALUES_PER_PIXEL)."""
    return TRANSIENT * (ACTIVATION_VALUES_PER_PIXEL * (2 if bf16 else 4) + HISTORY_BYTES_PER_PIXEL)


def layer_shape(layer: str) -> tuple[int, int]:
    """(channels, stride) of a VGG-19 feature layer such as relu3_1: (256, 4)."""
    block = int(layer.removeprefix("relu").removeprefix("conv").split("_")[0])
    return BLOCKS[block - 1][1], 2 ** (block - 1)


def patch_bank_bytes(layers: Sequence[str], patch: int, bf16: bool) -> float:
    """GPU memory one batch item's patch banks take whatever the size (see MATCH_CHUNK's comment)."""
    per_value = 2 * (2 if bf16 else 4) + (4 if bf16 else 0)
    return sum(MRF_MAX_PATCHES * layer_shape(layer)[0] * patch * patch * per_value for layer in layers)


def mrf_bytes_per_pixel(layers: Sequence[str], bf16: bool) -> float:
    """What the patch model adds per output pixel to the Gram model's `bytes_per_pixel` (see MATCH_CHUNK's comment)."""
    shapes = [layer_shape(layer) for layer in layers]
    held = sum((channels + 1) * 4 / stride**2 for channels, stride in shapes)
    return held + max(MATCH_CHUNK * (2 if bf16 else 4) / stride**2 for _, stride in shapes)


def item_memory(settings: Settings | None, bf16: bool) -> tuple[float, float]:
    """(bytes per output pixel, fixed bytes) one batch item needs: the Gram model's, or the patch model's."""
    if settings is None or settings.style_model != "mrf":
        return bytes_per_pixel(bf16), 0.0
    layers = settings.mrf_layer_names
    return (bytes_per_pixel(bf16) + mrf_bytes_per_pixel(layers, bf16),
            patch_bank_bytes(layers, settings.mrf_patch, bf16))


def usable_gpu_bytes(free: float, reserved: float, allocated: float) -> float:
    """What new work may use: the driver's free memory (`mem_get_info`) plus what PyTorch's cache reserved but no
    tensor uses, which the driver counts as taken but the next batch gets first."""
    return free + max(reserved - allocated, 0.0)


def memory_is_tight(free: float, total: float) -> bool:
    """Whether the driver has less than TIGHT_SHARE of the card free (then the cache goes back after a run)."""
    return free < TIGHT_SHARE * total


def gpu_free_bytes(device) -> float:
    """The memory a batch may plan with on `device` now (`usable_gpu_bytes`); GPU_FREE_FALLBACK_BYTES, with a log
    line, where the driver cannot say."""
    import torch

    try:
        free, _ = torch.cuda.mem_get_info(device)
    except Exception as exc:  # no driver, a lost device, an old driver without cudaMemGetInfo
        log.warning("torch.cuda.mem_get_info failed (%s): planning GPU batches as if %.0f GB were free",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__, GPU_FREE_FALLBACK_BYTES / 2**30)
        return float(GPU_FREE_FALLBACK_BYTES)
    return usable_gpu_bytes(free, torch.cuda.memory_reserved(device), torch.cuda.memory_allocated(device))


def release_cache_if_tight(device) -> bool:
    """After a run: hand PyTorch's unused cache back to the driver if the driver's free memory is short; True if it
    did."""
    import torch

    try:
        free, total = torch.cuda.mem_get_info(device)
    except Exception:  # nothing to read, nothing to release: gpu_free_bytes logs the failure where it matters
        return False
    if not memory_is_tight(free, total) or torch.cuda.memory_reserved(device) <= torch.cuda.memory_allocated(device):
        return False
    torch.cuda.empty_cache()
    return True


def plan_batches(pixels: Sequence[int], free_bytes: float, per_pixel: float | Sequence[float], max_items: int,
                 reserve: float = GPU_RESERVE_BYTES, fixed: float | Sequence[float] = 0.0) -> list[list[int]]:
    """Indices of items (each `pixels[k]` output pixels at `per_pixel` bytes, plus `fixed` bytes: one figure for
    all or one per item) grouped, in order, into batches that fit `free_bytes` less `reserve`, at most `max_items`
    each. An item that fits alone in no batch is refused with what to change."""
    room = free_bytes - reserve
    per_pixels = [per_pixel] * len(pixels) if isinstance(per_pixel, (int, float)) else list(per_pixel)
    fixeds = [fixed] * len(pixels) if isinstance(fixed, (int, float)) else list(fixed)
    batches: list[list[int]] = []
    used = 0.0
    for k, count in enumerate(pixels):
        need = count * per_pixels[k] + fixeds[k]
        if need > room:
            raise StylizeError(f"one image of {count / 1e6:.1f} MP needs about {need / 2**30:.1f} GB of GPU memory; "
                               f"{max(room, 0) / 2**30:.1f} GB are free: use a smaller size")
        if batches and used + need <= room and len(batches[-1]) < max_items:
            batches[-1].append(k)
            used += need
        else:
            batches.append([k])
            used = need
    return batches


@dataclass(frozen=True)
class ZeroGpu:
    """ZeroGPU's rules for this Space's GPU: its duration factor (spaces' own config for the GPU it runs on)."""

    duration_factor: float = 1.0

    @classmethod
    def here(cls) -> "ZeroGpu":
        """The factor `spaces` applies on this machine (1.0 where spaces cannot say)."""
        try:
            from spaces.zero.config import get_config
        except ImportError:
            return cls()
        return cls(float(get_config()["duration_factor"]))

    @staticmethod
    def request(estimate_s: float) -> int:
        """The duration to ask for, in seconds, for a task estimated at `estimate_s`."""
        return max(ZEROGPU_FLOOR_S, math.ceil(ZEROGPU_START_S + ZEROGPU_MARGIN * estimate_s))

    def charged(self, request_s: int) -> float:
        """What the platform makes of a request: scaled by the GPU's duration factor (as spaces computes it)."""
        return request_s * self.duration_factor

    def check(self, request_s: int, what: str = "this run") -> None:
        charged = self.charged(request_s)
        if charged > ZEROGPU_MAX_S:
            factor = f" ({request_s} s × this GPU's factor {self.duration_factor:g})" if self.duration_factor != 1 else ""
            raise StylizeError(f"{what} would ask ZeroGPU for {charged:.0f} s{factor}, more than the {ZEROGPU_MAX_S} s "
                               "a task may take: use fewer steps, a smaller size or fewer images")


MAX_STYLES = 4  # style images per run: the painting plus up to three more
MAX_COMPARE = 6  # presets per comparison


# A finished result may be enlarged to this long side (#33): in tiles where memory needs them, so the limit is
# time, not memory (a CPU's 2,048 px takes minutes; README, Print size).
MAX_ENLARGE = {"cpu": 2048, "cuda": 4096}


@dataclass(frozen=True)
class Limits:
    """What one request may ask of this machine."""

    max_size: int
    max_steps: int
    max_styles: int = MAX_STYLES
    max_compare: int = MAX_COMPARE
    max_enlarge: int = MAX_ENLARGE["cpu"]

    @classmethod
    def for_device(cls, device_type: str, defaults: Settings) -> "Limits":
        if device_type == "cuda":
            return cls(max(2048, defaults.size), max(2000, defaults.steps), max_enlarge=MAX_ENLARGE["cuda"])
        return cls(max(512, defaults.size), max(1000, defaults.steps))

    def check_enlarge(self, longest: int) -> None:
        """Refuse an enlargement past this machine's print size, with what to change."""
        if longest > self.max_enlarge:
            raise StylizeError(f"{longest} px is above this machine's {self.max_enlarge} px for an enlargement; "
                               "choose a smaller factor")

    def check(self, settings: Settings) -> None:
        """Refuse a size or step count beyond this machine's, with what to change."""
        problems = [f"{name} {getattr(settings, name)} is above this machine's {limit}{unit}"
                    for name, limit, unit in (("size", self.max_size, " px"), ("steps", self.max_steps, ""))
                    if getattr(settings, name) > limit]
        if problems:
            raise StylizeError("; ".join(problems))


class Budget:
    """This machine's time model and what follows from it: defaults that fit a time budget, the estimate shown
    before a click, and on ZeroGPU the duration each task asks for (checked before asking)."""

    def __init__(self, device_type: str, cost: StepCost, zerogpu: ZeroGpu | None = None,
                 max_seconds: float | None = None) -> None:
        """`max_seconds`: the ceiling per request off ZeroGPU (None: $STYLIZE_MAX_REQUEST_S, default 900; 0: none)."""
        self.device_type, self.cost, self.zerogpu = device_type, cost, zerogpu
        self.max_seconds = ceiling() if max_seconds is None else max_seconds

    @classmethod
    def for_engine(cls, engine, device_type: str, zero_gpu: bool = False) -> "Budget":
        """The time model for an engine (a `Stylizer`, or None if none loaded): its precision probe on a CPU, a bare
        pass timed now on a dedicated GPU, and on ZeroGPU (no GPU in the server process) a computed default that
        the runs' reports refine."""
        if zero_gpu or engine is None:
            return cls(device_type, StepCost.from_floor(None), ZeroGpu.here() if zero_gpu else None)
        if device_type == "cuda":
            return cls("cuda", StepCost.from_floor(time_floor(engine.net, engine.device, GPU_PROBE_SIZE), GPU_PROBE_SIZE))
        return cls("cpu", StepCost.from_floor(engine.chosen.floors.get(engine.precision)))

    def seconds(self, settings: Settings, batch: int = 1, styles: int = 1, aspect: tuple[int, int] = (4, 3)) -> float:
        """The estimated time of a run (or a batch of `batch` runs) of a photo of this aspect, in seconds."""
        return self.cost.seconds(settings, aspect, batch=batch, styles=styles)

    def request(self, settings: Settings, batch: int = 1, styles: int = 1, aspect: tuple[int, int] = (4, 3)) -> int:
        """The duration a ZeroGPU task for this work asks for (before the platform's duration factor)."""
        return ZeroGpu.request(self.seconds(settings, batch, styles, aspect))

    def fit(self, base: Settings, budget_s: float, max_size: int, batch: int = 1,
            min_size: int = MIN_DEFAULT_SIZE) -> Settings:
        """`base` as large as fits the budget (`fit_defaults`); on ZeroGPU, as large as a charged request of at
        most ZEROGPU_DEFAULT_S allows (the request already has its margin over the estimate)."""
        if self.zerogpu is None:
            return fit_defaults(self.cost, base, budget_s, max_size, batch, min_size=min_size)
        zerogpu = self.zerogpu
        return fit_defaults(self.cost, base, ZEROGPU_DEFAULT_S, max_size, batch, safety=1.0, min_size=min_size,
                            seconds=lambda s: zerogpu.charged(self.request(s, batch)))

    def enlarge_seconds(self, source: tuple[int, int], longest: int, steps: int, tiled_above: float) -> float:
        """The estimated wall time of an enlargement: its levels' megapixel-steps, levels past `tiled_above` pixels
        counted TILE_OVERHEAD times (halos and the Grams' own pass), plus each level's targets, and the per-step
        overhead of every step (the time model's, as for any run)."""
        from stylize.engine.enlarge import enlarge_sizes

        work, levels = 0.0, enlarge_sizes(source, longest)
        for w, h in levels:
            work += (w * h / 1e6) * (steps * (TILE_OVERHEAD if w * h > tiled_above else 1.0) + 2)
        return self.cost.seconds_per_mpx * work + self.cost.ratio * self.cost.overhead * steps * len(levels)

    def enlarge_estimate(self, source: tuple[int, int], longest: int, steps: int, tiled_above: float) -> str:
        """The estimate beside *Make it bigger*: "≈ 9 min on this CPU"."""
        return self.describe(self.enlarge_seconds(source, longest, steps, tiled_above))

    def check(self, settings: Settings, batch: int = 1, styles: int = 1, what: str = "this run",
              aspect: tuple[int, int] = (4, 3)) -> None:
        """Refuse work whose ZeroGPU request the platform would refuse, or, elsewhere, whose estimate is over the
        ceiling per request, with what to change."""
        if self.zerogpu is not None:
            self.zerogpu.check(self.request(settings, batch, styles, aspect), what)
        else:
            self.check_seconds(self.seconds(settings, batch, styles, aspect), what)

    def check_seconds(self, seconds: float, what: str = "this run") -> None:
        """Off ZeroGPU: refuse an estimate over the ceiling per request, naming what to lower."""
        if self.zerogpu is None and self.max_seconds and seconds > self.max_seconds:
            raise StylizeError(f"{what} would take ≈ {duration(seconds)} on this {self._machine}, more than the "
                               f"{duration(self.max_seconds)} one request may take here: lower the steps, the size "
                               "or the number of images")

    @property
    def _machine(self) -> str:
        return "GPU" if self.device_type == "cuda" else "CPU"

    def estimate(self, settings: Settings, batch: int = 1, styles: int = 1, aspect: tuple[int, int] = (4, 3)) -> str:
        """The estimate a visitor sees before the click: "≈ 40 s on this CPU"."""
        return self.describe(self.seconds(settings, batch, styles, aspect))

    def describe(self, seconds: float) -> str:
        """Work of `seconds` in a visitor's words; on ZeroGPU with the duration it would ask for."""
        text = f"≈ {duration(seconds)}"
        if self.zerogpu is not None:
            return f"{text} of GPU time (asks ZeroGPU for {self.zerogpu.charged(ZeroGpu.request(seconds)):.0f} s)"
        over = (f" — over the {duration(self.max_seconds)} a request may take here"
                if self.max_seconds and seconds > self.max_seconds else "")
        return f"{text} on this {self._machine}{over}"


def ceiling() -> float:
    """The ceiling per request off ZeroGPU, from $STYLIZE_MAX_REQUEST_S (seconds; 0 for none)."""
    raw = os.environ.get(MAX_REQUEST_ENV, "").strip()
    try:
        value = float(raw) if raw else MAX_REQUEST_S
    except ValueError:
        value = -1
    if not value >= 0:
        raise StylizeError(f"{MAX_REQUEST_ENV}={raw!r} is not a number of seconds (0 for no ceiling)")
    return value


def duration(seconds: float) -> str:
    if seconds < 1:
        return "1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


# ---- admission: how many runs the scheduler keeps active at once -------------------------------------------------

# Runs active at once. More do not make the machine faster (same-shape runs batch; others take turns), but each
# holds its memory and stretches every active run's time: a few on a CPU's handful of cores, more on a GPU.
MAX_ACTIVE = {"cpu": 8, "cuda": 16}
MAX_ACTIVE_ENV = "STYLIZE_MAX_RUNS"
CPU_MEMORY_SHARE = 0.5  # of the memory available at start-up: the rest stays the system's and the server's


def admission(device_type: str, free_bytes: float) -> tuple[int, float]:
    """(runs active at once, the memory they may hold together): `$STYLIZE_MAX_RUNS` or the device type's
    default (1 serves runs one after another, as before the scheduler), within `free_bytes` (a CPU: a share of the
    memory available; a GPU: what is free less the reserve)."""
    import os

    runs = int(os.environ.get(MAX_ACTIVE_ENV) or MAX_ACTIVE.get(device_type, 4))
    if runs < 1:
        raise StylizeError(f"{MAX_ACTIVE_ENV} must be 1 or more (got {runs})")
    share = CPU_MEMORY_SHARE * free_bytes if device_type == "cpu" else free_bytes - GPU_RESERVE_BYTES
    return runs, max(share, 0.0)


def run_memory(pixels: int, settings: Sequence[Settings], bf16: bool) -> float:
    """The memory a run of one image per `settings`, each of `pixels` output pixels, holds at its largest level."""
    return sum(per_pixel * pixels + fixed for per_pixel, fixed in (item_memory(s, bf16) for s in settings))
