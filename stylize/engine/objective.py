"""A batch's objective at one level: what each item's loss is made of (`build`), and the loss (`Objective.losses`).

Item b's loss is the paper's weighted sum of its terms: content on one layer, style on several (Gram matrices,
optionally per painted region, or MRF patches), and total variation. Terms are stacked over the batch so that one
network pass and one loss evaluation serve every item; a layer an item does not use has weight 0 for it. The
network drops an item after its own deepest layer (`Objective.depths`), so a term also records which rows of
the features at its layer belong to its items.

The MRF terms hold their current nearest-patch matches. Matches change only when an evaluation is told to
re-match (`Objective.rematch_due` says which), and the loop then rebases L-BFGS for those items: their
objective changed, so their losses before and after are not comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from . import mrf
from .losses import calm_loss, calm_weights, content_loss, style_layer_loss, tv_loss
from .masks import guided_style_loss
from .schedule import Job, Plan
from .targets import Targets
from .vgg import FEATURE_LAYERS, VGGFeatures, carried, deepest, gram_of

TERMS = ("content", "style", "tv", "calm")
COLUMNS = (*TERMS, "total")  # the columns of `Objective.losses`
MRF_REMATCH_EVERY = 5  # evaluations between nearest-patch searches: the search is the patch model's main cost
# The patch loss pulls far harder per unit than the Gram loss: at the Gram model's default strength the photo
# vanished under the painting's patches. Scaled so that one strength gives a comparable balance in both models.
MRF_BALANCE = 0.05


def named(values: Sequence[float], present: tuple[str, ...]) -> dict[str, float]:
    """One row of `Objective.losses` by column name, keeping the terms the item has."""
    return {name: value for name, value in zip(COLUMNS, values) if name in present}


@dataclass
class ContentLayer:
    """One content layer's terms: one per item the network carries to the layer (weight 0: the item has none)."""

    targets: torch.Tensor  # (K, C, h, w), channels-last like the features
    weights: torch.Tensor  # (K,)
    items: torch.Tensor | None = None  # (K,) the batch item of each term; None: all B items, in order


@dataclass
class StyleLayer:
    """One style layer's Gram terms over the batch: one term per item, or per (item, region) with masks."""

    targets: torch.Tensor  # (T, N, N) Gram / M
    weights: torch.Tensor  # (T,)
    items: torch.Tensor | None = None  # (T,) the batch item of each term; None: term t is item t
    masks: torch.Tensor | None = None  # (T, 1, h, w) region weights at this layer's resolution
    rows: torch.Tensor | None = None  # (T,) each term's item among those the network carried to this layer


@dataclass
class MrfTerm:
    """One item's patch model at one layer: the paintings' patch bank and the target of the current matches."""

    item: int
    layer: str
    bank: mrf.PatchBank
    weight: float
    row: int  # the item among those the network carried to this layer
    index: torch.Tensor  # [item] on the device, made once: no host-to-device copy per evaluation
    target: mrf.MrfTarget | None = None  # None until the first match

    def rematch(self, features: torch.Tensor) -> None:
        """Match each window of `features` (1, C, h, w) to its nearest painting patch, and aim the term there."""
        f = features.detach()
        matches = mrf.nearest_patches(f, self.bank, layer=self.layer)
        self.target = mrf.mrf_target(self.bank, matches, f, self.layer)


