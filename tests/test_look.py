"""The lattice measure (benchmarks/lattice.py) on hand-made images, and a small fixed run that fails if the lattice of
issue #20 comes back (coloured dots on a grid over a calm sky)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmarks import lattice as look

H, W = 128, 160
GREY = np.full((H, W, 3), 128.0)
EVERYWHERE = np.ones((H, W), bool)


def dots(period: int = 4, colour=(30.0, -20.0, 10.0)) -> np.ndarray:
    """The flat grey image with one coloured dot every `period` px in both directions."""
    img = GREY.copy()
    img[::period, ::period] += colour
    return img


def test_a_flat_image_scores_zero():
    assert look.lattice(GREY, EVERYWHERE) < 1e-9
    assert look.highpass(GREY, EVERYWHERE) < 1e-9


def test_a_smooth_image_scores_about_zero():
    y, x = np.mgrid[0:H, 0:W]
    smooth = GREY + 40 * np.sin(2 * np.pi * x / 97.0)[..., None] + 0.3 * y[..., None]  # a slow ramp and wave
    # ~0: what a strong slow wave (±40 grey levels) leaks into fine periods, 1 % of the dots' score below
    assert look.lattice(smooth, EVERYWHERE) < 0.5
    assert look.highpass(smooth, EVERYWHERE) < 0.5


def test_a_4px_dot_lattice_scores_high():
    img = dots(4)
    energy = (img - img.mean(axis=(0, 1))).var(axis=(0, 1)).mean()  # the pattern's own energy per pixel
    assert look.lattice(img, EVERYWHERE) > 0.5 * energy
    assert look.lattice(img, EVERYWHERE) > 10.0


def test_the_lattice_measure_sees_periodicity_not_just_fine_energy():
    periodic = dots(4)
    rng = np.random.default_rng(0)
    noise = GREY + rng.normal(0, (periodic - GREY).std(axis=(0, 1)), GREY.shape)  # the same energy, random
    assert look.highpass(noise, EVERYWHERE) > 0.5 * look.highpass(periodic, EVERYWHERE)
    assert look.lattice(noise, EVERYWHERE) < 0.15 * look.lattice(periodic, EVERYWHERE)


def test_only_the_flat_region_counts():
    img = GREY.copy()
    img[:, W // 2:] = dots(4)[:, W // 2:]
    left = np.zeros((H, W), bool)
    left[:, : W // 2] = True
    assert look.lattice(img, left) < 0.05 and look.highpass(img, left) < 0.5  # what the blur carries over the edge
    assert look.lattice(img, ~left) > 10.0


def test_flat_region_detection():
    rng = np.random.default_rng(1)
    photo = GREY.copy()
    photo[:, W // 2:] += rng.normal(0, 25, (H, W - W // 2, 3))  # calm left half, busy right half
    photo += np.linspace(0, 20, W)[None, :, None]  # a gentle gradient, as a sky has: still calm
    mask = look.flat_mask(Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)))
    inner_left = mask[look.BORDER:-look.BORDER, look.BORDER: W // 2 - 16]
    right = mask[:, W // 2 + 4:]
    assert inner_left.mean() > 0.99
    assert right.mean() < 0.01
    assert not mask[: look.BORDER].any() and not mask[:, : look.BORDER].any()  # the border is left out


def test_measure_resizes_the_photo_to_the_result():
    photo = Image.fromarray(GREY.astype(np.uint8)).resize((2 * W, 2 * H))
    result = Image.fromarray(np.clip(dots(4), 0, 255).astype(np.uint8))
    found = look.measure(result, photo)
    assert found.flat > 0.7 and found.tiles > 0 and found.lattice > 10.0


# ---- the lattice on a real pair -------------------------------------------------------------------------------

SKY_BOX = (0, 0, 600, 400)  # Sagarmatha's sky over the first ridges: 45 % of it flat at 192 px
SKY_SIZE, SKY_STEPS = 192, 40
# Calibrated on the fixed engine (max pooling and calm 30, the defaults; Intel Xeon without AMX, fp32, one thread,
# 12 s): this run's lattice measure is 7.1; without calm 42.0; with the paper's average pooling and no calm (the
# engine of the issue) 126.5. The bound leaves the fixed run 2.8× of room and sits 2.1× below max pooling alone.
LATTICE_BOUND = 20.0


@pytest.fixture(scope="module")
def fp32_stylizer(embedded):
    from stylize import Stylizer

    return Stylizer(embedded, "cpu", precision="fp32")


def sky_run(engine, **changes):
    from stylize import Settings
    from stylize.images import load_image
    from stylize.presets import PHOTOS_DIR, PresetImages, load_manifest

    presets = load_manifest()
    photo = load_image(PHOTOS_DIR / "sagarmatha.jpg").crop(SKY_BOX)
    painting = load_image(PresetImages(presets, extra_dir="").path("the_kiss"), 1024)
    settings = presets["the_kiss"].apply(Settings(size=SKY_SIZE, steps=SKY_STEPS, scales=1, seed=0)).replace(**changes)
    frame = None
    for frame in engine.run(photo, [painting], settings, report_every=settings.steps):
        pass
    return look.measure(frame.image, photo)


def test_a_calm_sky_comes_out_calm(fp32_stylizer):
    """The Kiss over Sagarmatha's sky at the default settings (single scale, the strongest case): the issue's
    lattice of coloured dots must not come back."""
    found = sky_run(fp32_stylizer)
    assert found.tiles >= 10
    assert found.lattice < LATTICE_BOUND, f"the lattice is back: {found}"


def test_calm_smooths_the_sky_and_leaves_the_texture_elsewhere(fp32_stylizer):
    """The same run without the calm term: its sky is dotted, while where the photo is busy (the ridges) it has
    no more texture than with calm: calm moves the painting's texture off the sky, it does not remove it.
    Measured: lattice 42.0 vs 7.1, texture 528 vs 686."""
    calm = sky_run(fp32_stylizer)
    without = sky_run(fp32_stylizer, calm=0.0)
    assert without.lattice > 3 * calm.lattice
    assert calm.texture > 0.8 * without.texture
