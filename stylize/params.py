"""One validated settings object: defaults, ranges, and a round trip through a URL query string.

`Settings(...)` raises a `StylizeError` that lists every invalid field with its valid values;
`Settings.from_query(...)` is forgiving instead (clamps, falls back to defaults) and returns notices,
because a shared link should open even if someone edited it by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping
from urllib.parse import urlencode

from stylize.engine.vgg import FEATURE_LAYERS

from .errors import StylizeError

# The paper's five style representations (Fig. 1, rows a–e).
STYLE_LAYER_SETS: dict[str, tuple[str, ...]] = {
    key: tuple(f"relu{i}_1" for i in range(1, n + 1)) for n, key in enumerate("abcde", 1)
}

# Fields whose validity depends on others: checked together with them.
DEPENDS: dict[str, tuple[str, ...]] = {"layer_weights": ("style_layers",)}
MAX_STYLE_SIDE = 2048  # size × style scale: the style image's longest side, bounded like the output's


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class About:
    """One setting, described once: the command line's flags, the API's (and MCP tools') parameter docs and the
    UI's controls are all made from it."""

    label: str  # a control's label
    help: str  # what it does, in one phrase
    low: float | None = None  # the valid range, where it is a number
    high: float | None = None
    choices: tuple[tuple[str, str], ...] = ()  # (value, label); with `custom`, suggestions only
    custom: bool = False  # other values than the choices are valid (checked elsewhere)
    step: float | None = None  # where a slider suits: its step
    log: bool = False  # a number better chosen on a log scale

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(value for value, _ in self.choices)

    def label_of(self, value: str) -> str:
        return dict(self.choices).get(value, value)

    def describe(self) -> str:
        """The help with the valid values: "…; 64 to 2048", "…; one of avg, max"."""
        if self.low is not None:
            return f"{self.help}; {self.low:g} to {self.high:g}" + (" (log scale)" if self.log else "")
        if self.choices and not self.custom:
            listed = self.values if len(self.values) <= 8 else (self.values[0], "…", self.values[-1])
            return f"{self.help}; one of {', '.join(listed)}"
        return self.help


def setting(default: Any, label: str, help: str, choices: tuple = (), **about: Any) -> Any:
    """A Settings field with its description (`About`); `choices` are values or (value, label) pairs."""
    pairs = tuple(c if isinstance(c, tuple) else (c, c) for c in choices)
    return field(default=default, metadata={"about": About(label, help, choices=pairs, **about)})


@dataclass(frozen=True)
class Settings:
    """Everything that decides a result, for a given content and style images and weights."""

    size: int = setting(256, "Size (longest side, px)", "longest side of the output in pixels", low=64, high=2048,
                        step=32)
    steps: int = setting(200, "Steps", "L-BFGS iterations in all (each one forward and backward pass)", low=1,
                         high=5000, step=1)
    style_strength: float = setting(20.0, "Style strength β/α", "the style term's weight against the content term "
                                    "(β/α)", low=0.1, high=1e4, log=True)
    content_layer: str = setting("relu4_2", "Content layer", "the layer whose responses the content loss matches",
                                 FEATURE_LAYERS)
    style_layers: str = setting("e", "Style layers: the paper's set a–e, or your own list (relu1_1,relu3_1)",
                                "style layers: the paper's set a–e (a = relu1_1, …, e = relu1_1 to relu5_1) or "
                                "comma-separated layer names", tuple((key, f"{key}: conv1" + (f"–{n}" if n > 1 else "")
                                                                      + (" (paper)" if key == "e" else ""))
                                                                     for n, key in enumerate(STYLE_LAYER_SETS, 1)),
                                custom=True)
    layer_weights: str = setting("", "Style layer weights, one per layer (e.g. 1,1,1,1,1)",
                                 "comma-separated weight per style layer; empty: equal")
    tv_weight: float = setting(0.0, "Smoothing (TV weight)", "total-variation smoothing weight", low=0.0, high=100.0)
    # Calm where the photo is calm: without it the painting's finest texture dots skies and walls (README).
    calm: float = setting(30.0, "Calm (smooth where the photo is smooth)", "weight of the smoothing asked only "
                          "where the photo itself is smooth (skies, walls); 0: off", low=0.0, high=100.0)
    init: str = setting("content", "Start from", "the starting image: the photo, noise or the painting",
                        ("content", "noise", "style"))
    # max, as in VGG and the classic tools: the paper's average pooling dots calm skies with a lattice (README).
    pooling: str = setting("max", "Pooling", "pooling between VGG's blocks: max (the classic tools') or avg (the "
                           "paper's)", ("avg", "max"))
    preserve_color: str = setting("none", "Preserve the photo's colours", "keep the photo's colours: luminance-only "
                                  "transfer, or recolour the painting first", ("none", "luminance", "histogram"))
    scales: int = setting(1, "Multi-scale levels", "coarse-to-fine levels, √2 apart in size (1 = single scale)",
                          low=1, high=4, step=1)
    style_scale: float = setting(1.0, "Style scale", "the painting's size relative to the output's longest side",
                                 low=0.25, high=4.0, step=0.05)
    style_blend: str = setting("", "Blend weights, one per style image (e.g. 2,1)",
                               "comma-separated weight per style image; empty: equal")
    seed: int = setting(0, "Seed", "random seed of the noise (same seed, same result on the CPU)", low=0,
                        high=2**31 - 1)
    style_model: str = setting("gram", "Style model", "gram: Gram matrices (Gatys et al. 2015); mrf: neural patches "
                               "with an MRF prior (Li & Wand 2016)",
                               (("gram", "Gram (Gatys 2015)"), ("mrf", "Patches (Li & Wand 2016)")))
    mrf_layers: str = setting("relu3_1,relu4_1", "Patch model: layers (e.g. relu3_1,relu4_1)",
                              "comma-separated layers of the patch (MRF) style model")
    mrf_patch: int = setting(3, "Patch model: patch size", "patch size of the patch (MRF) style model, in "
                             "feature-map pixels", low=1, high=7, step=1)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise StylizeError("invalid settings: " + "; ".join(problems))

    def problems(self) -> list[str]:
        found = []
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                found.append(f"{name} must be a number (got {value!r})")
            elif not low <= value <= high:
                found.append(f"{name} must be between {low:g} and {high:g} (got {value:g})")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                found.append(f"{name} must be one of {', '.join(choices)} (got {getattr(self, name)!r})")
        try:
            layers = self.style_layer_names
        except StylizeError as exc:
            found.append(str(exc))
            layers = ()
        try:
            self.mrf_layer_names
        except StylizeError as exc:
            found.append(str(exc))
        if not found and self.size * self.style_scale > MAX_STYLE_SIDE:
            found.append(f"size × style_scale is {self.size * self.style_scale:g} px: the style image may be at most "
                         f"{MAX_STYLE_SIDE} px; lower the size or the style scale")
        for name, text, count in (("layer_weights", self.layer_weights, len(layers)), ("style_blend", self.style_blend, None)):
            try:
                values = _floats(text)
            except ValueError:
                found.append(f"{name} must be comma-separated numbers (got {text!r})")
                continue
            if any(v < 0 or not math.isfinite(v) for v in values) or (values and sum(values) == 0):
                found.append(f"{name} must be non-negative with a positive sum (got {text!r})")
            elif values and count is not None and len(values) != count:
                found.append(f"{name} needs one weight per style layer ({count}), got {len(values)}")
        return found

    @property
    def style_layer_names(self) -> tuple[str, ...]:
        if self.style_layers in STYLE_LAYER_SETS:
            return STYLE_LAYER_SETS[self.style_layers]
        names = tuple(part.strip() for part in self.style_layers.split(",") if part.strip())
        unknown = [n for n in names if n not in FEATURE_LAYERS]
        if not names or unknown:
            raise StylizeError(
                f"style_layers {self.style_layers!r}: unknown {', '.join(unknown) or 'empty list'}; valid: a, b, c, d, e "
                f"(the paper's sets) or comma-separated names from {', '.join(FEATURE_LAYERS)}"
            )
        return names

    @property
    def mrf_layer_names(self) -> tuple[str, ...]:
        names = tuple(part.strip() for part in self.mrf_layers.split(",") if part.strip())
        unknown = [n for n in names if n not in FEATURE_LAYERS]
        if not names or unknown:
            raise StylizeError(f"mrf_layers {self.mrf_layers!r}: unknown {', '.join(unknown) or 'empty list'}; "
                               f"valid: comma-separated names from {', '.join(FEATURE_LAYERS)}")
        return names

    @property
    def layers_in_use(self) -> set[str]:
        """Every feature layer the objective reads (content layer plus the style model's layers)."""
        style = self.mrf_layer_names if self.style_model == "mrf" else self.style_layer_names
        return {self.content_layer, *style}

    def style_layer_weights(self) -> dict[str, float]:
        """w_l per style layer, normalized to sum to 1 (the paper's w_l = 1/5 for set e)."""
        names = self.style_layer_names
        values = _floats(self.layer_weights) or [1.0] * len(names)
        total = sum(values)
        return {name: value / total for name, value in zip(names, values) if value > 0}

    def blend_weights(self, count: int) -> list[float]:
        """One weight per style image, normalized to sum to 1."""
        values = _floats(self.style_blend) or [1.0] * count
        if len(values) != count:
            raise StylizeError(f"style_blend has {len(values)} weights for {count} style images")
        total = sum(values)
        return [value / total for value in values]

    def replace(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    def to_query(self, extra: Mapping[str, str] | None = None) -> str:
        """Every field as a query string (stable links: defaults may change, a shared link must not)."""
        pairs = {key: _format(value) for key, value in asdict(self).items()}
        return urlencode({**(extra or {}), **pairs})

    @classmethod
    def from_query(cls, query: Mapping[str, Any], ignore: tuple[str, ...] = (),
                   base: "Settings | None" = None) -> tuple["Settings", list[str]]:
        """Settings from query parameters over `base` (default: the defaults): out-of-range numbers are
        clamped, bad values fall back to `base`. Returns the settings and one notice per value not taken as given.
        """
        defaults, notices, values = base or cls(), [], {}
        known = {f.name: f for f in fields(cls)}
        for key, raw in query.items():
            if key in ignore:
                continue
            if key not in known:
                notices.append(f"ignored unknown parameter {key!r}")
                continue
            raw = raw[0] if isinstance(raw, (list, tuple)) else raw
            default = getattr(defaults, key)
            try:
                value = _parse(raw, type(default))
            except ValueError:
                notices.append(f"{key}={raw!r} is not valid; using the default {default!r}")
                continue
            if key in RANGES:
                low, high = RANGES[key]
                clamped = type(default)(min(max(value, low), high))
                if clamped != value:
                    notices.append(f"{key}={raw} is outside {low:g}–{high:g}; using {clamped:g}")
                value = clamped
            values[key] = value
        for key in sorted(values, key=lambda k: k in DEPENDS):  # dependent fields last, with what they depend on
            context = {dep: values[dep] for dep in DEPENDS.get(key, ()) if dep in values}
            try:
                defaults.replace(**context, **{key: values[key]})
            except StylizeError as exc:
                notices.append(f"{exc.args[0].removeprefix('invalid settings: ')}; using the default")
                del values[key]
        return defaults.replace(**values), notices


def about(name: str) -> About:
    """A setting's description."""
    return ABOUT[name]


ABOUT: dict[str, About] = {f.name: f.metadata["about"] for f in fields(Settings)}
# Numeric fields' (minimum, maximum), and the fields whose value must be one of their choices.
RANGES: dict[str, tuple[float, float]] = {n: (a.low, a.high) for n, a in ABOUT.items() if a.low is not None}
CHOICES: dict[str, tuple[str, ...]] = {n: a.values for n, a in ABOUT.items() if a.choices and not a.custom}


def settings_from_values(values: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Settings from UI or API values by field name, each cast to its field's type (a number box gives floats, a
    text box may give None); fields not in `values` keep `base`'s value."""
    base = base or Settings()
    changes = {}
    for name in ABOUT:
        if name not in values:
            continue
        value, kind = values[name], type(getattr(base, name))
        if value is None or value == "":
            value = "" if kind is str else getattr(base, name)
        elif kind is int and not isinstance(value, bool):
            value = int(round(float(value)))
        elif kind is float:
            value = float(value)
        changes[name] = value
    return base.replace(**changes)


def within_limits(settings: Settings, max_size: int, max_steps: int, notices: list[str]) -> Settings:
    """`settings` with size and steps lowered to this machine's limits, a notice for each (links are clamped)."""
    for name, limit in (("size", max_size), ("steps", max_steps)):
        if getattr(settings, name) > limit:
            notices.append(f"{name} {getattr(settings, name)} is above this machine's {limit}; using {limit}")
            settings = settings.replace(**{name: limit})
    return settings


def _parse(raw: Any, kind: type) -> Any:
    if kind is bool:
        return str(raw).lower() in ("1", "true", "yes", "on")
    if kind is int:
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
        return int(round(value))
    if kind is float:
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
        return value
    return str(raw)


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# Starting points per device, before the time budget fits them to the machine (budget.py; README, Performance):
# 512 px in 3 levels √2 apart (256 → 362 → 512 px, 50 steps each) where the machine allows, because single scale
# in the same time ends at a lower loss but paints smaller, busier texture, and the coarse levels give the large
# coherent strokes. A GPU affords 1024 px and the classic tools' 500 steps.
CPU_DEFAULTS = {"size": 512, "steps": 150, "scales": 3}
GPU_DEFAULTS = {"size": 1024, "steps": 500, "scales": 3}


def defaults_for(device_type: str) -> Settings:
    """The default settings for a device type ('cpu' or 'cuda')."""
    return Settings(**(GPU_DEFAULTS if device_type == "cuda" else CPU_DEFAULTS))
