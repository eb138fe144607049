"""The shared face decoder: box crops of large photos (decoded reduced when the face allows), centre squares,
colour, and one reason per face that cannot be had."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from synthetic import encode

from ferkit.data.readers import FolderSource, decode_faces


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (800, 600), interpolation=cv2.INTER_CUBIC)
    (tmp_path / "p.jpg").write_bytes(encode(img))
    return FolderSource(tmp_path), img


def test_a_large_photo_gives_the_same_face_whether_decoded_whole_or_reduced(photo, monkeypatch):
    import ferkit.data.readers as readers

    source, img = photo
    flags = []
    real = cv2.imdecode
    monkeypatch.setattr(readers.cv2, "imdecode", lambda buf, flag: flags.append(flag) or real(buf, flag))
    box = (200.0, 100.0, 400.0, 400.0)
    small = decode_faces(source, ["p.jpg"], [box], size=40, color="rgb")  # 400 px box: decoded at 1/4
    large = decode_faces(source, ["p.jpg"], [box], size=400, color="rgb")  # needs every pixel
    assert flags == [cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_COLOR]
    assert small.reasons == [None] and small.images.shape == (1, 40, 40, 3)
    reference = cv2.resize(large.images[0], (40, 40), interpolation=cv2.INTER_AREA)
    assert np.abs(small.images[0].astype(int) - reference).mean() < 1.5
    assert np.abs(large.images[0].astype(int) - img[100:500, 200:600]).mean() < 3


def test_reasons_name_the_photo_size_even_when_decoded_reduced(photo):
    source, _ = photo
    out = decode_faces(source, ["p.jpg", "p.jpg"], [(900.0, 10.0, 400.0, 400.0), (0.0, 0.0, 0.0, 5.0)], size=40,
                       color="rgb")
    assert out.reasons == ["face box (x, y, w, h) = (900, 10, 400, 400) lies outside the 800x600 image",
                           "empty face box (x, y, w, h) = (0, 0, 0, 5)"]


def test_centre_square_colour_and_gray(tmp_path):
    (tmp_path / "wide.png").write_bytes(encode(np.full((10, 30), 77, np.uint8), ".png"))
    out = decode_faces(FolderSource(tmp_path), ["wide.png"], size=None, color="auto")
    assert out.images.shape == (1, 10, 10) and (out.images == 77).all()  # gray stays gray
    assert decode_faces(FolderSource(tmp_path), ["wide.png"], size=8, color="rgb").images.shape == (1, 8, 8, 3)
    missing = decode_faces(FolderSource(tmp_path), ["gone.png"], size=8)
    assert missing.reasons == ["unreadable"]
