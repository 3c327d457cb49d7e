"""The generator: it optimizes a batch of images with our L-BFGS and yields a `Frame` after every step.

A *step* is one L-BFGS iteration: one forward and backward pass through VGG-19 for the whole batch (no line
search, so exactly one loss evaluation). Each batch item has its own objective (photo, paintings, layers,
strength, init, seed): `Stylizer.run` makes one image, `Stylizer.run_batch` several of the same size at once.

What a frame reports belongs together: its image is each item's best evaluated image so far, and its losses
are that image's losses (L-BFGS evaluates an image before it moves on, so the last iterate is never the
evaluated one). Losses are read back from the device only on frames that report them (`report_every`).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from . import images, mrf
from .allocator import keep_freed_memory
from .errors import StylizeError
from .lbfgs import HISTORY, LBFGS
from .machine import Precision, default_device, precision_for, requested_precision
from .losses import content_loss, gram, style_layer_loss, tv_loss
from .masks import guided_gram, guided_style_loss, layer_masks, load_masks, normalize_masks
from .params import Settings
from .plan import schedule
from .vgg import FEATURE_LAYERS, VGGFeatures, carried, deepest, gram_of, layer_scales
from .weights import Weights, load_weights

keep_freed_memory()  # before any worker thread allocates: see allocator.py

TARGET_CACHE_SIZE = 32
MAX_RECOVERIES = 3  # non-finite losses survived (each undone by going back to the best image) before giving up
TERMS = ("content", "style", "tv")
# The longest L-BFGS step, as the RMS change of a pixel (0–1). Healthy steps measured ≤ 0.026 from the photo and
# ≤ 0.082 in the first steps from noise (shortened, those cost 0.4 % of loss after 100 steps); the steps that blew
# a run up after a level change, 0.12–0.65, slamming pixels into their bounds (Intel Xeon, bf16, 512 px, Tübingen ×
# The Starry Night; README, Performance).
MAX_STEP = 0.05
MRF_REMATCH_EVERY = 5  # steps between nearest-patch searches (the MRF model's cost; see README, Performance)
MRF_MAX_PATCHES = 4096  # style patches per layer and level: bounds the search's time and memory
# The patch loss pulls far harder per unit than the Gram loss: at the Gram model's default strength (20) the photo
# vanished under the painting's patches (Tübingen × The Starry Night, 384 px). Scaled so one strength gives a
# comparable balance in both models.
MRF_BALANCE = 0.05


@dataclass
class Job:
    """One image to make: a photo (None: texture synthesis), paintings (none: content reconstruction), settings."""

    content: Image.Image | None
    styles: Sequence[Image.Image]
    settings: Settings = field(default_factory=Settings)
    masks: Sequence[images.ImageSource] | None = None  # one per style: where on the photo each style goes


@dataclass
class Frame:
    """One optimization step. On reporting steps (and the last) it carries, per batch item, the best image so
    far, its losses and the loss history; on the others only the step counter and the time."""

    step: int
    total_steps: int
    elapsed: float
    size: tuple[int, int] = (0, 0)
    done: bool = False
    images: list[Image.Image] | None = None
    item_losses: list[dict[str, float]] | None = None
    histories: list[list[tuple[int, dict[str, float]]]] | None = None  # (step, losses of the image evaluated then)
    resets: list[int] | None = None  # guard interventions per item (steps undone)

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


def fingerprint(img: Image.Image) -> str:
    digest = hashlib.blake2b(img.tobytes(), digest_size=16)
    digest.update(repr((img.size, img.mode)).encode())
    return digest.hexdigest()


@dataclass
class _StyleLayer:
    """One style layer's Gram terms over the batch: one term per item, or per (item, region) with masks."""

    targets: torch.Tensor  # (T, N, N) Gram / M
    weights: torch.Tensor  # (T,)
    items: torch.Tensor | None = None  # (T,) the batch item of each term; None: term t is item t
    masks: torch.Tensor | None = None  # (T, 1, h, w) region weights at this layer's resolution
    rows: torch.Tensor | None = None  # (T,) each term's item among those the network carried to this layer


