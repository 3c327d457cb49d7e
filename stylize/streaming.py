"""How a run reaches the page: throttled updates with status lines, advanced on the compute thread ahead of
whoever reads them, and closed without ever making the web server wait.

The optimization never waits for the page: `on_thread` runs a run's updates on the compute thread into a one-slot
buffer that keeps the newest, so a slow consumer (Gradio encoding a preview, a browser on a slow link, pickling
across ZeroGPU's process boundary) costs skipped previews, never optimizer time. The last update (the result)
is always delivered.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Iterator

from PIL import Image

from .engine import Frame
from .errors import StylizeError

log = logging.getLogger(__name__)

UPDATE_INTERVAL_S = 0.5  # about two streamed images a second
PREVIEW_MAX_SIDE = 1024  # previews are sent at most this large (the result itself is a full-size PNG)
COMPUTE_NICENESS = 10  # Linux's scheduler then gives the server's threads ~10× the compute threads' share


def behind_the_server(niceness: int = COMPUTE_NICENESS) -> None:
    """Lower the calling thread's CPU priority, so that on a CPU shared by a run and the web server the server
    goes first: a page or a preview waiting behind a run's convolutions is what a visitor notices; a run slowed
    for the second a page takes is not. Called on the compute thread before its first torch call: torch's OpenMP
    workers, created by that thread, inherit the priority. Linux only (elsewhere a thread id is no process id)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + niceness))
    except OSError as exc:  # costs the page's speed only
        log.warning("could not lower the compute thread's priority: %s", exc)


@dataclass
class Update:
    """One streamed state of a run, ready to show; `final` marks the last one (finished or stopped)."""

    frame: Frame
    status: str
    history: list[tuple[int, str, float]] = field(default_factory=list)  # (step, term, value)
    final: bool = False


def progress(frame: Frame) -> tuple[str, str]:
    """The start of a status line ("Step 3/150", "Done 150/150", "Stopped at step 7/150") and its ETA part."""
    eta = "" if math.isnan(frame.eta) or frame.done or frame.stopped else f" · ETA {frame.eta:.0f} s"
    head = "Stopped at step" if frame.stopped else "Done" if frame.done else "Step"
    return f"{head} {frame.step}/{frame.total_steps}", eta


def status_line(frame: Frame) -> str:
    terms = " · ".join(f"{k} {v:.3g}" for k, v in frame.losses.items() if k != "total")
    head, eta = progress(frame)
    return (f"{head} · loss {frame.losses['total']:.4g} ({terms}) · "
            f"{frame.size[0]}×{frame.size[1]} · {frame.elapsed:.1f} s{eta}")


class Reporter:
    """The engine's report predicate for a streamed run: a step is reported (image rendered, losses read back)
    at most every `interval` seconds (the engine always reports the last step, and a stopped one)."""

    def __init__(self, interval: float = UPDATE_INTERVAL_S) -> None:
        self.interval, self.last = interval, -math.inf

    def __call__(self, step: int) -> bool:
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            return True
        return False


def throttle(frames: Iterator[Frame]) -> Iterator[Update]:
    """One update per reported frame (the engine reports on `Reporter`'s schedule); the last one (done or
    stopped) is final."""
    for frame in frames:
        if frame.images is not None:
            history = [(step, term, value) for step, losses in frame.history for term, value in losses.items()]
            yield Update(frame, status_line(frame), history, final=frame.done or frame.stopped)


class _Slot:
    """The one-slot buffer between the compute thread and a run's reader."""

    EMPTY = object()

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.item = self.EMPTY
        self.done = False
        self.closed = False
        self.error: BaseException | None = None


def on_thread(items: Iterator, executor: Executor) -> Iterator:
    """Run `items` on the executor's thread, ahead of this generator's reader: only the newest item waits in a
    one-slot buffer (older ones are dropped), and the last one is always delivered. An exception in `items`
    reaches the reader after the items before it. Closing this generator returns at once: `items` stops after
    its current item, and is closed on the executor's thread."""
    slot = _Slot()

    def produce() -> None:
        try:
            for item in items:
                with slot.cond:
                    if slot.closed:
                        break
                    slot.item = item
                    slot.cond.notify()
        except BaseException as exc:  # handed to the reader, who raises it
            slot.error = exc
        finally:
            try:
                items.close()  # on this thread: torch state and the engine's lock belong here
            except Exception as exc:
                log.warning("closing a run failed: %r", exc)
            with slot.cond:
                slot.done = True
                slot.cond.notify()

    executor.submit(produce)
    try:
        while True:
            with slot.cond:
                while slot.item is slot.EMPTY and not slot.done:
                    slot.cond.wait()
                item, slot.item = slot.item, slot.EMPTY
            if item is slot.EMPTY:
                if slot.error is not None:
                    raise slot.error
                return
            yield item
    finally:
        with slot.cond:
            slot.closed = True  # the producer stops after its current item; nobody waits for it here


def preview(image: Image.Image) -> Image.Image:
    """A streamed preview: the image itself, or at most PREVIEW_MAX_SIDE px (Gradio encodes every yield)."""
    if max(image.size) <= PREVIEW_MAX_SIDE:
        return image
    scale = PREVIEW_MAX_SIDE / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)


def closing_in_background(items: Iterator) -> Iterator:
    """Yield from `items`; if the consumer stops early (a cancel, a client gone), close `items` on a short-lived
    thread instead of waiting for it. Closing ZeroGPU's wrapper waits for the worker process to finish its step,
    and a cancel arrives on the web server's event-loop thread, which must never wait."""
    finished = False
    try:
        for item in items:
            yield item
        finished = True
    finally:
        if not finished:
            threading.Thread(target=items.close, daemon=True, name="stylize-close").start()


def batch_status(frame: Frame, count: int) -> str:
    """A compare batch's status: step, how many images, their size, time and ETA (losses are per image)."""
    head, eta = progress(frame)
    return (f"{head} · {count} images of {frame.size[0]}×{frame.size[1]} in one "
            f"batch · {frame.elapsed:.1f} s{eta}")


def out_of_memory_as_message(items: Iterator) -> Iterator:
    """`items`, with a GPU out-of-memory error turned into one message with what to change; the memory the run
    held is handed back to the device first, so the next request starts clean."""
    import torch

    try:
        yield from items
    except torch.OutOfMemoryError:
        items.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise StylizeError("the GPU ran out of memory: use a smaller size, or fewer presets or grid cells") from None
