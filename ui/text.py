"""The UI's words and small formatting: labels, hints, status notes, the loss table, credits."""

from __future__ import annotations

import html
import math
import re
from typing import Sequence

import pandas as pd

from stylize.experiments.explore import Grid, style_set_label
from stylize.params import ABOUT, STYLE_LAYER_SETS
from stylize.service.regions import KEEP, UPLOAD

from .service import studio

LOSS_COLOURS = {"total": "#1f2937", "content": "#2563eb", "style": "#dc2626", "calm": "#059669", "tv": "#9333ea"}  # the legend
KIND_CHOICES = [("Style transfer grid (Fig. 3)", "style"), ("Texture synthesis (Fig. 1)", "texture"),
                ("Content reconstruction (Fig. 1)", "reconstruction")]
CONTENT_ROW_CHOICES = tuple(f"relu{b}_{c}" for b in range(1, 6) for c in (1, 2))  # offered as check boxes
TITLE = "# stylize\nPaint your photo in the style of a painting — the algorithm of Gatys, Ecker & Bethge (2015)."
COMPARE_INTRO = ("One photo, several paintings: each runs with its tuned settings, all at once. The photo is the same "
                 "as on the *Stylize* tab. Click a result to take its painting and settings there.")
EXPLORE_INTRO = ("The paper's experiments as grids: what the layers and the strength do. Every cell is optimized at "
                 "the same time, in one batch, and the grid fills in as the cells converge. Click a cell to see it "
                 "large, download it, and take its settings to the *Stylize* tab.")
STYLIZE_HINT = "Pick a painting, add a photo, press **Stylize**."
GRID_HINT = "Choose an experiment and its images, then press **Run the grid**."
REGIONS_HELP = ("Paint up to {n} regions over your photo with the brush, one per layer (*Region 1–{n}* in the "
                "editor's layer menu), and choose a painting for each, or *keep the photo*. The painting picked above "
                "fills the rest of the photo; with none picked, the rest keeps the photo too. Works with the Gram "
                "style model.")


SHOWN_CHARS = 200  # outside text (a link's value, a file name, an error about them) is cut to this
PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark: Markdown may escape each


def cut(text: object, limit: int = SHOWN_CHARS) -> str:
    """Outside text on one line, at most `limit` characters (an ellipsis says it was cut)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def plain(text: object, limit: int = SHOWN_CHARS) -> str:
    """Outside text for a Markdown component, shown as it reads: every punctuation mark escaped, so no link,
    autolink, image, emphasis, HTML or formula can come of it; cut to `limit` characters."""
    return PUNCTUATION.sub(r"\\\1", cut(text, limit))


def html_text(text: object, limit: int = 2 * SHOWN_CHARS) -> str:
    """Outside text for a message box (gradio's toasts render HTML): `& < >` escaped, cut to `limit`."""
    return html.escape(cut(text, limit), quote=False)


def model_name(model: str) -> str:
    return ABOUT["style_model"].label_of(model)


BOTH_MODELS = f"Also with the patch model: each preset twice, {model_name('gram')} and {model_name('mrf')}"


def preset_choices(ids: Sequence[str]) -> list[tuple[str, str]]:
    return [(studio.assets.presets[i].title, i) for i in ids]


def region_choices(ids: Sequence[str]) -> list[tuple[str, str]]:
    """What a painted region can get: the photo kept, the uploaded painting, or a preset."""
    return [("Keep the photo", KEEP), ("Your uploaded painting", UPLOAD), *preset_choices(ids)]


def style_label(preset_id: str | None) -> str:
    return f"Style: **{studio.assets.presets[preset_id].caption}**" if preset_id else "Style: *none chosen yet*"


def estimate_note(text: str) -> str:
    return f"<small>{text}</small>" if text else ""


def adjusted(notices: Sequence[str], status: str) -> str:
    """A link's status line, with what opening it changed first (the link's values shown as text)."""
    return f"This link was adjusted: {'; '.join(plain(n) for n in notices)}. {status}" if notices else status


def loss_table(history) -> pd.DataFrame:
    rows = [(step, term, math.log10(value)) for step, term, value in history if value > 0]  # log scale: no zeros
    return pd.DataFrame(rows, columns=["step", "term", "log10 loss"])


def strength_from_log(log_strength: float) -> float:
    """The strength slider works in log₁₀; three significant digits are what a slider position means."""
    return float(f"{10 ** float(log_strength):.3g}")


def slider_position(strength: float) -> float:
    """Where the log-scale slider shows a strength (display only: the number box holds the exact value)."""
    return round(math.log10(strength), 2)


def row_choices(kind: str, rows: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, value) check boxes for a kind's rows: the paper's sets a–e, or content layers; plus any other valid
    rows given (e.g. from a link)."""
    if kind == "reconstruction":
        base = [(layer, layer) for layer in CONTENT_ROW_CHOICES]
    else:
        base = [(style_set_label(key), key) for key in STYLE_LAYER_SETS]
    known = {value for _, value in base}
    return base + [(style_set_label(r) if kind != "reconstruction" else r, r) for r in rows if r not in known]


def gallery_columns(grid: Grid) -> int:
    """The cells' gallery shows the grid's columns (a one-column grid as one row, like the labelled image)."""
    return len(grid.rows) if len(grid.columns) == 1 else len(grid.columns)


def credits() -> str:
    """One credit line per preset painting and example photo, and the method's references (markdown)."""
    assets = studio.assets
    lines = [f"- **{p.title}** ({p.id}): {p.credit}" + (f" — *unavailable: {reason}*" if reason else "")
             for p, reason in ((assets.presets[i], r) for i, r in assets.preset_images.availability().items())]
    lines += [f"- Photo *{photo.title}*: {photo.credit}" for photo in assets.photos.values()]
    return "\n".join(lines) + ("\n\nMethod: L. A. Gatys, A. S. Ecker, M. Bethge, *A Neural Algorithm of Artistic "
                               "Style* (2015). Network: VGG-19 (Simonyan & Zisserman).")


def photo_credits() -> str:
    return "<small>Example photos: " + " · ".join(
        f"{studio.assets.photo_title(p.id)}, {p.licence}" for p in studio.assets.photos.values()
    ) + " (full credits at the bottom of the page)</small>"

