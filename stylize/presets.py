"""The preset paintings and example photos that ship with the app, and where their images are.

Everything is read from ``presets/presets.toml`` and the images committed beside it; nothing is fetched from
the network. A preset's image is ``<id>.jpg|png`` in the folder named by ``STYLIZE_PRESETS_DIR`` (an override,
used by tests and by Space owners who want other copies) or else in ``presets/``; example photos are
``presets/photos/<id>.jpg|png``. Paths are built from manifest ids only, never from user text: an unknown id is
an error before any file is touched.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import StylizeError
from .params import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # ZeroGPU's Python 3.10: the same parser, published as tomli before 3.11 took it in
    import tomli as tomllib

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
PHOTOS_DIR = PRESETS_DIR / "photos"
MANIFEST = PRESETS_DIR / "presets.toml"
EXTENSIONS = (".jpg", ".png")
PHOTOS_TABLE = "photos"  # the manifest's [photos.<id>] tables; every other table is a preset


@dataclass(frozen=True)
class Preset:
    """One painting: who made it, its licence and credit line, and its tuned settings."""

    id: str
    title: str
    artist: str
    year: str
    licence: str
    credit: str
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.apply(Settings())  # the tuned settings are valid, or a StylizeError says which is not

    @property
    def caption(self) -> str:
        return f"{self.title} — {self.artist}, {self.year}"

    def apply(self, base: Settings) -> Settings:
        """`base` with this preset's tuned values."""
        return base.replace(**self.settings)


@dataclass(frozen=True)
class ExamplePhoto:
    """One example photo: what it shows, its licence, and the credit its licence asks for."""

    id: str
    title: str
    licence: str
    credit: str
    path: Path | None = None  # the committed file, None if missing

    @property
    def caption(self) -> str:
        return f"{self.title} — {self.credit}"


def _find(folders: list[Path], name: str) -> Path | None:
    for folder in folders:
        for ext in EXTENSIONS:
            candidate = folder / f"{name}{ext}"
            if candidate.is_file():
                return candidate
    return None


def _read(path: Path, photos: bool) -> dict[str, Any]:
    """The manifest's presets, or its example photos, by id, in its order: every field present, none unknown."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    photo_tables = raw.pop(PHOTOS_TABLE, {})
    kind, tables = (ExamplePhoto, photo_tables) if photos else (Preset, raw)
    items = {}
    for item_id, entry in tables.items():
        try:
            items[item_id] = kind(id=item_id, **entry)
        except (TypeError, StylizeError) as exc:
            raise StylizeError(f"{path.name}: {kind.__name__} {item_id!r} is invalid ({exc})") from exc
    return items


def load_manifest(path: Path = MANIFEST) -> dict[str, Preset]:
    """Presets by id, in the manifest's order; tuned settings validated."""
    return _read(path, photos=False)


def load_photos(path: Path = MANIFEST, folder: Path = PHOTOS_DIR) -> dict[str, ExamplePhoto]:
    """Every example photo in the manifest by id, with the path of its committed file (None if missing)."""
    return {photo_id: replace(photo, path=_find([folder], photo_id))
            for photo_id, photo in _read(path, photos=True).items()}


def example_photos(path: Path = MANIFEST, folder: Path = PHOTOS_DIR) -> list[ExamplePhoto]:
    """The example photos whose files are present, in the manifest's order (id, path, title, credit, caption)."""
    return [photo for photo in load_photos(path, folder).values() if photo.path is not None]


class PresetImages:
    """Finds the image of each preset on disk, and says why one is unavailable."""

    def __init__(self, presets: dict[str, Preset], extra_dir: str | Path | None = None) -> None:
        self.presets = presets
        extra = extra_dir if extra_dir is not None else os.environ.get("STYLIZE_PRESETS_DIR")
        self.search = ([Path(extra)] if extra else []) + [PRESETS_DIR]

    def get(self, preset_id: str) -> Preset:
        try:
            return self.presets[preset_id]
        except KeyError:
            raise StylizeError(f"unknown preset {preset_id[:40]!r}; available: {', '.join(self.presets)}") from None

    def local_path(self, preset_id: str) -> Path | None:
        """The image on disk, if any: in STYLIZE_PRESETS_DIR (which wins), else committed in presets/."""
        self.get(preset_id)
        return _find(self.search, preset_id)

    def path(self, preset_id: str) -> Path:
        """The image's path; a `StylizeError` says why it is unavailable."""
        found = self.local_path(preset_id)
        if found is None:
            raise StylizeError(self._missing(preset_id))
        return found

    def availability(self) -> dict[str, str | None]:
        """For each preset: None if its image is on disk, else why not."""
        return {preset_id: None if self.local_path(preset_id) else self._missing(preset_id)
                for preset_id in self.presets}

    def _missing(self, preset_id: str) -> str:
        return f"{self.get(preset_id).title}: no image file ({preset_id}.jpg or .png) found"
