"""Face detection on real photos, alignment geometry on synthetic data, and the YuNet model file handling."""
from __future__ import annotations

import hashlib
import io
import logging
import math
import shutil
import subprocess
import sys
import threading
import urllib.request

import cv2
import numpy as np
import pytest

from ferkit.cli import main as cli_main
from ferkit.inference import detectors
from ferkit.inference.align import crop_face, crop_matrix, eye_angle
from ferkit.inference.detectors import (
    YUNET_FILE, Detection, DetectorError, HaarDetector, WholeImageDetector, YuNetDetector, create_detector,
    download_yunet, ensure_yunet, yunet_cache_path,
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


@pytest.mark.integration
def test_onnxruntime_and_opencv_engines_find_the_same_faces(media_dir, yunet, yunet_model):
    """The ONNX Runtime engine (the default) decodes YuNet as OpenCV's FaceDetectorYN does: same faces, boxes,
    landmarks and scores on every shared photo, and at sizes that are not multiples of 32."""
    opencv = YuNetDetector(yunet_model, engine="opencv")
    assert yunet.engine == "onnxruntime"
    found = 0
    for name in YUNET_COUNTS:
        image = photo(media_dir, name)
        for im in (image, cv2.resize(image, (333, 251))):
            ours, theirs = yunet.detect(im, "rgb"), opencv.detect(im, "rgb")
            assert len(ours) == len(theirs), name
            for a, b in zip(ours, theirs):
                assert np.allclose(a.box, b.box, atol=0.01) and abs(a.score - b.score) < 1e-3, name
                assert np.allclose(a.landmarks, b.landmarks, atol=0.01), name
            found += len(ours)
    assert found >= 30


def test_onnxruntime_engine_threads_follow_opencv_and_do_not_spin(yunet_model, monkeypatch):
    """Its threads default to OpenCV's count (the serve and video paths set OpenCV to one thread), and its pool
    sleeps after each frame instead of spinning against the classifier's pool."""
    monkeypatch.setattr(cv2, "getNumThreads", lambda: 3)
    options = YuNetDetector(yunet_model)._engine().session.get_session_options()
    assert options.intra_op_num_threads == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert YuNetDetector(yunet_model, threads=1)._engine().session.get_session_options().intra_op_num_threads == 1


def test_unknown_yunet_engine(yunet_model):
    with pytest.raises(DetectorError, match="unknown YuNet engine 'cuda'; choose one of auto, onnxruntime, opencv"):
        YuNetDetector(yunet_model, engine="cuda")


def test_an_onnx_file_that_is_not_yunet(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["out"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(DetectorError, match=r"relu.onnx is not a YuNet model \(it has no bbox_16, bbox_32"):
        YuNetDetector(path)  # at construction (OpenCV's engine only fails on the first image)


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




# -- getting YuNet: the implicit fetch of `auto`, `ferkit download`, offline fallback ------------------------------


class FakeServer:
    """Stands in for urlopen: serves ``data`` (or fails) and counts the requests. Tests never download."""

    def __init__(self, data: bytes | None = None):
        self.data, self.requests = data, 0

    def __call__(self, url, timeout):
        self.requests += 1
        if self.data is None:
            raise OSError(101, "Network is unreachable")
        return io.BytesIO(self.data)


@pytest.fixture
def online(monkeypatch):
    """Network allowed (conftest sets FERKIT_OFFLINE=1 for the session) through a FakeServer; the fallback
    warning not yet given in this process."""
    monkeypatch.delenv("FERKIT_OFFLINE", raising=False)
    monkeypatch.setattr(detectors, "_fallback_warned", False)
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(None))  # until a test serves something

    def serve(data: bytes | None = None, *, pin: bool = False) -> FakeServer:
        server = FakeServer(data)
        if pin:  # make `data` the expected file, so tests need no real model
            monkeypatch.setattr(detectors, "YUNET_SHA256", hashlib.sha256(data).hexdigest())
        monkeypatch.setattr(urllib.request, "urlopen", server)
        return server

    return serve


def fallback_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ferkit.inference.detectors" and r.levelno == logging.WARNING]


def test_auto_fetches_yunet_once_into_the_cache(online, yunet_model):
    server = online(yunet_model.read_bytes())
    assert create_detector("auto").name == "yunet"
    assert yunet_cache_path().read_bytes() == yunet_model.read_bytes()
    assert create_detector("auto").name == "yunet" and server.requests == 1  # the second one reads the cache


@pytest.mark.parametrize("how", ["FERKIT_OFFLINE", "download=False"])
def test_auto_without_permission_to_download_never_asks_the_network(online, monkeypatch, caplog, how):
    server = online(b"never served")
    if how == "FERKIT_OFFLINE":
        monkeypatch.setenv("FERKIT_OFFLINE", "1")
    detector = create_detector("auto", download=how != "download=False")
    assert detector.name == "haar" and server.requests == 0
    (warning,) = fallback_warnings(caplog)
    assert f"({how.replace('FERKIT_OFFLINE', 'FERKIT_OFFLINE is set')})" in warning


def test_offline_fallback_warns_once_per_process_and_says_how_to_get_yunet(online, caplog):
    server = online(None)  # the network is down
    assert [create_detector("auto").name for _ in range(3)] == ["haar"] * 3
    (warning,) = fallback_warnings(caplog)
    assert server.requests == 3  # each Recognizer tries again: the network may be back
    assert "Network is unreachable" in warning and "Haar" in warning
    assert "`ferkit download`" in warning and "--detector-model FILE" in warning


def test_the_fallback_warning_shows_in_plain_python_without_logging_setup():
    code = ("from ferkit.inference.detectors import create_detector\n"
            "print([create_detector('auto').name for _ in range(2)])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "['haar', 'haar']"
    (line,) = result.stderr.splitlines()  # FERKIT_OFFLINE=1 from conftest, inherited
    assert line.startswith("no YuNet face detector model (FERKIT_OFFLINE is set)") and "ferkit download" in line


def test_explicit_yunet_download_failure_is_an_error_not_a_fallback(online):
    online(None)
    with pytest.raises(DetectorError, match=r"cannot download YuNet \(Network is unreachable\); download https://"):
        create_detector("yunet")


def test_download_checks_the_sha256(online, tmp_path, yunet_model):
    with pytest.raises(DetectorError, match="downloaded YuNet has SHA-256"):
        download_yunet(tmp_path / "y.onnx", opener=FakeServer(b"not the model"))
    assert not (tmp_path / "y.onnx").exists()
    path = download_yunet(tmp_path / "y.onnx", opener=FakeServer(yunet_model.read_bytes()))
    assert YuNetDetector(path).name == "yunet"


def test_a_download_with_the_wrong_sha256_is_refused_and_the_old_file_kept(online, tmp_path):
    dest = tmp_path / "y.onnx"
    dest.write_bytes(b"the previous file")
    with pytest.raises(DetectorError, match="downloaded YuNet has SHA-256 .*, expected 8f2383e4dd3c.*; not using it"):
        download_yunet(dest, opener=FakeServer(b"a tampered model"))
    assert dest.read_bytes() == b"the previous file"
    assert [p.name for p in tmp_path.iterdir()] == ["y.onnx"]  # no partial download left


def test_ferkit_download_fetches_once_and_force_fetches_again(online, capsys):
    server = online(b"pretend model", pin=True)
    assert cli_main(["download"]) == 0
    assert capsys.readouterr().out == f"downloaded the yunet face detector to {yunet_cache_path()}\n"
    assert cli_main(["download", "--detector", "yunet"]) == 0
    assert "already in the cache (SHA-256 checked)" in capsys.readouterr().out and server.requests == 1
    yunet_cache_path().write_bytes(b"damaged")  # not the pinned file: fetched again without --force
    assert ensure_yunet() == (yunet_cache_path(), True) and server.requests == 2
    assert cli_main(["download", "--force"]) == 0 and server.requests == 3
    assert yunet_cache_path().read_bytes() == b"pretend model"


def test_ferkit_download_offline_is_one_line_with_exit_status_2(capsys):
    assert cli_main(["download"]) == 2  # FERKIT_OFFLINE=1 from conftest
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("ferkit download: error: FERKIT_OFFLINE is set, not downloading YuNet")
    assert "run `ferkit download`" not in line  # what the user just did


# -- OpenCV without Haar cascades (OpenCV 5) ---------------------------------------------------------------------


def test_haar_is_reported_unavailable_where_opencv_lacks_it(monkeypatch):
    monkeypatch.delattr(cv2, "CascadeClassifier")
    for make in (HaarDetector, lambda: create_detector("haar")):
        with pytest.raises(DetectorError, match=r"^the Haar detector is not available: this OpenCV \(.*\) has no "
                                                r"Haar cascades .*`ferkit download`"):
            make()


def test_auto_without_yunet_or_haar_says_what_to_do(monkeypatch):
    monkeypatch.delattr(cv2, "CascadeClassifier")
    with pytest.raises(DetectorError) as err:
        create_detector("auto")
    message = str(err.value)
    assert message.startswith("no face detector available: YuNet is not in the cache (FERKIT_OFFLINE is set)")
    assert "`ferkit download`" in message and "--detector-model" in message and "'none'" in message


def test_auto_uses_a_cached_yunet_where_opencv_lacks_haar(monkeypatch, tmp_path, yunet_model):
    monkeypatch.delattr(cv2, "CascadeClassifier")
    assert create_detector("auto", model_path=yunet_model).name == "yunet"


@pytest.mark.parametrize("engine", ["onnxruntime", "opencv"])
def test_corrupt_yunet_file(tmp_path, engine):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(DetectorError, match="cannot load the YuNet model .*bad.onnx.*ferkit download"):
        create_detector("yunet", model_path=bad, engine=engine)


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


def test_downscale_averages_big_reductions_and_interpolates_mild_ones():
    from ferkit.inference.detectors import downscale

    checker = (np.indices((960, 1280)).sum(0) % 2 * 255).astype(np.uint8)  # the finest detail there is
    small, scale = downscale(checker, 320)
    assert scale == 0.25 and small.shape == (240, 320)
    assert np.abs(small.astype(float) - 127.5).max() < 1  # area-averaged: no aliasing pattern left
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    mild, scale = downscale(frame, 480)
    assert scale == 0.75 and np.array_equal(mild, cv2.resize(frame, (480, 360), interpolation=cv2.INTER_LINEAR))
    assert downscale(frame, 640)[0] is frame and downscale(frame, None) == (frame, 1.0)
