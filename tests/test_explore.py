"""Explore: the paper's experiments as grids, all cells as one batch; the labelled grid image; the CLI."""

import subprocess
import sys
from urllib.parse import parse_qs, urlencode

import numpy as np
import pytest
from conftest import ROOT, gradient_photo, stripes_painting
from PIL import Image

from stylize import Settings, StylizeError
from stylize.experiments.explore import MAX_CELLS, Grid, run_grid, style_set_label
from stylize.experiments.sheets import GAP, PAD, grid_layout, labelled_grid


def test_a_2x2_style_grid_gives_four_distinct_images_whose_losses_fall(stylizer, photo, painting):
    grid = Grid("style", rows=("a", "e"), columns=(2, 200), settings=Settings(size=64, steps=12))
    frames = list(run_grid(stylizer, grid, photo, painting, report_every=100))
    final = frames[-1]
    assert final.done and final.step == 12 and len(frames) == 12
    assert len(final.images) == 4 and all(img.size == (64, 43) for img in final.images)
    assert len({img.tobytes() for img in final.images}) == 4
    for losses, history in zip(final.item_losses, final.histories):
        assert set(losses) == {"content", "style", "calm", "total"}
        assert losses["total"] < 0.75 * history[0][1]["total"]
    # Row-major: a stronger style weighs more in the objective at the start (same image: the photo).
    start = [h[0][1]["style"] for h in final.histories]
    assert start[1] == pytest.approx(100 * start[0], rel=1e-3) and start[3] == pytest.approx(100 * start[2], rel=1e-3)


def test_a_texture_cell_lowers_its_style_loss_by_a_large_factor(stylizer, painting):
    # Measured: 40 steps at 64 px from noise lower the set-e style loss ~90x (20 steps: ~1.6x, L-BFGS starts slowly).
    grid = Grid("texture", rows=("e",), settings=Settings(size=64, steps=40, seed=1))
    final = list(run_grid(stylizer, grid, None, painting, report_every=100))[-1]
    losses, history = final.item_losses[0], final.histories[0]
    assert set(losses) == {"style", "total"}
    assert history[0][1]["style"] / losses["style"] >= 5
    assert final.images[0].size == (64, 64)  # the painting's aspect ratio: there is no photo


def test_a_reconstruction_cell_lowers_its_content_loss_by_a_large_factor(stylizer, photo):
    # Measured: relu1_1 from noise, 10 steps at 64 px: ~190x.
    grid = Grid("reconstruction", rows=("relu1_1",), settings=Settings(size=64, steps=10, seed=1))
    final = list(run_grid(stylizer, grid, photo, None, report_every=100))[-1]
    losses, history = final.item_losses[0], final.histories[0]
    assert set(losses) == {"content", "total"}
    assert history[0][1]["content"] / losses["content"] >= 5


def test_each_cell_gets_its_own_settings_row_major():
    base = Settings(size=64, steps=5, seed=3, layer_weights="1,1,1,1,2", content_layer="relu3_2")
    style = Grid("style", rows=("a", "relu2_1, conv3_1"), columns=(2, 20, 200), settings=base)
    cells = style.cell_settings()
    assert [(s.style_layers, s.style_strength) for s in cells] == [
        ("a", 2.0), ("a", 20.0), ("a", 200.0), ("relu2_1, conv3_1", 2.0), ("relu2_1, conv3_1", 20.0),
        ("relu2_1, conv3_1", 200.0)]
    assert all(s.layer_weights == "" and s.init == "content" and s.content_layer == "relu3_2" for s in cells)
    photo, painting = gradient_photo(), stripes_painting()
    jobs = style.jobs(photo, painting)
    assert len(jobs) == 6 and all(j.content is photo and list(j.styles) == [painting] for j in jobs)

    texture = Grid("texture", rows=("a", "c"), columns=(0, 7), settings=base)
    jobs = texture.jobs(photo, painting)  # the photo is not used
    assert [(j.settings.style_layers, j.settings.seed, j.settings.init) for j in jobs] == [
        ("a", 0, "noise"), ("a", 7, "noise"), ("c", 0, "noise"), ("c", 7, "noise")]
    assert all(j.content is None and list(j.styles) == [painting] for j in jobs)

    recon = Grid("reconstruction", settings=base)
    assert recon.rows == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1") and recon.columns == (3,)
    jobs = recon.jobs(photo, None)
    assert [j.settings.content_layer for j in jobs] == list(recon.rows)
    assert all(j.content is photo and not j.styles and j.settings.init == "noise" for j in jobs)
    assert recon.layers_in_use == set(recon.rows) and texture.layers_in_use == {"relu1_1", "relu2_1", "relu3_1"}


