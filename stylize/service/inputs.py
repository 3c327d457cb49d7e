"""A request's images, loaded through stylize's own checks: uploads (header checked before any pixel is decoded,
bounded in bytes and pixels), preset paintings by id, masks and painted regions. Errors name the input."""

from __future__ import annotations

from typing import Sequence

from PIL import Image

from stylize import images
from stylize.engine.masks import BLACK, read_mask
from stylize.errors import StylizeError
from stylize.presets import PresetImages

from . import storage
from .regions import KEEP, MAIN, MAX_REGIONS, UPLOAD, grey_image, read_regions, region_masks

MAX_INPUT_SIDE = 2048  # uploads are decoded at most this large (JPEG draft mode makes big photos cheap)
MAX_UPLOAD_BYTES = 10 * 2**20  # also the web server's upload cap
EDITOR_SIDE = 1024  # the region editor's photo


def load_upload(path: str, what: str) -> Image.Image:
    """An uploaded file through stylize's own loader; errors name the input ("the photo: …")."""
    try:
        return images.load_image(path, MAX_INPUT_SIDE, max_bytes=MAX_UPLOAD_BYTES)
    except StylizeError as exc:
        raise StylizeError(f"{what}: {exc}") from None


ASK_FOR_PHOTO = "add a photo first (upload, webcam or clipboard)"


def load_photo(path: str | None, missing: str = ASK_FOR_PHOTO) -> Image.Image:
    """The photo a request needs, or the one message that asks for it."""
    if not path:
        raise StylizeError(missing)
    return load_upload(path, "the photo")


def editor_background(photo: str | None) -> str | None:
    """The photo as the region editor shows it (upright, at most EDITOR_SIDE px), as a file; None without a
    photo or for one the loader refuses (the run then says why)."""
    if not photo:
        return None
    try:
        return storage.save_background(images.load_image(photo, EDITOR_SIDE, max_bytes=MAX_UPLOAD_BYTES))
    except StylizeError:
        return None


class Inputs:
    """Loads paintings by preset id or upload, and masks and regions, within `max_styles` style images."""

    def __init__(self, preset_images: PresetImages, max_styles: int) -> None:
        self.preset_images, self.max_styles = preset_images, max_styles

    def style(self, preset_id: str | None, upload: str | None) -> tuple[Image.Image, str | None]:
        """The painting from an upload (preferred) or a preset id, and the preset id used."""
        if upload:
            return load_upload(upload, "the painting"), None
        if not preset_id:
            raise StylizeError("choose a preset painting or upload one")
        return images.load_image(self.preset_images.path(preset_id), MAX_INPUT_SIDE), preset_id

    def styles(self, preset_id: str | None, upload: str | None, extra: Sequence[str] | None
               ) -> tuple[list[Image.Image], str | None]:
        """The painting and the blended extra style images, and the preset id used."""
        extra = [f for f in extra or [] if f]
        if 1 + len(extra) > self.max_styles:
            raise StylizeError(f"at most {self.max_styles} style images per run (the painting and "
                               f"{self.max_styles - 1} more); got {1 + len(extra)}")
        style, used = self.style(preset_id, upload)
        return [style] + [load_upload(f, f"style image {n}") for n, f in enumerate(extra, 2)], used

    @staticmethod
    def masks(paths: Sequence[str] | None, styles: int, photo: Image.Image) -> tuple[list[Image.Image] | None, list[str]]:
        """The API's masks (one per style image, in the same order), each through the mask loader's checks and
        made an 8-bit grey image (picklable); None without masks. Also a notice per mask of another shape than
        the photo (it is stretched to fit)."""
        paths = [p for p in paths or [] if p]
        if not paths:
            return None, []
        if len(paths) != styles:
            raise StylizeError(f"masks: got {len(paths)} for {styles} style image{'s' if styles != 1 else ''} (the "
                               f"painting{f' and {styles - 1} more' if styles > 1 else ''}): give one mask per style "
                               "image, in the same order (white: this style goes here)")
        loaded, notices = [], []
        for n, path in enumerate(paths, 1):
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

    def regions(self, photo: str | None, preset_id: str | None, upload: str | None, extra: Sequence[str] | None,
                layers: Sequence[str | None], choices: Sequence[str | None]
                ) -> tuple[Image.Image, list[Image.Image], list[Image.Image], str | None] | None:
        """Painted regions (regions.py) as the photo, one style image and one mask per style, and the preset id of
        the painting for the rest of the photo; None when no region is painted or chosen.

        The painting chosen for the whole photo fills what no region covers; when a region uses the uploaded
        painting, the whole photo's painting is the chosen preset (if any) instead of that upload.
        """
        choices = list(choices)
        painted = read_regions(layers, choices, MAX_REGIONS, MAX_UPLOAD_BYTES)
        if not painted:
            return None
        uses_upload = UPLOAD in choices
        if uses_upload and not upload:
            raise StylizeError("a region uses your uploaded painting, but none is uploaded: upload one under "
                               "'…or use your own painting(s)', or choose a preset for that region")
        if any(extra or []):
            raise StylizeError("blended style images and painted regions do not combine: remove the extra style "
                               "images, or clear the regions")
        for choice in choices:
            if choice and choice not in (KEEP, UPLOAD):
                self.preset_images.path(choice)  # an unknown or unavailable preset: its message, before any work
        loaded = load_photo(photo, ASK_FOR_PHOTO + ", then paint regions over it")
        main_id = preset_id or None
        main_upload = upload if upload and not uses_upload else None
        plan = region_masks(painted, loaded.size, has_main=bool(main_id or main_upload))
        if len(plan) > self.max_styles:
            raise StylizeError(f"at most {self.max_styles} style images per run; these regions need {len(plan)}")
        styles, masks, used = [], [], None
        for choice, mask in plan:
            if choice == MAIN:
                style, used = self.style(None if main_upload else main_id, main_upload)
            elif choice == UPLOAD:
                style = load_upload(upload, "the painting")
            else:
                style, _ = self.style(choice, None)
            styles.append(style)
            masks.append(mask)
        return loaded, styles, masks, used