@dataclass
class _MrfTerm:
    """One item's patch model at one layer: the painting's patch bank and the current matches' target."""

    item: int
    layer: str
    bank: mrf.PatchBank
    weight: float
    target: mrf.MrfTarget | None = None
    row: int = 0  # the item among those the network carried to this layer
    index: torch.Tensor | None = None  # [item] on the device, made once (not a host-to-device copy per step)


@dataclass
class _Objective:
    """The batch's targets and weights at one size. Item b's loss is the paper's weighted sum of its terms;
    a layer an item does not use has weight 0 for it."""

    content: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]  # layer -> (targets (K, C, h, w),
    # weights (K,), the K items carried to the layer or None: all B)
    style: dict[str, _StyleLayer]
    mrf: list[_MrfTerm]
    tv: torch.Tensor  # (B,)
    tv_on: bool  # known on the host: no device read per step
    present: list[tuple[str, ...]]  # the terms each item reports
    depths: list[str] | None  # each item's deepest layer, where they differ: the network drops items past theirs
    evaluations: int = 0  # counts evaluations, for re-matching the MRF patches every few
    rematched: bool = False  # the last evaluation re-matched patches: the MRF items' objective changed

    @property
    def mrf_items(self) -> list[int]:
        return sorted({term.item for term in self.mrf})

    @property
    def wanted(self) -> set[str]:
        """The layers whose maps the losses read (a Gram layer's only for its size, or for masked terms)."""
        return set(self.content) | set(self.style) | {term.layer for term in self.mrf}

    @property
    def grams(self) -> set[str]:
        """The style layers whose Gram matrices the network computes on its way (all but masked ones)."""
        return {layer for layer, term in self.style.items() if term.masks is None}


@dataclass
class _Plan:
    """What a batch shares: sizes per level, steps per level, pooling, whether only luma is optimized."""

    sizes: list[tuple[int, int]]
    level_steps: list[int]
    pooling: str
    luminance: bool


