"""The settings object: validation that lists what is valid, and the query-string round trip."""

import math
from urllib.parse import parse_qs

import pytest

from stylize import Settings, StylizeError
from stylize.params import RANGES, STYLE_LAYER_SETS


@pytest.mark.parametrize("changes, message", [
    ({"steps": 0}, r"steps must be between 1 and 5000 \(got 0\)"),
    ({"size": 10_000}, r"size must be between 64 and 2048"),
    ({"style_strength": -1.0}, r"style_strength must be between"),
    ({"tv_weight": math.nan}, r"tv_weight must be a number"),
    ({"content_layer": "conv9_1"}, r"content_layer must be one of conv1_1, relu1_1, .* \(got .conv9_1.\)"),
    ({"style_layers": "relu1_1,pool3"}, r"unknown pool3; valid: a, b, c, d, e"),
    ({"init": "banana"}, r"init must be one of content, noise, style"),
    ({"layer_weights": "1,-2,1,1,1"}, r"layer_weights must be non-negative"),
    ({"layer_weights": "1,1"}, r"one weight per style layer \(5\), got 2"),
    ({"style_blend": "a,b"}, r"style_blend must be comma-separated numbers"),
])
def test_invalid_settings_say_what_is_valid(changes, message):
    with pytest.raises(StylizeError, match=message):
        Settings(**changes)


def test_several_problems_are_reported_together():
    with pytest.raises(StylizeError) as info:
        Settings(steps=0, pooling="min")
    assert "steps" in str(info.value) and "pooling" in str(info.value)


def test_the_papers_style_layer_sets_and_weights():
    assert STYLE_LAYER_SETS["a"] == ("relu1_1",)
    assert STYLE_LAYER_SETS["e"] == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert Settings().style_layer_weights() == {name: 0.2 for name in STYLE_LAYER_SETS["e"]}
    custom = Settings(style_layers="relu1_1, conv3_1", layer_weights="3,1").style_layer_weights()
    assert custom == {"relu1_1": 0.75, "conv3_1": 0.25}
    assert Settings(style_blend="1,3").blend_weights(2) == [0.25, 0.75]
    with pytest.raises(StylizeError, match="2 weights for 3 style images"):
        Settings(style_blend="1,3").blend_weights(3)


def test_query_round_trip_is_exact():
    settings = Settings(size=320, steps=123, style_strength=0.3, style_layers="relu1_1,relu2_1", layer_weights="1,2",
                        tv_weight=0.01, init="noise", pooling="max", preserve_color="histogram", scales=2,
                        style_scale=1.5, style_blend="2,1", seed=42)
    query = settings.to_query({"preset": "starry_night"})
    parsed = parse_qs(query)
    assert parsed["preset"] == ["starry_night"]
    restored, notices = Settings.from_query(parsed, ignore=("preset",))
    assert restored == settings and notices == []


def test_query_values_are_clamped_or_defaulted_with_notices():
    restored, notices = Settings.from_query({"steps": "99999", "size": "12", "style_strength": "1e99",
                                             "init": "banana", "seed": "abc", "what": "x"})
    low_size, high_steps = RANGES["size"][0], RANGES["steps"][1]
    assert restored.steps == high_steps and restored.size == low_size and restored.style_strength == 1e4
    assert restored.init == "content" and restored.seed == 0
    text = " | ".join(notices)
    for expected in ("steps=99999 is outside", "size=12 is outside", "init must be one of",
                     "seed='abc' is not valid", "ignored unknown parameter 'what'"):
        assert expected in text


def test_query_with_inconsistent_layer_weights_keeps_a_valid_whole():
    restored, notices = Settings.from_query({"style_layers": "a", "layer_weights": "1,2,3"})
    assert restored.style_layers == "a" and restored.layer_weights == ""
    assert any("layer weights" in n or "layer_weights" in n for n in notices)


def test_query_values_apply_over_a_given_base():
    base = Settings(size=512, steps=500)
    restored, notices = Settings.from_query({"steps": "50"}, base=base)
    assert restored == base.replace(steps=50) and notices == []


def test_the_style_image_side_is_bounded():
    from stylize import StylizeError

    Settings(size=1024, style_scale=2.0)  # 2048 px: allowed
    with pytest.raises(StylizeError, match="size × style_scale is 4096 px: the style image may be at most 2048 px"):
        Settings(size=2048, style_scale=2.0)


def test_patch_model_settings_are_validated():
    from stylize import StylizeError

    assert Settings(style_model="mrf").layers_in_use == {"relu4_2", "relu3_1", "relu4_1"}
    with pytest.raises(StylizeError, match="style_model must be one of gram, mrf"):
        Settings(style_model="patches")
    with pytest.raises(StylizeError, match="mrf_patch must be between 1 and 7"):
        Settings(mrf_patch=9)


def test_every_setting_is_described_once_and_the_command_line_says_it():
    from dataclasses import fields

    from stylize.__main__ import build_parser
    from stylize.params import ABOUT, CHOICES

    text = "".join(build_parser().format_help().split())  # argparse wraps lines, at hyphens too
    for f in fields(Settings):
        about = ABOUT[f.name]
        assert about.label and about.help, f.name
        assert "".join(about.describe().split()) in text, f.name  # the flag's help is the description
    assert CHOICES["style_model"] == ("gram", "mrf") and ABOUT["style_model"].label_of("mrf").startswith("Patches")
    assert RANGES["size"] == (64, 2048) and ABOUT["style_strength"].log
