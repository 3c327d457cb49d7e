"""Compare's sheet and link: pixels where they belong, links validated and clamped like every link."""

from __future__ import annotations

import numpy as np
from PIL import Image

from stylize.experiments.compare import PHOTO_CAPTION, SHEET_COLUMNS, comparison_sheet
from stylize.experiments.sheets import grid_layout
from stylize.params import Settings
from stylize.service.links import compare_url, open_compare_link


def solid(colour, size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


def cell_mean(sheet: Image.Image, captions: list[str], index: int, size=(64, 48)) -> np.ndarray:
    """The mean colour of cell `index` of a sheet, found where the sheet's own layout puts it."""
    row, column = divmod(index, SHEET_COLUMNS)
    rows = [captions[k:k + SHEET_COLUMNS] for k in range(0, len(captions), SHEET_COLUMNS)]
    top = sum(grid_layout(size, [""], r).size[1] for r in rows[:row])
    x0, y0, x1, y1 = grid_layout(size, [""], rows[row]).cell_box(0, column, size)
    return np.asarray(sheet.crop((x0, top + y0, x1, top + y1)), dtype=float).mean(axis=(0, 1))


def test_the_sheet_shows_the_photo_first_then_each_result_under_its_caption():
    photo = solid((250, 0, 0), (128, 96))  # larger than the results: shown at their size
    results = [solid((0, 250, 0)), solid((0, 0, 250)), solid((250, 250, 0)), solid((0, 250, 250)), solid((40, 40, 40))]
    titles = ["The Starry Night", "The Scream", "Udnie", "The Kiss", "Composition VII"]
    sheet = comparison_sheet(photo, results, titles)
    captions = [PHOTO_CAPTION, *titles]
    expected = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250), (40, 40, 40)]
    for k, colour in enumerate(expected):
        assert np.abs(cell_mean(sheet, captions, k) - colour).max() < 3, k
    # Two rows (four images a row), captions drawn above each image: dark pixels above the first result.
    first = grid_layout((64, 48), [""], captions[:4])
    x0, y0, x1, _ = first.cell_box(0, 1)
    above = np.asarray(sheet.crop((x0, 0, x1, y0)).convert("L"))
    assert (above < 128).sum() > 20  # its caption
    assert sheet.height >= 2 * 48 and sheet.width >= 4 * 64


def test_a_comparison_link_round_trips_and_is_clamped():
    base = Settings(size=256, steps=90, scales=3)
    url = compare_url("http://host/?x=1", ["the_scream", "udnie"], base.replace(seed=7), "tubingen", True, run=True)
    assert url == "http://host/?tab=compare&presets=the_scream%2Cudnie&size=256&steps=90&seed=7&photo=tubingen&both=1&run=1"
    from urllib.parse import parse_qs, urlsplit

    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    link = open_compare_link(query, ["the_scream", "udnie"], ["tubingen"], base, 512, 1000, 6)
    assert (link.preset_ids, link.settings.size, link.settings.steps, link.settings.seed) == (
        ["the_scream", "udnie"], 256, 90, 7)
    assert link.photo_id == "tubingen" and link.both_models and link.autorun and not link.notices
    bad = open_compare_link({"tab": "compare", "presets": "the_scream,../../etc/passwd,the_scream", "size": "4096",
                             "steps": "abc", "photo": "/etc/passwd", "run": "1", "evil": "1"},
                            ["the_scream"], ["tubingen"], base, 512, 1000, 6)
    assert bad.preset_ids == ["the_scream"] and bad.settings.size == 512 and bad.settings.steps == 90
    assert bad.photo_id == "" and not bad.autorun  # no photo: nothing to run
    assert any("unknown preset '../../etc/passwd'" in n for n in bad.notices)
    assert any("unknown example photo" in n for n in bad.notices) and any("'evil'" in n for n in bad.notices)
    assert open_compare_link({"preset": "the_scream"}, ["the_scream"], [], base, 512, 1000, 6) is None