class Stylizer:
    """A loaded VGG-19 on one device, shared by every run, with a cache of style and content targets."""

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
        self.history = HISTORY  # L-BFGS pairs kept (README, Performance: the history study)
        self.max_step: float | None = MAX_STEP  # L-BFGS trust region (see MAX_STEP)
        self._scales: dict[str, dict[str, float]] = {}
        self._targets: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()  # runs may share this engine from several threads

    def _network(self, dtype: torch.dtype) -> VGGFeatures:
        return VGGFeatures(self.weights.convs, self.weights.preprocess, dtype).to(self.device).eval()

    def __repr__(self) -> str:
        return f"Stylizer({self.weights.source} weights on {self.device}, {self.precision})"

    def scales(self, pooling: str) -> dict[str, float]:
        """Per-layer calibration (RMS response to a fixed image) for a pooling mode, measured once."""
        with self._lock:
            if pooling not in self._scales:
                self._scales[pooling] = layer_scales(self.net, pooling)
            return self._scales[pooling]

    # ---- targets -------------------------------------------------------------------------------

    def _features(self, key: tuple, image: torch.Tensor, layers: set[str], pooling: str, grams: bool) -> dict[str, torch.Tensor]:
        """Feature maps (or size-normalized Grams) of a fixed image, from a bounded LRU cache."""
        key = (*key, tuple(sorted(layers)), pooling, grams)
        with self._lock:
            if key in self._targets:
                self._targets.move_to_end(key)
                return self._targets[key]
        with torch.no_grad():
            feats = self.net(image, layers, pooling)
            if grams:
                feats = {name: gram(f)[0] / f[0, 0].numel() for name, f in feats.items()}
            else:
                feats = {name: f[0].float() for name, f in feats.items()}
        with self._lock:
            self._targets[key] = feats
            while len(self._targets) > TARGET_CACHE_SIZE:
                self._targets.popitem(last=False)
        return feats

    def _style_input(self, style: Image.Image, job: Job, content: torch.Tensor | None, longest: int) -> tuple[torch.Tensor, tuple]:
        """A style image as the network sees it at this level (resized, recoloured), and its cache key."""
        settings = job.settings
        side = round(longest * settings.style_scale)
        colour = settings.preserve_color if content is not None else "none"
        tensor = images.to_tensor(images.resize(style, images.fit_at_least(style.size, side)), self.device)
        if colour == "histogram":
            tensor = images.match_colour(tensor, content)
        elif colour == "luminance":
            tensor = images.match_luminance(images.luminance(tensor), content)
        content_id = fingerprint(images.to_pil(content)) if colour != "none" else ""
        return tensor, ("style", fingerprint(style), side, colour, content_id)

    def _style_grams(self, job: Job, content: torch.Tensor | None, longest: int) -> list[dict[str, torch.Tensor]]:
        """Each style image's Grams (/ M, so independent of the style image's size), by layer."""
        layers = set(job.settings.style_layer_weights())
        grams = []
        for style in job.styles:
            tensor, key = self._style_input(style, job, content, longest)
            grams.append(self._features(key, tensor, layers, job.settings.pooling, grams=True))
        return grams

    def _mrf_terms(self, item: int, job: Job, content: torch.Tensor | None, longest: int) -> list[_MrfTerm]:
        """Patch banks of the job's paintings (all styles pooled) at each MRF layer, weighted like style layers."""
        s = job.settings
        layers = s.mrf_layer_names
        scales = self.scales(s.pooling)
        feats = [self._features(key, tensor, set(layers), s.pooling, grams=False)
                 for tensor, key in (self._style_input(style, job, content, longest) for style in job.styles)]
        terms = []
        for layer in layers:
            banks = [mrf.patch_bank(f[layer][None].to(self.net.dtype).contiguous(memory_format=torch.channels_last),
                                    s.mrf_patch, max_patches=MRF_MAX_PATCHES // len(feats), seed=s.seed, layer=layer)
                     for f in feats]
            raw = torch.cat([b.raw for b in banks])
            bank = mrf.PatchBank(raw=raw, normalized=torch.cat([b.normalized for b in banks]))
            terms.append(_MrfTerm(item, layer, bank, MRF_BALANCE * s.style_strength / len(layers) / scales[layer] ** 2))
        return terms

    def _objective(self, jobs: Sequence[Job], contents: list[torch.Tensor | None], size: tuple[int, int],
                   plan: _Plan) -> _Objective:
        """Targets for every item at one level's size, stacked over the batch."""
        b = len(jobs)
        scales = self.scales(plan.pooling)
        content: dict[str, tuple[list, list]] = {}
        grams: dict[str, list] = {}  # layer -> [(item, target, weight, region mask or None)]
        mrf_terms: list[_MrfTerm] = []
        present, depths = [], []
        for i, (job, photo) in enumerate(zip(jobs, contents)):
            s, terms = job.settings, []
            if photo is not None:
                layer = s.content_layer
                key = ("content", fingerprint(job.content), size, plan.luminance)
                target = self._features(key, self._content_input(photo, plan), {layer}, plan.pooling, grams=False)[layer]
                targets, weights = content.setdefault(layer, ([None] * b, [0.0] * b))
                targets[i], weights[i] = target, 1.0 / (target.numel() * scales[layer] ** 2)
                terms.append("content")
            if job.styles and s.style_model == "mrf":
                mrf_terms += self._mrf_terms(i, job, photo, max(size))
                terms.append("style")
            elif job.styles:
                per_style = self._style_grams(job, photo, max(size))
                regions = self._regions(job, size)
                for layer, w in s.style_layer_weights().items():
                    weight = s.style_strength * w / scales[layer] ** 4
                    entries = grams.setdefault(layer, [])
                    if regions is None:  # the blend of the styles' Grams, everywhere
                        blend = sum(bw * g[layer] for bw, g in zip(s.blend_weights(len(job.styles)), per_style))
                        entries.append((i, blend, weight, None))
                    else:  # each style's own Gram, in its own region
                        entries += [(i, g[layer], weight, regions[layer][r]) for r, g in enumerate(per_style)]
                terms.append("style")
            if s.tv_weight:
                terms.append("tv")
            present.append((*terms, "total"))
            layers = {name for name, (_, weights) in content.items() if weights[i]}
            layers |= {name for name, entries in grams.items() if any(e[0] == i for e in entries)}
            layers |= {term.layer for term in mrf_terms if term.item == i}
            depths.append(deepest(layers) if layers else FEATURE_LAYERS[0])
        depths_or_none = depths if len(set(depths)) > 1 else None
        for term in mrf_terms:
            term.row = carried(depths_or_none, term.layer, b).index(term.item)
            term.index = torch.tensor([term.item], device=self.device)
        return _Objective(content={k: self._stack(*v, carried(depths_or_none, k, b)) for k, v in content.items()},
                          style={k: self._style_layer(v, carried(depths_or_none, k, b), b) for k, v in grams.items()},
                          mrf=mrf_terms,
                          tv=torch.tensor([j.settings.tv_weight for j in jobs], device=self.device),
                          tv_on=any(j.settings.tv_weight for j in jobs),
                          present=present, depths=depths_or_none)

    def _regions(self, job: Job, size: tuple[int, int]) -> dict[str, torch.Tensor] | None:
        """The job's masks at this size, normalized where they overlap, at each style layer's resolution."""
        if not job.masks:
            return None
        masks, _ = load_masks(list(job.masks), len(job.styles), size)
        weights, _ = normalize_masks(masks)
        return layer_masks(weights.to(self.device), job.settings.style_layer_weights(), "avg")

    def _style_layer(self, entries: list[tuple], carried_items: list[int], b: int) -> _StyleLayer:
        """Stack one layer's terms: one per item using the layer, or per (item, region) with masks."""
        targets = torch.stack([t for _, t, _, _ in entries])
        weights = torch.tensor([w for _, _, w, _ in entries], device=self.device)
        items = [i for i, _, _, _ in entries]
        if all(m is None for *_, m in entries) and items == list(range(b)):
            return _StyleLayer(targets, weights)
        masks = None
        if any(m is not None for *_, m in entries):
            like = next(m for *_, m in entries if m is not None)
            masks = torch.stack([m if m is not None else torch.ones_like(like) for *_, m in entries])
        rows = [carried_items.index(i) for i in items]
        return _StyleLayer(targets, weights, torch.tensor(items, device=self.device), masks,
                           torch.tensor(rows, device=self.device))

    def _stack(self, targets: list[torch.Tensor | None], weights: list[float],
               carried_items: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One content layer's targets and weights for the items the network carries to it (weight 0: unused)."""
        like = next(t for t in targets if t is not None)
        stacked = torch.stack([targets[i] if targets[i] is not None else torch.zeros_like(like) for i in carried_items])
        stacked = stacked.contiguous(memory_format=torch.channels_last)  # as the features: F − P reads both in order
        rows = None if len(carried_items) == len(targets) else torch.tensor(carried_items, device=self.device)
        return stacked, torch.tensor([weights[i] for i in carried_items], device=self.device), rows

    @staticmethod
    def _content_input(content: torch.Tensor, plan: _Plan) -> torch.Tensor:
        return images.luma(content) if plan.luminance else content

    # ---- the loss -----------------------------------------------------------------------------

    def losses(self, x: torch.Tensor, objective: _Objective, pooling: str) -> torch.Tensor:
        """The weighted terms per item, (B, 4): content, style, tv and their sum, which L-BFGS minimizes."""
        # Convolutions in bf16 or fp32; Grams and losses in fp32.
        feats = self.net(x, objective.wanted, pooling, objective.depths, grams=objective.grams)
        zero = torch.zeros(x.shape[0], device=x.device)
        content, style = zero, zero
        for layer, (target, weight, rows) in objective.content.items():
            loss = weight * content_loss(feats[layer], target)
            content = content + loss if rows is None else content.index_add(0, rows, loss)
        for layer, term in objective.style.items():
            f = feats[layer]
            n, m = f.shape[1], f[0, 0].numel()
            if term.masks is None:
                g = feats[gram_of(layer)]
                if term.items is None:
                    style = style + term.weights * style_layer_loss(g, term.targets * m, n, m)
                    continue
                g = g if g.shape[0] == 1 else g.index_select(0, term.rows)
                per_term = style_layer_loss(g, term.targets * m, n, m)
            else:
                f = f if f.shape[0] == 1 else f.index_select(0, term.rows)  # one image: its regions broadcast
                per_term = guided_style_loss(f, term.masks, term.targets, n)
            style = style.index_add(0, term.items, term.weights * per_term)
        rematch = objective.evaluations % MRF_REMATCH_EVERY == 0
        objective.rematched = bool(objective.mrf) and rematch
        for term in objective.mrf:
            f = feats[term.layer][term.row:term.row + 1]
            if rematch or term.target is None:
                matches = mrf.nearest_patches(f.detach(), term.bank, layer=term.layer)
                term.target = mrf.mrf_target(term.bank, matches, f.detach(), term.layer)
            style = style.index_add(0, term.index,
                                    (term.weight * mrf.target_loss(f, term.target)).view(1).float())
        objective.evaluations += 1
        tv = objective.tv * tv_loss(x) if objective.tv_on else zero
        return torch.stack([content, style, tv, content + style + tv], dim=1)

    @torch.no_grad()
    def evaluate(self, image: Image.Image, content: Image.Image | None, styles: Sequence[Image.Image],
                 settings: Settings, masks: Sequence[images.ImageSource] | None = None) -> dict[str, float]:
        """The objective's terms for a finished (8-bit) image, as a user receives it: how results are judged.

        With luminance-only transfer the delivered image is the optimized luma plus the photo's chroma, so its
        luma is what is scored. `masks` as for `run`.
        """
        job = Job(content, list(styles), settings.replace(size=max(image.size)), masks)
        plan = self._plan([job])
        photo = images.to_tensor(images.resize(content, image.size), self.device) if content is not None else None
        x = images.to_tensor(image, self.device)
        x = images.luma(x) if plan.luminance else x
        objective = self._objective([job], [photo], image.size, plan)
        values = self.losses(x, objective, plan.pooling)[0].tolist()
        return {term: value for term, value in zip((*TERMS, "total"), values) if term in objective.present[0]}

    # ---- the generator ------------------------------------------------------------------------

    def run(self, content: Image.Image | None, styles: Sequence[Image.Image], settings: Settings | None = None,
            report_every: int | Callable[[int], bool] = 10,
            masks: Sequence[images.ImageSource] | None = None) -> Iterator[Frame]:
        """One image: yield a `Frame` after every L-BFGS step, reporting images and losses every `report_every`
        steps (or where the predicate says so) and at the end.

        `content=None` synthesizes the style's texture from noise; no `styles` reconstructs the content
        from the chosen layer (the paper's Fig. 1 experiments). `masks` (one per style) paint each style into
        its region of the photo (Gatys et al. 2017); pixels no mask covers keep the photo. Closing the iterator
        stops the run at once.
        """
        return self.run_batch([Job(content, list(styles), settings or Settings(), masks)], report_every)

    def run_batch(self, jobs: Sequence[Job], report_every: int | Callable[[int], bool] = 10) -> Iterator[Frame]:
        """Several images of the same size optimized together (one VGG pass per step); see `run`.

        Items may differ in photo, paintings, layers, strength, init and seed; they must agree on what fixes
        the shape of the work: output size, steps, levels, pooling and colour mode.
        """
        jobs = list(jobs)
        if not jobs:
            raise StylizeError("nothing to run")
        for job in jobs:
            if job.content is None and not job.styles:
                raise StylizeError("give a content image, a style image, or both")
            if job.settings.init == "style" and not job.styles:
                raise StylizeError("init 'style' needs a style image")
        plan = self._plan(jobs)
        for job in jobs:  # bad masks are reported before any work
            if job.masks:
                if job.content is None:
                    raise StylizeError("masks need a photo: they say where on it each style goes")
                if job.settings.style_model != "gram":
                    raise StylizeError("masks work with the Gram style model; choose style_model 'gram'")
                load_masks(list(job.masks), len(job.styles), plan.sizes[-1])
            if job.settings.style_model == "mrf" and job.styles:
                self._check_mrf(job, plan)
        report = report_every if callable(report_every) else (lambda step, n=max(1, report_every): step % n == 0)
        return self._optimize(jobs, plan, report)

    def _check_mrf(self, job: Job, plan: _Plan) -> None:
        """A patch must fit the smallest feature map it will be matched on (output and style, every level)."""
        s = job.settings
        for layer in s.mrf_layer_names:
            down = 2 ** (int(layer[4]) - 1)
            for size in plan.sizes[:1]:
                style = images.fit_at_least(job.styles[0].size, round(max(size) * s.style_scale))
                for w, h in (size, style):
                    if min(w // down, h // down) < s.mrf_patch:
                        raise StylizeError(f"patch {s.mrf_patch} is larger than {layer}'s {w // down}×{h // down} "
                                           "feature map at this size; use a smaller patch, a shallower layer or a "
                                           "larger size")

    def _plan(self, jobs: Sequence[Job]) -> _Plan:
        first = jobs[0].settings
        finals = {images.fit_size((j.content or j.styles[0]).size, j.settings.size) for j in jobs}
        shared = {(j.settings.steps, j.settings.scales, j.settings.pooling, self._luminance(j)) for j in jobs}
        if len(finals) > 1 or len(shared) > 1:
            raise StylizeError("a batch's images must share output size, steps, levels, pooling and colour mode")
        final = finals.pop()
        sizes, level_steps = schedule(final, first.scales, first.steps)
        return _Plan(sizes, level_steps, first.pooling, self._luminance(jobs[0]))

    @staticmethod
    def _luminance(job: Job) -> bool:
        return job.settings.preserve_color == "luminance" and job.content is not None

    def _optimize(self, jobs: list[Job], plan: _Plan, report: Callable[[int], bool]) -> Iterator[Frame]:
        started = time.perf_counter()
        total_steps, step, b = sum(plan.level_steps), 0, len(jobs)
        trace = torch.zeros(total_steps, b, len(TERMS) + 1, device=self.device)  # losses of every evaluation
        x: torch.Tensor | None = None
        optimizer: LBFGS | None = None
        for level, (size, steps) in enumerate(zip(plan.sizes, plan.level_steps)):
            contents = [images.to_tensor(images.resize(j.content, size), self.device) if j.content is not None else None
                        for j in jobs]
            objective = self._objective(jobs, contents, size, plan)
            lower, upper = self._bounds(contents, plan)
            x = self._initial(x, size, jobs, contents, plan).clamp(lower, upper).requires_grad_(True)
            optimizer = None  # the last level's history goes before this level's is allocated
            optimizer = LBFGS(x, history=self.history, lower=lower, upper=upper, max_step=self.max_step)
            best_terms = torch.zeros(b, len(TERMS) + 1, device=self.device)
            for _ in range(steps):
                with torch.enable_grad():
                    terms = self.losses(x, objective, plan.pooling)
                    (grad,) = torch.autograd.grad(terms[:, -1].sum(), x)
                if objective.rematched:  # new matches, a new objective: losses before are not comparable
                    optimizer.rebase(objective.mrf_items)
                optimizer.step(terms[:, -1].detach(), grad)
                terms = terms.detach()
                best_terms = torch.where(optimizer.improved[:, None], terms, best_terms)
                trace[step] = terms
                step += 1
                last = step == total_steps
                if not (last or report(step)):
                    yield Frame(step, total_steps, time.perf_counter() - started, size)
                    continue
                resets = optimizer.resets.tolist()
                if not torch.isfinite(optimizer.best_loss).all():
                    raise StylizeError("the optimization diverged (no finite loss); try a lower style strength or "
                                       "TV weight, or another init")
                failures = int((~torch.isfinite(trace[:step, :, -1])).sum(0).max())
                if failures > MAX_RECOVERIES:
                    raise StylizeError(f"the optimization diverged (non-finite loss at step {step}, "
                                       f"{MAX_RECOVERIES} recoveries tried); try a lower style strength or "
                                       "TV weight, or another init")
                yield Frame(step, total_steps, time.perf_counter() - started, size, done=last,
                            images=self._images(optimizer.best, contents, plan),
                            item_losses=self._named(best_terms, objective.present),
                            histories=self._histories(trace[:step], objective.present), resets=resets)

    @staticmethod
    def _named(terms: torch.Tensor, present: list[tuple[str, ...]]) -> list[dict[str, float]]:
        names = (*TERMS, "total")
        return [{n: v for n, v in zip(names, row) if n in keep} for row, keep in zip(terms.tolist(), present)]

    @staticmethod
    def _histories(trace: torch.Tensor, present: list[tuple[str, ...]]) -> list[list[tuple[int, dict[str, float]]]]:
        names = (*TERMS, "total")
        rows = trace.tolist()  # one transfer for the whole history
        return [[(k + 1, {n: v for n, v in zip(names, row[i]) if n in keep}) for k, row in enumerate(rows)]
                for i, keep in enumerate(present)]

    def _bounds(self, contents: list[torch.Tensor | None], plan: _Plan) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """Pixel bounds for the projection: [0, 1], or for luma the range that keeps each pixel's RGB in [0, 1]
        with the photo's chroma (so the delivered image is exactly the optimized luma plus that chroma)."""
        if not plan.luminance:
            return 0.0, 1.0
        ranges = [images.luma_range(c) for c in contents]
        return torch.cat([r[0] for r in ranges]), torch.cat([r[1] for r in ranges])

    def _initial(self, previous: torch.Tensor | None, size: tuple[int, int], jobs: list[Job],
                 contents: list[torch.Tensor | None], plan: _Plan) -> torch.Tensor:
        width, height = size
        if previous is not None:  # coarse-to-fine: upsample the last level's result
            return F.interpolate(previous.detach(), size=(height, width), mode="bicubic", align_corners=False)
        starts = []
        for job, photo in zip(jobs, contents):
            init = job.settings.init if photo is not None or job.settings.init == "style" else "noise"
            if init == "content":
                x = self._content_input(photo, plan)
            elif init == "style":
                x = images.to_tensor(images.resize(job.styles[0], size), self.device)
                x = images.luma(x) if plan.luminance else x
            else:
                gen = torch.Generator().manual_seed(job.settings.seed)
                x = torch.rand(1, 1 if plan.luminance else 3, height, width, generator=gen).to(self.device)
            starts.append(x)
        return torch.cat(starts).contiguous()

    @staticmethod
    def _images(x: torch.Tensor, contents: list[torch.Tensor | None], plan: _Plan) -> list[Image.Image]:
        with torch.no_grad():
            out = []
            for item, photo in zip(x.detach(), contents):
                item = item.unsqueeze(0)
                rgb = images.with_content_colour(item, photo) if plan.luminance else item.expand(-1, 3, -1, -1)
                out.append(images.to_pil(rgb))
            return out


