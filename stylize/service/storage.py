"""The files the app writes for the web UI: copies of shipped images, finished results, the region editor's
backgrounds, stop flags and gradio's cache, each kind in its own folder under one root (`root()`), so that one
sweep (housekeeping.py) can bound them all. Names are random or derived from shipped files, never from user text.

The root is the app's own (issue #30): a folder it created, or found empty, owned by this process's user, made
private (0700) and marked with `MARKER`. Nothing else is ever swept, so a misconfigured folder cannot cost anyone
their files: `/`, a home folder, the system temp folder itself, a folder of another user's or one holding files
the app did not write is refused (`RootError`, one line saying what to set)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import stat
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Iterator

from PIL import Image

from stylize import images
from stylize.errors import StylizeError

ROOT_ENV = "STYLIZE_FILES_DIR"
MARKER = ".stylize-root"  # holds a random id: this folder is stylize's own
KINDS = ("gradio", "results", "regions", "stops", "thumbnails")  # the only folders under the root
log = logging.getLogger(__name__)
_claimed: dict[str, Path] = {}  # $STYLIZE_FILES_DIR as set ('' for the default) -> the root claimed for it
_live: list[set[str]] = []  # the files each live run holds
_live_lock = threading.Lock()


class RootError(StylizeError):
    """A configured root the app refuses to write into (and so never sweeps)."""


def _refusal(path: Path) -> str | None:
    """Why `path` (resolved) cannot be the app's root, or None (ours, or absent: it will be made)."""
    home = Path.home().resolve()
    if path == Path(path.anchor):
        return "it is the file system's root"
    if path == home or path.parent in (Path("/home"), Path("/Users")):
        return "it is a home folder"
    if path in {Path(tempfile.gettempdir()).resolve(), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")}:
        return "it is the system's temp folder, shared by every program"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a folder"
    if st.st_uid != os.geteuid():
        return "it belongs to another user"
    if _marked(path):
        return None
    with os.scandir(path) as entries:
        if next(entries, None) is not None:
            return f"it already holds files stylize did not write (no {MARKER} in it)"
    return None


def _marked(path: Path) -> bool:
    try:
        st = os.lstat(path / MARKER)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def _make(path: Path) -> Path:
    """Create (or adopt) `path` as the root: private, owned by us, marked."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():  # raced by someone else's folder or link
        raise RootError(f"{path}: not a folder of this user's")
    os.chmod(path, 0o700)
    if not _marked(path):
        fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as marker:
            marker.write(f"stylize {secrets.token_hex(16)}\nThis folder is stylize's own: it sweeps what it wrote "
                         "here.\n")
    return path


def claim(configured: str | None) -> Path:
    """The root for $STYLIZE_FILES_DIR = `configured`: that folder if it may be ours, else RootError. Unset: a
    folder of this user's in the temp folder, or, if another user (or a link) holds that name, a fresh private
    one (one line in the log)."""
    if configured:
        path = Path(os.path.realpath(os.path.expanduser(configured)))
        reason = _refusal(path)
        if reason:
            raise RootError(f"{ROOT_ENV}={configured} refused: {reason}. Set {ROOT_ENV} to an empty folder of "
                            "your own (e.g. /data/stylize on a Space with persistent storage), or unset it.")
        return _make(path)
    default = Path(tempfile.gettempdir()).resolve() / f"stylize-{os.geteuid()}"
    reason = _refusal(default)
    if reason is None:
        try:
            return _make(default)
        except (OSError, RootError) as exc:
            reason = str(exc)
    fresh = Path(tempfile.mkdtemp(prefix="stylize-"))
    log.warning("%s not used (%s): files go to %s; set %s to choose a folder", default, reason, fresh, ROOT_ENV)
    return _make(fresh)


def root() -> Path:
    """Where the app's files live: its own folder (claimed once per value of $STYLIZE_FILES_DIR)."""
    configured = os.environ.get(ROOT_ENV, "")
    if configured not in _claimed:
        _claimed[configured] = claim(configured or None)
    return _claimed[configured]


def folder(kind: str) -> Path:
    """The folder of one kind of file (`KINDS`), created private under the root on first use; never a link."""
    if kind not in KINDS:
        raise ValueError(f"no folder for {kind!r}")
    path = root() / kind
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise RootError(f"{path} is not a folder; remove it") from None
    return path


def gradio_cache() -> Path:
    """Gradio's upload folder, inside the root: $GRADIO_TEMP_DIR is set to it before gradio is imported (app.py),
    so gradio never writes into a folder the app does not own. A value set before is replaced, with one line."""
    cache = folder("gradio")
    before = os.environ.get("GRADIO_TEMP_DIR")
    if before and os.path.realpath(before) != str(cache):
        log.warning("GRADIO_TEMP_DIR=%s replaced by %s: stylize keeps gradio's files in its own folder (set %s to "
                    "choose where)", before, cache, ROOT_ENV)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    return cache


def _write(image: Image.Image, target: Path, fmt: str, **options) -> Path:
    """Written under a temporary name, then renamed: a reader never sees half a file."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    image.save(partial, fmt, **options)
    partial.replace(target)
    return target


def served(source: Path, side: int | None = None, lossless: bool = False) -> str:
    """A copy of a shipped image (shrunk to `side` if given), written once and servable by a web UI whatever folder
    the app runs from: a JPEG, small to send, or with `lossless` a PNG (an example's picture as a finished result,
    what *Make it bigger* enlarges)."""
    stat = source.stat()
    key = hashlib.blake2b(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{side}:{lossless}".encode(),
                          digest_size=8)
    target = folder("thumbnails") / f"{source.stem}-{key.hexdigest()}.{'png' if lossless else 'jpg'}"
    if not target.exists():
        options = {} if lossless else {"quality": 90}
        _write(images.load_image(source, side), target, "PNG" if lossless else "JPEG", **options)
    return str(target)


def save_result(image: Image.Image) -> str:
    """A result as a lossless PNG with a random name."""
    return str(_write(image, folder("results") / f"stylized-{uuid.uuid4().hex[:12]}.png", "PNG"))


def save_print(image: Image.Image) -> str:
    """An enlarged result (#33): a lossless PNG tagged sRGB whose name says its size (stylize-2048x1536-….png)."""
    name = f"{images.print_name(image)}-{uuid.uuid4().hex[:8]}.png"
    return str(_write(image, folder("results") / name, "PNG", icc_profile=images.srgb_profile()))


def save_background(image: Image.Image) -> str:
    """The photo under the region editor, as a JPEG with a random name."""
    return str(_write(image, folder("regions") / f"photo-{uuid.uuid4().hex[:12]}.jpg", "JPEG", quality=90))


@contextlib.contextmanager
def holding() -> Iterator[set[str]]:
    """The files a run needs until it ends (add their paths to the set), however long it takes: the sweep keeps
    them (`held()`); once the run ends they age like any other."""
    mine: set[str] = set()
    with _live_lock:
        _live.append(mine)
    try:
        yield mine
    finally:
        with _live_lock:
            _live.remove(mine)


def held() -> set[str]:
    """Every file a live run of this process holds."""
    with _live_lock:
        return set().union(*_live)


def digest(path: Path) -> str:
    """A file's content hash (which example photo an upload is)."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
