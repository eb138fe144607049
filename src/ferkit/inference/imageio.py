"""Robust image input: anything a user may hand ferkit becomes one H x W x 3 RGB uint8 array, or a DataError
that says what was wrong with that one input.

Decoding goes through Pillow because it reads EXIF orientation, palette, CMYK, 16-bit, WebP and animated files
and enforces a decompression-bomb limit; OpenCV's ``imread`` silently ignores most of those. Callers that batch
over many files catch ``DataError`` per file and carry on.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferkit.errors import DataError, FerkitError

log = logging.getLogger(__name__)

#: Everything ``load_image`` accepts. Arrays are interpreted with ``color``.
ImageInput = Union[str, Path, bytes, bytearray, memoryview, Image.Image, np.ndarray]

#: File suffixes treated as images when ferkit walks a folder (decoding still decides what really is one).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm", ".jfif"}
)

COLORS = ("bgr", "rgb")


def load_image(source: ImageInput, *, color: str = "bgr", max_pixels: int | None = None) -> np.ndarray:
    """Decode ``source`` into a C-contiguous H x W x 3 RGB uint8 array.

    ``source`` is a path, encoded file bytes, a PIL image or a numpy array. Arrays follow OpenCV's convention
    unless told otherwise: ``color="bgr"`` (what ``cv2.imread`` and ``cv2.VideoCapture`` give) or ``"rgb"``;
    2-D arrays are grayscale and 4-channel arrays carry alpha. ``max_pixels`` defaults to Pillow's
    decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    if isinstance(source, np.ndarray):
        return array_to_rgb(source, color=color)
    if isinstance(source, Image.Image):
        return pil_to_rgb(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), name="<bytes>", max_pixels=max_pixels)
    if isinstance(source, (str, Path)):
        return read_file(source, max_pixels=max_pixels)
    raise DataError(
        f"cannot read an image from a {type(source).__name__}; give a path, encoded bytes, a PIL image "
        f"or a numpy array"
    )


def read_file(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    return decode_bytes(data, name=str(path), max_pixels=max_pixels)


def decode_bytes(data: bytes, *, name: str = "<bytes>", max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, WebP, TIFF, BMP, GIF, ...) -> RGB uint8, EXIF orientation applied."""
    if not data:
        raise DataError(f"{name}: the file is empty (0 bytes)")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DataError(_bomb_message(name, exc)) from exc
    except UnidentifiedImageError as exc:
        raise DataError(f"{name}: not an image, or a format Pillow cannot read ({_describe(data)})") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's plugins raise all three on corrupt headers
        raise DataError(f"{name}: corrupt image header ({exc})") from exc
    # Pillow only warns between 1x and 2x its limit; a per-file error is more useful than a warning in a batch.
    if limit and im.width * im.height > limit:
        raise DataError(
            f"{name}: {im.width} x {im.height} pixels exceeds the decompression-bomb limit of {limit:,} pixels; "
            f"if the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS (or pass max_pixels=)"
        )
    try:
        im.load()
        im = _apply_exif_orientation(im, name)
        return pil_to_rgb(im)
    except Image.DecompressionBombError as exc:
        raise DataError(_bomb_message(name, exc)) from exc
    except OSError as exc:
        # Pillow says "image file is truncated" or "broken data stream" for incomplete files.
        raise DataError(f"{name}: the image data is truncated or corrupt ({exc})") from exc


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8; alpha is composited on white, high bit depths are scaled, not clipped."""
    mode = im.mode
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    if mode.startswith("I;16") or mode in ("I", "F"):
        return gray_to_rgb(_scale_to_uint8(np.asarray(im)))
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.ascontiguousarray(np.asarray(Image.alpha_composite(white, rgba).convert("RGB")))
    if mode == "L":
        return gray_to_rgb(np.asarray(im))
    # 1, P, CMYK, YCbCr, LAB, HSV, RGBX: Pillow's own conversions are right for these.
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def array_to_rgb(arr: np.ndarray, *, color: str = "bgr") -> np.ndarray:
    """A numpy image (H x W, H x W x 1/3/4; uint8, uint16 or float in [0, 1]) -> RGB uint8."""
    if color not in COLORS:
        raise FerkitError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or 0 in arr.shape:
        raise DataError(
            f"expected an image array of shape H x W, H x W x 3 or H x W x 4, got shape {tuple(arr.shape)}"
        )
    if arr.dtype != np.uint8:
        arr = _scale_to_uint8(arr)
    if arr.ndim == 2:
        return gray_to_rgb(arr)
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    if color == "bgr":
        arr = arr[..., ::-1]
    return np.ascontiguousarray(arr)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        # Floats are taken as [0, 1] images (the matplotlib/skimage convention) unless they clearly are not.
        scale = 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255).astype(np.uint8)
    if arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255):
        # 16-bit data (PNG/TIFF, or Pillow's 32-bit "I" mode holding 16-bit values): keep the top byte.
        return (np.clip(arr, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise DataError(f"unsupported image array dtype {arr.dtype}; expected uint8, uint16 or float in [0, 1]")


def _apply_exif_orientation(im: Image.Image, name: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:  # malformed EXIF must not cost the user the picture
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", name, exc)
        return im


def _bomb_message(name: str, exc: Exception) -> str:
    return (
        f"{name}: refused as a possible decompression bomb ({exc}); if the file is trusted, raise "
        f"PIL.Image.MAX_IMAGE_PIXELS"
    )


def _describe(data: bytes) -> str:
    head = data[:16]
    if head.lstrip().startswith((b"<", b"{", b"[")):
        return "looks like text, HTML, XML or JSON"
    if head.startswith(b"%PDF"):
        return "looks like a PDF"
    return f"{len(data):,} bytes starting {head[:8].hex(' ')}"