def test_defaults_and_labels():
    grid = Grid()
    assert grid.kind == "style" and grid.rows == tuple("abcde") and grid.columns == (2.0, 20.0, 200.0, 2000.0)
    assert grid.shape == (5, 4) and grid.cells == 20
    assert grid.row_labels == ["a: relu1_1", "b: relu1_1, relu2_1", "c: relu1_1…relu3_1", "d: relu1_1…relu4_1",
                               "e: relu1_1…relu5_1"]
    assert grid.column_labels == ["β/α = 2", "β/α = 20", "β/α = 200", "β/α = 2000"]
    assert Grid(columns=(0.5, 1e4)).column_labels == ["β/α = 0.5", "β/α = 10000"]
    assert style_set_label("relu2_1,conv3_1") == "relu2_1, conv3_1"
    assert Grid("texture").rows == tuple("abcde") and Grid("texture").column_labels == ["seed 0"]
    assert Grid("reconstruction", rows=("conv1_1", "relu4_2")).row_labels == ["conv1_1", "relu4_2"]
    assert Grid("texture").cell_labels[0] == "a: relu1_1, seed 0"


@pytest.mark.parametrize("kwargs, message", [
    ({"rows": tuple("abcdef"), "columns": (1, 2, 3, 4, 5, 6)}, f"a 6 × 6 grid has 36 cells; at most {MAX_CELLS}"),
    ({"rows": ("a", "f")}, r"unknown style layer set 'f'; valid: a, b, c, d, e .* conv1_1, relu1_1"),
    ({"kind": "texture", "rows": ("relu1_1,pool2",)}, r"unknown style layer set 'relu1_1,pool2'"),
    ({"kind": "reconstruction", "rows": ("relu1_1", "relu6_1", "fc7")},
     r"unknown content layers 'relu6_1', 'fc7'; valid: conv1_1, relu1_1, .*relu5_4"),
    ({"columns": (0.01, 20, 2e5)}, r"style strengths 0.01, 200000 outside 0.1–10000"),
    ({"kind": "texture", "columns": (1.5,)}, r"seeds must be whole numbers from 0 to 2147483647 \(got 1.5\)"),
    ({"columns": (20, 20)}, "columns repeat: 20"),
    ({"rows": ("a", "a")}, "rows repeat: a"),
    ({"rows": ()}, "a grid needs at least one row"),
    ({"kind": "collage"}, "the kind of grid must be one of style, texture, reconstruction"),
    ({"settings": Settings(style_model="mrf")}, "choose style_model 'gram'"),
    ({"settings": Settings(size=512)}, "20 cells of 512 px are too large for one batch: at most 7 at that size"),
])
def test_bad_grids_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(StylizeError, match=message):
        Grid(**kwargs)


@pytest.mark.parametrize("kind, given, message", [
    ("style", ("photo",), "the style-transfer grid needs a photo and a painting"),
    ("style", ("painting",), "the style-transfer grid needs a photo and a painting"),
    ("texture", ("photo",), "texture synthesis needs a painting"),
    ("reconstruction", ("painting",), "content reconstruction needs a photo"),
])
def test_a_missing_image_is_refused_before_any_work(stylizer, kind, given, message, monkeypatch):
    monkeypatch.setattr(stylizer, "run_batch", lambda *a, **k: pytest.fail("no work may start"))
    photo = gradient_photo() if "photo" in given else None
    painting = stripes_painting() if "painting" in given else None
    with pytest.raises(StylizeError, match=message):
        run_grid(stylizer, Grid(kind, settings=Settings(size=64, steps=2)), photo, painting)


