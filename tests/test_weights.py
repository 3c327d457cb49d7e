"""Weight sources: the embedded file, local safetensors, the Hub through a pre-filled cache, and the fallback."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT, gradient_photo, stripes_painting
from safetensors.torch import save_file

from stylize import Settings, StylizeError, Stylizer
from stylize.engine.vgg import CONV_LAYERS
from stylize.engine.weights import (
    CAFFE,
    HUB_REPO,
    IMAGENET,
    TORCHVISION_INDEX,
    hub_cache_file,
    load_file,
    load_safetensors,
)


def as_torchvision(embedded, layer_factors=None) -> dict[str, torch.Tensor]:
    """The embedded Caffe-preprocessed VGG-19 rewritten for ImageNet-normalized RGB input, in torchvision's layout.

    conv1_1 absorbs the change of input (RGB in [0,1] normalized by mean/std instead of BGR 0–255 minus the
    Caffe mean); optional per-layer factors rescale each layer's responses (a ReLU network is positively
    homogeneous), which is how two real weight sources differ in feature scale.
    """
    tensors, cumulative = {}, 1.0
    for name in CONV_LAYERS:
        weight, bias = (t.clone() for t in embedded.convs[name])
        if name == "conv1_1":
            rgb_weight = weight.flip(1)  # input channels BGR -> RGB
            std = torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
            mean = torch.tensor(IMAGENET.mean)
            caffe_mean_rgb = torch.tensor(CAFFE.mean).flip(0)
            bias = bias + (rgb_weight.sum((2, 3)) * (255 * mean - caffe_mean_rgb)).sum(1)
            weight = rgb_weight * 255 * std
        factor = (layer_factors or {}).get(name, 1.0)
        weight, bias, cumulative = weight * factor, bias * factor * cumulative, cumulative * factor
        index = TORCHVISION_INDEX[name]
        tensors[f"features.{index}.weight"], tensors[f"features.{index}.bias"] = weight, bias
    tensors["classifier.0.weight"] = torch.zeros(4, 4)  # present in the real file, never read
    return tensors


def test_embedded_weights_are_the_original_vgg19(embedded):
    assert embedded.source == "embedded" and embedded.preprocess == CAFFE
    assert list(embedded.convs) == list(CONV_LAYERS)
    weight, bias = embedded.convs["conv5_4"]
    assert weight.shape == (512, 512, 3, 3) and bias.shape == (512,)
    assert len(torch.unique(weight)) <= 256  # 8-bit k-means codes decoded through the table


def test_local_safetensors_loads_only_what_is_needed(tmp_path, embedded):
    path = tmp_path / "vgg.safetensors"
    save_file(as_torchvision(embedded), str(path))
    convs = load_safetensors(path, upto="relu3_1")
    assert list(convs) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
    weights = load_file(path)
    assert weights.source == "file" and weights.preprocess == IMAGENET and len(weights.convs) == 16


def test_wrong_names_and_shapes_are_named(tmp_path, embedded):
    tensors = as_torchvision(embedded)
    del tensors["features.5.weight"]
    save_file(tensors, str(tmp_path / "missing.safetensors"))
    with pytest.raises(StylizeError, match=r"missing tensors features\.5\.weight.*found: classifier"):
        load_file(tmp_path / "missing.safetensors")

    tensors = as_torchvision(embedded)
    tensors["features.2.weight"] = torch.zeros(64, 32, 3, 3)
    save_file(tensors, str(tmp_path / "shape.safetensors"))
    with pytest.raises(StylizeError, match=r"conv1_2 has weight \(64, 32, 3, 3\).*expected weight \(64, 64, 3, 3\)"):
        load_file(tmp_path / "shape.safetensors")


def test_pickles_and_garbage_are_refused(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "vgg.pth")
    with pytest.raises(StylizeError, match="only .safetensors"):
        load_file(tmp_path / "vgg.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(StylizeError, match="not a readable safetensors file"):
        load_file(tmp_path / "junk.safetensors")
    with pytest.raises(StylizeError, match="no such weights file"):
        load_file(tmp_path / "absent.safetensors")


def test_one_style_strength_means_the_same_for_both_preprocessings(tmp_path, embedded):
    """Converted weights with 10-1000x different feature scales give the same calibrated losses (in fp32)."""
    factors = {"conv1_1": 40.0, "conv2_1": 0.1, "conv3_3": 7.0, "conv4_2": 0.5, "conv5_1": 3.0}
    path = tmp_path / "scaled.safetensors"
    save_file(as_torchvision(embedded, factors), str(path))
    stylizer = Stylizer(embedded, "cpu", precision="fp32")
    other = Stylizer(load_file(path), "cpu", precision="fp32")
    photo, painting = gradient_photo(64, 64), stripes_painting(64, 64)
    settings = Settings(size=64, steps=3, init="noise", seed=3)
    first = [f.losses for f in stylizer.run(photo, [painting], settings, report_every=1)]
    second = [f.losses for f in other.run(photo, [painting], settings, report_every=1)]
    for a, b in zip(first, second):
        for term in ("content", "style"):
            assert abs(a[term] - b[term]) <= 0.05 * abs(a[term]) + 1e-6, (term, a, b)


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """huggingface_hub reads its environment at import: each case runs in a fresh interpreter."""
    full_env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", **env}
    full_env.pop("STYLIZE_WEIGHTS", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


LOAD_AUTO = """
    import json, time
    from stylize.engine.weights import load_weights
    started = time.perf_counter()
    w = load_weights("auto")
    print(json.dumps({"source": w.source, "reason": w.reason, "summary": w.summary,
                      "seconds": time.perf_counter() - started, "layers": len(w.convs)}))
