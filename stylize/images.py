"""Images in and out: safe loading, resizing, PIL <-> tensor, and the two colour-preservation methods.

Every loader path ends in an RGB ``PIL.Image`` or a `StylizeError` that says what was wrong, raised before
any expensive work: header checks (size, pixel count) come before decoding.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import StylizeError

MAX_PIXELS = 50_000_000  # 50 MP: a 6000×4000 photo passes, a declared 50000×50000 "bomb" does not
MIN_SIDE = 32  # the network pools four times before conv5: smaller images have no deep features

ImageSource = str | Path | bytes | BinaryIO | Image.Image


def _open(source: ImageSource, max_bytes: int | None = None) -> Image.Image:
    """The image, opened lazily: only its header has been read (format, mode, size); nothing decoded yet."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    name = Path(source).name if isinstance(source, (str, Path)) else "the image"
    try:
        if isinstance(source, (str, Path)):
            length = Path(source).stat().st_size
        else:
            length = source.seek(0, io.SEEK_END) - source.seek(0) if source.seekable() else None
        if length == 0:
            raise StylizeError(f"{name} is empty (0 bytes)")
        if max_bytes is not None and length is not None and length > max_bytes:
            raise StylizeError(f"{name} is {length / 2**20:.1f} MB: more than the {max_bytes / 2**20:.0f} MB allowed")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(source)
    except StylizeError:
        raise
    except FileNotFoundError as exc:
        raise StylizeError(f"{name}: no such file") from exc
    except UnidentifiedImageError as exc:
        raise StylizeError(f"{name} is not an image PIL can read (PNG, JPEG, WebP, GIF, BMP, TIFF …)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise StylizeError(f"{name} declares too many pixels (limit {MAX_PIXELS // 1_000_000} MP)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise StylizeError(f"{name} is truncated or corrupt ({exc})") from exc


def load_image(source: ImageSource, max_side: int | None = None, max_bytes: int | None = None) -> Image.Image:
    """An RGB image from a path, bytes, a file object or a PIL image, or a `StylizeError`.

    Checked before anything is decoded: the file's size (`max_bytes`), then from the header the pixel count
    (at most 50 MP) and the shorter side (at least 32 px). Then: EXIF orientation is applied; transparency is
    composited on white; grayscale, palette, CMYK and 16-bit images become 8-bit RGB (16-bit values scaled,
    not clipped); animations give their first frame. With `max_side`, a JPEG is decoded at a reduced scale
    straight away (fast for large photos) and the result is shrunk to fit.
    """
    img = _open(source, max_bytes)
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise StylizeError(f"the image is {width}×{height}: more than the {MAX_PIXELS // 1_000_000} MP allowed")
    if width < 1 or height < 1:
        raise StylizeError("the image is empty (0 pixels)")
    if min(width, height) < MIN_SIDE:
        raise StylizeError(f"the image is {width}×{height}: its shorter side must be at least {MIN_SIDE} px")
    try:
        img.seek(0)
        if max_side and img.format == "JPEG":
            img.draft("RGB", (max_side, max_side))
        img.load()
        img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
    except StylizeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise StylizeError(f"the image file is truncated or corrupt ({exc})") from exc
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
        img = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info or img.mode in ("PA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


def fit_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longest side is `longest`, or a `StylizeError` if too thin to stylize."""
    width, height = size
    scale = longest / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    if min(new) < MIN_SIDE:
        raise StylizeError(
            f"the image ({width}×{height}) would be {new[0]}×{new[1]} at size {longest}: its shorter side must be "
            f"at least {MIN_SIDE} px; use a less elongated image or a larger size"
        )
    return new


def fit_at_least(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longest side is `longest`, or larger where the shorter side would fall below
    the network's minimum (an elongated style image at a coarse level)."""
    width, height = size
    scale = max(longest / max(width, height), MIN_SIDE / min(width, height))
    return max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def srgb_profile() -> bytes:
    """An sRGB ICC profile (littleCMS's), so a print shop reads the PNG's colours as they were made."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def save_png(img: Image.Image, target) -> None:
    """A result as a lossless PNG tagged sRGB (what the network's inputs and the screen assume)."""
    img.save(target, "PNG", icc_profile=srgb_profile())


def print_name(img: Image.Image) -> str:
    """The start of a print's file name, saying its size: stylize-2048x1536."""
    return f"stylize-{img.width}x{img.height}"


def to_tensor(img: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1]."""
    array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """The first image of a (B, 3, H, W) batch, clipped to [0, 1] and rounded to 8 bits."""
    array = tensor[0].detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


# BT.601 luma and the YIQ chroma axes: colour preservation keeps the photo's I and Q.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rgb_to_yiq(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(rgb), rgb)


def yiq_to_rgb(yiq: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_YIQ).to(yiq), yiq)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """The luma Y as a one-channel image (B, 1, H, W): what luminance-only transfer optimizes."""
    return rgb_to_yiq(rgb)[:, :1].contiguous()


def luma_range(content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel, the luma values whose RGB, with the photo's chroma (I, Q), stays inside [0, 1]: (low, high).

    RGB = Y + T·(I, Q) for the fixed 3×2 matrix T, so each channel bounds Y from both sides. The photo's own
    luma always lies inside; optimizing within these bounds means no clipping changes the delivered colours.
    """
    yiq = rgb_to_yiq(content)
    offsets = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_YIQ)[:, 1:].to(yiq), yiq[:, 1:])  # (B, 3, H, W)
    low = (-offsets).amax(1, keepdim=True).clamp(0, 1)
    high = (1 - offsets).amin(1, keepdim=True).clamp(0, 1)
    return torch.minimum(low, high), high


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """The luma as a 3-channel gray image, so VGG sees only light and dark."""
    return rgb_to_yiq(rgb)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Shift and scale a gray style image's luma to the content's mean and spread (Gatys et al. 2016, eq. 1)."""
    s, c = style[:, :1], luminance(content)[:, :1]
    matched = (s - s.mean()) * (c.std() / s.std().clamp_min(1e-6)) + c.mean()
    return matched.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def with_content_colour(styled_gray: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer: the stylized luma with the photo's chroma (I and Q)."""
    yiq = rgb_to_yiq(content)
    yiq = torch.cat([styled_gray[:, :1], yiq[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)


def match_colour(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image recoloured so its RGB mean and covariance equal the content's.

    x' = A (x − μ_s) + μ_c with A = Σ_c^½ Σ_s^−½ (symmetric square roots): the "image analogies" colour
    transfer of Gatys et al. 2016, section 2.1.
    """
    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x[0].flatten(1).double()
        mean = flat.mean(1, keepdim=True)
        centred = flat - mean
        return mean, centred @ centred.T / flat.shape[1] + 1e-5 * torch.eye(3, dtype=flat.dtype, device=flat.device)

    def sqrtm(m: torch.Tensor, power: float) -> torch.Tensor:
        values, vectors = torch.linalg.eigh(m)
        return vectors @ torch.diag(values.clamp_min(1e-10).pow(power)) @ vectors.T

    mu_s, cov_s = stats(style)
    mu_c, cov_c = stats(content)
    a = sqrtm(cov_c, 0.5) @ sqrtm(cov_s, -0.5)
    flat = style[0].flatten(1).double()
    out = a @ (flat - mu_s) + mu_c
    return out.view_as(style[0]).unsqueeze(0).to(style.dtype).clamp(0, 1)