def test_the_plain_dict_round_trip_survives_a_query_string():
    grid = Grid("style", rows=("a", "relu2_1,conv3_1", "e"), columns=(0.3, 20, 2000),
                settings=Settings(size=96, steps=50, seed=4, pooling="max", tv_weight=0.01))
    data = grid.to_dict()
    assert data["kind"] == "style" and data["rows"] == "a;relu2_1,conv3_1;e" and data["columns"] == "0.3;20;2000"
    assert all(isinstance(v, (str, int, float)) for v in data.values())
    assert Grid.from_dict(data) == grid
    parsed = {k: v[0] for k, v in parse_qs(urlencode(data)).items()}  # everything as text, as from a link
    assert Grid.from_dict(parsed) == grid
    texture = Grid("texture", rows=("b", "d"), columns=(1, 2, 3), settings=Settings(size=64))
    assert Grid.from_dict({k: str(v) for k, v in texture.to_dict().items()}) == texture
    assert Grid.from_dict({"kind": "reconstruction", "rows": ["relu1_1"], "columns": [5]}).columns == (5,)
    with pytest.raises(StylizeError, match="unknown grid field 'colour'"):
        Grid.from_dict({"kind": "style", "colour": "red"})
    with pytest.raises(StylizeError, match="columns must be numbers"):
        Grid.from_dict({"kind": "style", "columns": "2;lots"})
    with pytest.raises(StylizeError, match="size='big' is not a valid int"):
        Grid.from_dict({"kind": "style", "size": "big"})


COLOURS = [(220, 30, 30), (30, 160, 40), (40, 60, 220), (240, 200, 20), (160, 40, 200), (20, 200, 200)]


def ink(region: np.ndarray) -> int:
    """Dark (text) pixels in a region."""
    return int((region.max(axis=-1) < 100).sum())


