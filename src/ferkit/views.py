"""What a model sees of a face crop, without torch: the centre window a ``face_crop`` model is fed and the
names of the test-time augmentation modes. The torch pipeline, the ONNX backend, `ferkit explain` and the CLI
all take these from here, so a face is cut the same way whichever of them handles it."""
from __future__ import annotations

from ferkit.errors import FerkitError

# Test-time augmentation modes (implemented by ferkit.inference.tta_views).
TTA_MODES = ("none", "flip", "flip_shift", "flip_crop")


def check_tta(mode: str, what: str = "TTA mode") -> str:
    """``mode`` if it names a test-time augmentation, else a FerkitError that lists the ones there are."""
    if mode not in TTA_MODES:
        raise FerkitError(f"unknown {what} {mode!r}; choose one of {', '.join(TTA_MODES)}")
    return mode


def centre_window(height: int, width: int, share: float) -> tuple[slice, slice]:
    """Row and column slices of the centre ``share`` of an image's sides (whole pixels, at least one)."""
    if share >= 1.0:
        return slice(0, height), slice(0, width)
    ch, cw = max(1, round(height * share)), max(1, round(width * share))
    top, left = (height - ch) // 2, (width - cw) // 2
    return slice(top, top + ch), slice(left, left + cw)


def crop_side(input_size: int, face_crop: float) -> int:
    """Side of the face crops whose centre ``face_crop`` is ``input_size`` pixels."""
    return max(input_size, round(input_size / face_crop))
