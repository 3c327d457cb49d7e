"""What the app runs, without any UI: presets, one shared engine per weight source, throttled run updates,
status lines and shareable links. `app.py` only wires these to components.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import threading
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image

from . import images
from .engine import Frame, Stylizer, default_device
from .errors import StylizeError
from .params import Settings, defaults_for
from .presets import PresetImages, load_manifest
from .weights import load_weights

log = logging.getLogger(__name__)

UPDATE_INTERVAL_S = 0.5  # about two streamed images a second
MAX_INPUT_SIDE = 2048  # uploads are decoded at most this large (JPEG draft mode makes big photos cheap)
WEIGHT_CHOICES = ("auto", "hub", "embedded")
THUMBNAIL_SIDE = 256
RESULT_MAX_AGE_S = 600  # saved PNGs are handed to the UI at once; older ones are swept


@dataclass
class Update:
    """One streamed state of a run, ready to show; `final` marks the last one (finished or stopped)."""

    frame: Frame
    status: str
    history: list[tuple[int, str, float]] = field(default_factory=list)  # (step, term, value)
    final: bool = False


def status_line(frame: Frame, stopped: bool = False) -> str:
    terms = " · ".join(f"{k} {v:.3g}" for k, v in frame.losses.items() if k != "total")
    eta = "" if math.isnan(frame.eta) or frame.done or stopped else f" · ETA {frame.eta:.0f} s"
    head = "Stopped at step" if stopped else "Done" if frame.done else "Step"
    return (f"{head} {frame.step}/{frame.total_steps} · loss {frame.losses['total']:.4g} ({terms}) · "
            f"{frame.size[0]}×{frame.size[1]} · {frame.elapsed:.1f} s{eta}")


def throttle(frames: Iterator[Frame], stop: threading.Event | None = None,
             interval: float = UPDATE_INTERVAL_S) -> Iterator[Update]:
    """Updates at most every `interval` seconds plus a final one, with the loss history so far.

    Every frame must carry an image (preview_every=1). When `stop` is set, the run ends after the current
    step and its image becomes the final update.
    """
    history: list[tuple[int, str, float]] = []
    last_sent = -math.inf
    for frame in frames:
        history.extend((frame.step, term, value) for term, value in frame.losses.items())
        stopped = stop is not None and stop.is_set() and not frame.done
        now = time.perf_counter()
        if frame.done or stopped or now - last_sent >= interval:
            last_sent = now
            yield Update(frame, status_line(frame, stopped), list(history), final=frame.done or stopped)
        if stopped:
            frames.close()
            return


def on_thread(items: Iterator, executor: ThreadPoolExecutor) -> Iterator:
    """Advance `items` on the executor's thread; closing this generator closes `items` there too."""
    try:
        while True:
            try:
                item = executor.submit(next, items).result()
            except StopIteration:
                return
            yield item
    finally:
        executor.submit(items.close).result()


def gpu_seconds(size: int, steps: int, styles: int = 1) -> int:
    """A ZeroGPU time budget for one run: model load plus steps at a measured per-step cost, with margin."""
    per_step = 0.006 * (size / 512) ** 2 * (1 + 0.1 * (styles - 1))
    return int(min(300, max(20, 15 + 2 * steps * per_step)))


def share_url(base: str, settings: Settings, preset_ids: Sequence[str] = (), run: bool = False) -> str:
    """A link that reopens the app with these settings (and presets); `run` starts it at once."""
    extra = {"preset": ",".join(preset_ids)} if preset_ids else {}
    if run:
        extra["run"] = "1"
    return f"{base.split('?')[0]}?{settings.to_query(extra)}"


def space_base_url() -> str | None:
    """The public page of this Space, when running on Hugging Face Spaces."""
    space = os.environ.get("SPACE_ID")
    return f"https://huggingface.co/spaces/{space}" if space else None


