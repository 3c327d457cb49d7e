"""How a run reaches its reader: `Update`s with status lines, one per reported frame, reported about twice a
second (`Reporter`, the engine's report predicate), with previews at most PREVIEW_MAX_SIDE px; and, before a run
starts on a busy machine, its place in line (`Waiting`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from PIL import Image

from .loop import Frame

UPDATE_INTERVAL_S = 0.5  # about two streamed images a second
PREVIEW_MAX_SIDE = 1024  # previews are sent at most this large (the result itself is a full-size PNG)


@dataclass
class Waiting:
    """A run not yet started: its place among the runs waiting, how many run now, and when it should end."""

    place: int
    running: int
    eta_s: float

    @property
    def status(self) -> str:
        ahead = f"{self.running} run{'s' if self.running != 1 else ''} on the machine"
        eta = "" if math.isnan(self.eta_s) else f" · ETA {self.eta_s:.0f} s"
        return f"Waiting: {_ordinal(self.place)} in line ({ahead}){eta}"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


@dataclass
class Update:
    """One streamed state of a run, ready to show; `final` marks the last one (finished or stopped). A run still
    waiting for its turn has no frame yet, only a status."""

    frame: Frame | None
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


def batch_status(frame: Frame, count: int) -> str:
    """A compare batch's status: step, how many images, their size, time and ETA (losses are per image)."""
    head, eta = progress(frame)
    return (f"{head} · {count} images of {frame.size[0]}×{frame.size[1]} in one "
            f"batch · {frame.elapsed:.1f} s{eta}")


class Reporter:
    """The engine's report predicate for a streamed run: a step is reported (image rendered, losses read back)
    at most every `interval` seconds (the engine always reports the last step, and a stopped one). `share()`, where
    given, is how many runs stream at once: each reports that many times less often, so the server encodes about
    as many previews a second however many visitors there are (each one a WebP written by Gradio)."""

    def __init__(self, interval: float = UPDATE_INTERVAL_S, share: Callable[[], int] | None = None) -> None:
        self.interval, self.share, self.last = interval, share, -math.inf

    def __call__(self, step: int) -> bool:
        now = time.perf_counter()
        if now - self.last >= self.interval * max(1, self.share() if self.share else 1):
            self.last = now
            return True
        return False


def throttle(frames: Iterator[Frame | Waiting]) -> Iterator[Update]:
    """One update per reported frame (the engine reports on `Reporter`'s schedule), or per change of place in
    line; the last one (done or stopped) is final."""
    for frame in frames:
        if isinstance(frame, Waiting):
            yield Update(None, frame.status)
        elif frame.images is not None:
            history = [(step, term, value) for step, losses in frame.history for term, value in losses.items()]
            yield Update(frame, status_line(frame), history, final=frame.done or frame.stopped)


def preview(image: Image.Image) -> Image.Image:
    """A streamed preview: the image itself, or at most PREVIEW_MAX_SIDE px (Gradio encodes every yield)."""
    if max(image.size) <= PREVIEW_MAX_SIDE:
        return image
    scale = PREVIEW_MAX_SIDE / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
