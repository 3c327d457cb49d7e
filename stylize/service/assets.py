"""What ships with the app: preset paintings, example photos and finished examples, with servable thumbnails."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

from stylize.errors import StylizeError
from stylize.params import Settings
from stylize.presets import PRESETS_DIR, ExamplePhoto, Preset, PresetImages, example_photos, load_manifest

from . import storage

THUMBNAIL_SIDE = 256
EXAMPLES_DIR = PRESETS_DIR / "examples"
EXAMPLES_MANIFEST = EXAMPLES_DIR / "examples.json"


@dataclass(frozen=True)
class Example:
    """A finished result shipped with the app (presets/examples/), and how it was made."""

    photo: str  # example photo id
    preset: str  # preset id
    settings: Settings
    image: Path
    caption: str


class Assets:
    """The manifest's presets and photos, the examples whose photo, preset and image are all present."""

    def __init__(self, presets_dir: str | Path | None = None) -> None:
        self.presets: dict[str, Preset] = load_manifest()
        self.preset_images = PresetImages(self.presets, extra_dir=presets_dir)
        self.photos: dict[str, ExamplePhoto] = {photo.id: photo for photo in example_photos()}

    def available_presets(self) -> list[str]:
        """The ids of the presets whose image is on disk, in the manifest's order."""
        return [preset_id for preset_id, reason in self.preset_images.availability().items() if reason is None]

    def thumbnails(self) -> list[tuple[str, str]]:
        """(thumbnail path, title) for every available preset (the full caption is shown once one is chosen)."""
        return [(storage.served(self.preset_images.local_path(i), THUMBNAIL_SIDE), self.presets[i].title)
                for i in self.available_presets()]

    def photo_title(self, photo_id: str) -> str:
        """An example photo's short title (its manifest title without the parenthesis)."""
        return self.photos[photo_id].title.split(" (")[0]

    def photo_thumbnails(self) -> list[tuple[str, str]]:
        return [(storage.served(photo.path, THUMBNAIL_SIDE), self.photo_title(photo.id)) for photo in self.photos.values()]

    def photo_path(self, photo_id: str) -> str:
        """A servable copy of an example photo, by id."""
        if photo_id not in self.photos:
            raise StylizeError(f"unknown example photo {photo_id[:40]!r}")
        return storage.served(self.photos[photo_id].path)

    @cached_property
    def _photo_digests(self) -> dict[str, str]:
        return {storage.digest(Path(self.photo_path(i))): i for i, photo in self.photos.items() if photo.path is not None}

    def example_photo_id(self, path: str | None) -> str | None:
        """Which example photo a file is (a web UI hands back a byte-identical copy of `photo_path`), if any: a
        comparison's link can then name it."""
        if not path or not Path(path).is_file():
            return None
        return self._photo_digests.get(storage.digest(Path(path)))

    @cached_property
    def examples(self) -> list[Example]:
        """The finished examples in presets/examples/ whose photo, preset and image are all present."""
        if not EXAMPLES_MANIFEST.is_file():
            return []
        known = {f.name for f in fields(Settings)}
        found = []
        for entry in json.loads(EXAMPLES_MANIFEST.read_text())["examples"]:
            image = EXAMPLES_DIR / entry["image"]
            if entry["photo"] in self.photos and entry["preset"] in self.presets and image.is_file():
                settings = Settings(**{k: v for k, v in entry["settings"].items() if k in known})
                caption = f"{self.photo_title(entry['photo'])} × {self.presets[entry['preset']].title}"
                found.append(Example(entry["photo"], entry["preset"], settings, image, caption))
        return found

    def example_thumbnails(self) -> list[tuple[str, str]]:
        return [(storage.served(example.image, 384), example.caption) for example in self.examples]
