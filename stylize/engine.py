"""The L-BFGS generator: it optimizes the image's pixels and yields a `Frame` after every step.

A *step* is one L-BFGS iteration: one forward and backward pass through VGG-19 (no line search, so
exactly one loss evaluation). Pixels stay in [0, 1] by projection: the image is clamped in place before
each evaluation, never inside the loss, where clipped pixels would get no gradient.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from . import images
from .errors import StylizeError
from .losses import content_loss, gram, style_layer_loss, tv_loss
from .params import Settings
from .vgg import VGGFeatures, layer_scales
from .weights import Weights, load_weights

LBFGS_HISTORY = 100
TARGET_CACHE_SIZE = 16
MAX_RECOVERIES = 3  # non-finite losses survived (by restoring the last good image) before a run gives up


@dataclass
class Frame:
    """One optimization step's report; `image` is set on preview steps and on the last frame."""

    step: int
    total_steps: int
    losses: dict[str, float]
    elapsed: float
    image: Image.Image | None = None
    size: tuple[int, int] = (0, 0)
    done: bool = False

    @property
    def eta(self) -> float:
        """Seconds left, assuming the remaining steps cost what the finished ones did on average."""
        return self.elapsed / self.step * (self.total_steps - self.step) if self.step else math.nan


PRECISIONS = ("auto", "fp32", "bf16")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_precision(device: torch.device) -> str:
    """bf16 where the hardware computes it natively (AVX512-BF16/AMX CPUs, Ampere+ GPUs), else fp32."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):
        return "fp32"


def fingerprint(img: Image.Image) -> str:
    digest = hashlib.blake2b(img.tobytes(), digest_size=16)
    digest.update(repr((img.size, img.mode)).encode())
    return digest.hexdigest()


@dataclass
class _Objective:
    """Targets and per-layer weights for one size: the weighted sum of the paper's three terms."""

    content_layer: str
    content_target: torch.Tensor | None
    content_weight: float
    style_targets: dict[str, torch.Tensor]  # Gram / M: independent of the style image's size
    style_weights: dict[str, float]
    tv_weight: float

    @property
    def wanted(self) -> set[str]:
        """The feature layers this objective reads."""
        return set(self.style_targets) | ({self.content_layer} if self.content_target is not None else set())


