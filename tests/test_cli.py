"""The command line end to end, in a subprocess, as a user runs it."""

import subprocess
import sys

from conftest import ROOT, gradient_photo, stripes_painting
from PIL import Image


def cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylize", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_stylizes_a_small_image_and_saves_intermediates(tmp_path):
    gradient_photo().save(tmp_path / "photo.png")
    stripes_painting().save(tmp_path / "painting.jpg")
    out = tmp_path / "out.png"
    result = cli(str(tmp_path / "photo.png"), str(tmp_path / "painting.jpg"), "-o", str(out), "--size", "64",
                 "--steps", "4", "--save-every", "2", "--weights", "embedded", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (64, 43)
    assert (tmp_path / "out-0002.png").is_file() and not (tmp_path / "out-0004.png").exists()
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"saved {out} (64×43) in ") and "4 steps on cpu" in summary
    assert "losses of this image: content" in summary and "weights: embedded" in summary
    assert "weights: original VGG-19" in result.stderr


def test_help_documents_every_option_with_its_default():
    result = cli("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option in ("--size", "--steps", "--style-strength", "--seed", "--weights", "--preserve-color",
                   "--save-every", "--init", "--pooling", "--scales", "--style-scale", "--style-blend",
                   "--content-layer", "--style-layers", "--layer-weights", "--tv-weight"):
        assert option in text
    assert "(default: 256)" in text and "{none,luminance,histogram}" in text


def test_bad_input_exits_non_zero_with_one_line(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a picture")
    stripes_painting().save(tmp_path / "painting.png")
    result = cli(str(tmp_path / "notes.jpg"), str(tmp_path / "painting.png"), "-o", str(tmp_path / "o.png"))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: notes.jpg is not an image PIL can read (PNG, JPEG, WebP, GIF, BMP, TIFF …)"

    result = cli(str(tmp_path / "painting.png"), str(tmp_path / "painting.png"), "--steps", "0")
    assert result.returncode == 2 and result.stderr.strip().startswith("error: invalid settings: steps must be between 1")


def test_masks_and_the_patch_model_from_the_command_line(tmp_path):
    import numpy as np

    gradient_photo(96, 64).save(tmp_path / "photo.png")
    stripes_painting().save(tmp_path / "a.png")
    stripes_painting(seed=4).save(tmp_path / "b.png")
    left = np.tile((np.arange(96) < 48).astype(np.uint8) * 255, (64, 1))
    Image.fromarray(left).save(tmp_path / "left.png")
    Image.fromarray(255 - left).save(tmp_path / "right.png")
    out = tmp_path / "masked.png"
    result = cli(str(tmp_path / "photo.png"), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--masks",
                 str(tmp_path / "left.png"), str(tmp_path / "right.png"), "-o", str(out), "--size", "64", "--steps",
                 "3", "--weights", "embedded")
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (64, 43)
    bad = cli(str(tmp_path / "photo.png"), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--masks",
              str(tmp_path / "left.png"), "-o", str(out), "--size", "64", "--weights", "embedded")
    assert bad.returncode == 2 and "1 mask for 2 styles: give one mask per style" in bad.stderr
    patches = cli(str(tmp_path / "photo.png"), str(tmp_path / "a.png"), "--style-model", "mrf", "-o",
                  str(tmp_path / "mrf.png"), "--size", "64", "--steps", "3", "--weights", "embedded")
    assert patches.returncode == 0, patches.stderr
    assert Image.open(tmp_path / "mrf.png").size == (64, 43)


def test_a_result_enlarged_from_the_command_line_is_a_larger_srgb_png(tmp_path):
    """--from RESULT grows a finished result to --size, coarse to fine (#33)."""
    gradient_photo().save(tmp_path / "photo.png")
    stripes_painting().save(tmp_path / "painting.jpg")
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    common = [str(tmp_path / "photo.png"), str(tmp_path / "painting.jpg"), "--weights", "embedded", "--precision",
              "fp32", "--steps", "4"]
    assert cli(*common, "-o", str(small), "--size", "64").returncode == 0
    result = cli(*common, "-o", str(big), "--size", "128", "--from", str(small), "--enlarge-steps", "2")
    assert result.returncode == 0, result.stderr
    image = Image.open(big)
    assert image.size == (128, 85) and image.info.get("icc_profile")
    assert result.stdout.strip().splitlines()[-1].startswith(f"saved {big} (128×85) in ")


def test_a_print_size_from_scratch_is_made_small_first_then_enlarged(tmp_path):
    """--size above 1,024 px (here --coarse, to keep it quick) takes the enlargement's path from the photo: the
    picture made at the coarse size, then grown; seen at that size it is the coarse run's picture (#33)."""
    import numpy as np

    gradient_photo().save(tmp_path / "photo.png")
    stripes_painting().save(tmp_path / "painting.jpg")
    common = [str(tmp_path / "photo.png"), str(tmp_path / "painting.jpg"), "--weights", "embedded", "--precision",
              "fp32", "--steps", "4", "--seed", "0"]
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    assert cli(*common, "-o", str(small), "--size", "64").returncode == 0
    result = cli(*common, "-o", str(big), "--size", "256", "--coarse", "64", "--enlarge-steps", "2")
    assert result.returncode == 0, result.stderr
    assert "256 px is made at 64 px first" in result.stderr
    image = Image.open(big).convert("RGB")
    assert image.size == (256, 171)
    seen_small = np.asarray(image.resize((64, 43), Image.Resampling.BOX), float)
    assert np.abs(seen_small - np.asarray(Image.open(small).convert("RGB"), float)).mean() < 3
    refused = cli(*common, "-o", str(big), "--size", "256", "--coarse", "256")
    assert refused.returncode != 0 and "--coarse 256 must be smaller than --size 256" in refused.stderr