class Studio:
    """Presets plus engines loaded once per process (in the background), shared by every request."""

    def __init__(self, presets_dir: str | Path | None = None, download_presets: bool | None = None) -> None:
        if download_presets is None:
            download_presets = os.environ.get("STYLIZE_PRESET_DOWNLOADS", "1") != "0"
        self.presets = load_manifest()
        self.preset_images = PresetImages(self.presets, extra_dir=presets_dir, download=download_presets)
        self.device = default_device()
        self.defaults = defaults_for(self.device.type)
        self._engines: dict[str, Stylizer] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        # A run's stop flag lives as long as the run holds it: ended runs' flags drop out by themselves.
        self._stops: weakref.WeakValueDictionary[str, threading.Event] = weakref.WeakValueDictionary()
        # Engine work always runs on these threads, however the web server's workers hop between calls.
        self._compute = ThreadPoolExecutor(max_workers=int(os.environ.get("STYLIZE_CONCURRENCY", 1)),
                                           thread_name_prefix="stylize-compute")
        threading.Thread(target=self._load_default, daemon=True, name="stylize-weights").start()

    def _load_default(self) -> None:
        """Background start-up: the default engine, warmed up, then any preset images not yet on disk."""
        try:
            self._warm_up(self.engine("auto"))
        except Exception as exc:  # reported by weights_status and at the first run
            log.exception("loading the weights failed")
            self._errors["auto"] = str(exc)
        finally:
            self._ready.set()
        for preset_id, reason in self.preset_images.availability().items():
            if reason is not None and self.preset_images.download_allowed:
                try:
                    self.preset_images.path(preset_id)
                except StylizeError as exc:
                    log.info("preset %s unavailable: %s", preset_id, exc)

    def _warm_up(self, engine: Stylizer) -> None:
        """Two steps at the default size on the compute thread, so the first user's first preview is not also
        the one that pays for kernel selection and allocator growth (measured: 6.2 s instead of 2.9 s)."""
        width, height = images.fit_size((4, 3), self.defaults.size)
        photo, painting = Image.new("RGB", (width, height), "gray"), Image.new("RGB", (width, width), "white")
        warm = self.defaults.replace(steps=2)
        self._compute.submit(lambda: list(engine.run(photo, [painting], warm))).result()

    def engine(self, source: str = "auto") -> Stylizer:
        """The shared engine for a weight source, loaded on first use."""
        if source not in WEIGHT_CHOICES:
            raise StylizeError(f"weights must be one of {', '.join(WEIGHT_CHOICES)} (got {source!r})")
        with self._lock:
            if source not in self._engines:
                self._engines[source] = Stylizer(load_weights(source), self.device)
            return self._engines[source]

    @property
    def ready(self) -> bool:
        """Whether start-up has finished loading (or failed to load) the default weights."""
        return self._ready.is_set()

    def weights_status(self, timeout: float = 60.0) -> str:
        """Which weights are in use and where they run, waiting at most `timeout` for them to load."""
        if not self._ready.wait(timeout):
            return "Weights: loading… (a run started now waits for them)."
        if "auto" in self._engines:
            engine = self._engines["auto"]
            return f"Weights: {engine.weights.summary}. Running on {engine.device.type.upper()} ({engine.precision})."
        return f"Weights could not be loaded: {self._errors.get('auto', 'still loading')}"

    def thumbnails(self) -> list[tuple[str, str]]:
        """(thumbnail path, caption) for every preset whose image is on disk.

        Thumbnails are written once into the temp folder: small to send, and servable by a web UI whatever
        folder the originals live in.
        """
        folder = Path(tempfile.gettempdir()) / "stylize-thumbnails"
        folder.mkdir(exist_ok=True)
        items = []
        for preset_id, reason in self.preset_images.availability().items():
            if reason is not None:
                continue
            source = self.preset_images.local_path(preset_id)
            stat = source.stat()
            key = hashlib.blake2b(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode(), digest_size=8)
            thumb = folder / f"{preset_id}-{key.hexdigest()}.jpg"
            if not thumb.exists():
                images.load_image(source, THUMBNAIL_SIDE).save(thumb, "JPEG", quality=85)
            items.append((str(thumb), self.presets[preset_id].caption))
        return items

    @staticmethod
    def save_result(image: Image.Image) -> str:
        """The result as a lossless PNG in a folder of the app's own, swept of files older than 10 minutes."""
        folder = Path(tempfile.gettempdir()) / "stylize-results"
        folder.mkdir(exist_ok=True)
        cutoff = time.time() - RESULT_MAX_AGE_S
        for old in folder.glob("*.png"):
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
        path = folder / f"stylized-{uuid.uuid4().hex[:12]}.png"
        image.save(path, "PNG")
        return str(path)

    def load_style(self, preset_id: str | None, upload: str | None) -> tuple[Image.Image, str | None]:
        """The style image from an upload (preferred) or a preset id; returns it and the preset id used."""
        if upload:
            return images.load_image(upload, MAX_INPUT_SIDE), None
        if not preset_id:
            raise StylizeError("choose a preset painting or upload one")
        return images.load_image(self.preset_images.path(preset_id), MAX_INPUT_SIDE), preset_id

    def stop_flag(self, session: str | None) -> threading.Event:
        """A fresh stop flag for a session's new run (a session runs one job at a time)."""
        flag = threading.Event()
        if session:
            self._stops[session] = flag
        return flag

    def request_stop(self, session: str | None) -> bool:
        """Ask the session's running job to end after its current step; False if it has none."""
        flag = self._stops.get(session or "")
        if flag is None:
            return False
        flag.set()
        return True

    def run(self, photo: Image.Image | None, styles: Sequence[Image.Image], settings: Settings,
            source: str = "auto", stop: threading.Event | None = None) -> Iterator[Update]:
        """Stylize and stream throttled updates; input errors surface as `StylizeError` before any work."""
        if photo is None:
            raise StylizeError("add a photo first (upload, webcam or clipboard)")
        updates = throttle(self.engine(source).run(photo, styles, settings, preview_every=1), stop)
        return on_thread(updates, self._compute)