class Stylizer:
    """A loaded VGG-19 on one device, shared by every run, with a cache of style and content targets."""

    def __init__(self, weights: Weights | None = None, device: torch.device | str | None = None,
                 precision: str = "auto") -> None:
        self.weights = weights or load_weights()
        self.device = torch.device(device) if device else default_device()
        if precision not in PRECISIONS:
            raise StylizeError(f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
        self.precision = native_precision(self.device) if precision == "auto" else precision
        if self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cuda.matmul.allow_tf32 = True
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.net = VGGFeatures(self.weights.convs, self.weights.preprocess, dtype).to(self.device).eval()
        self.scales = layer_scales(self.net)
        self._targets: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self._targets_lock = threading.Lock()  # runs may share this engine from several threads

    def __repr__(self) -> str:
        return f"Stylizer({self.weights.source} weights on {self.device}, {self.precision})"

    # ---- targets -------------------------------------------------------------------------------

    def _features(self, key: tuple, image: torch.Tensor, layers: set[str], pooling: str, grams: bool) -> dict[str, torch.Tensor]:
        """Feature maps (or size-normalized Grams) of a fixed image, from a bounded LRU cache."""
        key = (*key, tuple(sorted(layers)), pooling, grams)
        with self._targets_lock:
            if key in self._targets:
                self._targets.move_to_end(key)
                return self._targets[key]
        with torch.no_grad():
            feats = self.net(image, layers, pooling)
            if grams:
                feats = {name: gram(f)[0] / f[0, 0].numel() for name, f in feats.items()}
        with self._targets_lock:
            self._targets[key] = feats
            while len(self._targets) > TARGET_CACHE_SIZE:
                self._targets.popitem(last=False)
        return feats

    def _style_targets(self, styles: Sequence[Image.Image], blend: list[float], content: torch.Tensor | None,
                       longest: int, settings: Settings) -> dict[str, torch.Tensor]:
        layers = set(settings.style_layer_weights())
        side = max(images.MIN_SIDE, round(longest * settings.style_scale))
        content_id = fingerprint(images.to_pil(content)) if content is not None and settings.preserve_color != "none" else ""
        total: dict[str, torch.Tensor] = {}
        for style, weight in zip(styles, blend):
            if weight == 0:
                continue
            tensor = images.to_tensor(images.resize(style, images.fit_size(style.size, side)), self.device)
            if content is not None and settings.preserve_color == "histogram":
                tensor = images.match_colour(tensor, content)
            elif content is not None and settings.preserve_color == "luminance":
                tensor = images.match_luminance(images.luminance(tensor), content)
            key = ("style", fingerprint(style), side, settings.preserve_color, content_id)
            for name, target in self._features(key, tensor, layers, settings.pooling, grams=True).items():
                total[name] = total.get(name, 0) + weight * target
        return total

    def _objective(self, content: torch.Tensor | None, content_id: str, styles: Sequence[Image.Image],
                   blend: list[float], settings: Settings) -> _Objective:
        height, width = (content.shape[-2:] if content is not None else (0, 0))
        content_target, content_weight = None, 0.0
        if content is not None:
            key = ("content", content_id, (width, height), settings.preserve_color)
            layer = settings.content_layer
            target = self._features(key, self._content_input(content, settings), {layer}, settings.pooling, grams=False)[layer]
            content_target = target
            content_weight = 1.0 / (target.numel() * self.scales[layer] ** 2)
        style_targets, style_weights = {}, {}
        if styles:
            longest = max(width, height) if content is not None else settings.size
            style_targets = self._style_targets(styles, blend, content, longest, settings)
            style_weights = {name: settings.style_strength * w / self.scales[name] ** 4
                             for name, w in settings.style_layer_weights().items()}
        return _Objective(settings.content_layer, content_target, content_weight, style_targets, style_weights,
                          settings.tv_weight)

    @staticmethod
    def _content_input(content: torch.Tensor, settings: Settings) -> torch.Tensor:
        return images.luminance(content) if settings.preserve_color == "luminance" else content

    # ---- the loss -----------------------------------------------------------------------------

    def losses(self, x: torch.Tensor, objective: _Objective, pooling: str) -> dict[str, torch.Tensor]:
        """The weighted terms and their sum for image `x`: what L-BFGS minimizes."""
        feats = self.net(x, objective.wanted, pooling)  # convs in bf16 or fp32; Grams, losses fp32
        terms: dict[str, torch.Tensor] = {}
        if objective.content_target is not None:
            f = feats[objective.content_layer]
            terms["content"] = objective.content_weight * content_loss(f, objective.content_target)
        if objective.style_targets:
            style = x.new_zeros(())
            for name, weight in objective.style_weights.items():
                f = feats[name]
                n, m = f.shape[1], f[0, 0].numel()
                style = style + weight * style_layer_loss(gram(f), objective.style_targets[name] * m, n, m)
            terms["style"] = style
        if objective.tv_weight:
            terms["tv"] = objective.tv_weight * tv_loss(x)
        terms["total"] = sum(terms.values())
        return terms

    @torch.no_grad()
    def evaluate(self, image: Image.Image, content: Image.Image | None, styles: Sequence[Image.Image],
                 settings: Settings) -> dict[str, float]:
        """The objective's terms for a finished (8-bit) image, as a user receives it: how results are judged."""
        x = images.to_tensor(image, self.device)
        content_t = images.to_tensor(images.resize(content, image.size), self.device) if content is not None else None
        if content_t is not None and settings.preserve_color == "luminance":
            x = images.luminance(x)
        blend = settings.blend_weights(len(styles)) if styles else []
        objective = self._objective(content_t, fingerprint(content) if content is not None else "", list(styles), blend,
                                    settings.replace(size=max(image.size)))
        return {k: float(v) for k, v in self.losses(x, objective, settings.pooling).items()}

    # ---- the generator ------------------------------------------------------------------------

    def run(self, content: Image.Image | None, styles: Sequence[Image.Image], settings: Settings | None = None,
            preview_every: int = 10) -> Iterator[Frame]:
        """Yield a `Frame` after every L-BFGS step, with an image every `preview_every` steps and at the end.

        `content=None` synthesizes the style's texture from noise; no `styles` reconstructs the content
        from the chosen layer (the paper's Fig. 1 experiments). Closing the iterator stops the run at once.
        """
        settings = settings or Settings()
        styles = list(styles)
        if content is None and not styles:
            raise StylizeError("give a content image, a style image, or both")
        blend = settings.blend_weights(len(styles)) if styles else []
        reference = content if content is not None else styles[0]
        final = images.fit_size(reference.size, settings.size)
        init = settings.init if content is not None or settings.init == "style" else "noise"
        if init == "style" and not styles:
            raise StylizeError("init 'style' needs a style image")
        sizes = _level_sizes(final, settings.scales)
        level_steps = _split_steps(settings.steps, len(sizes))
        return self._optimize(content, styles, blend, settings, sizes, level_steps, init, max(1, preview_every))

    def _optimize(self, content_img: Image.Image | None, styles: list[Image.Image], blend: list[float],
                  settings: Settings, sizes: list[tuple[int, int]], level_steps: list[int], init: str,
                  preview_every: int) -> Iterator[Frame]:
        started = time.perf_counter()
        total_steps, step = sum(level_steps), 0
        content_id = fingerprint(content_img) if content_img is not None else ""
        x: torch.Tensor | None = None
        recoveries = 0
        for size, steps in zip(sizes, level_steps):
            content = images.to_tensor(images.resize(content_img, size), self.device) if content_img is not None else None
            objective = self._objective(content, content_id, styles, blend, settings.replace(size=max(size)))
            x = self._initial(x, size, content, styles, settings, init)
            optimizer = _lbfgs(x)
            evaluated, good = x.detach().clone(), x.detach().clone()  # last evaluated / last finite image
            terms: dict[str, torch.Tensor] = {}

            def closure() -> torch.Tensor:
                nonlocal terms
                with torch.no_grad():
                    x.clamp_(0, 1)
                    evaluated.copy_(x)
                optimizer.zero_grad(set_to_none=False)
                with torch.enable_grad():
                    terms = self.losses(x, objective, settings.pooling)
                    terms["total"].backward()
                return terms["total"]

            level_end = step + steps
            while step < level_end:  # a recovered step is repeated, so every level does all its steps
                optimizer.step(closure)
                losses = {k: float(v.detach()) for k, v in terms.items()}
                if not (math.isfinite(losses["total"]) and bool(torch.isfinite(x).all())):
                    recoveries += 1
                    if recoveries > MAX_RECOVERIES:
                        raise StylizeError(f"the optimization diverged (non-finite loss at step {step + 1}, "
                                           f"{MAX_RECOVERIES} recoveries tried); try a lower style strength or "
                                           "TV weight, or another init")
                    with torch.no_grad():  # back to the last good image, with a fresh L-BFGS history
                        x.copy_(good)
                    optimizer = _lbfgs(x)
                    continue
                good.copy_(evaluated)
                step += 1
                last = step == total_steps
                show = last or step % preview_every == 0
                image = self._frame_image(x, content, settings) if show else None
                yield Frame(step, total_steps, losses, time.perf_counter() - started, image, size, done=last)

    def _initial(self, previous: torch.Tensor | None, size: tuple[int, int], content: torch.Tensor | None,
                 styles: list[Image.Image], settings: Settings, init: str) -> torch.Tensor:
        width, height = size
        if previous is not None:  # coarse-to-fine: upsample the last level's result
            x = F.interpolate(previous.detach(), size=(height, width), mode="bicubic", align_corners=False)
        elif init == "content":
            x = self._content_input(content, settings)
        elif init == "style":
            x = images.to_tensor(images.resize(styles[0], size), self.device)
            x = images.luminance(x) if settings.preserve_color == "luminance" else x
        else:
            gen = torch.Generator().manual_seed(settings.seed)
            x = torch.rand(1, 1 if settings.preserve_color == "luminance" else 3, height, width, generator=gen)
            x = x.expand(-1, 3, -1, -1).to(self.device)
        return x.clamp(0, 1).contiguous().requires_grad_(True)

    @staticmethod
    def _frame_image(x: torch.Tensor, content: torch.Tensor | None, settings: Settings) -> Image.Image:
        with torch.no_grad():
            out = x.detach().clamp(0, 1)
            if settings.preserve_color == "luminance" and content is not None:
                out = images.with_content_colour(out, content)
            return images.to_pil(out)


def _lbfgs(x: torch.Tensor) -> torch.optim.LBFGS:
    """L-BFGS as the paper's reference code uses it: history 100, no line search, never stopping early."""
    return torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=LBFGS_HISTORY, tolerance_grad=-1.0,
                             tolerance_change=-1.0)


def _level_sizes(final: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """Coarse-to-fine sizes, halving from `final`, skipping levels too small for the network."""
    sizes = []
    for k in range(levels - 1, -1, -1):
        w, h = (round(final[0] / 2**k), round(final[1] / 2**k))
        if min(w, h) >= images.MIN_SIDE:
            sizes.append((w, h))
    return sizes or [final]


def _split_steps(steps: int, levels: int) -> list[int]:
    """Steps per level, coarse to fine: each coarser level gets half the steps of the next finer one."""
    shares = [2.0**k for k in range(levels)]  # e.g. 3 levels: 1/7, 2/7, 4/7
    counts = [max(1, int(steps * share / sum(shares))) for share in shares]
    counts[-1] = max(1, steps - sum(counts[:-1]))
    return counts
