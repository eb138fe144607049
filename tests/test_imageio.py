"""Image input: every format a user may hand ferkit decodes to H x W x 3 RGB uint8, and every bad file is a
DataError that names the file and the problem."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ferkit.errors import DataError
from ferkit.inference.imageio import array_to_rgb, decode_bytes, load_image


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def rgb_image(w: int = 40, h: int = 30) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)  # left half red, right half blue
    a[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(a)


def test_rgb_jpeg_decodes_to_rgb_uint8():
    out = decode_bytes(encode(rgb_image(), "JPEG", quality=95))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert out[15, 5, 0] > 200 and out[15, 5, 2] < 60  # red stays in channel 0: RGB, not BGR


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = decode_bytes(encode(rgb_image(), "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == (40, 30, 3)
    # The red left half of the stored image is the top half once rotated clockwise.
    assert out[5, 15, 0] > 200 and out[35, 15, 2] > 200


def test_grayscale_becomes_three_equal_channels():
    out = decode_bytes(encode(Image.new("L", (8, 6), 77), "PNG"))
    assert out.shape == (6, 8, 3) and (out == 77).all()


def test_rgba_is_composited_on_white():
    a = np.zeros((4, 4, 4), np.uint8)
    a[:2] = (0, 0, 0, 255)  # opaque black top half, transparent bottom half
    out = decode_bytes(encode(Image.fromarray(a, "RGBA"), "PNG"))
    assert (out[:2] == 0).all() and (out[2:] == 255).all()


def test_palette_and_palette_with_transparency():
    p = rgb_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    out = decode_bytes(encode(p, "PNG"))
    assert out.shape == (30, 40, 3) and out[0, 0, 0] > 200
    p.info["transparency"] = p.getpixel((0, 0))
    out = decode_bytes(encode(p, "PNG", transparency=p.getpixel((0, 0))))
    assert (out[0, 0] == 255).all()  # the transparent (red) index shows the white background


def test_16_bit_grayscale_is_scaled_not_clipped():
    a = np.array([[0, 32768, 65535]], dtype=np.uint16)
    out = decode_bytes(encode(Image.fromarray(a), "PNG"))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg():
    out = decode_bytes(encode(rgb_image().convert("CMYK"), "JPEG", quality=95))
    assert out.shape == (30, 40, 3) and out[15, 5, 0] > 200 and out[15, 35, 2] > 200


def test_webp():
    out = decode_bytes(encode(rgb_image(), "WEBP", lossless=True))
    assert out[15, 5].tolist() == [255, 0, 0]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, this is not an image\n", "not an image"),
        (b"<html><body>404</body></html>", "HTML"),
    ],
)
def test_bad_bytes_raise_clear_errors(data, message):
    with pytest.raises(DataError, match=message):
        decode_bytes(data, name="x.jpg")


def test_truncated_jpeg():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)), "JPEG")
    with pytest.raises(DataError, match="truncated"):
        decode_bytes(data[: len(data) // 2], name="half.jpg")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns before we raise
def test_decompression_bomb(monkeypatch):
    data = encode(Image.new("L", (200, 200)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # 40,000 pixels: over the limit, under twice it
    with pytest.raises(DataError, match="decompression-bomb limit"):
        decode_bytes(data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # over twice the limit: Pillow itself refuses
    with pytest.raises(DataError, match="decompression bomb"):
        decode_bytes(data)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(DataError, match="is a folder"):
        load_image(tmp_path)


def test_path_bytes_pil_and_arrays_agree(tmp_path):
    path = tmp_path / "a.png"
    rgb_image().save(path)
    ref = load_image(path)
    pil = Image.open(path)
    assert (load_image(str(path)) == ref).all()
    assert (load_image(path.read_bytes()) == ref).all()
    assert (load_image(pil) == ref).all()
    assert (load_image(np.asarray(pil), color="rgb") == ref).all()
    assert (load_image(np.asarray(pil)[..., ::-1]) == ref).all()  # BGR is the default for arrays


def test_array_conversions():
    gray = np.full((5, 6), 9, np.uint8)
    assert array_to_rgb(gray).shape == (5, 6, 3)
    assert array_to_rgb(gray[..., None]).shape == (5, 6, 3)
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0] = 255  # blue in BGR order, fully transparent -> white
    assert (array_to_rgb(bgra) == 255).all()
    bgra[..., 3] = 255
    assert array_to_rgb(bgra)[0, 0].tolist() == [0, 0, 255]
    assert array_to_rgb(np.full((2, 2), 65535, np.uint16))[0, 0, 0] == 255
    assert array_to_rgb(np.full((2, 2), 0.5, np.float32))[0, 0, 0] == 128
    with pytest.raises(DataError, match="shape"):
        array_to_rgb(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(DataError, match="a dict"):
        load_image({"not": "an image"})
