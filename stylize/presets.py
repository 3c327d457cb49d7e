"""The preset manifest and where each preset's image comes from.

A preset image is looked up, in order: a file committed in ``presets/`` (a Space owner's copy), a folder
named by ``STYLIZE_PRESETS_DIR``, the download cache, and finally Wikimedia Commons (a resized copy, with a
descriptive User-Agent, a timeout and a size cap). Paths are built from manifest ids only, never from user
text: an unknown id is an error before any file is touched.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import images
from .errors import StylizeError
from .params import Settings

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
MANIFEST = PRESETS_DIR / "presets.toml"
EXTENSIONS = (".jpg", ".png")
COMMONS_URL = "https://commons.wikimedia.org/wiki/Special:FilePath/{name}?width=1280"
USER_AGENT = "stylize/1.0 (neural style transfer demo; https://huggingface.co/spaces) python-httpx"
DOWNLOAD_TIMEOUT_S = 10.0
DOWNLOAD_MAX_BYTES = 15 * 2**20


@dataclass(frozen=True)
class Preset:
    """One painting: who made it, where it comes from, and its tuned settings."""

    id: str
    title: str
    artist: str
    year: str
    commons_file: str
    licence: str
    credit: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def caption(self) -> str:
        return f"{self.title} — {self.artist}, {self.year}"

    def apply(self, base: Settings) -> Settings:
        """`base` with this preset's tuned values."""
        return base.replace(**self.settings)


def load_manifest(path: Path = MANIFEST) -> dict[str, Preset]:
    """Presets by id, validated: every field present, tuned settings valid."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    presets = {}
    for preset_id, entry in raw.items():
        try:
            preset = Preset(id=preset_id, **entry)
            preset.apply(Settings())
        except (TypeError, StylizeError) as exc:
            raise StylizeError(f"{path.name}: preset {preset_id!r} is invalid ({exc})") from exc
        presets[preset_id] = preset
    return presets


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylize" / "presets"


class PresetImages:
    """Finds, and where allowed downloads, the image of each preset; remembers why one is unavailable."""

    def __init__(self, presets: dict[str, Preset], extra_dir: str | Path | None = None,
                 cache_dir: Path | None = None, download: bool = True) -> None:
        self.presets = presets
        extra = extra_dir if extra_dir is not None else os.environ.get("STYLIZE_PRESETS_DIR")
        self.search = [PRESETS_DIR] + ([Path(extra)] if extra else [])
        self.cache_dir = cache_dir or default_cache_dir()
        self.download_allowed = download
        self.failures: dict[str, str] = {}

    def get(self, preset_id: str) -> Preset:
        try:
            return self.presets[preset_id]
        except KeyError:
            raise StylizeError(f"unknown preset {preset_id[:40]!r}; available: {', '.join(self.presets)}") from None

    def local_path(self, preset_id: str) -> Path | None:
        """The image on disk, if any: committed, in STYLIZE_PRESETS_DIR, or cached."""
        self.get(preset_id)
        for folder in (*self.search, self.cache_dir):
            for ext in EXTENSIONS:
                candidate = folder / f"{preset_id}{ext}"
                if candidate.is_file():
                    return candidate
        return None

    def path(self, preset_id: str) -> Path:
        """The image's path, downloading it once if needed; a `StylizeError` says why it is unavailable."""
        found = self.local_path(preset_id)
        if found:
            return found
        if preset_id in self.failures:
            raise StylizeError(self.failures[preset_id])
        if not self.download_allowed:
            reason = f"{self.get(preset_id).title}: no local image, and downloads are off"
        else:
            try:
                return self._download(self.get(preset_id))
            except StylizeError as exc:
                reason = str(exc)
        self.failures[preset_id] = reason
        raise StylizeError(reason)

    def availability(self) -> dict[str, str | None]:
        """For each preset: None if its image is on disk, else why not (without any network access)."""
        status = {}
        for preset_id in self.presets:
            if self.local_path(preset_id):
                status[preset_id] = None
            else:
                status[preset_id] = self.failures.get(preset_id, "not downloaded yet")
        return status

    def _download(self, preset: Preset) -> Path:
        import httpx

        url = COMMONS_URL.format(name=quote(preset.commons_file))
        try:
            with httpx.stream("GET", url, headers={"User-Agent": USER_AGENT}, timeout=DOWNLOAD_TIMEOUT_S,
                              follow_redirects=True) as response:
                response.raise_for_status()
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > DOWNLOAD_MAX_BYTES:
                        raise StylizeError(f"{preset.title}: the download exceeds {DOWNLOAD_MAX_BYTES // 2**20} MB")
        except httpx.HTTPError as exc:
            raise StylizeError(f"{preset.title}: could not be downloaded from Wikimedia Commons ({type(exc).__name__})") from exc
        img = images.load_image(bytes(data), max_side=1280)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        target = self.cache_dir / f"{preset.id}.jpg"
        partial = target.with_suffix(".part")
        img.save(partial, "JPEG", quality=92)
        partial.replace(target)
        return target
