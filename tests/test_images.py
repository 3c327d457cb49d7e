"""Loading every kind of image a user may bring, and refusing bad files with a message before any work."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from stylize import StylizeError, load_image
from stylize.images import fit_size, luminance, match_colour, rgb_to_yiq, to_pil, to_tensor, with_content_colour


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (80, 40), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    loaded = load_image(encode(img, "JPEG", exif=exif))
    assert loaded.size == (40, 80)


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    loaded = load_image(encode(img, "PNG"))
    assert loaded.mode == "RGB" and loaded.getpixel((5, 5)) == (255, 255, 255) and loaded.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency_becomes_rgb_on_white():
    img = Image.new("P", (40, 40), 0)
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putpixel((1, 1), 1)
    loaded = load_image(encode(img, "PNG", transparency=0))
    assert loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 1)) == (200, 100, 50)


def test_grayscale_cmyk_and_16_bit_become_8_bit_rgb():
    assert load_image(encode(Image.new("L", (40, 40), 77), "PNG")).getpixel((0, 0)) == (77, 77, 77)
    cmyk = load_image(encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG"))
    r, g, b = cmyk.getpixel((4, 4))
    assert cmyk.mode == "RGB" and r > 200 and g < 60 and b < 60
    sixteen = Image.fromarray(np.full((40, 40), 32896, dtype=np.uint16))  # 32896 / 65535 · 255 = 128.0
    assert load_image(encode(sixteen, "PNG")).getpixel((0, 0)) == (128, 128, 128)


def test_animation_gives_its_first_frame():
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert load_image(data).getpixel((4, 4)) == (255, 0, 0)


def test_large_jpeg_is_decoded_reduced():
    img = Image.new("RGB", (4000, 3000), "white")
    loaded = load_image(encode(img, "JPEG"), max_side=512)
    assert max(loaded.size) == 512 and loaded.size == (512, 384)


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data, message", [
    (b"", "empty|not an image"),
    (b"this is not an image at all", "not an image"),
    (encode(Image.new("RGB", (64, 64), "red"), "JPEG")[:300], "truncated or corrupt"),
    (png_header_only(50000, 50000), "too many pixels|more than the 50 MP"),
])
def test_bad_files_are_refused_with_a_clear_message(data, message):
    with pytest.raises(StylizeError, match=message):
        load_image(data)


def test_empty_file_on_disk_and_missing_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(StylizeError, match="empty.jpg is empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(StylizeError, match="text.jpg is not an image"):
        load_image(tmp_path / "text.jpg")
    with pytest.raises(StylizeError, match="no such file"):
        load_image(tmp_path / "absent.png")


@pytest.mark.parametrize("size", [(1, 1), (10000, 8)])
def test_images_too_small_or_thin_for_the_network(size):
    with pytest.raises(StylizeError, match=rf"{size[0]}×{size[1]}: its shorter side must be at least 32 px"):
        load_image(encode(Image.new("RGB", size, "red"), "PNG"))


def test_an_elongated_image_too_thin_at_the_chosen_size():
    with pytest.raises(StylizeError, match=r"would be 256×26 at size 256: its shorter side must be at least 32 px"):
        fit_size((2000, 200), 256)


def test_fit_size_keeps_the_aspect_ratio():
    assert fit_size((1024, 768), 256) == (256, 192)
    assert fit_size((768, 1024), 256) == (192, 256)


def test_tensor_round_trip_is_lossless():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))
    t = to_tensor(img)
    assert t.shape == (1, 3, 9, 7) and 0 <= t.min() and t.max() <= 1
    assert np.array_equal(np.asarray(to_pil(t)), np.asarray(img))


def test_luminance_transfer_keeps_the_photo_chroma():
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, 8, 8, generator=gen) * 0.5 + 0.25
    styled = luminance(torch.rand(1, 3, 8, 8, generator=gen) * 0.5 + 0.25)
    out = with_content_colour(styled, content)
    yiq_out, yiq_content = rgb_to_yiq(out), rgb_to_yiq(content)
    assert torch.allclose(yiq_out[:, 1:], yiq_content[:, 1:], atol=1e-5)
    assert torch.allclose(yiq_out[:, :1], styled[:, :1], atol=1e-5)


def test_histogram_matching_gives_the_style_the_content_colour_statistics():
    gen = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 32, 32, generator=gen) * torch.tensor([0.3, 0.1, 0.2]).view(1, 3, 1, 1) + 0.1
    content = torch.rand(1, 3, 32, 32, generator=gen) * torch.tensor([0.2, 0.3, 0.1]).view(1, 3, 1, 1) + 0.4
    out = match_colour(style, content)
    flat_out, flat_content = out[0].flatten(1), content[0].flatten(1)
    assert torch.allclose(flat_out.mean(1), flat_content.mean(1), atol=1e-3)
    assert torch.allclose(torch.cov(flat_out), torch.cov(flat_content), atol=1e-3)