@dataclass
class Objective:
    """The batch's targets and weights at one size, and the loss they define."""

    content: dict[str, ContentLayer]
    style: dict[str, StyleLayer]
    mrf: list[MrfTerm]
    tv: torch.Tensor  # (B,)
    tv_on: bool  # known on the host: no device read per evaluation
    calm: torch.Tensor  # (B,) the calm term's weight
    calm_maps: torch.Tensor | None  # (B, 1, H, W) where each photo is calm (`calm_weights`); None: no calm term
    present: list[tuple[str, ...]]  # the columns each item reports
    depths: list[str] | None  # each item's deepest layer, where they differ: the network drops items past theirs
    pooling: str

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

    def rematch_due(self, evaluation: int) -> bool:
        """Whether evaluation number `evaluation` (0, 1, … at this level) should take new nearest patches: the
        first and every MRF_REMATCH_EVERY-th after it, if there are MRF terms."""
        return bool(self.mrf) and evaluation % MRF_REMATCH_EVERY == 0

    def losses(self, net: VGGFeatures, x: torch.Tensor, rematch: bool = False) -> torch.Tensor:
        """The weighted terms per item, (B, 5): content, style, tv, calm and their sum, which L-BFGS minimizes.

        With `rematch` the MRF terms first match this evaluation's features anew; otherwise they keep their
        matches (a term without any is matched regardless).
        """
        # Convolutions in bf16 or fp32; Grams and losses in fp32.
        feats = net(x, self.wanted, self.pooling, self.depths, grams=self.grams)
        zero = torch.zeros(x.shape[0], device=x.device)
        content = self._content_loss(feats, zero)
        style = self._mrf_loss(feats, self._gram_loss(feats, zero), rematch)
        tv = self.tv * tv_loss(x) if self.tv_on else zero
        calm = self.calm * calm_loss(x, self.calm_maps) if self.calm_maps is not None else zero
        return torch.stack([content, style, tv, calm, content + style + tv + calm], dim=1)

    def _content_loss(self, feats: dict[str, torch.Tensor], total: torch.Tensor) -> torch.Tensor:
        for layer, term in self.content.items():
            loss = term.weights * content_loss(feats[layer], term.targets)
            total = total + loss if term.items is None else total.index_add(0, term.items, loss)
        return total

    def _gram_loss(self, feats: dict[str, torch.Tensor], total: torch.Tensor) -> torch.Tensor:
        for layer, term in self.style.items():
            f = feats[layer]
            n, m = f.shape[1], f[0, 0].numel()
            if term.masks is None:
                g = feats[gram_of(layer)]
                if term.items is None:
                    total = total + term.weights * style_layer_loss(g, term.targets * m, n, m)
                    continue
                g = g if g.shape[0] == 1 else g.index_select(0, term.rows)
                per_term = style_layer_loss(g, term.targets * m, n, m)
            else:
                f = f if f.shape[0] == 1 else f.index_select(0, term.rows)  # one image: its regions broadcast
                per_term = guided_style_loss(f, term.masks, term.targets, n)
            total = total.index_add(0, term.items, term.weights * per_term)
        return total

    def _mrf_loss(self, feats: dict[str, torch.Tensor], total: torch.Tensor, rematch: bool) -> torch.Tensor:
        for term in self.mrf:
            f = feats[term.layer][term.row:term.row + 1]
            if rematch or term.target is None:
                term.rematch(f)
            total = total.index_add(0, term.index, (term.weight * mrf.target_loss(f, term.target)).view(1).float())
        return total


# ---- building ---------------------------------------------------------------------------------

@dataclass
class _GramTerm:
    """One Gram term before stacking: an item's target at one layer, everywhere or in one region."""

    item: int
    target: torch.Tensor  # (N, N) Gram / M
    weight: float
    mask: torch.Tensor | None = None  # (1, h, w) the region at the layer's resolution; None: everywhere


def build(jobs: Sequence[Job], contents: list[torch.Tensor | None], size: tuple[int, int], plan: Plan,
          targets: Targets, style_side: int | None = None) -> Objective:
    """The batch's objective at one level's `size`; `contents` are the photos at that size (None: no photo).
    `style_side`: the longest side the paintings are sized against instead of the level's (an enlargement's)."""
    b, device = len(jobs), targets.device
    scales = targets.scales(plan.pooling)
    content: dict[str, dict[int, tuple[torch.Tensor, float]]] = {}  # layer -> item -> (target, weight)
    grams: dict[str, list[_GramTerm]] = {}
    patches: list[tuple[int, str, mrf.PatchBank, float]] = []  # (item, layer, bank, weight)
    present, depths = [], []
    for i, (job, photo) in enumerate(zip(jobs, contents)):
        s, terms, layers = job.settings, [], set()
        if photo is not None:
            target = targets.content(job, photo, plan)
            content.setdefault(s.content_layer, {})[i] = (target, 1.0 / (target.numel() * scales[s.content_layer] ** 2))
            layers.add(s.content_layer)
            terms.append("content")
        if job.styles and s.style_model == "mrf":
            count = len(s.mrf_layer_names)
            for layer, bank in targets.patch_banks(job, photo, max(size)).items():
                patches.append((i, layer, bank, MRF_BALANCE * s.style_strength / count / scales[layer] ** 2))
                layers.add(layer)
            terms.append("style")
        elif job.styles:
            for layer, terms_here in _gram_terms(i, job, targets, photo, size, scales, style_side).items():
                grams.setdefault(layer, []).extend(terms_here)
                layers.add(layer)
            terms.append("style")
        if s.tv_weight:
            terms.append("tv")
        if s.calm and photo is not None:
            terms.append("calm")
        present.append((*terms, "total"))
        depths.append(deepest(layers) if layers else FEATURE_LAYERS[0])
    differ = depths if len(set(depths)) > 1 else None
    return Objective(
        content={layer: _content_layer(by_item, carried(differ, layer, b), b, device)
                 for layer, by_item in content.items()},
        style={layer: _style_layer(entries, carried(differ, layer, b), b, device) for layer, entries in grams.items()},
        mrf=[MrfTerm(item, layer, bank, weight, row=carried(differ, layer, b).index(item),
                     index=torch.tensor([item], device=device)) for item, layer, bank, weight in patches],
        tv=torch.tensor([j.settings.tv_weight for j in jobs], device=device),
        tv_on=any(j.settings.tv_weight for j in jobs),
        calm=torch.tensor([j.settings.calm if c is not None else 0.0 for j, c in zip(jobs, contents)], device=device),
        calm_maps=_calm_maps(jobs, contents),
        present=present, depths=differ, pooling=plan.pooling)