def test_the_labelled_grid_has_the_right_layout():
    cell = (80, 50)
    rows, columns = ["a: relu1_1", "e: relu1_1…relu5_1"], ["β/α = 2", "β/α = 20", "β/α = 200"]
    cells = [Image.new("RGB", cell, colour) for colour in COLOURS]
    image = labelled_grid(cells, rows, columns, title="Fig. 3")
    layout = grid_layout(cell, rows, columns, "Fig. 3")
    assert image.mode == "RGB" and image.size == layout.size
    # Size: label margins + cells + gaps + outer padding.
    left, top = layout.origin
    assert left > PAD + 50 and top > PAD + 2 * layout.font_size  # room for the row labels, the title and column labels
    assert layout.size == (left + 3 * layout.pitch[0] + 2 * GAP + PAD, top + 2 * layout.pitch[1] + GAP + PAD)
    assert layout.pitch == cell  # these labels fit their cells
    pixels = np.asarray(image)
    for k, colour in enumerate(COLOURS):
        r, c = divmod(k, 3)
        x0, y0, x1, y1 = layout.cell_box(r, c)
        assert (x0, y0) == (left + c * (cell[0] + GAP), top + r * (cell[1] + GAP))
        assert tuple(pixels[(y0 + y1) // 2, (x0 + x1) // 2]) == colour  # the centre
        assert (pixels[y0:y1, x0:x1] == colour).all()  # the whole cell, nothing drawn over it
        assert tuple(pixels[y0 + 1, x1]) == (255, 255, 255)  # the white gap right of it
    for r in range(2):  # row labels: dark text left of each row
        _, y0, _, y1 = layout.slot(r, 0)
        assert ink(pixels[y0:y1, PAD:left]) > 20
    for c in range(3):  # column labels: dark text above each column
        x0, _, x1, _ = layout.slot(0, c)
        assert ink(pixels[PAD + layout.title_height:top, x0:x1]) > 20
    assert ink(pixels[PAD:PAD + layout.title_height, :]) > 20  # the title
    assert ink(pixels[:PAD]) == ink(pixels[-PAD:]) == 0  # blank margins
    untitled = labelled_grid(cells, rows, columns)
    assert untitled.height < image.height and untitled.width == image.width


def test_a_one_column_grid_is_laid_out_as_one_row_with_wide_labels_wrapped():
    grid = Grid("texture", settings=Settings(size=64))
    cells = [Image.new("RGB", (64, 64), colour) for colour in COLOURS[:5]]
    image = grid.labelled(cells)
    layout = grid_layout((64, 64), grid.column_labels, grid.row_labels, grid.title)
    assert image.size == layout.size and image.width > image.height  # one row of five, as in the paper's Fig. 1
    assert "\n" in layout.columns[-1]  # "e: relu1_1…relu5_1" is wider than a 64 px cell: on two lines
    pixels = np.asarray(image)
    for c, colour in enumerate(COLOURS[:5]):
        x0, y0, x1, y1 = layout.cell_box(0, c)
        assert tuple(pixels[(y0 + y1) // 2, (x0 + x1) // 2]) == colour
    with pytest.raises(StylizeError, match="4 images for a 5 × 1 grid"):
        labelled_grid(cells[:4], grid.row_labels, grid.column_labels)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylize", "explore", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_the_cli_writes_the_labelled_grid_and_its_cells(tmp_path):
    gradient_photo().save(tmp_path / "photo.png")
    stripes_painting().save(tmp_path / "painting.png")
    out, cells = tmp_path / "grid.png", tmp_path / "cells"
    cells.mkdir()
    result = cli("style", "--photo", str(tmp_path / "photo.png"), "--painting", str(tmp_path / "painting.png"),
                 "--rows", "a", "relu1_1,relu3_1", "--columns", "2", "200", "--size", "64", "--steps", "2",
                 "--weights", "embedded", "--cells-dir", str(cells), "-o", str(out))
    assert result.returncode == 0, result.stderr
    grid = Grid("style", rows=("a", "relu1_1,relu3_1"), columns=(2, 200))
    expected = grid_layout((64, 43), grid.row_labels, grid.column_labels, grid.title).size
    assert Image.open(out).format == "PNG" and Image.open(out).size == expected
    assert sorted(p.name for p in cells.iterdir()) == ["style-r1c1-a-2.png", "style-r1c2-a-200.png",
                                                       "style-r2c1-relu1_1+relu3_1-2.png",
                                                       "style-r2c2-relu1_1+relu3_1-200.png"]
    assert Image.open(cells / "style-r1c1-a-2.png").size == (64, 43)
    assert result.stdout.strip().startswith(f"saved {out} (2 × 2 cells of 64×43) in ")


def test_the_cli_refuses_bad_input_with_one_line(tmp_path):
    stripes_painting().save(tmp_path / "painting.png")
    missing = cli("style", "--painting", str(tmp_path / "painting.png"), "-o", str(tmp_path / "g.png"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: the style-transfer grid needs a photo and a painting"
    too_many = cli("texture", "--painting", str(tmp_path / "painting.png"), "--columns", *map(str, range(7)),
                   "-o", str(tmp_path / "g.png"))
    assert too_many.returncode == 2 and too_many.stderr.strip() == "error: a 5 × 7 grid has 35 cells; at most 30"
    bad_column = cli("style", "--columns", "2", "many", "-o", str(tmp_path / "g.png"))
    assert bad_column.returncode == 2 and bad_column.stderr.strip() == "error: --columns takes numbers (got 'many')"
    assert not (tmp_path / "g.png").exists()


def test_a_grid_too_large_for_the_gpu_runs_as_batches_one_after_another(stylizer, photo, painting):
    """Chunks (as the GPU memory planner makes them) give every cell, row-major, in one stream of frames."""
    from stylize.experiments.explore import Grid, run_grid

    grid = Grid("style", ("a", "c"), (10.0, 100.0), Settings(size=64, steps=3, scales=1))
    whole = list(run_grid(stylizer, grid, photo, painting, report_every=1))
    chunked = list(run_grid(stylizer, grid, photo, painting, report_every=1, chunks=[[0, 1], [2, 3]]))
    assert [f.step for f in chunked] == [1, 2, 3, 4, 5, 6] and chunked[-1].total_steps == 6
    assert chunked[-1].done and not chunked[2].done  # the first batch's end is not the grid's
    assert chunked[0].item_losses[2] == {} and chunked[0].images[2].getextrema() == ((255, 255),) * 3  # not started
    final, reference = chunked[-1], whole[-1]
    assert len(final.images) == 4
    for mine, theirs in zip(final.item_losses, reference.item_losses):
        assert mine["total"] == pytest.approx(theirs["total"], rel=1e-3)  # each cell as in the one-batch run