"""


def test_hub_path_reads_a_prefilled_cache_offline(tmp_path, embedded):
    """The real hf_hub_download resolves refs/main -> snapshot in a cache laid out as the Hub leaves it."""
    save_file(as_torchvision(embedded), str(hub_cache_file(tmp_path, "0123456789abcdef0123456789abcdef01234567")))
    result = run_python(LOAD_AUTO, {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"] == "hub" and report["reason"] == "" and report["layers"] == 16
    assert HUB_REPO in report["summary"]


def test_unreachable_hub_falls_back_to_embedded_within_3s_and_says_why(tmp_path):
    # An empty cache and an endpoint that can never resolve (.invalid is reserved): the real network path.
    result = run_python(LOAD_AUTO, {"HF_HOME": str(tmp_path), "HF_ENDPOINT": "https://hub.invalid",
                                    "HF_HUB_OFFLINE": "0"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"] == "embedded"
    assert "fallback: the Hub is unreachable" in report["reason"] and HUB_REPO in report["reason"]
    assert report["seconds"] < 3.0 + 1.5  # the probe's bound plus loading the embedded file


LOAD_HUB = """
    from stylize.engine.weights import load_weights
    from stylize.errors import StylizeError
    try:
        load_weights("hub")
    except StylizeError as exc:
        print("ERR", exc)
"""


def test_explicit_hub_choice_fails_with_a_message_when_offline(tmp_path):
    result = run_python(LOAD_HUB, {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert "ERR the Hub is unreachable" in result.stdout, result.stdout + result.stderr


def test_a_truncated_cached_hub_file_gives_a_clear_reason_and_the_fallback(tmp_path, embedded):
    """Offline, the one re-download cannot happen: auto falls back and says why; an explicit hub choice errors."""
    full = tmp_path / "full.safetensors"
    save_file(as_torchvision(embedded), str(full))
    hub_cache_file(tmp_path).write_bytes(full.read_bytes()[: 5_000_000])  # cut mid-tensor
    env = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": "https://hub.invalid", "HF_HUB_OFFLINE": "0"}

    result = run_python(LOAD_AUTO, env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"] == "embedded"
    assert "not a readable safetensors file" in report["reason"]
    assert "cannot replace the damaged cached copy" in report["reason"]

    result = run_python(LOAD_HUB, env)
    assert "ERR model.safetensors is not a readable safetensors file" in result.stdout, result.stdout + result.stderr


def test_auto_honours_STYLIZE_WEIGHTS(tmp_path, embedded, monkeypatch):
    from stylize.engine.weights import load_weights

    path = tmp_path / "mine.safetensors"
    save_file(as_torchvision(embedded), str(path))
    monkeypatch.setenv("STYLIZE_WEIGHTS", str(path))
    assert load_weights("auto").source == "file" and load_weights().source == "file"
    monkeypatch.setenv("STYLIZE_WEIGHTS", "embedded")
    assert load_weights("auto").source == "embedded"
    monkeypatch.setenv("STYLIZE_WEIGHTS", str(tmp_path / "missing.safetensors"))
    with pytest.raises(StylizeError, match="no such weights file"):
        load_weights("auto")


def test_only_the_layers_in_use_are_loaded(embedded):
    from stylize.engine.weights import load_embedded

    assert list(load_embedded(upto="relu3_1").convs) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
