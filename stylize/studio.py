"""What the app runs, without any UI: presets and examples, one shared engine per weight source, input loading
and validation, per-machine limits, throttled run updates, the compare loop, stop flags, result files, status
lines and shareable links. `app.py` only wires these to components.

ZeroGPU (Hugging Face's shared GPUs) runs a `@spaces.GPU` function in a *forked child process* and pickles what
it yields back to the parent. Everything here that a run touches is therefore either picklable or read from
disk (stop flags are files), the engines are built on the importing thread, and no thread of this process is
needed inside the child (`Studio.zero_gpu`; a PID check guards the compute thread).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlencode

from PIL import Image

from . import images
from .budget import (COMPARE_BUDGET_S, COMPARE_PRESETS, MIN_COMPARE_SIZE, RUN_BUDGET_S, Budget, ZeroGpu, bytes_per_pixel,
                     plan_batches)
from .comparison import CompareCell, CompareLink, is_compare_link, open_compare_link
from .engine import Frame, Job, Stylizer
from .machine import cpu_name, default_device, requested_precision
from .errors import StylizeError
from .explore import KINDS, MAX_CELLS, Grid, run_grid, style_set_label
from .params import RANGES, STYLE_LAYER_SETS, Settings, defaults_for, within_limits
from .plan import batch_key
from .masks import BLACK, read_mask
from .presets import PresetImages, example_photos, load_manifest
from .regions import KEEP, MAIN, MAX_REGIONS, UPLOAD, grey_image, read_regions, region_masks
from .streaming import Reporter, Update, batch_status, on_thread, out_of_memory_as_message, progress, throttle
from .vgg import FEATURE_LAYERS
from .weights import load_weights

log = logging.getLogger(__name__)

MAX_INPUT_SIDE = 2048  # uploads are decoded at most this large (JPEG draft mode makes big photos cheap)
WEIGHT_CHOICES = ("auto", "hub", "embedded")
THUMBNAIL_SIDE = 256
RESULT_MAX_AGE_S = 600  # saved PNGs are handed to the UI at once; older ones are swept
MAX_UPLOAD_BYTES = 10 * 2**20  # also the web server's upload cap (app.MAX_UPLOAD)
MAX_STYLES = 4  # style images per run: the painting plus up to three more
MAX_COMPARE = 6  # presets per comparison
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "presets" / "examples"
RUNNING = " (running)"  # ends the caption of a compare result still forming
STYLE_MODEL_NAMES = {"gram": "Gram (Gatys 2015)", "mrf": "Patches (Li & Wand 2016)"}  # UI labels and captions
# Compare runs its presets as one batch (one VGG pass per step for all of them) where that is faster. On this
# project's 2-core CPU it is, a little: 3 presets × 30 steps in one batch took 0.78–0.80× the time of one after
# another at 128 px and 0.97–0.98× at 256 px (medians of 3, two quiet runs; tools/bench_compare.py, README,
# Performance), and was never slower. On a GPU one small image leaves most of the device idle, so a batch is
# expected to win by far more there (not measured: no GPU was lent to this project). STYLIZE_COMPARE_BATCH=1/0
# overrides.
COMPARE_BATCH = {"cpu": True, "cuda": True}
EXAMPLES_MANIFEST = EXAMPLES_DIR / "examples.json"


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def zero_gpu_enabled() -> bool:
    """True on a ZeroGPU Space (the `spaces` package reads the same variable the same way)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


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


def settings_from_values(values: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Settings from UI or API values by field name, each cast to its field's type (a number box gives
    floats, a text box may give None); fields not in `values` keep `base`'s value."""
    base = base or Settings()
    changes = {}
    for f in fields(Settings):
        if f.name not in values:
            continue
        value, kind = values[f.name], type(getattr(base, f.name))
        if value is None or value == "":
            value = "" if kind is str else getattr(base, f.name)
        elif kind is int and not isinstance(value, bool):
            value = int(round(float(value)))
        elif kind is float:
            value = float(value)
        changes[f.name] = value
    return base.replace(**changes)


class StopFlag:
    """One session's Stop, readable from any process: ZeroGPU runs the work in a forked child, which never sees
    a flag set in the parent's memory. Two empty files named by a hash of the session id: `<key>.run` while a
    run holds the flag, `<key>.stop` once Stop was pressed. Checking costs one stat() per step."""

    def __init__(self, session: str | None, folder: Path | None = None) -> None:
        folder = folder or Path(tempfile.gettempdir()) / "stylize-stops"
        folder.mkdir(exist_ok=True)
        key = hashlib.blake2b((session or uuid.uuid4().hex).encode(), digest_size=16).hexdigest()
        self.running, self.stopped = folder / f"{key}.run", folder / f"{key}.stop"

    def is_set(self) -> bool:
        return self.stopped.exists()

    def set(self) -> bool:
        """Ask the run holding this flag to stop after its current step; False if none holds it."""
        if not self.running.exists():
            return False
        self.stopped.touch()
        return True

    def __enter__(self) -> "StopFlag":
        self.stopped.unlink(missing_ok=True)  # a new run starts unstopped
        self.running.touch()
        return self

    def __exit__(self, *exc) -> None:
        self.running.unlink(missing_ok=True)
        self.stopped.unlink(missing_ok=True)


@dataclass(frozen=True)
class Limits:
    """What one request may ask of this machine."""

    max_size: int
    max_steps: int
    max_styles: int = MAX_STYLES
    max_compare: int = MAX_COMPARE


