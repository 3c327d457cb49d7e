"""The public endpoints (API and MCP tools: /stylize, /compare, /explore) and the page's runs that share their
code: each checks its request once (stylize/service/checks.py) and runs it (runs.py). A public endpoint returns its image
once, at the end, and one status line; the page's runs also stream previews and fill the page's other outputs.
Their signatures and parameter docs come from the settings' descriptions (stylize/params.py)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator

import gradio as gr

from stylize.experiments.explore import MAX_CELLS
from stylize.params import ABOUT, RANGES, settings_from_values
from stylize.service.checks import (
    CompareRequest,
    EnlargeRequest,
    ExploreRequest,
    StylizeRequest,
    check_compare,
    check_enlarge,
    check_explore,
    check_stylize,
)
from stylize.service.links import compare_url, explore_url, share_url
from stylize.service.regions import MAX_REGIONS
from stylize.service.stopping import StopFlag

from .handlers import EXPLORE_PRESET
from .runs import base_url, compare_run, enlarge_run, explore_run, stylize_run, user_errors
from .service import COMPARE_DEFAULTS as CD
from .service import DEFAULTS as D
from .service import GRID_DEFAULTS as EX
from .service import studio

# ---- public signatures, from the settings' descriptions -------------------------------------------------------

Arg = tuple[str, type, object, str]  # name, type, default, description
IMAGE_ARGS: list[Arg] = [
    ("photo", str, None, "the photo to paint (an image URL, or a data: URL)"),
    ("preset", str, "", f"preset painting id, one of {', '.join(studio.assets.presets)}; ignored if painting is "
                        "given"),
    ("painting", str, None, "your own painting (an image URL or data: URL) instead of a preset"),
    ("extra_paintings", list, None, f"more paintings to blend in (URLs or data: URLs), at most "
                                    f"{studio.limits.max_styles - 1}")]
MASKS_ARG: Arg = ("masks", list, None, "where each painting goes (spatial control, Gatys et al. 2017): one mask per "
                  "painting (URLs or data: URLs), in order: the painting's first, then one per extra_paintings entry. "
                  "White (or, on a transparent image, whatever is painted) marks that style's region; pixels no mask "
                  "covers keep the photo; overlapping masks share. Stretched to the photo (a notice says so if its "
                  "shape differs). Empty: each style everywhere. Needs style_model gram")
WEIGHTS_ARG: Arg = ("weights", str, "auto", "which VGG-19 weights to use; one of auto, hub, embedded")
PAGE_ARGS: list[Arg] = [("token", str, None, "the page's stop token"),
                        ("regions", dict, None, "the region editor's value"),
                        *[(f"region_{n}", str, None, f"region {n}'s painting") for n in range(1, MAX_REGIONS + 1)]]
SUMMARY = ("Paint a photo in the style of a painting (Gatys et al. 2015). Streams a preview about twice a second "
           "while it forms; the last update is the finished result (PNG).")


def settings_api(fixed: list[Arg], summary: str, returns: str) -> Callable:
    """Give `body(values, request)` the public signature `fixed` + one parameter per Settings field (named like the
    field, defaulting to this machine's default) + `request`, and a docstring with one `Args:` line per parameter
    from the settings' descriptions: Gradio's API page and its MCP server read both."""
    P = inspect.Parameter
    params = [P(name, P.POSITIONAL_OR_KEYWORD, default=default, annotation=kind) for name, kind, default, _ in fixed]
    params += [P(name, P.POSITIONAL_OR_KEYWORD, default=getattr(D, name), annotation=type(getattr(D, name)))
               for name in ABOUT]
    params.append(P("request", P.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request))
    signature = inspect.Signature(params)
    args = [f"    {name}: {text}" for name, _, _, text in fixed]
    args += [f"    {name}: {ABOUT[name].describe()}; default {getattr(D, name)!r}" for name in ABOUT]

    def decorate(body: Callable) -> Callable:
        def endpoint(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            request = values.pop("request")
            yield from body(values, request)

        endpoint.__name__ = endpoint.__qualname__ = body.__name__
        endpoint.__signature__ = signature
        endpoint.__annotations__ = {p.name: p.annotation for p in params}
        endpoint.__doc__ = f"{summary}\n\nArgs:\n" + "\n".join(args) + f"\n\nReturns:\n    {returns}\n"
        return endpoint
    return decorate


def image_and_status(outputs: Iterator[dict[str, Any]], image: str, status: str) -> Iterator[tuple[Any, str]]:
    """A public endpoint's answer from a run's outputs by name: (its image where an output has one, else None; the
    latest status line)."""
    line = ""
    for out in outputs:
        line = out.get(status, line)
        yield out.get(image), line


ENLARGE_ARGS: list[Arg] = [
    ("result", str, None, "the finished result to make bigger (an image URL or data: URL): a Stylize result, a Compare "
                          "or Explore cell, a shared link's; give the photo, painting and settings that made it"),
    ("factor", int, 2, f"how much larger: 2 or 4 (at most {studio.limits.max_enlarge} px on the long side here)")]
ENLARGE_SUMMARY = ("Make a finished result bigger for print (×2 or ×4): coarse to fine from that result with the "
                   "photo, paintings and settings that made it (Gatys et al. 2017), in tiles where memory needs them. "
                   "Streams a scaled-down preview; the last update is a lossless PNG (sRGB) named by its size.")


def _enlarge_request(values: dict) -> EnlargeRequest:
    return check_enlarge(studio, settings_from_values(values, D), values["result"], values["factor"],
                         values["photo"], values["preset"], values["painting"], values["extra_paintings"],
                         values["weights"])


@settings_api([*ENLARGE_ARGS, *IMAGE_ARGS, WEIGHTS_ARG], ENLARGE_SUMMARY, "(the enlarged PNG, a status line)")
def enlarge(values: dict, request: gr.Request | None):
    with user_errors("Can't make it bigger"):
        run = _enlarge_request(values)
        with StopFlag(None) as stop:
            yield from image_and_status(enlarge_run(run, stop), "result", "status")


@settings_api([*ENLARGE_ARGS, *IMAGE_ARGS, ("token", str, None, "the page's stop token"), WEIGHTS_ARG],
              ENLARGE_SUMMARY, "the page's outputs")
def enlarge_in_page(values: dict, request: gr.Request | None):
    """*Make it bigger*: /enlarge's run, streaming previews, stoppable with the page's token."""
    with user_errors("Can't make it bigger"):
        run = _enlarge_request(values)
        with StopFlag(values["token"]) as stop:
            for out in enlarge_run(run, stop):
                yield {f"big_{key}": value for key, value in (("result", out.get("result")),
                                                             ("status", out.get("status")), ("png", out.get("png")))
                       if key in out}


def _stylize_request(values: dict, regions: tuple[list, list] | None = None) -> StylizeRequest:
    return check_stylize(studio, settings_from_values(values, D), values["photo"], values["preset"],
                         values["painting"], values["extra_paintings"], values.get("masks"), regions,
                         values["weights"])


@settings_api([*IMAGE_ARGS, MASKS_ARG, WEIGHTS_ARG], SUMMARY, "(the result image, a status line)")
def stylize(values: dict, request: gr.Request | None):
    with user_errors("Can't stylize this"):
        run = _stylize_request(values)
        link = share_url(base_url(request), run.settings, [run.preset_id] if run.preset_id else [])
        with StopFlag(None) as stop:
            yield from image_and_status(stylize_run(run, stop, link), "result", "status")


@settings_api([*IMAGE_ARGS, *PAGE_ARGS, WEIGHTS_ARG], SUMMARY, "the page's outputs")
def stylize_in_page(values: dict, request: gr.Request | None):
    """The Stylize button: /stylize's run with the painted regions (the editor's layers and each region's choice),
    stoppable with the page's token."""
    editor = values.pop("regions") or {}
    choices = [values.pop(f"region_{n}") for n in range(1, MAX_REGIONS + 1)]
    with user_errors("Can't stylize this"):
        run = _stylize_request(values, (editor.get("layers") or [], choices))
        link = share_url(base_url(request), run.settings, [run.preset_id] if run.preset_id else [])
        with StopFlag(values["token"]) as stop:
            yield from stylize_run(run, stop, link)


def _compare_request(photo, presets, size, steps, seed, weights, both_models) -> CompareRequest:
    settings = CD.replace(size=int(size), steps=int(steps), seed=int(seed))
    return check_compare(studio, photo, presets, settings, bool(both_models), weights)


def compare(photo: str, presets: list[str], size: int = CD.size, steps: int = CD.steps, seed: int = CD.seed,
            weights: str = "auto", both_models: bool = False):
    """Stylize one photo with several preset paintings, each with its own tuned settings, and return one comparison
    sheet: the photo first, then each result captioned with its painting's title (and style model when both are
    asked), as a PNG, with a status line. The status streams while the results form; the sheet comes at the end.

    Args:
        photo: the photo (an image URL, or a data: URL)
        presets: preset painting ids, at most 6, e.g. ["starry_night", "the_scream"]; duplicates are ignored
        size: longest side of each result in pixels
        steps: optimizer steps per painting
        seed: random seed (noise initialization)
        weights: which VGG-19 weights to use; one of auto, hub, embedded
        both_models: also run each preset with the other style model: every preset twice, side by side, once with Gram matrices (Gatys 2015) and once with patches (Li & Wand 2016); captions name the model

    Returns:
        the comparison sheet (PNG; None until the end), and a status line
    """
    with user_errors("Can't compare"):
        run = _compare_request(photo, presets, size, steps, seed, weights, both_models)
        with StopFlag(None) as stop:
            yield from image_and_status(compare_run(run, stop), "compare_image", "compare_status")


def compare_in_page(photo, presets, size, steps, seed, weights, both_models, token, request: gr.Request):
    """The Compare button: the results stream into the gallery; the link reopens the comparison."""
    with user_errors("Can't compare"):
        run = _compare_request(photo, presets, size, steps, seed, weights, both_models)
        link = compare_url(base_url(request), run.preset_ids, run.settings, studio.assets.example_photo_id(photo),
                           bool(both_models))
        with StopFlag(token) as stop:
            for out in compare_run(run, stop):
                yield {**out, "compare_link": link}


def explore(kind: str = "style", photo: str | None = None, painting: str | None = None, rows: list[str] | None = None,
            columns: str = "", size: int = EX.size, steps: int = EX.steps, seed: int = EX.seed,
            preset: str = EXPLORE_PRESET, weights: str = "auto"):
    """Run one of the experiments of Gatys et al. (2015) as a grid of images, every cell optimized at once in one
    batch; the status streams about once a second as the cells converge, and the last update has the labelled grid.

    Args:
        kind: the experiment; one of style (style transfer, the paper's Fig. 3: needs a photo and a painting), texture (texture synthesis from noise, Fig. 1: needs a painting), reconstruction (content reconstruction from noise, Fig. 1: needs a photo)
        photo: the photo (an image URL or data: URL); used by style and reconstruction
        painting: your own painting (an image URL or data: URL), instead of preset; used by style and texture
        rows: one grid row per entry. For style and texture, style layer sets: the paper's a, b, c, d, e (a = relu1_1, b = relu1_1 and relu2_1, ..., e = relu1_1 to relu5_1) or your own comma-separated list such as "relu1_1,relu3_1"; for reconstruction, content layers such as relu1_1 ... relu5_1 or relu4_2. Empty: the experiment's defaults on this machine
        columns: comma-separated numbers, one grid column each. For style, style strengths beta/alpha from {low:g} to {high:g} (empty: 2, 20, 200, 2000); for texture and reconstruction, seeds of the starting noise (empty: one column, the seed). At most {cells} cells (rows x columns)
        size: longest side of each cell in pixels; 64 to {size}
        steps: optimizer steps; 1 to {steps}
        seed: seed of the random noise that texture and reconstruction cells start from (used when columns is empty)
        preset: preset painting id, used when no painting is given; one of {presets}
        weights: which VGG-19 weights to use; one of auto, hub, embedded

    Returns:
        the labelled grid image (PNG: row and column labels and a title drawn on it; at the end), and a status line
    """
    with user_errors("Can't run this grid"):
        run = _explore_request(kind, photo, painting, rows, columns, size, steps, seed, preset, weights)
        with StopFlag(None) as stop:
            yield from image_and_status(explore_run(run, stop, "", photo, painting), "explore_image", "explore_status")


explore.__doc__ = explore.__doc__.format(
    low=RANGES["style_strength"][0], high=RANGES["style_strength"][1], cells=MAX_CELLS, size=studio.limits.max_size,
    steps=studio.limits.max_steps, presets=", ".join(studio.assets.presets))


def _explore_request(kind, photo, painting, rows, columns, size, steps, seed, preset, weights) -> ExploreRequest:
    settings = EX.replace(size=int(size), steps=int(steps), seed=int(seed))
    return check_explore(studio, kind, rows or None, columns, settings, photo, painting, preset, weights)


def explore_in_page(kind, photo, painting, rows, columns, size, steps, seed, preset, weights, token,
                    request: gr.Request):
    """The Run-the-grid button: the cells stream into the gallery; the link reopens the grid."""
    with user_errors("Can't run this grid"):
        run = _explore_request(kind, photo, painting, rows, columns, size, steps, seed, preset, weights)
        link = explore_url(base_url(request), run.grid, run.preset_id)
        with StopFlag(token) as stop:
            yield from explore_run(run, stop, link, photo, painting)
