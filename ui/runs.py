"""The runs behind the endpoints and the page, and the GPU part.

ZeroGPU: the three `@spaces.GPU` functions are the only code that touches the GPU. On a ZeroGPU Space each runs in
a forked worker process and what it yields is pickled back; everything else (checking inputs, links, result
files) runs in the web server's process. Elsewhere the decorator does nothing. Each run yields its outputs by
name: the public endpoints pick the image and the status line, the page takes them all.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from typing import Any, Iterator

import gradio as gr
import spaces
from PIL import Image

from stylize import StylizeError, images
from stylize.cost.budget import ZeroGpu
from stylize.engine.updates import preview
from stylize.experiments.compare import RUNNING, comparison_sheet
from stylize.service import storage
from stylize.service.checks import CompareRequest, EnlargeRequest, ExploreRequest, StylizeRequest
from stylize.service.compute import closing_in_background
from stylize.service.links import space_base_url
from stylize.service.stopping import StopFlag

from .service import studio
from .text import gallery_columns, html_text, loss_table

log = logging.getLogger("stylize.app")
NOT_STARTED = "Stopped before it started: nothing ran."


@contextlib.contextmanager
def user_errors(title: str):
    """Errors as one clear message for the user (a gr.Error also crosses ZeroGPU's process boundary intact)."""
    try:
        yield
    except StylizeError as exc:  # the visitor's to fix: a message (as text: it may quote a request), no trace
        raise gr.Error(html_text(exc), title=title, print_exception=False) from None
    except gr.Error:
        raise
    except Exception as exc:  # keep serving; the log has the trace
        log.exception("run failed")
        raise gr.Error(f"Something went wrong ({type(exc).__name__}: {html_text(exc)}). Your inputs are unchanged; "
                       "try again.", title=title) from None


def base_url(request: gr.Request | None) -> str:
    if space_base_url():
        return space_base_url()
    if request is not None and getattr(request, "request", None) is not None:
        return str(request.request.base_url)
    return "http://127.0.0.1:7860/"


# ---- the GPU part (on ZeroGPU: a forked worker process) -------------------------------------------------------

def run_seconds(request: StylizeRequest, stop: StopFlag) -> int:
    """The duration a Stylize run asks ZeroGPU for."""
    return studio.budget.request(request.settings, styles=len(request.styles), aspect=request.photo.size)


def compare_seconds(request: CompareRequest, stop: StopFlag) -> int:
    return studio.compare_seconds(request.cells, request.photo.size)


def explore_seconds(request: ExploreRequest, stop: StopFlag) -> int:
    return studio.budget.request(request.grid.settings, batch=request.grid.cells)


def enlarge_seconds(request: EnlargeRequest, stop: StopFlag) -> int:
    return ZeroGpu.request(studio.enlarge_seconds(request))


@spaces.GPU(duration=enlarge_seconds)
def enlarge_on_gpu(request: EnlargeRequest, stop: StopFlag):
    """The engine's part of an enlargement: throttled `Update`s, ended by `stop`."""
    with user_errors("Can't make it bigger"):
        yield from studio.enlarge(request, stop)


@spaces.GPU(duration=run_seconds)
def run_on_gpu(request: StylizeRequest, stop: StopFlag):
    """The engine's part of a Stylize run: throttled `Update`s (picklable), ended by `stop` (a file)."""
    with user_errors("Can't stylize this"):
        yield from studio.run(request, stop)


@spaces.GPU(duration=compare_seconds)
def compare_on_gpu(request: CompareRequest, stop: StopFlag):
    """The engine's part of a comparison: (gallery items, status) as the results form (batched)."""
    with user_errors("Can't compare"):
        yield from studio.compare(request, stop)


@spaces.GPU(duration=explore_seconds)
def explore_on_gpu(request: ExploreRequest, stop: StopFlag):
    """The engine's part of a grid: every cell in one batch, `GridUpdate`s (picklable), ended by `stop`."""
    with user_errors("Can't run this grid"):
        yield from studio.explore(request, stop)


# ---- the runs, shared by the endpoints and the page -----------------------------------------------------------

def enlarge_run(request: EnlargeRequest, stop: StopFlag) -> Iterator[dict[str, Any]]:
    """An enlargement's outputs by name: previews (at most PREVIEW_MAX_SIDE px) with a status line, then the PNG
    (sRGB, named by its size)."""
    if stop.is_set():
        yield {"status": NOT_STARTED}
        return
    yield {"status": "Starting…"}
    update = None
    for update in closing_in_background(enlarge_on_gpu(request, stop)):
        if update.frame is None:
            yield {"status": update.status}
        elif not update.final:
            yield {"result": preview(update.frame.image), "status": update.status}
    if update is None or not update.final:
        raise StylizeError("the enlargement ended without a result; try again")
    png = storage.save_print(update.frame.image)
    yield {"result": png, "status": update.status, "png": png}


def stylize_run(request: StylizeRequest, stop: StopFlag, link: str) -> Iterator[dict[str, Any]]:
    """A Stylize run's outputs by name: previews with a status line, then the PNG, the before/after pair and the
    loss table. Stopped before it started, it ends at once, and no GPU is asked for."""
    note = "".join(f" · {notice}" for notice in request.notices)
    if stop.is_set():
        yield {"status": NOT_STARTED, "link": link}
        return
    yield {"result": None, "status": "Starting…" + note, "link": link}
    update = None
    for update in closing_in_background(run_on_gpu(request, stop)):
        if update.frame is None:  # waiting for its turn on a busy machine
            yield {"status": update.status + note}
        elif not update.final:
            yield {"result": preview(update.frame.image), "status": update.status + note}
    if update is None or not update.final:
        raise StylizeError("the run ended without a result; try again")
    studio.observe(request.settings, update.frame, styles=len(request.styles))  # the estimates learn this speed
    image = update.frame.image
    png = storage.save_result(image)
    yield {"result": png, "status": update.status + note, "before_after": (images.resize(request.photo, image.size),
                                                                         image),
           "png": png, "loss_plot": loss_table(update.history), "link": link}


def compare_run(request: CompareRequest, stop: StopFlag) -> Iterator[dict[str, Any]]:
    """A comparison's outputs by name: the gallery (finished results as their PNG files) and status as the results
    form, then the sheet and the finished results' cells (what a click on one needs)."""
    if stop.is_set():
        yield {"compare_status": NOT_STARTED}
        return
    by_caption = {**{c.caption: c for c in request.cells}, **{c.title + RUNNING: c for c in request.cells}}
    saved: dict[str, str] = {}  # caption -> lossless PNG of a finished result, written once
    with storage.holding() as held:  # the results are sent again with each update and make the sheet: never swept
        for gallery, status in closing_in_background(compare_on_gpu(request, stop)):
            # A finished result is sent as its file from then on: Gradio would otherwise encode it again for every
            # update, rewriting the same cache file while a browser may be downloading it.
            for image, caption in gallery:
                if not caption.endswith(RUNNING) and caption not in saved:
                    saved[caption] = storage.save_result(image)
                    held.add(saved[caption])
            yield {"compare_gallery": [(saved.get(c) or preview(image), c) for image, c in gallery],
                   "compare_status": status,
                   "compare_state": [cell_state(by_caption[c], saved.get(c)) for _, c in gallery]}
        finished = [cell for cell in request.cells if cell.caption in saved]
        sheet = comparison_sheet(request.photo, [Image.open(saved[c.caption]) for c in finished],
                                 [c.title for c in finished])
        held.add(png := storage.save_result(sheet))
        yield {"compare_image": png, "compare_state": [cell_state(c, saved[c.caption]) for c in finished]}


def cell_state(cell, png: str | None) -> dict:
    """What a click on a comparison's result needs of it (kept in the page's state): its painting, settings and,
    once finished, its lossless PNG (what *Make it bigger* enlarges)."""
    return {"preset": cell.preset_id, "caption": cell.caption, "settings": asdict(cell.settings), "png": png}


def explore_run(request: ExploreRequest, stop: StopFlag, link: str, photo: str | None,
                painting: str | None) -> Iterator[dict[str, Any]]:
    """A grid's outputs by name: every cell and a status line about once a second, then the labelled grid."""
    grid = request.grid
    state = {"grid": grid.to_dict(), "photo": photo if request.photo is not None else None,
             "painting": painting if request.painting is not None and painting else None, "preset": request.preset_id}
    if stop.is_set():
        yield {"explore_status": NOT_STARTED}
        return
    yield {"explore_image": None, "explore_gallery": gr.Gallery(value=[], columns=gallery_columns(grid)),
           "explore_status": "Starting…", "explore_link": link, "explore_state": state}
    update = None
    for update in closing_in_background(explore_on_gpu(request, stop)):
        if not update.cells:  # waiting for its turn on a busy machine
            yield {"explore_status": update.status}
        elif not update.final:
            yield {"explore_gallery": update.cells, "explore_status": update.status}
    if update is None or not update.final:
        raise StylizeError("the grid ended without a result; try again")
    # Each cell as its lossless PNG: shown once more, and what a click hands to the Stylize tab (to enlarge it).
    cells = [(storage.save_result(image), caption) for image, caption in update.cells]
    yield {"explore_image": storage.save_result(grid.labelled(update.images)), "explore_gallery": cells,
           "explore_status": update.status, "explore_state": {**state, "cells": [png for png, _ in cells]}}


def stop(token: str | None) -> None:
    """Stop: the page's run ends after its current step and keeps its image; a queued run never starts."""
    if token:
        StopFlag(token).set()
