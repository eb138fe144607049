"""Face detection on real photos, alignment geometry on synthetic data, and the YuNet model file handling."""
from __future__ import annotations

import io
import math
import shutil
import threading

import cv2
import numpy as np
import pytest

from ferkit.inference.align import crop_face, crop_matrix, eye_angle
from ferkit.inference.detectors import (
    YUNET_FILE, Detection, DetectorError, HaarDetector, WholeImageDetector, YuNetDetector, create_detector,
    download_yunet,
)
from ferkit.inference.imageio import load_image

# Every visible face in ../shared/media/photos, counted by eye (BWPictureHuman: the shouting soldier, turned
# three-quarters; the soldiers in the background are too small and helmeted to count as visible faces).
YUNET_COUNTS = {
    "multi_face.jpg": 5, "two_people.jpg": 2, "single_face.jpg": 1, "justin.jpg": 1,
    "0-f1-su-ph.jpg": 1, "0-f15-hao-ph.jpg": 1, "15-f13-anc-ph.jpg": 1, "45-m7-di-ph.jpg": 1,
    "BWPictureHuman.jpg": 1, "alex-lacamoire.png": 1, "obama_small.jpg": 1, "obama-240p.jpg": 1,
    "obama_partial_face.jpg": 1, "no-faces.jpg": 0, "free-mountain-vector-01.jpg": 0,
}
# Large frontal faces Haar must find (multi_face: it misses the one with sunglasses).
HAAR_COUNTS = {
    "multi_face.jpg": 4, "two_people.jpg": 2, "single_face.jpg": 1, "justin.jpg": 1, "0-f1-su-ph.jpg": 1,
    "0-f15-hao-ph.jpg": 1, "15-f13-anc-ph.jpg": 1, "alex-lacamoire.png": 1, "obama_small.jpg": 1,
    "obama-240p.jpg": 1, "no-faces.jpg": 0, "free-mountain-vector-01.jpg": 0,
}


def photo(media_dir, name: str) -> np.ndarray:
    return load_image(media_dir / "photos" / name)


@pytest.fixture(scope="module")
def yunet(yunet_model) -> YuNetDetector:
    return YuNetDetector(yunet_model)


def centre_inside(inner: Detection, outer: Detection) -> bool:
    x, y, w, h = outer.box
    cx, cy = inner.box[0] + inner.box[2] / 2, inner.box[1] + inner.box[3] / 2
    return x <= cx <= x + w and y <= cy <= y + h


@pytest.mark.integration
@pytest.mark.parametrize("name, count", sorted(YUNET_COUNTS.items()))
def test_yunet_finds_every_visible_face(media_dir, yunet, name, count):
    dets = yunet.detect(photo(media_dir, name), "rgb")
    assert len(dets) == count
    for d in dets:
        assert d.landmarks.shape == (5, 2) and 0.5 < d.score <= 1.0
        assert d.landmarks[0, 0] < d.landmarks[1, 0]  # the image-left eye comes first


@pytest.mark.integration
@pytest.mark.parametrize("name, count", sorted(HAAR_COUNTS.items()))
def test_haar_finds_the_large_frontal_faces(media_dir, yunet, name, count):
    image = photo(media_dir, name)
    dets = HaarDetector().detect(image, "rgb")
    assert len(dets) == count
    truth = yunet.detect(image, "rgb")
    assert all(any(centre_inside(h, y) for y in truth) for h in dets)  # each Haar box is a real face


@pytest.mark.integration
def test_large_images_are_downscaled_and_boxes_mapped_back(media_dir, yunet):
    small = photo(media_dir, "single_face.jpg")
    big = cv2.resize(small, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 2288 x 2248
    (d_small,), (d_big,) = yunet.detect(small, "rgb"), yunet.detect(big, "rgb")
    # Detected at a different scale, so equal within a few percent of the face size, not to the pixel.
    tol = 0.05 * max(d_small.box[2:])
    assert np.allclose(np.array(d_big.box) / 4, d_small.box, atol=tol)
    assert np.allclose(d_big.landmarks / 4, d_small.landmarks, atol=tol)


@pytest.mark.integration
def test_bgr_and_rgb_inputs_agree(media_dir, yunet):
    rgb = photo(media_dir, "two_people.jpg")
    a, b = yunet.detect(rgb, "rgb"), yunet.detect(rgb[..., ::-1].copy(), "bgr")
    assert [d.box for d in a] == [d.box for d in b]


@pytest.mark.integration
def test_detectors_can_be_shared_between_threads(media_dir, yunet):
    image = photo(media_dir, "multi_face.jpg")
    expected = [d.box for d in yunet.detect(image, "rgb")]
    results: list = []

    def work():
        results.extend([d.box for d in yunet.detect(image, "rgb")] == expected for _ in range(3))

    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results == [True] * 12


def test_none_detector_returns_the_whole_image():
    (d,) = WholeImageDetector().detect(np.zeros((48, 40, 3), np.uint8))
    assert d.box == (0.0, 0.0, 40.0, 48.0) and d.landmarks is None


# -- choosing a detector and finding the YuNet file ------------------------------------------------------------


def test_unknown_detector_name():
    with pytest.raises(DetectorError, match="unknown detector 'mtcnn'; choose one of auto, yunet, haar, none"):
        create_detector("mtcnn")


def test_auto_uses_yunet_when_cached_else_haar(tmp_path, monkeypatch, yunet_model):
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path))
    assert create_detector("auto").name == "haar"
    (tmp_path / "models").mkdir(exist_ok=True)
    shutil.copy(yunet_model, tmp_path / "models" / YUNET_FILE)  # a temporary cache, not the repo
    assert create_detector("auto").name == "yunet"
    assert create_detector("auto", model_path=yunet_model).name == "yunet"


