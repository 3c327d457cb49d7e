"""The bad-input corpus: every kind of file a public demo meets, generated, with the expected outcome."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    expect: str  # "ok", or a regex the error message must match
    size: tuple[int, int] | None = None  # the loaded image's size, for "ok" cases


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def _photo(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def build(folder: Path, upload_cap_bytes: int) -> list[tuple[Case, Path]]:
    """Write the corpus into `folder`; returns each case with its file."""
    exif = Image.Exif()
    exif[0x0112] = 6
    palette = Image.new("P", (64, 48), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.paste(1, (10, 10, 40, 40))
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "lime", "blue")]
    rng = np.random.default_rng(0)
    side = int((upload_cap_bytes / 3) ** 0.5) + 64  # incompressible noise: a PNG just over the cap
    items = [
        (Case("truncated.jpg", "truncated JPEG", "truncated or corrupt"), _encode(_photo(64, 48), "JPEG")[:400]),
        (Case("empty.jpg", "zero-byte file", "empty"), b""),
        (Case("notes.jpg", "text file named .jpg", "not an image"), b"hello, this is text\n" * 10),
        (Case("bomb.png", "PNG declaring 50000×50000", "too many pixels|more than the 50 MP"), _png_header(50000, 50000)),
        (Case("dot.png", "1×1 image", r"1×1: its shorter side must be at least 32"), _encode(Image.new("RGB", (1, 1)), "PNG")),
        (Case("strip.png", "10000×8 strip", r"10000×8: its shorter side must be at least 32"),
         _encode(Image.new("RGB", (10000, 8), "white"), "PNG")),
        (Case("cmyk.jpg", "CMYK JPEG", "ok", (64, 48)), _encode(Image.new("CMYK", (64, 48), (0, 200, 200, 0)), "JPEG")),
        (Case("deep.png", "16-bit PNG", "ok", (64, 48)),
         _encode(Image.fromarray(np.full((48, 64), 40000, dtype=np.uint16)), "PNG")),
        (Case("palette.png", "palette PNG with transparency", "ok", (64, 48)), _encode(palette, "PNG", transparency=0)),
        (Case("rgba.png", "RGBA PNG", "ok", (64, 48)), _encode(Image.new("RGBA", (64, 48), (255, 0, 0, 128)), "PNG")),
        (Case("anim.gif", "animated GIF", "ok", (64, 48)),
         _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])),
        (Case("rotated.jpg", "EXIF-rotated JPEG", "ok", (48, 64)), _encode(_photo(64, 48), "JPEG", exif=exif)),
        (Case("large.jpg", "6000×4000 photo", "ok", (2048, 1365)), _encode(_photo(6000, 4000), "JPEG", quality=80)),
        (Case("huge.png", "file over the upload cap", "ok", None),
         _encode(Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)), "PNG", compress_level=1)),
    ]
    written = []
    for case, data in items:
        path = folder / case.name
        path.write_bytes(data)
        written.append((case, path))
    return written