def limits_for(device_type: str, defaults: Settings) -> Limits:
    if device_type == "cuda":
        return Limits(max(2048, defaults.size), max(2000, defaults.steps))
    return Limits(max(512, defaults.size), max(1000, defaults.steps))


@dataclass
class Link:
    """What a shared link asks for, made valid: clamped settings, a known preset, and a notice per change."""

    preset_id: str
    settings: Settings
    notices: list[str]
    autorun: bool


@dataclass(frozen=True)
class Example:
    """A finished result shipped with the app (presets/examples/), and how it was made."""

    photo: str  # example photo id
    preset: str  # preset id
    settings: Settings
    image: Path
    caption: str


class Studio:
    """Presets, examples and engines, loaded once per process on the importing thread, shared by every request."""

    def __init__(self, presets_dir: str | Path | None = None, zero_gpu: bool | None = None) -> None:
        requested_precision()  # a bad $STYLIZE_PRECISION is refused now, with the choices, not as missing weights
        self.presets = load_manifest()
        self.preset_images = PresetImages(self.presets, extra_dir=presets_dir)
        self.photos = {photo.id: photo for photo in example_photos()}
        self.zero_gpu = zero_gpu_enabled() if zero_gpu is None else zero_gpu
        self.device = default_device()
        self._pid = os.getpid()
        self._engines: dict[str, Stylizer] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        # The weights load now, on the importing (main) thread: ~0.2 s, nothing for a page load to wait for, and
        # under ZeroGPU's CUDA emulation `.to("cuda")` works only on that thread. ZeroGPU gets every source now,
        # so its worker process never builds an engine.
        for source in WEIGHT_CHOICES if self.zero_gpu else ("auto",):
            try:
                self.engine(source)
            except StylizeError as exc:
                log.warning("weights %r unavailable: %s", source, exc)
                self._errors[source] = str(exc)
        # Defaults sized to this machine's measured speed (budget.py); the limits stay the device type's.
        self.budget = Budget.for_engine(self._engines.get("auto"), self.device.type, self.zero_gpu)
        self.limits = limits_for(self.device.type, defaults_for(self.device.type))
        self.defaults = self.current_defaults()
        self.compare_defaults = self.budget.fit(self.defaults, COMPARE_BUDGET_S, self.defaults.size,
                                                batch=COMPARE_PRESETS, min_size=MIN_COMPARE_SIZE)
        self.warmed = threading.Event()
        # Off ZeroGPU, engine work runs on one dedicated thread, however the web server's workers hop between
        # calls (measured faster on CPU: torch's OpenMP team belongs to the calling thread). On ZeroGPU there is
        # no such thread: the work runs in a forked process, where threads of this one do not exist.
        self._compute: ThreadPoolExecutor | None = None
        if self.zero_gpu:
            self.warmed.set()
        else:
            self._compute = ThreadPoolExecutor(max_workers=int(os.environ.get("STYLIZE_CONCURRENCY", 1)),
                                               thread_name_prefix="stylize-compute")
            self._compute.submit(self._warm_up)

    def current_defaults(self) -> Settings:
        """The default run as large as fits the time budget at this machine's speed as known now (the probe, then
        the runs made here): every page load starts from it, so the defaults follow what the runs measured."""
        base = defaults_for(self.device.type)
        return self.budget.fit(base, RUN_BUDGET_S, base.size)

    def observe(self, settings: Settings, frame: Frame, styles: int = 1, batch: int = 1) -> None:
        """Learn this machine's speed from a finished or stopped run (its frame came back from wherever it ran)."""
        self.budget.cost.observe(settings, frame.elapsed, frame.size, batch, styles, steps_done=frame.step)

    def _warm_up(self) -> None:
        """Two steps at the default size on the compute thread, so the first user's first preview is not also
        the one that pays for kernel selection and allocator growth (measured: 6.2 s instead of 2.9 s)."""
        try:
            engine = self._engines.get("auto")
            if engine is not None:
                width, height = images.fit_size((4, 3), self.defaults.size)
                photo, painting = Image.new("RGB", (width, height), "gray"), Image.new("RGB", (width, width), "white")
                list(engine.run(photo, [painting], self.defaults.replace(steps=2)))
        except Exception:  # a failed warm-up costs speed only
            log.exception("warm-up failed")
        finally:
            self.warmed.set()

    def engine(self, source: str = "auto") -> Stylizer:
        """The shared engine for a weight source, loaded on first use."""
        if source not in WEIGHT_CHOICES:
            raise StylizeError(f"weights must be one of {', '.join(WEIGHT_CHOICES)} (got {source!r})")
        with self._lock:
            if source not in self._engines:
                auto = self._engines.get("auto")
                if source == "hub" and auto is not None and auto.weights.source == "hub":
                    self._engines["hub"] = auto  # the same file: one copy on the device
                elif source == "hub" and auto is not None and auto.weights.reason:
                    raise StylizeError(f"the Hub's weights are unavailable ({auto.weights.reason})")  # no 2nd probe
                else:
                    self._engines[source] = Stylizer(load_weights(source), self.device)
            return self._engines[source]

    @property
    def ready(self) -> bool:
        """Whether the default weights are loaded (they load while the app is imported)."""
        return "auto" in self._engines

    def weights_status(self) -> str:
        """Where runs happen and with which weights, in plain words."""
        engine = self._engines.get("auto")
        if engine is None:
            return f"The network's weights could not be loaded: {self._errors.get('auto', 'unknown error')}"
        if self.zero_gpu:
            where = "a ZeroGPU GPU (lent for each run)"
        elif engine.device.type == "cuda":
            import torch

            where = f"GPU ({torch.cuda.get_device_name(engine.device)})"
        else:
            import torch

            where = f"CPU ({cpu_name()}, {torch.get_num_threads()} threads)"
        where += f" in {engine.chosen.reason}" if not self.zero_gpu else ""
        what = {"embedded": "the original VGG-19, offline copy",
                "hub": "VGG-19 (torchvision's ImageNet weights) from the Hugging Face Hub",
                "file": "VGG-19 from a local weights file"}.get(engine.weights.source, engine.weights.description)
        fallback = " (the Hugging Face Hub's copy could not be loaded)" if engine.weights.reason else ""
        d = self.defaults
        return (f"Running on {where}, with {what}{fallback}. Default run: {d.size} px, {d.steps} steps, "
                f"{self.budget.estimate(d)} (speed {self.budget.cost.source}).")

    # ---- images the app shows and serves ----------------------------------------------------------------

    @staticmethod
    def served(source: Path, side: int | None = None) -> str:
        """A copy of a shipped image in the temp folder (shrunk to `side` if given), written once: small to
        send, and servable by a web UI whatever folder the app runs from."""
        folder = Path(tempfile.gettempdir()) / "stylize-thumbnails"
        folder.mkdir(exist_ok=True)
        stat = source.stat()
        key = hashlib.blake2b(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{side}".encode(), digest_size=8)
        target = folder / f"{source.stem}-{key.hexdigest()}.jpg"
        if not target.exists():
            partial = target.with_suffix(f".{uuid.uuid4().hex[:8]}.part")
            images.load_image(source, side).save(partial, "JPEG", quality=90)
            partial.replace(target)
        return str(target)

    def available_presets(self) -> list[str]:
        """The ids of the presets whose image is on disk, in the manifest's order."""
        return [preset_id for preset_id, reason in self.preset_images.availability().items() if reason is None]

    def thumbnails(self) -> list[tuple[str, str]]:
        """(thumbnail path, title) for every available preset (the full caption is shown once one is chosen)."""
        return [(self.served(self.preset_images.local_path(preset_id), THUMBNAIL_SIDE), self.presets[preset_id].title)
                for preset_id in self.available_presets()]

    def photo_title(self, photo_id: str) -> str:
        """An example photo's short title (its manifest title without the parenthesis)."""
        return self.photos[photo_id].title.split(" (")[0]

    def photo_thumbnails(self) -> list[tuple[str, str]]:
        """(thumbnail path, short title) for every example photo; the credits are shown beside them."""
        return [(self.served(photo.path, THUMBNAIL_SIDE), self.photo_title(photo.id)) for photo in self.photos.values()]

    def photo_path(self, photo_id: str) -> str:
        """A servable copy of an example photo, by id."""
        if photo_id not in self.photos:
            raise StylizeError(f"unknown example photo {photo_id[:40]!r}")
        return self.served(self.photos[photo_id].path)

    def example_photo_id(self, path: str | None) -> str | None:
        """Which example photo a file is (a web UI hands back a byte-identical copy of `photo_path`), if any: a
        comparison's link can then name it."""
        if not path or not Path(path).is_file():
            return None
        if not hasattr(self, "_photo_digests"):
            self._photo_digests = {_digest(Path(self.photo_path(i))): i for i in self.photos
                                   if self.photos[i].path is not None}
        return self._photo_digests.get(_digest(Path(path)))

    def open_compare_link(self, query: Mapping[str, str]) -> CompareLink | None:
        """A comparison link's choices, validated and clamped to this machine (None if the link is not one)."""
        return open_compare_link(query, self.available_presets(), list(self.photos), self.compare_defaults,
                                 self.limits.max_size, self.limits.max_steps, self.limits.max_compare)

    def examples(self) -> list[Example]:
        """The finished examples in presets/examples/ whose photo, preset and image are all present."""
        if not EXAMPLES_MANIFEST.is_file():
            return []
        found = []
        for entry in json.loads(EXAMPLES_MANIFEST.read_text())["examples"]:
            image = EXAMPLES_DIR / entry["image"]
            if entry["photo"] in self.photos and entry["preset"] in self.presets and image.is_file():
                known = {f.name for f in fields(Settings)}
                settings = Settings(**{k: v for k, v in entry["settings"].items() if k in known})
                caption = f"{self.photo_title(entry['photo'])} × {self.presets[entry['preset']].title}"
                found.append(Example(entry["photo"], entry["preset"], settings, image, caption))
        return found

    def example_thumbnails(self) -> list[tuple[str, str]]:
        return [(self.served(example.image, 384), example.caption) for example in self.examples()]

    def credits(self) -> list[str]:
        """One credit line per preset painting and example photo (markdown)."""
        lines = [f"- **{p.title}** ({p.id}): {p.credit}" + (f" — *unavailable: {reason}*" if reason else "")
                 for p, reason in ((self.presets[i], r) for i, r in self.preset_images.availability().items())]
        lines += [f"- Photo *{photo.title}*: {photo.credit}" for photo in self.photos.values()]
        return lines

    # ---- inputs, limits, links --------------------------------------------------------------------------

    @staticmethod
    def load_upload(path: str | Path, what: str) -> Image.Image:
        """An uploaded file through stylize's own loader (header checks before any decoding); errors name the input."""
        try:
            return images.load_image(path, MAX_INPUT_SIDE, max_bytes=MAX_UPLOAD_BYTES)
        except StylizeError as exc:
            raise StylizeError(f"{what}: {exc}") from None

    def load_style(self, preset_id: str | None, upload: str | None) -> tuple[Image.Image, str | None]:
        """The style image from an upload (preferred) or a preset id; returns it and the preset id used."""
        if upload:
            return self.load_upload(upload, "the painting"), None
        if not preset_id:
            raise StylizeError("choose a preset painting or upload one")
        return images.load_image(self.preset_images.path(preset_id), MAX_INPUT_SIDE), preset_id

    def load_inputs(self, photo: str | None, preset_id: str | None, style_upload: str | None,
                    extra_styles: Sequence[str] | None = None) -> tuple[Image.Image | None, list[Image.Image], str | None]:
        """The photo (None if not given), the style images and the preset id used, validated and bounded."""
        extra = list(extra_styles or [])
        if 1 + len(extra) > self.limits.max_styles:
            raise StylizeError(f"at most {self.limits.max_styles} style images per run (the painting and "
                               f"{self.limits.max_styles - 1} more); got {1 + len(extra)}")
        loaded = self.load_upload(photo, "the photo") if photo else None
        style, used = self.load_style(preset_id, style_upload)
        styles = [style] + [self.load_upload(f, f"style image {n}") for n, f in enumerate(extra, 2)]
        return loaded, styles, used

    def load_masks(self, files: Sequence[str] | None, styles: int, photo: Image.Image | None
                   ) -> tuple[list[Image.Image] | None, list[str]]:
        """The API's masks (one per style image, in the same order), each through the mask loader's checks and
        made an 8-bit grey image (picklable); None without masks. Also notices for masks of another shape than
        the photo (they are stretched to fit)."""
        files = [f for f in files or [] if f]
        if not files:
            return None, []
        if len(files) != styles:
            raise StylizeError(f"masks: got {len(files)} for {styles} style image{'s' if styles != 1 else ''} (the "
                               f"painting{f' and {styles - 1} more' if styles > 1 else ''}): give one mask per style "
                               "image, in the same order (white: this style goes here)")
        if photo is None:
            raise StylizeError("masks need a photo: they say where on it each style goes")
        loaded, notices = [], []
        for n, path in enumerate(files, 1):
            grey = read_mask(path, f"mask {n}", MAX_UPLOAD_BYTES)
            if grey.max() <= BLACK:
                raise StylizeError(f"mask {n} is all black: it selects no pixels (white: this style goes here)")
            height, width = grey.shape
            if abs((width / height) / (photo.width / photo.height) - 1) > 0.01:
                notices.append(f"mask {n} is {width}×{height}, the photo {photo.width}×{photo.height}: stretched to fit")
            mask = grey_image(grey)
            if max(mask.size) > MAX_INPUT_SIDE:
                mask = mask.resize(images.fit_size(mask.size, MAX_INPUT_SIDE), Image.Resampling.BILINEAR)
            loaded.append(mask)
        return loaded, notices

    def region_inputs(self, photo: str | None, preset_id: str | None, style_upload: str | None,
                      extra_styles: Sequence[str] | None, layers: Sequence[str | None],
                      choices: Sequence[str | None]
                      ) -> tuple[Image.Image, list[Image.Image], list[Image.Image], str | None] | None:
        """Painted regions (stylize/regions.py) as the photo, one style image and one mask per style, and the
        preset id of the painting for the rest of the photo; None when no region is painted or chosen.

        The painting chosen for the whole photo fills what no region covers; when a region uses the uploaded
        painting, the whole photo's painting is the chosen preset (if any) instead of that upload.
        """
        choices = list(choices)
        regions = read_regions(layers, choices, MAX_REGIONS, MAX_UPLOAD_BYTES)
        if not regions:
            return None
        uses_upload = UPLOAD in choices
        if uses_upload and not style_upload:
            raise StylizeError("a region uses your uploaded painting, but none is uploaded: upload one under "
                               "'…or use your own painting(s)', or choose a preset for that region")
        if extra_styles:
            raise StylizeError("blended style images and painted regions do not combine: remove the extra style "
                               "images, or clear the regions")
        for choice in choices:
            if choice and choice not in (KEEP, UPLOAD):
                self.preset_images.path(choice)  # an unknown or unavailable preset: its message, before any work
        if photo is None:
            raise StylizeError("add a photo first (upload, webcam or clipboard), then paint regions over it")
        loaded = self.load_upload(photo, "the photo")
        main_id = preset_id or None
        main_upload = style_upload if style_upload and not uses_upload else None
        plan = region_masks(regions, loaded.size, has_main=bool(main_id or main_upload))
        if len(plan) > self.limits.max_styles:
            raise StylizeError(f"at most {self.limits.max_styles} style images per run; these regions need {len(plan)}")
        styles, masks, used = [], [], None
        for choice, mask in plan:
            if choice == MAIN:
                style, used = self.load_style(None if main_upload else main_id, main_upload)
            elif choice == UPLOAD:
                style = self.load_upload(style_upload, "the painting")
            else:
                style, _ = self.load_style(choice, None)
            styles.append(style)
            masks.append(mask)
        return loaded, styles, masks, used

    def region_background(self, photo: str | None) -> str | None:
        """The photo as the region editor shows it (upright, at most 1024 px): a file in the temp folder, or
        None without a photo or for one the loader refuses (the run then says why)."""
        if not photo:
            return None
        try:
            img = images.load_image(photo, 1024, max_bytes=MAX_UPLOAD_BYTES)
        except StylizeError:
            return None
        folder = Path(tempfile.gettempdir()) / "stylize-regions"
        folder.mkdir(exist_ok=True)
        cutoff = time.time() - RESULT_MAX_AGE_S  # the web UI copies it into its own cache at once
        for old in folder.glob("*.jpg"):
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
        target = folder / f"photo-{uuid.uuid4().hex[:12]}.jpg"
        img.save(target, "JPEG", quality=90)
        return str(target)

    def check(self, settings: Settings, styles: int = 1, presets: int = 1) -> None:
        """Refuse work beyond this machine's limits, with what to change."""
        problems = []
        if settings.size > self.limits.max_size:
            problems.append(f"size {settings.size} is above this machine's {self.limits.max_size} px")
        if settings.steps > self.limits.max_steps:
            problems.append(f"steps {settings.steps} is above this machine's {self.limits.max_steps}")
        if problems:
            raise StylizeError("; ".join(problems))
        self.budget.check(settings, batch=presets, styles=styles)

    def compare_ids(self, preset_ids: Sequence[str] | None) -> list[str]:
        """The presets to compare: known ids, duplicates dropped, at most `limits.max_compare`."""
        ids = list(dict.fromkeys(preset_ids or []))
        if not ids:
            raise StylizeError("tick at least one preset to compare")
        for preset_id in ids:
            self.preset_images.get(preset_id)
        if len(ids) > self.limits.max_compare:
            raise StylizeError(f"compare at most {self.limits.max_compare} presets at a time (got {len(ids)})")
        return ids

    def compare_cells(self, preset_ids: Sequence[str], base: Settings, both_models: bool = False) -> list[CompareCell]:
        """The results a comparison makes, in the order shown: each preset with its tuned settings over `base`,
        and with `both_models` once with each style model (Gram, then patches). A caption names the model when
        both are shown or when it is the patch model."""
        cells = []
        for preset_id in preset_ids:
            preset, tuned = self.presets[preset_id], self.presets[preset_id].apply(base)
            for model in ("gram", "mrf") if both_models else (tuned.style_model,):
                named = f" · {STYLE_MODEL_NAMES[model]}" if both_models or model != "gram" else ""
                cells.append(CompareCell(preset_id, tuned.replace(style_model=model), preset.caption + named,
                                         preset.title + named))
        return cells

    def compare_seconds(self, preset_ids: Sequence[str], base: Settings, both_models: bool = False) -> int:
        """The ZeroGPU duration a comparison asks for: every result's own run (a batch does the same work per step
        as its items one after another, and on a GPU does it faster), with the request's margin."""
        return ZeroGpu.request(self._cells_seconds(self.compare_cells(preset_ids, base, both_models)))

    def _cells_seconds(self, cells: Sequence[CompareCell]) -> float:
        return sum(self.budget.seconds(cell.settings) for cell in cells)

    def compare_estimate(self, preset_ids: Sequence[str], base: Settings, both_models: bool = False) -> str:
        """What a comparison will take here, before the click."""
        cells = self.compare_cells(preset_ids, base, both_models) if preset_ids else []
        return self.budget.estimate(base, batch=max(len(cells), 1)) if cells else ""

    def check_compare(self, cells: Sequence[CompareCell]) -> None:
        """Refuse a comparison beyond this machine's limits (each result's size and steps; on ZeroGPU the duration
        it would ask for), with what to change."""
        for cell in cells:
            self.check(cell.settings)
        if self.budget.zerogpu is not None:
            self.budget.zerogpu.check(ZeroGpu.request(self._cells_seconds(cells)), "this comparison")

    @property
    def batch_compare(self) -> bool:
        """Whether Compare runs its results as batches on this device (COMPARE_BATCH; STYLIZE_COMPARE_BATCH overrides)."""
        override = os.environ.get("STYLIZE_COMPARE_BATCH", "").strip().lower()
        if override:
            return override in ("1", "true", "yes", "on")
        return COMPARE_BATCH.get(self.device.type, False)

    def open_link(self, query: Mapping[str, str]) -> Link:
        """A shared link's query string, validated like any input and clamped to this machine's limits."""
        params = dict(query)
        if is_explore_link(params) or is_compare_link(params):  # another tab reads it; Stylize keeps its defaults
            return Link("", self.current_defaults(), [], autorun=False)
        preset_id = str(params.get("preset", "")).split(",")[0]
        settings, notices = Settings.from_query(params, ignore=("preset", "run", "deep_link", "__theme"),
                                                base=self.current_defaults())
        if preset_id and preset_id not in self.presets:
            notices.append(f"unknown preset {preset_id[:40]!r}; choose one from the gallery")
            preset_id = ""
        settings = within_limits(settings, self.limits.max_size, self.limits.max_steps, notices)
        return Link(preset_id, settings, notices, autorun=params.get("run") == "1" and bool(preset_id))

    def stop_flag(self, session: str | None) -> StopFlag:
        """The session's stop flag; `with` it around a run (a session runs one job at a time)."""
        return StopFlag(session)

    def request_stop(self, session: str | None) -> bool:
        """Ask the session's running job to end after its current step; False if it has none."""
        return bool(session) and StopFlag(session).set()

    # ---- results ------------------------------------------------------------------------------------------

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

    def finish(self, photo: Image.Image | None, image: Image.Image) -> tuple[tuple[Image.Image, Image.Image], str]:
        """A finished result's (before, after) pair and its lossless PNG; run in the web server's process, so
        the file outlives any worker process."""
        before = images.resize(photo, image.size) if photo is not None else image
        return (before, image), self.save_result(image)

    # ---- runs -----------------------------------------------------------------------------------------------

    def _on_compute_thread(self, items: Iterator) -> Iterator:
        """`items` advanced on the compute thread, or in place where there is none: on ZeroGPU, and in any forked
        child (the thread does not exist there; waiting for it would hang)."""
        if self._compute is not None and os.getpid() == self._pid:
            items = on_thread(items, self._compute)
        return out_of_memory_as_message(items)

    def run(self, photo: Image.Image | None, styles: Sequence[Image.Image], settings: Settings,
            source: str = "auto", stop: StopFlag | threading.Event | None = None,
            masks: Sequence[Image.Image] | None = None) -> Iterator[Update]:
        """Stylize and stream throttled updates; input errors surface as `StylizeError` before any work.
        `masks` (one per style image) paint each style into its region; pixels no mask covers keep the photo."""
        if photo is None:
            raise StylizeError("add a photo first (upload, webcam or clipboard)")
        frames = self.engine(source).run(photo, styles, settings, report_every=Reporter(stop), masks=masks or None)
        return self._on_compute_thread(throttle(frames, stop))

    def compare(self, photo: Image.Image | None, preset_ids: Sequence[str], settings: Settings,
                source: str = "auto", stop: StopFlag | threading.Event | None = None,
                both_models: bool = False) -> Iterator[tuple[list, str]]:
        """One photo × several presets, each with its tuned settings over `settings` (and with `both_models`,
        each with both style models): yields (gallery items, status), the gallery in the order of
        `compare_cells`, each result shown as it forms. Where `batch_compare`, results that can share a batch
        (`compare_batches`) run as one and update together; otherwise one after another. Stop ends the current
        run (its images are kept) and skips the rest."""
        ids = self.compare_ids(preset_ids)
        cells = self.compare_cells(ids, settings, both_models)
        styles: dict[str, Image.Image] = {}
        skipped: list[str] = []
        for preset_id in ids:
            try:
                styles[preset_id], _ = self.load_style(preset_id, None)
            except StylizeError as exc:  # an unavailable painting is skipped, not fatal
                skipped.append(str(exc))
        runnable = [k for k, cell in enumerate(cells) if cell.preset_id in styles]
        if not runnable:
            raise StylizeError("none of the chosen presets is available: " + "; ".join(skipped))
        groups = (self.compare_batches(cells, runnable, photo.size) if self.batch_compare
                  else [[k] for k in runnable])
        results: dict[int, Image.Image] = {}
        notes = "".join(f" · skipped {s}" for s in skipped)

        def gallery(running: Mapping[int, Image.Image] = {}) -> list[tuple[Image.Image, str]]:
            shown = {**results, **running}
            return [(shown[k], cells[k].caption if k in results else cells[k].title + RUNNING)
                    for k in sorted(shown)]

        for group in groups:
            if stop is not None and stop.is_set():
                break
            update = None
            if len(group) == 1:
                (k,) = group
                for update in self.run(photo, [styles[cells[k].preset_id]], cells[k].settings, source, stop):
                    yield gallery({k: update.frame.image}), f"{k + 1}/{len(cells)}: {update.status}"
            else:
                jobs = [Job(photo, [styles[cells[k].preset_id]], cells[k].settings) for k in group]
                frames = self.engine(source).run_batch(jobs, report_every=Reporter(stop))
                for update in self._on_compute_thread(throttle(frames, stop)):
                    status = batch_status(update.frame, len(group), stopped=update.final and not update.frame.done)
                    yield gallery(dict(zip(group, update.frame.images))), f"{len(results)}/{len(cells)} done · {status}"
            if update is None:
                break
            results.update(zip(group, update.frame.images))
            stopped = "" if update.frame.done else f" · stopped at step {update.frame.step}/{update.frame.total_steps}"
            yield gallery(), f"{len(results)}/{len(cells)} done{stopped}" + notes

    def compare_batches(self, cells: Sequence[CompareCell], indices: Sequence[int],
                        photo_size: tuple[int, int] = (4, 3)) -> list[list[int]]:
        """`indices` of `cells` grouped into batches, in order of first appearance: results that agree on what a
        batch must share (`plan.batch_key`) run together, at most MAX_COMPARE at a time, and on a GPU no more than
        its free memory holds (`gpu_batches`)."""
        groups: dict[tuple, list[int]] = {}
        for k in indices:
            groups.setdefault(batch_key(cells[k].settings), []).append(k)
        batches = [group[i:i + MAX_COMPARE] for group in groups.values() for i in range(0, len(group), MAX_COMPARE)]
        planned = []
        for batch in batches:
            size = images.fit_size(photo_size, cells[batch[0]].settings.size)
            planned += [[batch[j] for j in part] for part in self.gpu_batches([size] * len(batch)) or [range(len(batch))]]
        return planned

    def gpu_batches(self, sizes: Sequence[tuple[int, int]]) -> list[list[int]] | None:
        """On a GPU, the items (output sizes) split into batches that fit its free memory now (`budget.plan_batches`);
        None elsewhere (a CPU's memory is not the limit: one batch)."""
        if self.device.type != "cuda":
            return None
        import torch

        free, _ = torch.cuda.mem_get_info(self.device)
        per_pixel = bytes_per_pixel(self.engine().precision == "bf16")
        return plan_batches([w * h for w, h in sizes], free, per_pixel, max_items=len(sizes))

    # ---- explore: the paper's experiments as grids (stylize/explore.py), all cells as one batch -------------

    def explore_defaults(self) -> Settings:
        """The base settings of a grid on this machine: small cells (a grid is many images at once)."""
        return self.defaults.replace(**EXPLORE_DEFAULTS[self.device.type])

    def explore_rows(self, kind: str) -> tuple[str, ...] | None:
        """A kind's default rows on this machine (None for an unknown kind: the Grid says what is valid)."""
        if kind == "reconstruction":
            return DEFAULT_CONTENT_ROWS
        return EXPLORE_STYLE_ROWS[self.device.type] if kind in KINDS else None

    def explore_grid(self, kind: str, rows: Sequence[str] | str | None, columns: Sequence[float] | str | None,
                     settings: Settings) -> Grid:
        """The grid a request asks for, refused with one message (StylizeError) if it is invalid or beyond this
        machine's limits: too many cells, unknown layers, bad columns, size or steps, GPU time."""
        rows = split_list(rows)
        numbers = []
        for part in split_list(columns, commas=True):
            try:
                numbers.append(float(part))
            except (TypeError, ValueError):
                raise StylizeError(f"columns must be numbers, comma-separated (got {str(part)[:40]!r})") from None
        grid = Grid(str(kind), tuple(rows) if rows else self.explore_rows(str(kind)), tuple(numbers) or None, settings)
        self.check(grid.settings, presets=grid.cells)
        return grid

    def explore_seconds(self, grid: Grid) -> int:
        """The duration to ask ZeroGPU for: every cell counted as a run of the grid's size and steps."""
        return self.budget.request(grid.settings, batch=grid.cells)

    def explore(self, grid: Grid, content: Image.Image | None, style: Image.Image | None, source: str = "auto",
                stop: StopFlag | threading.Event | None = None) -> Iterator[GridUpdate]:
        """Run every cell as one batch and stream `GridUpdate`s (every cell in each), about once a second and at
        once on Stop, after which the run ends with its current images. Bad input raises before any work."""
        aspect = (content or style).size if (content or style) is not None else (1, 1)
        frames = run_grid(self.engine(source), grid, content, style,
                          report_every=Reporter(stop, GRID_UPDATE_INTERVAL_S),
                          chunks=self.gpu_batches([images.fit_size(aspect, grid.settings.size)] * grid.cells))
        return self._on_compute_thread(grid_updates(grid, frames, stop))

    @staticmethod
    def explore_url(base: str, grid: Grid, preset_id: str | None = None) -> str:
        """A link that opens the Explore tab with this grid's kind, rows, columns, size, steps and seed."""
        data = grid.to_dict()
        query = {"tab": "explore", **{key: data[key] for key in EXPLORE_LINK_FIELDS}}
        if preset_id and grid.kind != "reconstruction":
            query["preset"] = preset_id
        return f"{base.split('?')[0]}?{urlencode(query)}"

    def open_explore_link(self, query: Mapping[str, str]) -> ExploreLink | None:
        """An Explore link's grid (None if the link is not one), validated and clamped like any input: unknown
        kinds, rows, columns, presets and parameters are dropped and out-of-range values clamped, one notice each."""
        params = {k: (v[0] if isinstance(v, (list, tuple)) and v else v) for k, v in dict(query).items()}
        if not is_explore_link(params):
            return None
        notices: list[str] = []
        kind = str(params.get("kind", "style"))
        if kind not in KINDS:
            notices.append(f"unknown experiment {kind[:40]!r}; valid: {', '.join(KINDS)}")
            kind = "style"
        ignored = [k for k in params if k not in (*EXPLORE_LINK_FIELDS, *LINK_EXTRAS, "preset")]
        if ignored:
            notices.append(f"ignored {', '.join(repr(k[:40]) for k in ignored)} (a grid link sets kind, rows, "
                           "columns, size, steps and seed)")
        settings, more = Settings.from_query({k: params[k] for k in ("size", "steps", "seed") if k in params},
                                             base=self.explore_defaults())
        notices += more
        settings = within_limits(settings, self.limits.max_size, self.limits.max_steps, notices)
        rows = []
        for row in split_list(params.get("rows")):
            if row in rows:
                continue
            if known_row(kind, row):
                rows.append(row)
            else:
                notices.append(f"unknown {'content layer' if kind == 'reconstruction' else 'style layer set'} "
                               f"{row[:40]!r}")
        columns = self._link_columns(kind, params.get("columns"), notices)
        if len(rows) * max(len(columns), 1) > MAX_CELLS:
            columns = columns[:max(1, MAX_CELLS // max(len(rows), 1))]
            rows = rows[:MAX_CELLS // len(columns)]
            notices.append(f"at most {MAX_CELLS} cells in a grid; using the first {len(rows)} × {len(columns)}")
        preset_id = str(params.get("preset", ""))
        if preset_id and preset_id not in self.presets:
            notices.append(f"unknown preset {preset_id[:40]!r}")
            preset_id = ""
        try:
            grid = Grid(kind, tuple(rows) or self.explore_rows(kind), tuple(columns) or None, settings)
        except StylizeError as exc:  # e.g. too many pixels for one batch: the default grid instead
            notices.append(f"{exc}; using the default grid")
            grid = Grid(kind, self.explore_rows(kind), None, self.explore_defaults().replace(seed=settings.seed))
        return ExploreLink(grid, columns_text(grid), preset_id, notices)

    @staticmethod
    def _link_columns(kind: str, raw: Any, notices: list[str]) -> list[float]:
        columns: list[float] = []
        low, high = RANGES["style_strength"] if kind == "style" else RANGES["seed"]
        for part in split_list(raw, commas=True):
            try:
                value = float(part)
                if not math.isfinite(value):
                    raise ValueError(part)
            except (TypeError, ValueError):
                notices.append(f"column {str(part)[:40]!r} is not a number")
                continue
            if kind != "style":
                value = float(round(value))
            clamped = min(max(value, low), high)
            if clamped != value:
                notices.append(f"column {part} is outside {low:g}–{high:g}; using {clamped:g}" if kind == "style" else
                               f"seed {part} is outside {low:.0f}–{high:.0f}; using {clamped:.0f}")
            if clamped not in columns:
                columns.append(clamped)
        return columns


# ---- explore: module-level pieces (picklable updates, captions, link parsing) ---------------------------------

GRID_UPDATE_INTERVAL_S = 1.0  # a grid's update carries every cell: about one a second
# One scale: the paper's experiments (and a grid's small cells) need no coarse-to-fine schedule.
EXPLORE_DEFAULTS = {"cpu": {"size": 128, "steps": 100, "scales": 1}, "cuda": {"size": 256, "steps": 300, "scales": 1}}
# Default rows of the style and texture grids: on 2 CPU cores three of the paper's five sets keep the default
# 3 × 4 grid near a minute; a GPU takes all five.
EXPLORE_STYLE_ROWS = {"cpu": ("a", "c", "e"), "cuda": tuple(STYLE_LAYER_SETS)}
DEFAULT_CONTENT_ROWS = tuple(f"relu{b}_1" for b in range(1, 6))
CONTENT_ROW_CHOICES = tuple(f"relu{b}_{c}" for b in range(1, 6) for c in (1, 2))  # offered as check boxes
EXPLORE_LINK_FIELDS = ("kind", "rows", "columns", "size", "steps", "seed")
LINK_EXTRAS = ("tab", "explore", "run", "deep_link", "__theme")  # parameters a grid link may carry besides its own


@dataclass
class GridUpdate:
    """One streamed state of a grid run: every cell's (image, caption), row-major, and a status line."""

    cells: list[tuple[Image.Image, str]]
    status: str
    final: bool = False

    @property
    def images(self) -> list[Image.Image]:
        return [image for image, _ in self.cells]


@dataclass
class ExploreLink:
    """What an Explore link asks for, made valid: the grid, its columns as the tab shows them, a known preset,
    and a notice per change."""

    grid: Grid
    columns: str
    preset_id: str
    notices: list[str]


def is_explore_link(params: Mapping[str, Any]) -> bool:
    """A link to the Explore tab: `tab=explore`, or an `explore` parameter."""
    tab = params.get("tab")
    tab = tab[0] if isinstance(tab, (list, tuple)) and tab else tab
    return tab == "explore" or "explore" in params


def split_list(value: Any, commas: bool = False) -> list[str]:
    """A list as given, or text split at ';' (and ',' if `commas`: a style row may itself be a layer list)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).replace(",", ";") if commas else str(value)
    return [part.strip() for part in text.split(";") if part.strip()]


def known_row(kind: str, row: str) -> bool:
    """Whether a grid of `kind` accepts `row`: a content layer, or a style layer set a–e or list of layers."""
    if kind == "reconstruction":
        return row in FEATURE_LAYERS
    try:
        Settings(style_layers=row)
    except StylizeError:
        return False
    return True


def row_choices(kind: str, rows: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, value) check boxes for a kind's rows: the paper's sets a–e, or content layers; plus any other
    valid rows given (e.g. from a link)."""
    if kind == "reconstruction":
        base = [(layer, layer) for layer in CONTENT_ROW_CHOICES]
    else:
        base = [(style_set_label(key), key) for key in STYLE_LAYER_SETS]
    extra = [(style_set_label(r) if kind != "reconstruction" else r, r) for r in rows
             if r not in {value for _, value in base}]
    return base + extra


def columns_text(grid: Grid) -> str:
    """The columns as the Explore tab's text box shows them; a texture or reconstruction grid of one column
    with the base seed shows none (the seed box says it)."""
    if grid.kind != "style" and grid.columns == (grid.settings.seed,):
        return ""
    return ", ".join(f"{c:g}" for c in grid.columns)


def cell_caption(grid: Grid, index: int, losses: Mapping[str, float] | None = None) -> str:
    """A cell's caption: "b · β/α=20 · loss 0.31", "c · seed 0 · loss 2.1", "relu3_1 · seed 0 · loss 0.05"."""
    r, c = divmod(index, len(grid.columns))
    column = f"β/α={grid.columns[c]:g}" if grid.kind == "style" else f"seed {grid.columns[c]}"
    caption = f"{grid.rows[r]} · {column}"
    return f"{caption} · loss {losses['total']:.3g}" if losses else caption


def grid_status(grid: Grid, frame: Frame, stopped: bool = False) -> str:
    head, eta = progress(frame, stopped)
    rows, columns = grid.shape
    return (f"{head} · {rows} × {columns} grid: {grid.cells} "
            f"cell{'s' if grid.cells > 1 else ''} of {frame.size[0]}×{frame.size[1]} in one batch · "
            f"{frame.elapsed:.1f} s{eta}")


def grid_updates(grid: Grid, frames: Iterator[Frame], stop: StopFlag | threading.Event | None = None
                 ) -> Iterator[GridUpdate]:
    """One update per reported frame, the last one final; Stop ends the run after the current step."""
    for frame in frames:
        if frame.images is None:
            continue
        stopped = stop is not None and stop.is_set() and not frame.done
        cells = [(image, cell_caption(grid, k, losses))
                 for k, (image, losses) in enumerate(zip(frame.images, frame.item_losses))]
        yield GridUpdate(cells, grid_status(grid, frame, stopped), final=frame.done or stopped)
        if stopped:
            frames.close()
            return
