"""The files the app writes for the web UI: copies of shipped images, finished results and the region editor's
backgrounds, each kind in its own folder under one root (`root()`), so that one sweep (housekeeping.py) can
bound them all. Names are random or derived from shipped files, never from user text."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path

from PIL import Image

from stylize import images

ROOT_ENV = "STYLIZE_FILES_DIR"


def root() -> Path:
    """Where the app's files live: $STYLIZE_FILES_DIR, else `stylize` in the temp folder."""
    return Path(os.environ.get(ROOT_ENV) or Path(tempfile.gettempdir()) / "stylize")


def folder(kind: str) -> Path:
    """The folder of one kind of file (thumbnails, results, regions, stops), created on first use."""
    path = root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write(image: Image.Image, target: Path, fmt: str, **options) -> Path:
    """Written under a temporary name, then renamed: a reader never sees half a file."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    image.save(partial, fmt, **options)
    partial.replace(target)
    return target


def served(source: Path, side: int | None = None) -> str:
    """A JPEG copy of a shipped image (shrunk to `side` if given), written once: small to send, and servable by
    a web UI whatever folder the app runs from."""
    stat = source.stat()
    key = hashlib.blake2b(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{side}".encode(), digest_size=8)
    target = folder("thumbnails") / f"{source.stem}-{key.hexdigest()}.jpg"
    if not target.exists():
        _write(images.load_image(source, side), target, "JPEG", quality=90)
    return str(target)


def save_result(image: Image.Image) -> str:
    """A result as a lossless PNG with a random name."""
    return str(_write(image, folder("results") / f"stylized-{uuid.uuid4().hex[:12]}.png", "PNG"))


def save_print(image: Image.Image) -> str:
    """An enlarged result (#33): a lossless PNG tagged sRGB whose name says its size (stylize-2048x1536-….png)."""
    name = images.print_name(image).removesuffix(".png") + f"-{uuid.uuid4().hex[:8]}.png"
    return str(_write(image, folder("results") / name, "PNG", icc_profile=images.srgb_profile()))


def save_background(image: Image.Image) -> str:
    """The photo under the region editor, as a JPEG with a random name."""
    return str(_write(image, folder("regions") / f"photo-{uuid.uuid4().hex[:12]}.jpg", "JPEG", quality=90))


def digest(path: Path) -> str:
    """A file's content hash (which example photo an upload is)."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
