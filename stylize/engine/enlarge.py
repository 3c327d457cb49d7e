"""Print size: a finished result grown ×2 or ×4, coarse to fine from that result (Gatys et al. 2017), in tiles where
one network pass at the level's size would not fit the memory it may use.

Why not go straight at 2,048 px: the network's receptive field is a fixed number of pixels (~170 px at relu5_1),
so at 2,048 px it sees strokes a few pixels wide and the painting's swirls are lost (the issue's run: style loss
scored at 512 px 1.7× the 512 px run's). So the picture is made where the network sees it (the result given, e.g.
512 px), and each level √2 larger starts from the previous one upsampled and takes a few steps: the composition and
the strokes are already there, the new level adds detail at its own scale.

Style scale: the composition, the swirls and the strokes' relative size come up with the result itself (each level
starts from the last one, and a few steps do not move what the deep layers see); at each level the painting is
sized as in an ordinary run (`style_scale` × the level's longest side) but never past its own pixels
(`Enlargement._style_side`): a 1,024 px scan enlarged to 2,048 px would give Grams of blur, and the new level would
be painted smooth. So the fine levels get the painting's real brushwork at its real size — the detail a print
needs — while the picture seen whole keeps the small result's strokes.

The picture seen whole is kept by construction (back-projection, as in super-resolution): every evaluated image is
first moved so that its area-average at the result's size is the result (x ← x + U(s − D(x)), D: area average down
to the result's size, U: bilinear up), and the gradient loses the same low frequencies (g ← g − U(D(g))). So the
steps add only what the small result has no pixels for. Without it, six steps from a blurry upsampled image filled
it with grain that changed the picture at the small size too (style loss scored at 512 px 5× the small result's at
1,024 px; README, Print size).

Tiles: the loss of a level is the whole picture's (its Grams are of the whole image), only its evaluation is split.
Each tile is the picture's *core* region plus a halo as wide as the deepest layer's reach (`reach`: 85 px at
relu5_1, rounded up to 96), so the core's features are exactly the whole image's; one pass without gradients sums
the cores' Grams, then a pass per tile backpropagates the Gram loss's gradient (a fixed (G − A) per layer) and the
content loss of its core, and the tiles' input gradients add up to the whole image's gradient — one L-BFGS step on
the whole image. The tile grid moves every step (`tiles`), so no border stays where it was.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from stylize import images
from stylize.errors import StylizeError

from .loop import ReportEvery, Run, Stylizer
from .losses import calm_loss, content_loss, gram, positions, transposed_product, tv_loss
from .objective import Objective
from .schedule import SCALE_RATIO, Job, Plan, luminance_only
from .vgg import BLOCKS, deepest

# From scratch, a size above DIRECT_MAX is made at COARSE_SIZE (where the network sees the painting's strokes) and
# enlarged from there (the command line's --size 2048).
COARSE_SIZE = 512
DIRECT_MAX = 1024
ENLARGE_STEPS = 6  # L-BFGS steps per level: the look is set by the result given; each level adds its detail
# The trust region of an enlargement's steps (RMS change of a pixel, 0–1): a level adds detail a few grey levels
# deep, and a run's own trust region (loop.MAX_STEP, 0.05) let the first steps after a level change overshoot: lone
# pixels slammed into their bounds (white specks, dark dots along edges) and a weave in flat sky (README, Print size).
ENLARGE_MAX_STEP = 0.01
# Calm weighs k^CALM_POWER at k× the result's size (`Enlargement._enter_next_level`). Measured at 2,048 px (README,
# Print size): the lattice in flat sky 4.7 with k², 4.3 with k³, 2.2 with k⁴, 2.3 with k⁵ (less detail elsewhere).
CALM_POWER = 4
FACTORS = (2, 4)
ALIGN = 16  # tile borders on multiples of relu5_1's stride: the tiles' pooling grid is the whole image's
# Memory one network pass (forward and backward to relu5_1) holds per input pixel, measured on a CPU (maximum
# resident set, 1024×768, torch 2.14): 2.87 kB in fp32, 1.64 kB in bf16.
PASS_BYTES_PER_PIXEL = {"fp32": 2870.0, "bf16": 1640.0}
CPU_PASS_BUDGET = 4 << 30  # what one pass may hold on a CPU (the 2,048 px run stays under 12 GB with the rest)
GPU_PASS_SHARE = 0.5  # of the GPU's free memory when the level starts
MAX_PIECE = 1.5  # an end piece shorter than half a tile joins its neighbour: pieces up to 1.5 tiles long


def enlarge_sizes(source: tuple[int, int], longest: int,
                  shape: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """The levels from a result of size `source` to `longest` px on its long side: √2 apart, the last exactly the
    target — of `shape`'s aspect ratio if given (the photo's: what a run from scratch makes), else the result's (a
    level within 10 % of the target is skipped)."""
    target = images.fit_size(shape or source, longest)
    if max(target) <= max(source):
        raise StylizeError(f"the result is already {source[0]}×{source[1]}: enlarge to a larger size")
    sizes = []
    k = 1
    while max(source) * SCALE_RATIO**k < max(target) / 1.1:
        sizes.append((round(source[0] * SCALE_RATIO**k), round(source[1] * SCALE_RATIO**k)))
        k += 1
    return [*sizes, target]


def reach(layer: str) -> int:
    """Pixels of the input on each side of a position that its features at `layer` depend on (the receptive
    field's radius): 85 at relu5_1."""
    block, conv = int(layer[4]), int(layer.split("_")[1])
    radius = conv  # this block's convolutions up to the layer, in the block's units
    for b in range(block - 1, 0, -1):
        radius = 2 * radius + 1 + BLOCKS[b - 1][0]  # back through the pooling, then block b's convolutions
    return radius


def halo_for(layers: set[str]) -> int:
    """The halo a tile needs so that its core's features at `layers` are the whole image's, on ALIGN."""
    return math.ceil(reach(deepest(layers)) / ALIGN) * ALIGN


def pass_bytes(pixels: float, precision: str) -> float:
    """Memory one network pass over `pixels` input pixels holds (PASS_BYTES_PER_PIXEL)."""
    return pixels * PASS_BYTES_PER_PIXEL.get(precision, PASS_BYTES_PER_PIXEL["fp32"])


def tile_side(budget: float, halo: int, precision: str) -> int:
    """The tile's side (a multiple of ALIGN) whose largest piece with its halo fits `budget` in one pass."""
    box = math.sqrt(budget / PASS_BYTES_PER_PIXEL.get(precision, PASS_BYTES_PER_PIXEL["fp32"]))
    return max(4 * ALIGN, int((box - 2 * halo) / MAX_PIECE) // ALIGN * ALIGN)


def pieces(length: int, side: int, offset: int) -> list[tuple[int, int]]:
    """One axis cut into pieces of `side` with borders at `offset` + k·`side` (multiples of ALIGN); an end piece
    shorter than half a side joins its neighbour."""
    borders = [b for b in range(offset % side, length, side) if b > 0]
    cuts = [0, *borders, length]
    if len(cuts) > 2 and cuts[1] - cuts[0] < side / 2:
        del cuts[1]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < side / 2:
        del cuts[-2]
    return list(zip(cuts[:-1], cuts[1:]))


def offsets(step: int, side: int) -> tuple[int, int]:
    """Where the grid's borders start at a step (x, y): a low-discrepancy walk over the tile, so the borders of
    successive steps fall in different places."""
    golden = (math.sqrt(5) - 1) / 2
    fx, fy = (step * golden) % 1.0, (step * golden + 0.5) % 1.0
    return round(fx * side / ALIGN) * ALIGN, round(fy * side / ALIGN) * ALIGN


Box = tuple[int, int, int, int]  # x0, y0, x1, y1


def tiles(size: tuple[int, int], side: int, halo: int, step: int) -> list[tuple[Box, Box]]:
    """(core, box) per tile at a step: cores cover the image once, each box is its core plus the halo (within
    the image). One tile, the whole image, where it fits."""
    width, height = size
    ox, oy = offsets(step, side)
    out = []
    for y0, y1 in pieces(height, side, oy):
        for x0, x1 in pieces(width, side, ox):
            out.append(((x0, y0, x1, y1), (max(0, x0 - halo), max(0, y0 - halo),
                                           min(width, x1 + halo), min(height, y1 + halo))))
    return out


def _crop(maps: torch.Tensor, core: Box, box: Box, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """The core's positions of a tile's maps at a layer of this stride (to the map's end where the core ends at
    the image's edge)."""
    x0, y0 = (core[0] - box[0]) // stride, (core[1] - box[1]) // stride
    x1 = (core[2] - box[0]) // stride if core[2] < size[0] else None
    y1 = (core[3] - box[1]) // stride if core[3] < size[1] else None
    return maps[:, :, y0:y1, x0:x1]


def stride_of(layer: str) -> int:
    return 2 ** (int(layer[4]) - 1)


def tiled_evaluate(net, objective: Objective, x: torch.Tensor, grid: list[tuple[Box, Box]]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The terms (1, 5) and the gradient of an image's objective, computed tile by tile (see the module's
    docstring): equal to `Objective.losses` and its gradient up to rounding."""
    if objective.mrf or any(t.masks is not None or t.items is not None for t in objective.style.values()) \
            or any(t.items is not None for t in objective.content.values()) or x.shape[0] != 1:
        raise StylizeError("tiles work with one image and the Gram model without painted regions")
    size = (x.shape[-1], x.shape[-2])
    wanted = set(objective.content) | set(objective.style)
    x = x.detach()
    sums = {layer: 0.0 for layer in objective.style}
    counts = {layer: 0 for layer in objective.style}
    with torch.no_grad():  # the whole image's Grams, core by core
        for core, box in grid:
            feats = net(x[..., box[1]:box[3], box[0]:box[2]], set(objective.style), objective.pooling)
            for layer in objective.style:
                f = _crop(feats[layer], core, box, stride_of(layer), size)
                sums[layer] = sums[layer] + transposed_product(positions(f))[0]
                counts[layer] += f.shape[-1] * f.shape[-2]
            del feats
    style = torch.zeros((), device=x.device)
    pulls = {}  # dLoss/dG per layer: fixed for this evaluation
    for layer, term in objective.style.items():
        g, m, n = sums[layer], counts[layer], term.targets.shape[-1]
        diff = g - term.targets[0] * m
        style = style + term.weights[0] * diff.pow(2).sum() / (4.0 * n * n * m * m)
        pulls[layer] = term.weights[0] * diff / (2.0 * n * n * m * m)
    grad = torch.zeros_like(x)
    content = torch.zeros((), device=x.device)
    for core, box in grid:
        part = x[..., box[1]:box[3], box[0]:box[2]].clone().requires_grad_(True)
        with torch.enable_grad():
            feats = net(part, wanted, objective.pooling)
            total = torch.zeros((), device=x.device)
            for layer, pull in pulls.items():
                f = _crop(feats[layer], core, box, stride_of(layer), size)
                total = total + (pull * gram(f)[0]).sum()
            for layer, term in objective.content.items():
                stride = stride_of(layer)
                f = _crop(feats[layer], core, box, stride, size)
                target = _crop(term.targets, core, (0, 0, *size), stride, size)
                loss = term.weights[0] * content_loss(f, target)[0]
                content = content + loss.detach()
                total = total + loss
            (g,) = torch.autograd.grad(total, part)
        grad[..., box[1]:box[3], box[0]:box[2]] += g
        del feats, total, g, part
    zero = torch.zeros((), device=x.device)
    with torch.enable_grad():
        whole = x.clone().requires_grad_(True)
        tv = objective.tv[0] * tv_loss(whole)[0] if objective.tv_on else zero
        calm = objective.calm[0] * calm_loss(whole, objective.calm_maps)[0] if objective.calm_maps is not None \
            else zero
        if tv.requires_grad or calm.requires_grad:
            grad += torch.autograd.grad(tv + calm, whole)[0]
    terms = torch.stack([content, style, tv.detach(), calm.detach(), content + style + tv.detach() + calm.detach()])
    return terms[None], grad


class Enlargement(Run):
    """A finished result grown coarse to fine: a `Run` whose first level starts from the result upsampled, with a
    short L-BFGS history, stepped alone (its shape is its own) and evaluated in tiles where a whole pass would
    not fit `pass_budget` bytes."""

    def __init__(self, engine: Stylizer, job: Job, source: Image.Image, plan: Plan, report: Callable[[int], bool],
                 should_stop: Callable[[], bool], pass_budget: float | None = None) -> None:
        super().__init__(engine, [job], plan, report, should_stop)
        self.shareable = False
        self.source = source
        self.pass_budget = pass_budget
        self.halo = halo_for(set(job.settings.layers_in_use))
        self.borders: list[tuple[int, list[int], list[int]]] = []  # (level, x borders, y borders) per tiled step
        rgb = images.to_tensor(source.convert("RGB"), engine.device)
        self.x = images.luma(rgb) if plan.luminance else rgb  # entering level 0 upsamples it
        self.small = self.x.clone()  # what the picture must stay, seen at the result's size (back-projection)

    def _enter_next_level(self) -> None:
        """As any level, with the smoothness terms carried up: TV and calm are means of squared neighbour
        differences, which fall with the square of the magnification for the same picture, so at k× the
        result's size TV weighs k² as much. Calm weighs k^CALM_POWER: where the photo is flat a level starts
        smooth (the upsampled result), so calm, which pushes back only on roughness already there, barely acts in
        a level's few steps while the Gram loss fills the sky with fine texture (README, Print size)."""
        super()._enter_next_level()
        k = max(self.plan.sizes[self.level]) / max(self.small.shape[-2:])
        self.objective.tv = self.objective.tv * k**2
        self.objective.calm = self.objective.calm * k**CALM_POWER

    def _style_side(self, size: tuple[int, int]) -> int | None:
        """The level's longest side, or less where the paintings would be enlarged past their own pixels."""
        styles = self.jobs[0].styles
        if not styles:
            return None
        own = max(max(style.size) for style in styles) / self.jobs[0].settings.style_scale
        return max(1, min(max(size), round(own)))

    def _history(self) -> int:
        return self._history_at(self.level)

    def _max_step(self) -> float:
        return min(ENLARGE_MAX_STEP, self.engine.max_step or ENLARGE_MAX_STEP)

    def budget(self) -> float:
        """Bytes one pass may hold now: the given budget, else the CPU's, else a share of the GPU's free memory."""
        if self.pass_budget is not None:
            return self.pass_budget
        if self.engine.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.engine.device)
            return GPU_PASS_SHARE * free
        return CPU_PASS_BUDGET

    def tiled(self, size: tuple[int, int]) -> bool:
        """Whether a level of this size is evaluated in tiles: one pass over it would not fit the budget."""
        return pass_bytes(size[0] * size[1], self.engine.precision) > self.budget()

    def tile_side(self) -> int:
        return tile_side(self.budget(), self.halo, self.engine.precision)

    def memory_bytes(self) -> float:
        """What the run holds at its largest level: one pass (a tile's or the whole image's), the image and its
        L-BFGS history, the photo."""
        width, height = self.plan.sizes[-1]
        pixels = width * height
        box = (MAX_PIECE * self.tile_side() + 2 * self.halo) ** 2
        passing = pass_bytes(min(pixels, box), self.engine.precision)
        channels = 1 if self.plan.luminance else 3
        history = (2 * self._history_at(-1) + 8) * channels * 4 * pixels
        return passing + history + 3 * 4 * pixels

    def _history_at(self, level: int) -> int:
        """As many pairs as the level has steps (at most the engine's): at 2,048 px each pair is 75 MB."""
        return max(2, min(self.engine.history, self.plan.level_steps[level]))

    def evaluate(self, rematch: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The level's terms and gradient at the back-projected image, the gradient without the low frequencies
        the small result fixes; in tiles where a whole pass would not fit."""
        size = self.plan.sizes[self.level]
        with torch.no_grad():
            self.x.add_(self._up(self.small - self._down(self.x)))
            self.x.clamp_(self.optimizer.lower, self.optimizer.upper)
        if self.tiled(size):
            grid = tiles(size, self.tile_side(), self.halo, self.step)
            self.borders.append((self.level, sorted({c[0] for c, _ in grid} - {0}),
                                 sorted({c[1] for c, _ in grid} - {0})))
            terms, grad = tiled_evaluate(self.engine.net, self.objective, self.x, grid)
        else:
            terms, grad = super().evaluate(rematch)
        return terms, grad - self._up(self._down(grad))

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        """Seen at the small result's size: the area average."""
        return F.adaptive_avg_pool2d(x.detach(), self.small.shape[-2:])

    def _up(self, small: torch.Tensor) -> torch.Tensor:
        return F.interpolate(small, size=self.x.shape[-2:], mode="bilinear", align_corners=False)


def prepare_enlargement(engine: Stylizer, source: Image.Image, job: Job, longest: int,
                        steps: int = ENLARGE_STEPS, report_every: ReportEvery = 1,
                        should_stop: Callable[[], bool] | None = None,
                        pass_budget: float | None = None) -> Enlargement:
    """An `Enlargement` of `source` (a finished result of `job`: its photo, paintings and settings) to `longest`
    px on its long side, `steps` per level. Refused, before any work, where the job cannot be enlarged."""
    if job.masks:
        raise StylizeError("enlarging works without painted regions; enlarge a result made without masks")
    if job.settings.style_model != "gram" and job.styles:
        raise StylizeError("enlarging works with the Gram style model; choose style_model 'gram'")
    if steps < 1:
        raise StylizeError("enlarging needs at least one step per level")
    sizes = enlarge_sizes(source.size, longest, job.content.size if job.content is not None else None)
    settings = job.settings.replace(size=max(sizes[-1]))
    job = Job(job.content, list(job.styles), settings, None)
    plan = Plan(sizes, [steps] * len(sizes), settings.pooling, luminance_only(settings, job.content is not None))
    report = report_every if callable(report_every) else (lambda step, n=max(1, report_every): step % n == 0)
    return Enlargement(engine, job, source, plan, report, should_stop or (lambda: False), pass_budget)


def enlarge(engine: Stylizer, source: Image.Image, job: Job, longest: int, steps: int = ENLARGE_STEPS,
            report_every: ReportEvery = 1, should_stop: Callable[[], bool] | None = None,
            pass_budget: float | None = None):
    """The frames of an enlargement stepped alone (`loop.alone`), the last one the result at `longest` px."""
    from .loop import alone

    return alone(prepare_enlargement(engine, source, job, longest, steps, report_every, should_stop, pass_budget))
