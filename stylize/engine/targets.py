"""What fixed images give the objective, computed once per engine: the network's calibration per pooling mode,
and in a bounded LRU cache the photos' feature maps and the paintings' Grams and patch features.

Runs repeat their inputs (every level of a run, every run of a session, every cell of a grid share a painting),
so the targets are keyed by the images' contents and the settings that change them, never by object identity.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch
from PIL import Image

from stylize import images

from . import mrf
from .losses import gram
from .masks import layer_masks, load_masks, normalize_masks
from .schedule import Job, Plan
from .vgg import VGGFeatures, layer_scales

CACHE_SIZE = 32  # entries, each one image's maps or Grams at one size: bounds the memory the cache holds
MRF_MAX_PATCHES = 4096  # style patches per layer and level, all paintings together: bounds the search's cost


def fingerprint(img: Image.Image) -> str:
    """A key for an image's contents (pixels, size and mode)."""
    digest = hashlib.blake2b(img.tobytes(), digest_size=16)
    digest.update(repr((img.size, img.mode)).encode())
    return digest.hexdigest()


class Targets:
    """The targets of one network on one device; safe to share between threads."""

    def __init__(self, net: VGGFeatures, device: torch.device) -> None:
        self.net, self.device = net, device
        self._scales: dict[str, dict[str, float]] = {}
        self._cache: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()

    def scales(self, pooling: str) -> dict[str, float]:
        """Per-layer calibration (RMS response to a fixed image) for a pooling mode, measured once."""
        with self._lock:
            if pooling not in self._scales:
                self._scales[pooling] = layer_scales(self.net, pooling)
            return self._scales[pooling]

    def content(self, job: Job, photo: torch.Tensor, plan: Plan) -> torch.Tensor:
        """The photo's feature map (C, h, w) at the job's content layer; `photo` is at this level's size."""
        layer = job.settings.content_layer
        size = (photo.shape[-1], photo.shape[-2])
        key = ("content", fingerprint(job.content), size, plan.luminance)
        return self._cached(key, plan.optimized(photo), {layer}, plan.pooling, grams=False)[layer]

    def style_grams(self, job: Job, photo: torch.Tensor | None, longest: int) -> list[dict[str, torch.Tensor]]:
        """Each painting's Grams by style layer, / M (so independent of the painting's size)."""
        layers = set(job.settings.style_layer_weights())
        return [self._cached(key, tensor, layers, job.settings.pooling, grams=True)
                for tensor, key in (self._style_input(style, job, photo, longest) for style in job.styles)]

    def patch_banks(self, job: Job, photo: torch.Tensor | None, longest: int) -> dict[str, mrf.PatchBank]:
        """One patch bank per MRF layer, pooling the patches of all the job's paintings."""
        s = job.settings
        layers = s.mrf_layer_names
        feats = [self._cached(key, tensor, set(layers), s.pooling, grams=False)
                 for tensor, key in (self._style_input(style, job, photo, longest) for style in job.styles)]
        banks = {}
        for layer in layers:
            parts = [mrf.patch_bank(f[layer][None].to(self.net.dtype).contiguous(memory_format=torch.channels_last),
                                    s.mrf_patch, max_patches=MRF_MAX_PATCHES // len(feats), seed=s.seed, layer=layer)
                     for f in feats]
            banks[layer] = mrf.PatchBank(raw=torch.cat([p.raw for p in parts]),
                                         normalized=torch.cat([p.normalized for p in parts]))
        return banks

    def regions(self, job: Job, size: tuple[int, int]) -> dict[str, torch.Tensor] | None:
        """The job's masks at this size, normalized where they overlap, at each style layer's resolution (None
        without masks)."""
        if not job.masks:
            return None
        masks, _ = load_masks(list(job.masks), len(job.styles), size)
        weights, _ = normalize_masks(masks)
        return layer_masks(weights.to(self.device), job.settings.style_layer_weights(), "avg")

    def _style_input(self, style: Image.Image, job: Job, photo: torch.Tensor | None,
                     longest: int) -> tuple[torch.Tensor, tuple]:
        """A painting as the network sees it at this level (resized, recoloured to the photo), and its cache key."""
        settings = job.settings
        side = round(longest * settings.style_scale)
        colour = settings.preserve_color if photo is not None else "none"
        tensor = images.to_tensor(images.resize(style, images.fit_at_least(style.size, side)), self.device)
        if colour == "histogram":
            tensor = images.match_colour(tensor, photo)
        elif colour == "luminance":
            tensor = images.match_luminance(images.luminance(tensor), photo)
        photo_id = fingerprint(images.to_pil(photo)) if colour != "none" else ""
        return tensor, ("style", fingerprint(style), side, colour, photo_id)

    def _cached(self, key: tuple, image: torch.Tensor, layers: set[str], pooling: str,
                  grams: bool) -> dict[str, torch.Tensor]:
        """Feature maps (C, h, w) in fp32, or Grams / M, of a fixed image, through the LRU cache."""
        key = (*key, tuple(sorted(layers)), pooling, grams)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        with torch.no_grad():
            feats = self.net(image, layers, pooling)
            if grams:
                feats = {name: gram(f)[0] / f[0, 0].numel() for name, f in feats.items()}
            else:
                feats = {name: f[0].float() for name, f in feats.items()}
        with self._lock:
            self._cache[key] = feats
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return feats
