"""The bad-input corpus: every kind of file a public demo meets, generated, with the expected outcome and, for
the files that must load, the pixels they must load as."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# A region of the loaded image, as fractions of its width and height: (left, top, right, bottom).
Box = tuple[float, float, float, float]
WHOLE: Box = (0.1, 0.1, 0.9, 0.9)
LEFT: Box = (0.05, 0.1, 0.4, 0.9)
RIGHT: Box = (0.6, 0.1, 0.95, 0.9)
TOP: Box = (0.1, 0.05, 0.9, 0.4)
BOTTOM: Box = (0.1, 0.6, 0.9, 0.95)
WHITE, RED, BLUE, BLACK = (255, 255, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)
MID_GREY_16 = 30000  # of 65535: 116.7 of 255
CMYK_BANDS = [((0, 255, 255), "cyan"), ((255, 0, 255), "magenta"), ((255, 255, 0), "yellow"), ((0, 0, 0), "black")]


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    expect: str  # "ok", or a regex the error message must match
    size: tuple[int, int] | None = None  # the loaded image's size, for "ok" cases
    # For "ok" cases: (region, RGB, tolerance in 8-bit levels) that the region's mean colour must match.
    pixels: tuple[tuple[Box, tuple[int, int, int], float], ...] = ()


def region_mean(img: Image.Image, box: Box) -> np.ndarray:
    width, height = img.size
    x0, y0, x1, y1 = round(box[0] * width), round(box[1] * height), round(box[2] * width), round(box[3] * height)
    return np.asarray(img.convert("RGB"), dtype=np.float64)[y0:y1, x0:x1].reshape(-1, 3).mean(0)


def pixel_problems(img: Image.Image, case: Case, slack: float = 0.0) -> list[str]:
    """Where `img` differs from the case's expected colours by more than their tolerance (+ `slack`)."""
    problems = []
    for box, rgb, tolerance in case.pixels:
        mean = region_mean(img, box)
        if np.abs(mean - np.array(rgb)).max() > tolerance + slack:
            problems.append(f"{case.kind}: region {box} is {np.round(mean, 1).tolist()}, expected {list(rgb)} "
                            f"± {tolerance + slack:g}")
    return problems


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


def _half_transparent() -> Image.Image:
    """Left half fully transparent (its hidden colour is black), right half opaque red."""
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[:, 32:] = (255, 0, 0, 255)
    return Image.fromarray(rgba, "RGBA")


def _upright_red_over_blue_stored_sideways() -> tuple[Image.Image, Image.Exif]:
    """A photo whose upright view is red on top and blue below, stored rotated with EXIF orientation 6."""
    upright = Image.new("RGB", (48, 64), BLUE)
    upright.paste(RED, (0, 0, 48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return upright.transpose(Image.Transpose.ROTATE_90), exif


def _cmyk_chart() -> Image.Image:
    chart = Image.new("CMYK", (64, 48))
    for n, ink in enumerate([(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255)]):
        chart.paste(ink, (16 * n, 0, 16 * n + 16, 48))
    return chart


def build(folder: Path, upload_cap_bytes: int) -> list[tuple[Case, Path]]:
    """Write the corpus into `folder`; returns each case with its file."""
    palette = Image.new("P", (64, 48), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.paste(1, (32, 0, 64, 48))  # right half opaque (200, 100, 50); left half index 0, transparent
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "lime", "blue")]
    rotated, exif = _upright_red_over_blue_stored_sideways()
    rng = np.random.default_rng(0)
    side = int((upload_cap_bytes / 3) ** 0.5) + 64  # incompressible noise: a PNG just over the cap
    grey = round(MID_GREY_16 / 65535 * 255)
    bands = tuple(((n / 4 + 0.04, 0.1, (n + 1) / 4 - 0.04, 0.9), rgb, 12.0) for n, (rgb, _) in enumerate(CMYK_BANDS))
    items = [
        (Case("truncated.jpg", "truncated JPEG", "truncated or corrupt"), _encode(_photo(64, 48), "JPEG")[:400]),
        (Case("empty.jpg", "zero-byte file", "empty"), b""),
        (Case("notes.jpg", "text file named .jpg", "not an image"), b"hello, this is text\n" * 10),
        (Case("bomb.png", "PNG declaring 50000×50000", "too many pixels|more than the 50 MP"), _png_header(50000, 50000)),
        (Case("big-la.png", "real 56 MP grey+alpha PNG", "more than the 50 MP"),
         _encode(Image.new("LA", (8000, 7000)), "PNG", compress_level=9)),
        (Case("dot.png", "1×1 image", r"1×1: its shorter side must be at least 32"), _encode(Image.new("RGB", (1, 1)), "PNG")),
        (Case("strip.png", "10000×8 strip", r"10000×8: its shorter side must be at least 32"),
         _encode(Image.new("RGB", (10000, 8), "white"), "PNG")),
        (Case("cmyk.jpg", "CMYK JPEG test chart (C, M, Y, K bands)", "ok", (64, 48), bands),
         _encode(_cmyk_chart(), "JPEG", quality=95)),
        (Case("deep.png", "16-bit grey PNG at 30000/65535", "ok", (64, 48), ((WHOLE, (grey,) * 3, 2.0),)),
         _encode(Image.fromarray(np.full((48, 64), MID_GREY_16, dtype=np.uint16)), "PNG")),
        (Case("palette.png", "palette PNG with transparency", "ok", (64, 48),
              ((LEFT, WHITE, 2.0), (RIGHT, (200, 100, 50), 2.0))), _encode(palette, "PNG", transparency=0)),
        (Case("half.png", "RGBA PNG, left half fully transparent", "ok", (64, 48), ((LEFT, WHITE, 2.0), (RIGHT, RED, 2.0))),
         _encode(_half_transparent(), "PNG")),
        (Case("rgba.png", "RGBA PNG, half-opaque red", "ok", (64, 48), ((WHOLE, (255, 127, 127), 2.0),)),
         _encode(Image.new("RGBA", (64, 48), (255, 0, 0, 128)), "PNG")),
        (Case("anim.gif", "animated GIF (red, green, blue frames)", "ok", (64, 48), ((WHOLE, RED, 2.0),)),
         _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])),
        (Case("rotated.jpg", "EXIF-rotated JPEG (red top when upright)", "ok", (48, 64),
              ((TOP, RED, 8.0), (BOTTOM, BLUE, 8.0))), _encode(rotated, "JPEG", quality=95, exif=exif)),
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
