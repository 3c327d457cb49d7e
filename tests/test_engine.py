"""The L-BFGS generator on the real embedded VGG-19, at small sizes so the suite stays fast on 2 CPU cores."""

import numpy as np
import pytest
from PIL import Image

from stylize import Settings, StylizeError
from stylize.images import rgb_to_yiq, to_tensor

from conftest import gradient_photo, stripes_painting


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def test_frames_report_every_step_with_previews_and_a_falling_loss(stylizer, photo, painting):
    frames = list(stylizer.run(photo, [painting], Settings(size=64, steps=15), preview_every=5))
    assert [f.step for f in frames] == list(range(1, 16)) and all(f.total_steps == 15 for f in frames)
    assert [f.step for f in frames if f.image is not None] == [5, 10, 15]
    assert [f.done for f in frames] == [False] * 14 + [True]
    assert frames[-1].image.size == (64, 43) and frames[-1].size == (64, 43)
    assert set(frames[-1].losses) == {"content", "style", "total"}
    assert frames[-1].losses["total"] < 0.5 * frames[0].losses["total"]
    assert all(b.elapsed >= a.elapsed for a, b in zip(frames, frames[1:]))
    assert frames[4].eta > 0 and frames[-1].eta == 0


def test_the_image_changes_towards_the_style(stylizer, photo, painting):
    frames = list(stylizer.run(photo, [painting], Settings(size=64, steps=10), preview_every=10))
    before = pixels(photo.resize(frames[-1].image.size))
    assert np.abs(pixels(frames[-1].image) - before).mean() > 5  # visibly repainted, from the content init


def test_every_evaluation_sees_pixels_in_range(stylizer, photo, painting, monkeypatch):
    seen = []
    original = stylizer.losses

    def recording(x, *args):
        seen.append((float(x.detach().min()), float(x.detach().max())))
        return original(x, *args)

    monkeypatch.setattr(stylizer, "losses", recording)
    list(stylizer.run(photo, [painting], Settings(size=64, steps=12, style_strength=1e4, init="noise")))
    assert len(seen) == 12 and all(0.0 <= low and high <= 1.0 for low, high in seen)


def test_closing_the_iterator_stops_and_releases_the_run(stylizer, photo, painting):
    run = stylizer.run(photo, [painting], Settings(size=64, steps=50))
    first = [next(run) for _ in range(3)]
    run.close()
    assert first[-1].step == 3
    assert run.gi_frame is None  # the generator's frame (image tensor, optimizer state) is gone
    with pytest.raises(StopIteration):
        next(run)


def test_a_seed_gives_a_bit_identical_result(stylizer, photo, painting):
    settings = Settings(size=64, steps=6, init="noise", seed=7)
    first = list(stylizer.run(photo, [painting], settings))[-1]
    again = list(stylizer.run(photo, [painting], settings))[-1]
    other = list(stylizer.run(photo, [painting], settings.replace(seed=8)))[-1]
    assert first.image.tobytes() == again.image.tobytes() and first.losses == again.losses
    assert first.image.tobytes() != other.image.tobytes()


def test_texture_synthesis_lowers_the_style_loss_by_a_large_factor(stylizer, painting):
    # Measured: from noise, 40 steps at 64 px lower the style loss ~28x (20 steps only ~1.6x: L-BFGS starts slowly).
    frames = list(stylizer.run(None, [painting], Settings(size=64, steps=40, seed=1)))
    assert "content" not in frames[-1].losses
    assert frames[0].losses["style"] / frames[-1].losses["style"] > 10
    assert frames[-1].image.size == (64, 64)  # the style's aspect ratio


def test_content_reconstruction_from_a_low_layer_approaches_the_photo(stylizer, photo):
    # Measured: from noise (mean error ~80/255), 40 steps on relu1_1 reach a mean absolute error of ~15/255.
    frames = list(stylizer.run(photo, [], Settings(size=64, steps=40, content_layer="relu1_1", init="noise", seed=1)))
    target = pixels(photo.resize(frames[-1].image.size, Image.Resampling.LANCZOS))
    assert "style" not in frames[-1].losses
    assert np.abs(pixels(frames[-1].image) - target).mean() < 25


def test_luminance_preservation_keeps_the_photos_colours(stylizer, photo, painting):
    final = list(stylizer.run(photo, [painting], Settings(size=64, steps=8, preserve_color="luminance")))[-1]
    out = rgb_to_yiq(to_tensor(final.image))
    reference = rgb_to_yiq(to_tensor(photo.resize(final.image.size, Image.Resampling.LANCZOS)))
    assert (out[:, 1:] - reference[:, 1:]).abs().mean() < 0.02  # chroma kept (up to 8-bit rounding, gamut clipping)
    assert (out[:, :1] - reference[:, :1]).abs().mean() > 0.02  # luma stylized


