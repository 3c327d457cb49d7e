"""The preset manifest and the order in which a preset's image is found."""

import pytest

from stylize import Settings, StylizeError
from stylize.presets import PresetImages, load_manifest

from conftest import stripes_painting


def test_the_manifest_has_the_required_presets_with_every_field():
    presets = load_manifest()
    assert len(presets) >= 8
    assert {"starry_night", "the_scream", "shipwreck"} <= set(presets)
    for preset in presets.values():
        assert preset.title and preset.artist and preset.year and preset.credit
        assert preset.commons_file.endswith((".jpg", ".png")) and "Public domain" in preset.licence
        preset.apply(Settings())  # tuned settings are valid


def test_an_image_is_found_in_order_committed_then_folder_then_cache(tmp_path):
    presets = load_manifest()
    folder, cache = tmp_path / "dir", tmp_path / "cache"
    folder.mkdir()
    cache.mkdir()
    images = PresetImages(presets, extra_dir=folder, cache_dir=cache, download=False)
    stripes_painting().save(cache / "great_wave.jpg")
    assert images.path("great_wave") == cache / "great_wave.jpg"
    stripes_painting().save(folder / "great_wave.png")
    assert images.path("great_wave") == folder / "great_wave.png"  # the folder wins over the cache


def test_unavailable_and_unknown_presets_say_why_without_touching_files(tmp_path):
    images = PresetImages(load_manifest(), extra_dir=tmp_path, cache_dir=tmp_path / "cache", download=False)
    with pytest.raises(StylizeError, match="The Kiss: no local image, and downloads are off"):
        images.path("the_kiss")
    assert images.availability()["the_kiss"] == "The Kiss: no local image, and downloads are off"
    with pytest.raises(StylizeError, match=r"unknown preset '\.\./\.\./etc/passwd'; available: starry_night"):
        images.path("../../etc/passwd")
    assert not (tmp_path / "cache").exists()


def test_an_offline_download_fails_fast_with_a_reason(tmp_path, monkeypatch):
    import stylize.presets as presets_module

    monkeypatch.setattr(presets_module, "COMMONS_URL", "https://commons.invalid/{name}")
    images = PresetImages(load_manifest(), extra_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(StylizeError, match="Composition VII: could not be downloaded from Wikimedia Commons"):
        images.path("composition_vii")