def test_missing_yunet_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("FERKIT_OFFLINE", "1")
    with pytest.raises(DetectorError) as err:
        create_detector("yunet")
    message = str(err.value)
    assert "face_detection_yunet_2023mar.onnx" in message and "8f2383e4dd3c" in message
    assert "--detector-model" in message
    with pytest.raises(DetectorError, match="not found"):
        create_detector("yunet", model_path="/nowhere/yunet.onnx")


def test_download_checks_the_sha256(tmp_path, yunet_model):
    def serving(data: bytes):
        return lambda url, timeout: io.BytesIO(data)  # stands in for urlopen: tests never download

    with pytest.raises(DetectorError, match="SHA-256"):
        download_yunet(tmp_path / "y.onnx", opener=serving(b"not the model"))
    assert not (tmp_path / "y.onnx").exists()
    path = download_yunet(tmp_path / "y.onnx", opener=serving(yunet_model.read_bytes()))
    assert YuNetDetector(path).name == "yunet"


def test_corrupt_yunet_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(DetectorError, match="cannot load the YuNet model"):
        create_detector("yunet", model_path=bad)


# -- alignment and cropping ------------------------------------------------------------------------------------


def synthetic_face(angle_deg: float, size: int = 400) -> tuple[np.ndarray, Detection]:
    """Two bright 'eyes' 100 px apart, rotated by ``angle_deg`` about the image centre."""
    c = size / 2
    a = math.radians(angle_deg)
    eyes = np.array([[c - 50 * math.cos(a), c - 50 * math.sin(a)], [c + 50 * math.cos(a), c + 50 * math.sin(a)]])
    image = np.zeros((size, size, 3), np.uint8)
    for x, y in eyes:
        cv2.circle(image, (round(x), round(y)), 6, (255, 255, 255), -1)
    landmarks = np.vstack([eyes, [[c, c + 40], [c - 30, c + 80], [c + 30, c + 80]]]).astype(np.float32)
    return image, Detection((c - 100, c - 100, 200.0, 200.0), 0.9, landmarks)


def blob_centres(gray: np.ndarray) -> np.ndarray:
    n, _, _, centres = cv2.connectedComponentsWithStats((gray > 127).astype(np.uint8))
    return centres[1:][np.argsort(centres[1:, 0])]


@pytest.mark.parametrize("angle", [-30.0, -8.0, 0.0, 12.0, 40.0])
def test_alignment_levels_the_eyes(angle):
    image, det = synthetic_face(angle)
    assert math.degrees(eye_angle(det.landmarks)) == pytest.approx(angle, abs=1e-3)
    m = crop_matrix(det, 96, margin=0.0)
    mapped = det.landmarks[:2] @ m[:, :2].T + m[:, 2]
    assert mapped[0, 1] == pytest.approx(mapped[1, 1], abs=1e-3)  # level
    assert mapped[1, 0] - mapped[0, 0] == pytest.approx(100 * 96 / 200, abs=1e-3)  # scaled, not mirrored
    left, right = blob_centres(crop_face(image, det, 96)[..., 0])
    assert abs(left[1] - right[1]) < 0.75 and left[1] == pytest.approx(47.5, abs=0.75)


def test_no_landmarks_or_align_false_means_no_rotation():
    image, det = synthetic_face(25.0)
    for d, align in ((Detection(det.box, det.score, None), True), (det, False)):
        m = crop_matrix(d, 96, 0.0, align)
        assert m[0, 1] == 0 and m[1, 0] == 0


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_margin_sets_the_square_side(margin):
    det = Detection((100.0, 50.0, 80.0, 120.0), 1.0, None)  # tall box: the side follows the height
    m = crop_matrix(det, 48, margin)
    side = 120 * (1 + 2 * margin)
    assert m[0, 0] == pytest.approx(48 / side)
    # The box centre lands on the crop centre (pixel-index coordinates).
    assert m @ np.array([140 - 0.5, 110 - 0.5, 1]) == pytest.approx([23.5, 23.5])


def test_large_faces_are_area_resampled():
    # A fine checkerboard: a plain bilinear warp at 1/20 scale aliases; area resampling gives flat grey.
    yy, xx = np.mgrid[:960, :960]
    board = (((yy // 2 + xx // 2) % 2) * 255).astype(np.uint8)
    image = np.dstack([board] * 3)
    crop = crop_face(image, Detection((0.0, 0.0, 960.0, 960.0), 1.0, None), 48)
    assert abs(float(crop.mean()) - 127.5) < 3 and crop.std() < 6


def test_crops_at_the_border_replicate_edges():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_face(image, Detection((-30.0, -30.0, 80.0, 80.0), 1.0, None), 48)
    assert crop.shape == (48, 48, 3) and (crop == 200).all()