def test_histogram_preservation_pulls_colours_towards_the_photo(stylizer, photo, painting):
    plain = list(stylizer.run(photo, [painting], Settings(size=64, steps=8, init="noise")))[-1].image
    kept = list(stylizer.run(photo, [painting], Settings(size=64, steps=8, init="noise", preserve_color="histogram")))[-1].image
    target = pixels(photo.resize(kept.size)).reshape(-1, 3).mean(0)
    assert np.abs(pixels(kept).reshape(-1, 3).mean(0) - target).sum() < np.abs(pixels(plain).reshape(-1, 3).mean(0) - target).sum()


def test_a_zero_blend_weight_removes_that_style(stylizer, photo, painting):
    other = gradient_photo(96, 96, seed=5)
    settings = Settings(size=64, steps=4)
    single = list(stylizer.run(photo, [painting], settings))[-1]
    blended = list(stylizer.run(photo, [painting, other], settings.replace(style_blend="1,0")))[-1]
    mixed = list(stylizer.run(photo, [painting, other], settings.replace(style_blend="1,1")))[-1]
    assert blended.image.tobytes() == single.image.tobytes()
    assert mixed.image.tobytes() != single.image.tobytes()


def test_style_scale_changes_the_result(stylizer, photo):
    painting = stripes_painting(128, 128)
    settings = Settings(size=64, steps=5)
    normal = list(stylizer.run(photo, [painting], settings))[-1]
    larger = list(stylizer.run(photo, [painting], settings.replace(style_scale=2.0)))[-1]
    assert normal.image.tobytes() != larger.image.tobytes()


def test_multi_scale_runs_coarse_to_fine_within_the_step_budget(stylizer, photo, painting):
    frames = list(stylizer.run(photo, [painting], Settings(size=128, steps=9, scales=2), preview_every=100))
    sizes = [f.size for f in frames]
    assert sizes == [(64, 42)] * 3 + [(128, 85)] * 6  # a third of the steps at half size
    assert frames[-1].image.size == (128, 85) and frames[-1].done


def test_nothing_to_do_is_an_error(stylizer):
    with pytest.raises(StylizeError, match="give a content image, a style image, or both"):
        stylizer.run(None, [], Settings())


def test_pooling_choices_give_different_results(stylizer, photo, painting):
    avg = list(stylizer.run(photo, [painting], Settings(size=64, steps=3)))[-1]
    mx = list(stylizer.run(photo, [painting], Settings(size=64, steps=3, pooling="max")))[-1]
    assert avg.losses != mx.losses


def test_targets_are_computed_once_and_reused(stylizer, photo, painting, monkeypatch):
    settings = Settings(size=64, steps=1, seed=123)  # a fresh key for the cache
    list(stylizer.run(photo, [painting], settings.replace(style_scale=0.75)))
    calls = []
    original = stylizer.net.forward
    monkeypatch.setattr(stylizer.net, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    list(stylizer.run(photo, [painting], settings.replace(style_scale=0.75, steps=2)))
    assert len(calls) == 2  # only the two optimization steps; targets came from the cache


def nan_after(stylizer, monkeypatch, bad_calls: set[int]):
    """Make the loss non-finite on the given evaluations (1-based), as a numerical failure would."""
    calls = {"n": 0}
    original = stylizer.losses

    def flaky(x, *args):
        calls["n"] += 1
        terms = original(x, *args)
        if calls["n"] in bad_calls:
            terms = {k: v * float("nan") for k, v in terms.items()}
        return terms

    monkeypatch.setattr(stylizer, "losses", flaky)
    return calls


def test_a_non_finite_loss_restores_the_last_good_image_and_continues(stylizer, photo, painting, monkeypatch):
    nan_after(stylizer, monkeypatch, {4, 9})
    frames = list(stylizer.run(photo, [painting], Settings(size=64, steps=10), preview_every=1))
    assert [f.step for f in frames] == list(range(1, 11)) and frames[-1].done
    for f in frames:
        assert np.isfinite(list(f.losses.values())).all()
        assert np.isfinite(pixels(f.image)).all() and pixels(f.image).std() > 1  # a real image, never NaN
    assert frames[-1].losses["total"] < frames[0].losses["total"]


def test_repeated_failures_end_the_run_with_a_clear_message(stylizer, photo, painting, monkeypatch):
    nan_after(stylizer, monkeypatch, set(range(3, 100)))
    run = stylizer.run(photo, [painting], Settings(size=64, steps=10), preview_every=1)
    frames = []
    with pytest.raises(StylizeError, match=r"the optimization diverged .* try a lower style strength"):
        for frame in run:
            frames.append(frame)
    assert len(frames) == 2 and all(np.isfinite(pixels(f.image)).all() for f in frames)
