"""The presets and example photos that ship with the app: committed, small, credited, found without a network."""

import re

import pytest
from conftest import stripes_painting
from PIL import Image

import stylize.presets as presets_module
from stylize import Settings, StylizeError
from stylize.images import load_image
from stylize.presets import MANIFEST, PRESETS_DIR, PresetImages, example_photos, load_manifest, load_photos

EXAMPLE_PHOTOS = {"tubingen", "chelsea_cat", "grace_hopper", "nyc_storm_skyline", "macaque", "sagarmatha"}
# CC BY photos: the photographer and the licence the credit must name.
CC_BY = {"tubingen": ("Andreas Praefcke", "CC BY 3.0"), "nyc_storm_skyline": ("schizoform", "CC BY 2.0"),
         "macaque": ("samuelrodgers752", "CC BY 2.0"), "sagarmatha": ("Vyacheslav Argenberg", "CC BY 4.0")}


def test_the_manifest_has_the_required_presets_with_every_field():
    presets = load_manifest()
    assert len(presets) >= 12
    assert {"starry_night", "the_scream", "shipwreck", "composition_vii", "great_wave", "impression_sunrise",
            "the_kiss", "grande_jatte", "udnie", "fighting_temeraire", "wheatfield_with_crows",
            "woman_with_hat"} <= set(presets)
    for preset in presets.values():
        assert preset.title and preset.artist and preset.year
        assert preset.licence.startswith("Public domain") and preset.licence in preset.credit
        assert preset.artist in preset.credit and "Wikimedia" not in preset.credit
        assert 0.1 <= preset.settings["style_strength"] <= 1e4
        preset.apply(Settings())  # tuned settings are valid


def test_every_preset_image_is_committed_small_and_loads():
    images = PresetImages(load_manifest(), extra_dir="")
    assert set(images.availability().values()) == {None}
    for preset_id in images.presets:
        path = images.path(preset_id)
        assert path == PRESETS_DIR / f"{preset_id}.jpg"
        img = load_image(path)
        assert img.mode == "RGB" and max(img.size) <= 1024
        assert not Image.open(path).getexif()  # metadata stripped


def test_every_example_photo_is_committed_small_and_credited():
    photos = load_photos()
    assert set(photos) == EXAMPLE_PHOTOS
    assert [photo.id for photo in example_photos()] == list(photos)  # all present, in the manifest's order
    for photo in photos.values():
        assert photo.path == PRESETS_DIR / "photos" / f"{photo.id}.jpg"
        assert photo.title and photo.licence and photo.credit and photo.credit in photo.caption
        assert max(load_image(photo.path).size) <= 1024
        assert not Image.open(photo.path).getexif()
    for photo_id, (photographer, licence) in CC_BY.items():
        credit = photos[photo_id].credit
        assert photographer in credit and licence in credit and photos[photo_id].licence == licence
    assert "cropped" in photos["sagarmatha"].credit


def test_the_presets_folder_stays_under_6_mb():
    total = sum(path.stat().st_size for path in PRESETS_DIR.rglob("*") if path.is_file())
    assert total <= 6 * 10**6


def test_the_override_folder_wins_over_the_committed_image(tmp_path):
    images = PresetImages(load_manifest(), extra_dir=tmp_path)
    assert images.path("great_wave") == PRESETS_DIR / "great_wave.jpg"
    stripes_painting().save(tmp_path / "great_wave.png")
    assert images.path("great_wave") == tmp_path / "great_wave.png"


def test_a_missing_image_and_an_unknown_preset_say_why(tmp_path, monkeypatch):
    monkeypatch.setattr(presets_module, "PRESETS_DIR", tmp_path / "empty")
    images = PresetImages(load_manifest(), extra_dir=tmp_path)
    with pytest.raises(StylizeError, match=r"The Kiss: no image file \(the_kiss\.jpg or \.png\)"):
        images.path("the_kiss")
    assert images.availability()["the_kiss"].startswith("The Kiss: no image file")
    with pytest.raises(StylizeError, match=r"unknown preset '\.\./\.\./etc/passwd'; available: starry_night"):
        images.path("../../etc/passwd")


def test_an_invalid_manifest_entry_is_a_clear_error(tmp_path):
    bad = tmp_path / "presets.toml"
    bad.write_text('[x]\ntitle = "X"\nartist = "A"\nyear = "1"\nlicence = "Public domain"\ncredit = "c"\n'
                   'settings = { style_strength = -1.0 }\n')
    with pytest.raises(StylizeError, match=r"presets\.toml: Preset 'x' is invalid"):
        load_manifest(bad)


def test_nothing_is_fetched_from_the_network():
    source = open(presets_module.__file__, encoding="utf-8").read()
    assert not re.search(r"httpx|urllib|requests|http://|https://|socket", source)
    assert "commons_file" not in MANIFEST.read_text(encoding="utf-8")
