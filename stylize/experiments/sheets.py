"""A grid of images as one labelled picture: cells in rows and columns with their labels and a title, drawn with
whatever font this machine has (a label's characters the font lacks are spelled in ASCII). Used by Explore's grids
and Compare's sheet."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont, features

from stylize.errors import StylizeError

PAD = 10  # outer margin
GAP = 4  # between cells
LABEL_GAP = 6  # between labels and cells
INK = (25, 25, 25)
BACKGROUND = (255, 255, 255)


# A font with Greek letters and typographic signs where one is found (system DejaVu or Liberation, matplotlib's
# copy of DejaVu), else Pillow's own (Latin only: the labels then spell those signs in ASCII, see ASCII_LABELS).
FONT_FILES = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "Helvetica.ttc")
ASCII_LABELS = {"β/α": "style/content", "×": "x", "…": "...", "–": "-"}


def _font_files() -> list[str]:
    found = list(FONT_FILES)
    spec = importlib.util.find_spec("matplotlib")  # located, not imported
    if spec is not None and spec.origin:
        found.append(str(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"))
    return found


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if features.check("freetype2"):
        for name in _font_files():
            try:
                return ImageFont.truetype(name, size)  # Pillow also looks a bare name up in the system's font folders
            except OSError:
                continue
        return ImageFont.load_default(size=size)
    return ImageFont.load_default()  # a fixed bitmap font where Pillow lacks FreeType


def _drawn(font, text: str) -> bytes:
    img = Image.new("L", (64, 64))
    ImageDraw.Draw(img).text((4, 4), text, font=font, fill=255)
    return img.tobytes()


@functools.lru_cache(maxsize=64)
def _has_glyph(font, char: str) -> bool:
    """False where the font would draw its 'missing glyph' box (or nothing) for `char`."""
    return _drawn(font, char) not in (_drawn(font, "\uffff"), _drawn(font, ""))


def _printable(font, text: str) -> str:
    """The text with signs the font lacks spelled in ASCII."""
    for sign, ascii_text in ASCII_LABELS.items():
        if sign in text and not all(_has_glyph(font, ch) for ch in sign):
            text = text.replace(sign, ascii_text)
    return text


def _text_size(font, text: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox((0, 0), text, font=font, spacing=2)
    return box[2], box[3]


def _wrap(font, label: str, width: int) -> str:
    """A label wider than `width` goes on two lines at its ': ' or ', ' if it has one, else on as many lines as
    its words need."""
    if _text_size(font, label)[0] <= width:
        return label
    for sep in (": ", ", ", " = "):
        if sep in label:
            head, tail = label.split(sep, 1)
            return f"{head}{sep.rstrip()}\n{tail}"
    lines: list[str] = []
    for word in label.split():
        if lines and _text_size(font, f"{lines[-1]} {word}")[0] <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


@dataclass(frozen=True)
class GridLayout:
    """Where everything goes: cell slots of `pitch` px, `gap` apart, the first at `origin`; labels left and above."""

    size: tuple[int, int]
    cell: tuple[int, int]
    pitch: tuple[int, int]
    origin: tuple[int, int]
    gap: int
    font_size: int
    rows: list[str]  # the labels as drawn (wrapped, in ASCII where the font lacks a sign)
    columns: list[str]
    title: str
    title_height: int

    def slot(self, row: int, column: int) -> tuple[int, int, int, int]:
        x = self.origin[0] + column * (self.pitch[0] + self.gap)
        y = self.origin[1] + row * (self.pitch[1] + self.gap)
        return x, y, x + self.pitch[0], y + self.pitch[1]

    def cell_box(self, row: int, column: int, size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """The box a cell image of `size` (default: the largest cell) is pasted into: centred in its slot."""
        w, h = size or self.cell
        x0, y0, x1, y1 = self.slot(row, column)
        x, y = x0 + (x1 - x0 - w) // 2, y0 + (y1 - y0 - h) // 2
        return x, y, x + w, y + h


def grid_layout(cell: tuple[int, int], rows: Sequence[str], columns: Sequence[str], title: str = "") -> GridLayout:
    """The layout `labelled_grid` draws for cells of size `cell` (the largest) and these labels."""
    font_size = max(11, min(22, round(cell[1] / 8)))
    font, title_font = _font(font_size), _font(font_size + 2)
    title = _printable(title_font, title)
    rows = [_printable(font, r) for r in rows]
    columns = [_wrap(font, _printable(font, c), cell[0]) for c in columns]
    row_sizes = [_text_size(font, r) for r in rows]
    column_sizes = [_text_size(font, c) for c in columns]
    label_w = max((w for w, _ in row_sizes), default=0)
    label_h = max((h for _, h in column_sizes), default=0)
    pitch = (max([cell[0], *(w + 2 * GAP for w, _ in column_sizes)]), max([cell[1], *(h for _, h in row_sizes)]))
    title_h = _text_size(title_font, title)[1] + LABEL_GAP if title else 0
    left = PAD + (label_w + LABEL_GAP if label_w else 0)
    top = PAD + title_h + (label_h + LABEL_GAP if label_h else 0)
    n_rows, n_cols = len(rows), len(columns)
    width = left + n_cols * pitch[0] + (n_cols - 1) * GAP + PAD
    height = top + n_rows * pitch[1] + (n_rows - 1) * GAP + PAD
    return GridLayout((max(width, PAD * 2 + _text_size(title_font, title)[0]), height), cell, pitch,
                      (left, top), GAP, font_size, rows, columns, title, title_h)


def labelled_grid(images: Sequence[Image.Image], rows: Sequence[str], columns: Sequence[str],
                  title: str = "") -> Image.Image:
    """The cells (row-major) as one RGB image on white: row labels on the left, column labels on top, a title."""
    if len(images) != len(rows) * len(columns):
        raise StylizeError(f"{len(images)} images for a {len(rows)} × {len(columns)} grid")
    if not images:
        raise StylizeError("no images to lay out")
    cell = (max(img.width for img in images), max(img.height for img in images))
    layout = grid_layout(cell, rows, columns, title)
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(layout.font_size)
    if layout.title:
        draw.text((PAD, PAD), layout.title, fill=INK, font=_font(layout.font_size + 2))
    for c, label in enumerate(layout.columns):
        x0, y0, x1, _ = layout.slot(0, c)
        w, h = _text_size(font, label)
        draw.multiline_text((x0 + (x1 - x0 - w) // 2, y0 - LABEL_GAP - h), label, fill=INK, font=font, spacing=2,
                            align="center")
    for r, label in enumerate(layout.rows):
        x0, y0, _, y1 = layout.slot(r, 0)
        w, h = _text_size(font, label)
        draw.multiline_text((x0 - LABEL_GAP - w, y0 + (y1 - y0 - h) // 2), label, fill=INK, font=font, spacing=2,
                            align="right")
    for k, img in enumerate(images):
        r, c = divmod(k, len(columns))
        canvas.paste(img.convert("RGB"), layout.cell_box(r, c, img.size)[:2])
    return canvas