def _calm_maps(jobs: Sequence[Job], contents: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Where each photo is calm, at this level's size (items without a photo or calm: zeros); None if no item
    asks for calm."""
    if not any(j.settings.calm and c is not None for j, c in zip(jobs, contents)):
        return None
    like = next(c for c in contents if c is not None)
    return torch.cat([calm_weights(c) if c is not None else torch.zeros_like(like[:, :1]) for c in contents])


def _gram_terms(item: int, job: Job, targets: Targets, photo: torch.Tensor | None, size: tuple[int, int],
                scales: dict[str, float], style_side: int | None = None) -> dict[str, list[_GramTerm]]:
    """The job's Gram terms by layer: the blend of its paintings everywhere, or each painting in its region."""
    s = job.settings
    per_style = targets.style_grams(job, photo, style_side or max(size))
    regions = targets.regions(job, size)
    found = {}
    for layer, w in s.style_layer_weights().items():
        weight = s.style_strength * w / scales[layer] ** 4
        if regions is None:
            blend = sum(bw * g[layer] for bw, g in zip(s.blend_weights(len(job.styles)), per_style))
            found[layer] = [_GramTerm(item, blend, weight)]
        else:
            found[layer] = [_GramTerm(item, g[layer], weight, regions[layer][r]) for r, g in enumerate(per_style)]
    return found


def _content_layer(by_item: dict[int, tuple[torch.Tensor, float]], carried_items: list[int], b: int,
                   device: torch.device) -> ContentLayer:
    """Stack one content layer's targets and weights for the items the network carries to it."""
    zero = torch.zeros_like(next(iter(by_item.values()))[0])
    stacked = torch.stack([by_item[i][0] if i in by_item else zero for i in carried_items])
    stacked = stacked.contiguous(memory_format=torch.channels_last)  # as the features: F − P reads both in order
    weights = torch.tensor([by_item[i][1] if i in by_item else 0.0 for i in carried_items], device=device)
    items = None if len(carried_items) == b else torch.tensor(carried_items, device=device)
    return ContentLayer(stacked, weights, items)


def _style_layer(entries: list[_GramTerm], carried_items: list[int], b: int, device: torch.device) -> StyleLayer:
    """Stack one style layer's terms: one per item using the layer, or per (item, region) with masks."""
    targets = torch.stack([e.target for e in entries])
    weights = torch.tensor([e.weight for e in entries], device=device)
    items = [e.item for e in entries]
    if all(e.mask is None for e in entries) and items == list(range(b)):
        return StyleLayer(targets, weights)
    masks = None
    if any(e.mask is not None for e in entries):
        like = next(e.mask for e in entries if e.mask is not None)
        masks = torch.stack([e.mask if e.mask is not None else torch.ones_like(like) for e in entries])
    rows = [carried_items.index(i) for i in items]
    return StyleLayer(targets, weights, torch.tensor(items, device=device), masks, torch.tensor(rows, device=device))
