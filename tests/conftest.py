"""Shared fixtures: the real embedded VGG-19, small generated images, and the reference paintings if present."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parent.parent
PAINTINGS = ROOT.parent / "shared" / "paintings"


@pytest.fixture(scope="session")
def embedded():
    from stylize.engine.weights import load_embedded

    return load_embedded()


@pytest.fixture(scope="session")
def stylizer(embedded):
    from stylize import Stylizer

    return Stylizer(embedded, "cpu", precision="fp32")  # tests do not inherit the machine's choice


def gradient_photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth 'photo': colour gradients, a bright disc and a dark bar, different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = rng.uniform(0.2, 0.8, size=3)
    img = np.stack([base[0] + 0.3 * x, base[1] + 0.3 * y, base[2] - 0.2 * x * y], axis=-1)
    cy, cx = rng.uniform(0.3, 0.7, size=2)
    img[(x - cx * width / max(width, height)) ** 2 + (y - cy * height / max(width, height)) ** 2 < 0.02] = 0.95
    img[int(height * 0.7): int(height * 0.8), :] *= 0.3
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")


def stripes_painting(width: int = 96, height: int = 96, seed: int = 1) -> Image.Image:
    """A 'painting' with strong texture: coloured diagonal stripes over noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    stripes = (np.sin((x + y) * 0.6) > 0)[..., None]
    img = np.where(stripes, [0.9, 0.7, 0.1], [0.1, 0.2, 0.6]) + rng.normal(0, 0.05, (height, width, 3))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")


@pytest.fixture
def photo() -> Image.Image:
    return gradient_photo()


@pytest.fixture
def painting() -> Image.Image:
    return stripes_painting()


def painting_path(name: str) -> Path:
    path = PAINTINGS / name
    if not path.is_file():
        pytest.skip(f"reference painting {path} is absent")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def preset_dir(tmp_path_factory):
    """Generated stand-ins for three presets, so the tests need neither the network nor shared/."""
    folder = tmp_path_factory.mktemp("presets")
    for n, preset_id in enumerate(("starry_night", "the_scream", "shipwreck")):
        stripes_painting(128, 128, seed=n).save(folder / f"{preset_id}.png")
    return folder


@pytest.fixture(scope="session")
def app_module(preset_dir):
    """The real app.py, imported once with test presets and the embedded weights."""
    os.environ["STYLIZE_PRESETS_DIR"] = str(preset_dir)
    os.environ["STYLIZE_WEIGHTS"] = "embedded"  # never download 575 MB from a test
    os.environ.setdefault("XDG_CACHE_HOME", str(preset_dir / "cache"))
    sys.path.insert(0, str(ROOT))
    import app

    return app


@pytest.fixture(scope="session")
def server(app_module):
    _, url, _ = app_module.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    app_module.studio.warmed.wait(300)  # the start-up calibration's steps are not a visitor's run sharing the machine
    yield url
    app_module.demo.close()


@pytest.fixture
def client(server):
    from gradio_client import Client

    c = Client(server, verbose=False)
    yield c
    c.close()


@pytest.fixture(scope="session")
def photo_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("photos") / "photo.png"
    gradient_photo(96, 64).save(path)
    return str(path)
