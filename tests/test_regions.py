"""Painted regions (stylize/regions.py and Studio.region_inputs), the patch model in presets and links, and how
Compare lays out and batches its results. UI-free; the running app is tested in test_app.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gradient_photo
from PIL import Image, ImageDraw

from stylize import Settings, StylizeError
from stylize.service.regions import KEEP, MAIN, UPLOAD, read_regions, region_masks

W, H = 90, 60


def layer(tmp_path, name: str, box: tuple[int, int, int, int] | None, colour=(225, 29, 72)) -> str:
    """A layer as the image editor exports it: RGBA, transparent, a brush stroke (any colour) inside `box`."""
    img = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    if box is not None:
        ImageDraw.Draw(img).rectangle(box, fill=(*colour, 255))
    path = tmp_path / f"{name}.png"
    img.save(path)
    return str(path)


def grey(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask, dtype=np.float32) / 255.0


def test_layers_become_one_mask_per_style_the_rest_for_the_main_painting(tmp_path):
    left = layer(tmp_path, "left", (0, 0, W // 2 - 1, H - 1), colour=(0, 0, 0))  # black paint counts too
    corner = layer(tmp_path, "corner", (0, 0, 9, 9))
    empty = layer(tmp_path, "empty", None)
    regions = read_regions([left, corner, empty], ["the_scream", KEEP, None])
    assert [(n, choice) for n, choice, _ in regions] == [(1, "the_scream"), (2, KEEP)]
    plan = region_masks(regions, (W * 2, H * 2), has_main=True)  # brought to the photo's size
    assert [choice for choice, _ in plan] == [MAIN, "the_scream"]
    rest, scream = (grey(mask) for _, mask in plan)
    assert rest.shape == (H * 2, W * 2)
    assert rest[:, W + 2:].min() == 1.0 and rest[:, :W - 2].max() == 0.0  # the right half: the main painting
    assert scream[30:, :W - 2].min() == 1.0 and scream[:, W + 2:].max() == 0.0
    assert scream[:18, :18].max() == 0.0  # "keep the photo" is carved out of the other regions
    # Without a painting for the whole photo, the rest keeps the photo: only the region's mask.
    assert [choice for choice, _ in region_masks(regions, (W, H), has_main=False)] == ["the_scream"]


def test_nothing_painted_and_nothing_chosen_is_a_plain_run(tmp_path):
    assert read_regions([layer(tmp_path, "a", None), None], [None, "", None]) == []
    assert read_regions([], []) == []


@pytest.mark.parametrize("layers, choices, message", [
    (["paint", None], [None, None], r"region 1 is painted but has no painting: choose one for it, or 'keep the photo'"),
    (["empty"], ["the_scream"], r"region 1 has a painting but nothing is painted on its layer: paint it \(layer "
                                r"'Region 1' in the editor\), or clear its choice"),
    ([None, None], [None, KEEP], r"region 2 has 'keep the photo' but nothing is painted"),
    (["paint", "paint", "paint", "paint"], ["a", "b", "c", None],
     r"at most 3 painted regions \(one per layer\); layer 4 is painted too"),
    (["bad"], ["a"], r"region 1's layer: bad.png is not an image PIL can read"),
])
def test_each_region_mistake_gets_one_clear_message(tmp_path, layers, choices, message):
    files = {"paint": layer(tmp_path, "paint", (5, 5, 20, 20)), "empty": layer(tmp_path, "empty", None)}
    (tmp_path / "bad.png").write_bytes(b"not an image")
    files["bad"] = str(tmp_path / "bad.png")
    with pytest.raises(StylizeError, match=message):
        read_regions([files.get(name) for name in layers], choices)


def test_keep_everywhere_without_a_painting_and_regions_under_keep_are_refused(tmp_path):
    box = layer(tmp_path, "box", (5, 5, 40, 40))
    with pytest.raises(StylizeError, match="every painted region keeps the photo and no painting is chosen"):
        region_masks(read_regions([box], [KEEP]), (W, H), has_main=False)
    inner = layer(tmp_path, "inner", (10, 10, 20, 20))
    with pytest.raises(StylizeError, match="region 2 lies entirely under a 'keep the photo' region"):
        region_masks(read_regions([box, inner], [KEEP, "the_scream"]), (W, H), has_main=True)


def test_studio_region_inputs_load_the_paintings_and_say_what_is_missing(app_module, tmp_path, photo_file):
    studio = app_module.studio
    left = layer(tmp_path, "left", (0, 0, W // 2 - 1, H - 1))
    right = layer(tmp_path, "right", (W // 2, 0, W - 1, H - 1))
    assert studio.inputs.regions(photo_file, "starry_night", None, None, [layer(tmp_path, "e", None)], [None]) is None
    photo, styles, masks, used = studio.inputs.regions(photo_file, "starry_night", None, None, [left], ["the_scream"])
    assert used == "starry_night" and len(styles) == len(masks) == 2  # the rest, then the region
    assert all(mask.mode == "L" and mask.size == photo.size == (96, 64) for mask in masks)
    # A region with the uploaded painting: the whole photo's painting is then the chosen preset.
    painting = tmp_path / "painting.png"
    gradient_photo(64, 64, seed=9).save(painting)
    photo, styles, masks, used = studio.inputs.regions(photo_file, "starry_night", str(painting), None, [left, right],
                                                      [UPLOAD, KEEP])
    assert used == "starry_night" and len(styles) == 2 and styles[1].size == (64, 64)
    with pytest.raises(StylizeError, match="a region uses your uploaded painting, but none is uploaded"):
        studio.inputs.regions(photo_file, "", None, None, [left], [UPLOAD])
    with pytest.raises(StylizeError, match="blended style images and painted regions do not combine"):
        studio.inputs.regions(photo_file, "starry_night", None, [photo_file], [left], ["the_scream"])
    with pytest.raises(StylizeError, match="unknown preset"):
        studio.inputs.regions(photo_file, "", None, None, [left], ["../../etc/passwd"])
    with pytest.raises(StylizeError, match="add a photo first"):
        studio.inputs.regions(None, "starry_night", None, None, [left], ["the_scream"])


def test_api_masks_are_checked_and_counted_against_the_styles(app_module, tmp_path, photo_file):
    studio = app_module.studio
    from stylize.service.inputs import load_upload

    photo = load_upload(photo_file, "the photo")
    white, black, square = tmp_path / "white.png", tmp_path / "black.png", tmp_path / "square.png"
    Image.new("L", (96, 64), 255).save(white)
    Image.new("L", (96, 64), 0).save(black)
    Image.new("L", (50, 50), 255).save(square)
    assert studio.inputs.masks(None, 1, photo) == (None, [])
    masks, notices = studio.inputs.masks([str(white), str(square)], 2, photo)
    assert [m.mode for m in masks] == ["L", "L"] and notices == ["mask 2 is 50×50, the photo 96×64: stretched to fit"]
    with pytest.raises(StylizeError, match=r"masks: got 1 for 2 style images \(the painting and 1 more\): give one "
                                           r"mask per style image, in the same order"):
        studio.inputs.masks([str(white)], 2, photo)
    with pytest.raises(StylizeError, match="mask 1 is all black"):
        studio.inputs.masks([str(black)], 1, photo)


def test_a_preset_may_choose_the_patch_model(tmp_path):
    from stylize.presets import load_manifest

    manifest = tmp_path / "presets.toml"
    manifest.write_text('[patchy]\ntitle = "Patchy"\nartist = "Someone"\nyear = "1900"\nlicence = "Public domain"\n'
                        'credit = "Someone, Patchy, 1900. Public domain."\n'
                        'settings = { style_strength = 5.0, style_model = "mrf", mrf_patch = 5 }\n')
    preset = load_manifest(manifest)["patchy"]
    tuned = preset.apply(Settings(size=128))
    assert (tuned.style_model, tuned.mrf_patch, tuned.style_strength, tuned.size) == ("mrf", 5, 5.0, 128)
    manifest.write_text(manifest.read_text().replace('"mrf"', '"patches"'))
    with pytest.raises(StylizeError, match="style_model must be one of gram, mrf"):
        load_manifest(manifest)


def test_shareable_links_carry_the_patch_model(app_module):
    from urllib.parse import parse_qs, urlparse

    from stylize.service.links import share_url

    settings = app_module.D.replace(style_model="mrf", mrf_layers="relu2_1,relu3_1", mrf_patch=5)
    url = share_url("http://127.0.0.1:7860/", settings, ["the_scream"])
    query = {k: v[0] for k, v in parse_qs(urlparse(url).query, keep_blank_values=True).items()}
    assert query["style_model"] == "mrf" and query["mrf_patch"] == "5"
    link = app_module.studio.open_link(query)
    assert link.settings == settings and link.preset_id == "the_scream" and not link.notices


def test_compare_cells_show_both_models_with_captions_and_batch_what_can_share_a_batch(app_module):
    from stylize.experiments.compare import compare_batches, compare_cells

    studio = app_module.studio
    presets = studio.assets.presets
    base = Settings(size=64, steps=3)
    cells = compare_cells([presets["starry_night"], presets["the_scream"]], base, both_models=True)
    assert [(c.preset_id, c.settings.style_model) for c in cells] == [
        ("starry_night", "gram"), ("starry_night", "mrf"), ("the_scream", "gram"), ("the_scream", "mrf")]
    assert cells[1].caption == "The Starry Night — Vincent van Gogh, 1889 · Patches (Li & Wand 2016)"
    assert cells[2].caption.endswith(" · Gram (Gatys 2015)")
    assert [c.caption for c in compare_cells([presets["the_scream"]], base)] == ["The Scream — Edvard Munch, 1893"]
    # Style scale, strength and model may differ within a batch; pooling, size or steps may not.
    cells = cells + compare_cells([presets["shipwreck"]], base.replace(pooling="avg", style_scale=2.0))
    assert compare_batches(cells, range(len(cells)), (4, 3), studio.gpu_batches) == [[0, 1, 2, 3], [4]]
    assert compare_batches(cells, [0, 4, 2], (4, 3), studio.gpu_batches) == [[0, 2], [4]]
    # The GPU time asked for covers each result's own run, with one request's start-up and margin.
    from stylize.cost.budget import ZeroGpu

    both = studio.budget.seconds(base) + studio.budget.seconds(base.replace(style_model="mrf"))
    assert studio.compare_seconds(compare_cells([presets["starry_night"]], base, True)) == ZeroGpu.request(both)
    # The estimate shown prices the batches as they run: the four results of the first batch pay the per-step fixed
    # cost once, the fifth (its own batch) alone.
    alone = [studio.budget.seconds(c.settings) for c in cells]
    fixed = studio.budget.cost.ratio * studio.budget.cost.overhead * 3  # a run of 3 steps
    assert studio.compare_time(cells) == pytest.approx(sum(alone) - 3 * fixed)
    assert studio.budget.cost.fixed_seconds(base) == pytest.approx(fixed)
