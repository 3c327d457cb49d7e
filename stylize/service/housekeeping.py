"""One sweep for every folder the app writes (issue #22): each folder has an owner, a max age and a share of one
disk cap, and a shared link keeps the files it shows for the link's lifetime.

Why not gradio's `delete_cache`: it forgets files written before a restart, never removes the hash folders it
leaves empty, never removes deep-link states, and deletes the images those states show after its one age
(docs/gradio_files.md). Here ownership is read from disk at each sweep, so a restart loses nothing, and no hook
is needed where gradio writes a link: a link's `state.json` names the files it shows, and the sweep keeps those
for as long as the link lives. No gradio import: the folders are arguments.

It deletes only what it can prove the app (or gradio, in the cache the app gave it) wrote (issue #30): every
folder lies inside the app's own root, a file is removed only if its path matches its folder's layout, and no
link is followed. A file that cannot be removed is logged once and passed over; the cap takes others instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

DAY = 86400.0
LINKS = "deep_links"  # gradio writes <cache>/deep_links/<link id>/state.json
LINK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # the ids gradio accepts; anything else names no link
# What gradio 6.31 writes in its upload folder, read in its source: <sha256 hex>/<name> (uploads, processing_utils'
# save_*_to_cache: previews, results shown, MCP inputs, editor layers), deep_links/<id>/state.json, and tmp<8>
# (an upload being received, route_utils.GradioMultiPartParser's NamedTemporaryFile).
GRADIO_LAYOUT = re.compile(r"[0-9a-f]{64}/[^/]+|deep_links/[A-Za-z0-9_-]{1,128}/state\.json|tmp[a-z0-9_]{8}")
FLAT = re.compile(r"[^/]+")  # a folder of the app's own files, no subfolders
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Folder:
    """A folder the app writes: who owns its files (for the log), how long one lives after it was last written
    or touched (None: never removed, it is bounded by what writes it), and whether it is gradio's cache (then
    its deep-link states are shared links)."""

    path: Path
    purpose: str
    max_age: float | None
    links: bool = False
    layout: re.Pattern[str] = FLAT  # the paths (relative, '/'-separated) its writer makes; nothing else is removed


@dataclass
class Report:
    """What one sweep removed, per owner ([files, bytes]), and what it left, for one log line."""

    removed: dict[str, list[int]] = field(default_factory=dict)
    evicted: int = 0  # of the removed files, those removed for the cap rather than for their age
    dirs: int = 0
    used: int = 0
    over_cap: bool = False  # what is left is only files too young to remove (or kept)

    @property
    def files(self) -> int:
        return sum(n for n, _ in self.removed.values())

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self.removed.values())

    def __str__(self) -> str:
        owners = ", ".join(f"{p}: {n} files, {b / 1e6:.1f} MB" for p, (n, b) in self.removed.items()) or "nothing"
        return (f"swept {owners}; {self.evicted} for the cap, {self.dirs} empty folders; {self.used / 1e6:.1f} MB "
                f"left{' (over the cap)' if self.over_cap else ''}")


class _File(NamedTuple):
    path: str
    size: int
    stamp: float
    folder: Folder
    state: bool  # a shared link's state


def _stamp(st: os.stat_result) -> float:
    """When a file was last written or touched: the later of mtime and ctime, because gradio copies a handler's
    file into its cache with shutil.copy2 (the source's old mtime, a fresh ctime), and touches a copy it hands out
    again (processing_utils.save_file_to_cache)."""
    return max(st.st_mtime, st.st_ctime)


def _scan(folder: Folder, skip: frozenset[str] = frozenset(), depth: int = 3) -> Iterable[_File]:
    """The files of `folder` in its layout, without following a link, down to `depth` folders; folders in `skip`
    (another registered folder inside this one) are left to their own owner. What cannot be read is passed over."""
    def walk(top: str, rel: str, left: int) -> Iterable[_File]:
        try:
            entries = list(os.scandir(top))
        except OSError:  # unreadable, or gone meanwhile
            return
        for entry in entries:
            path, name = entry.path, f"{rel}{entry.name}"
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if left > 1 and path not in skip:
                    yield from walk(path, f"{name}/", left - 1)
            elif stat.S_ISREG(st.st_mode) and folder.layout.fullmatch(name):  # never a link, never a stranger
                state = folder.links and name.startswith(f"{LINKS}/") and name.endswith("/state.json")
                yield _File(path, st.st_size, _stamp(st), folder, state)

    yield from walk(str(folder.path), "", depth)


def _shown(state_path: str | Path) -> dict[int, list[str]]:
    """The local files a link state shows, by component id (the `path` of every FileData in a value)."""
    found: dict[int, list[str]] = {}

    def walk(node: Any, into: list[str]) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("path"), str) and "://" not in node["path"]:
                into.append(os.path.realpath(node["path"]))
            for value in node.values():
                walk(value, into)
        elif isinstance(node, list):
            for value in node:
                walk(value, into)

    for component in json.loads(Path(state_path).read_bytes()):
        paths: list[str] = []
        walk(component.get("props", {}).get("value"), paths)
        if paths:
            found[component["id"]] = paths
    return found


def missing_files(cache: str | Path, link_id: str) -> dict[int, list[str]] | None:
    """The files of a shared link that are gone, by component id ({} when all are there); None when there is no
    such link. The page of a link whose images are gone turns this into one message."""
    state = Path(cache) / LINKS / link_id / "state.json"
    if not LINK_ID.fullmatch(link_id) or not state.is_file():
        return None
    try:
        shown = _shown(state)
    except (OSError, ValueError):
        return None
    gone = {cid: [p for p in paths if not os.path.exists(p)] for cid, paths in shown.items()}
    return {cid: paths for cid, paths in gone.items() if paths}


class Housekeeper:
    """Sweeps the registered folders: files past their owner's age go, then the oldest go while the total is over
    `cap` bytes; files younger than `grace` seconds (runs in progress) and `keep()` (gradio's copies of default
    values and examples, which every page shows) never go. A link state lives `link_age`, and so do the files it
    shows, counted from when the link was made. Safe from several threads (one sweeps at a time); the app's
    sweeping thread (ui/disk.py) says how often."""

    def __init__(self, folders: Iterable[Folder], cap: int, root: str | Path, link_age: float = 7 * DAY,
                 grace: float = 120.0, keep: Callable[[], Iterable[str | Path]] = tuple) -> None:
        """`root`: the app's own folder; a folder outside it (or the same folder twice) is refused."""
        top = Path(os.path.realpath(root))
        self.folders = [Folder(Path(os.path.realpath(f.path)), f.purpose, f.max_age, f.links, f.layout)
                        for f in folders]
        paths = [f.path for f in self.folders]
        for path in paths:
            if path != top and top not in path.parents:
                raise ValueError(f"{path} is outside the app's folder {top}: never swept")
        if len(set(paths)) != len(paths):
            raise ValueError("a folder is registered twice")
        self._skip = {f.path: frozenset(str(p) for p in paths if f.path in p.parents) for f in self.folders}
        self.cap, self.link_age, self.grace, self.keep = cap, link_age, grace, keep
        self._stuck: set[str] = set()  # files that could not be removed, logged once each
        self._lock = threading.Lock()
        self._parsed: dict[str, tuple[float, int, list[str]]] = {}  # a state's stamp, size, files: parsed once

    def sweep(self, now: float | None = None) -> Report | None:
        """One sweep; None when another thread is sweeping."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._sweep(time.time() if now is None else now)
        finally:
            self._lock.release()

    def _links(self, files: list[_File], now: float) -> dict[str, float]:
        """Each file a live link shows → when the newest such link was made."""
        owned: dict[str, float] = {}
        for f in files:
            if not f.state or now - f.stamp > self.link_age:
                continue
            cached = self._parsed.get(f.path)
            if cached is None or cached[:2] != (f.stamp, f.size):
                try:
                    cached = (f.stamp, f.size, [p for ps in _shown(f.path).values() for p in ps])
                except (OSError, ValueError, LookupError, TypeError, AttributeError):  # not a state gradio wrote
                    cached = (f.stamp, f.size, [])
                self._parsed[f.path] = cached
            for path in cached[2]:
                owned[path] = max(owned.get(path, f.stamp), f.stamp)
        states = {f.path for f in files if f.state}
        self._parsed = {p: v for p, v in self._parsed.items() if p in states}
        return owned

    def _sweep(self, now: float) -> Report:
        files = [f for folder in self.folders for f in _scan(folder, self._skip[folder.path])]
        owned = self._links(files, now)
        keep = {os.path.realpath(p) for p in self.keep()}
        report, used, left = Report(), 0, []
        for f in files:
            if f.folder.max_age is None or f.path in keep:
                used += f.size
                continue
            owner = owned.get(f.path, -float("inf"))
            expired = now - f.stamp > (self.link_age if f.state else f.folder.max_age) and now - owner > self.link_age
            if not (expired and now - f.stamp > self.grace and self._remove(f, report)):
                used += f.size
                left.append((f.state, max(f.stamp, owner), f))
        # Over the cap: the oldest owner first (a link's files date from the link), link states last (small, and
        # a state without its images still opens the page with its settings); empty files free nothing (a Stop
        # pressed while the run waits in the queue is one).
        for _state, _when, f in sorted(left, key=lambda item: item[:2]):
            if used <= self.cap:
                break
            if f.size and now - f.stamp > self.grace and self._remove(f, report):
                used -= f.size
                report.evicted += 1
        report.used, report.over_cap = used, used > self.cap
        report.dirs = sum(self._remove_empty_dirs(folder, now) for folder in self.folders)
        return report

    def _remove(self, f: _File, report: Report) -> bool:
        try:
            os.unlink(f.path)
        except FileNotFoundError:
            return False  # another sweeper (or gradio) was first: not counted twice
        except OSError as exc:  # not ours to delete after all (permissions, immutable): skipped, said once
            if f.path not in self._stuck:
                self._stuck.add(f.path)
                log.warning("cannot remove %s (%s): skipped", f.path, exc.strerror or exc)
            return False
        self._stuck.discard(f.path)
        counts = report.removed.setdefault(f.folder.purpose, [0, 0])
        counts[0] += 1
        counts[1] += f.size
        return True

    def _remove_empty_dirs(self, folder: Folder, now: float) -> int:
        """Empty subfolders in the folder's layout (a hash folder, a link's folder) unchanged for the folder's age
        (or a day): gradio makes a hash folder just before it writes into it, and may write the same content into
        an old one again, so a folder is left long after its last file went. No link is followed."""
        removed = 0
        quiet = max(self.grace, folder.max_age or DAY)
        for parent in (str(folder.path), str(folder.path / LINKS)) if folder.links else ():
            try:
                entries = list(os.scandir(parent))
            except OSError:
                continue
            for entry in entries:
                name = entry.name if parent == str(folder.path) else f"{LINKS}/{entry.name}"
                if not folder.layout.fullmatch(f"{name}/x") and not folder.layout.fullmatch(f"{name}/state.json"):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode) and now - _stamp(st) > quiet and not os.listdir(entry.path):
                        os.rmdir(entry.path)
                        removed += 1
                except OSError:
                    continue  # gone, or written into meanwhile
        return removed
