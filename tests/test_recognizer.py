"""The Recognizer: any image input gives the same faces, batching changes nothing, results are plain data.

Most tests run on the bundled sample photo with the Haar cascade OpenCV ships, or with a fixed stand-in
detector; only the ones marked integration need ../shared (real photos, the YuNet model)."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ferkit import Recognizer
from ferkit.assets import sample_image_path
from ferkit.errors import DataError, FerkitError, ModelError
from ferkit.inference.detectors import Detection
from ferkit.inference.results import FaceResult
from ferkit.labels import EMOTIONS

from synthetic import FixedDetector, hopper_detection, seeded_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained but seeded baseline CNN: real weights, deterministic outputs."""
    return seeded_checkpoint(tmp_path_factory.mktemp("ckpt") / "seeded.pt", tta="flip")


@pytest.fixture(scope="module")
def rec(checkpoint) -> Recognizer:
    return Recognizer(model=checkpoint, detector="haar", device="cpu")


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return cv2.imread(str(sample_image_path()))  # BGR


class SpyClassifier:
    """A ready Classifier that records the crops it is given and answers one fixed distribution."""

    labels = tuple(EMOTIONS)
    input_size = crop_size = 8
    crop_margin = 0.0
    tta = "none"
    description = "spy"

    def __init__(self):
        self.seen: list[np.ndarray] = []

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        self.seen.append(faces.copy())
        return np.tile(np.eye(len(self.labels), dtype=np.float32)[3], (len(faces), 1))  # always "happy"


def test_sample_photo_ships_with_one_face_that_haar_finds(rec):
    assert sample_image_path().is_file()
    (face,) = rec.predict(sample_image_path())
    # Haar's box on Grace Hopper's face (600 x 512 photo): about (154, 104, 227, 227) with OpenCV 4.x.
    assert np.allclose(face.box, (154, 104, 227, 227), atol=8)
    assert face.landmarks is None and face.score == 1.0  # Haar gives neither
    assert face.emotion in EMOTIONS and list(face.probs) == list(EMOTIONS)
    assert sum(face.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert face.probs[face.emotion] == max(face.probs.values())


@pytest.mark.integration
def test_yunet_reports_five_landmarks_inside_the_face(checkpoint, yunet_model):
    rec = Recognizer(model=checkpoint, detector="yunet", detector_model=yunet_model, device="cpu")
    (face,) = rec.predict(sample_image_path())
    x, y, w, h = face.box
    assert face.emotion in EMOTIONS and len(face.landmarks) == 5
    assert all(x <= lx <= x + w and y <= ly <= y + h for lx, ly in face.landmarks)


def test_path_bytes_pil_and_arrays_give_the_same_result(rec):
    path = sample_image_path()
    rgb = np.asarray(Image.open(path).convert("RGB"))
    expected = rec.predict(path)
    assert len(expected) == 1
    for image, color in [(str(path), "bgr"), (path.read_bytes(), "bgr"), (Image.open(path), "bgr"),
                         (rgb[..., ::-1].copy(), "bgr"), (rgb, "rgb")]:
        assert rec.predict(image, color=color) == expected


def test_bgr_frames_reach_the_classifier_as_rgb_crops():
    # A red face (BGR 0, 0, 255) on blue: the classifier must see red in channel 0 whichever way it came in.
    bgr = np.zeros((40, 40, 3), np.uint8)
    bgr[...] = (255, 0, 0)
    bgr[6:34, 6:34] = (0, 0, 255)  # reaches past the box: the crop is red to its edges
    spy = SpyClassifier()
    rec = Recognizer(model=spy, detector=FixedDetector(Detection((10.0, 10.0, 20.0, 20.0), 0.9)), min_face=8)
    for image, color in [(bgr, "bgr"), (bgr[..., ::-1].copy(), "rgb"), (Image.fromarray(bgr[..., ::-1]), "bgr")]:
        (face,) = rec.predict(image, color=color)
        assert face.emotion == "happy" and face.probs["happy"] == 1.0
    assert len(spy.seen) == 3
    for crops in spy.seen:
        assert crops.shape == (1, 8, 8, 3) and crops.dtype == np.uint8
        assert (crops[..., 0] == 255).all() and (crops[..., 1:] == 0).all()


def test_predict_batch_equals_predict_per_image(rec, hopper):
    blank = np.full((200, 160, 3), 90, np.uint8)
    two = np.ascontiguousarray(np.hstack([hopper, hopper[:, ::-1]]))  # Hopper and her mirror image
    images = [hopper, blank, np.ascontiguousarray(hopper[:, ::-1]), two]
    batched = rec.predict_batch(images)
    assert [len(r) for r in batched] == [1, 0, 1, 2]
    for one_by_one, together in zip((rec.predict(im) for im in images), batched):
        assert [f.box for f in one_by_one] == [f.box for f in together]
        for a, b in zip(one_by_one, together):
            assert a.emotion == b.emotion
            assert np.allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-5)


@pytest.mark.integration
def test_predict_batch_equals_predict_per_image_on_real_photos(checkpoint, yunet_model, media_dir):
    rec = Recognizer(model=checkpoint, detector="yunet", detector_model=yunet_model, device="cpu")
    paths = [media_dir / "photos" / n for n in ("multi_face.jpg", "no-faces.jpg", "justin.jpg", "two_people.jpg")]
    batched = rec.predict_batch(paths)
    assert [len(r) for r in batched] == [5, 0, 1, 2]
    for one_by_one, together in zip((rec.predict(p) for p in paths), batched):
        assert [f.box for f in one_by_one] == [f.box for f in together]
        for a, b in zip(one_by_one, together):
            assert a.emotion == b.emotion
            assert np.allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-5)


def test_to_dict_follows_the_json_contract(checkpoint, hopper):
    det = hopper_detection()
    rec = Recognizer(model=checkpoint, detector=FixedDetector(det), device="cpu")
    (face,) = rec.predict(hopper)
    d = face.to_dict()
    assert list(d) == ["box", "score", "landmarks", "emotion", "probs"]
    assert d["box"] == [154, 104, 227, 227] and all(isinstance(v, int) for v in d["box"])
    assert d["score"] == 0.98
    assert d["landmarks"] == [[225.0, 190.0], [305.0, 196.0], [266.0, 240.0], [232.0, 278.0], [298.0, 283.0]]
    assert list(d["probs"]) == list(EMOTIONS) and d["emotion"] == max(d["probs"], key=d["probs"].get)
    assert sum(d["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    assert json.loads(json.dumps(d)) == d


def test_boxes_are_clipped_to_the_image(checkpoint):
    image = np.random.default_rng(0).integers(0, 256, (80, 100, 3), np.uint8)  # h 80, w 100
    cut = [Detection((-12.3, -7.6, 50.0, 40.0), 0.9), Detection((70.4, 60.2, 50.0, 50.0), 0.8)]
    rec = Recognizer(model=checkpoint, detector=FixedDetector(*cut), device="cpu")
    faces = rec.predict(image)
    assert [f.box for f in faces] == [(0, 0, 38, 32), (70, 60, 30, 20)]
    assert [f.score for f in faces] == pytest.approx([0.9, 0.8])
    assert all(f.emotion in EMOTIONS for f in faces)  # min_face is judged on the detector's box, not the clip


def test_faces_below_min_face_are_reported_unclassified(checkpoint):
    # The sample's face is about 227 px: found (faces down to min_face / 2 are), not classified.
    rec = Recognizer(model=checkpoint, detector="haar", min_face=300)
    (face,) = rec.predict(sample_image_path())
    assert face.emotion is None and face.probs == {} and face.to_dict()["emotion"] is None


def test_min_face_is_the_shorter_box_side_and_does_not_change_the_other_faces(checkpoint, hopper):
    big = hopper_detection()
    narrow = Detection((20.0, 400.0, 19.0, 60.0), 0.7)  # 19 px wide: below min_face=20
    just = Detection((400.0, 400.0, 20.0, 20.0), 0.6)
    rec = Recognizer(model=checkpoint, detector=FixedDetector(big, narrow, just), min_face=20, device="cpu")
    faces = rec.predict(hopper)
    assert [f.emotion is None for f in faces] == [False, True, False]
    assert faces[1].probs == {} and faces[1].box == (20, 400, 19, 60)
    (alone,) = Recognizer(model=checkpoint, detector=FixedDetector(big), device="cpu").predict(hopper)
    assert np.allclose(list(faces[0].probs.values()), list(alone.probs.values()), atol=1e-6)


def test_detector_none_classifies_the_whole_crop(checkpoint):
    rec = Recognizer(model=checkpoint, detector="none")
    face48 = np.random.default_rng(0).integers(0, 256, (48, 48), np.uint8)
    (face,) = rec.predict(face48)
    assert face.box == (0, 0, 48, 48) and face.landmarks is None
    assert np.allclose(list(face.probs.values()), rec.classify(face48[None])[0], atol=1e-6)


def test_crop_margin_comes_from_the_checkpoint_and_can_be_overridden(tmp_path):
    path = seeded_checkpoint(tmp_path / "margin.pt", crop_margin=0.15)
    assert Recognizer(model=path, detector="haar").crop_margin == 0.15
    assert Recognizer(model=path, detector="haar", crop_margin=0.05).crop_margin == 0.05


def test_faces_are_cropped_so_the_model_sees_the_centre_it_was_trained_on(tmp_path):
    # A model trained on the centre 40 of 48 px gets 48 px crops, centre-cropped to 40 at native resolution.
    from ferkit.inference.align import crop_faces
    from ferkit.inference.imageio import load_image

    path = seeded_checkpoint(tmp_path / "centre.pt", input_size=40, face_crop=40 / 48)
    rec = Recognizer(model=path, detector=FixedDetector(hopper_detection()), backend="torch")
    assert rec.classifier.crop_size == 48
    image = load_image(sample_image_path())  # RGB
    (face,) = rec.predict(image, color="rgb")
    crops = crop_faces(image, rec.detect(image, color="rgb"), 48, rec.crop_margin)
    assert np.allclose(list(face.probs.values()), rec.classify(crops)[0], atol=1e-6)
    small = crop_faces(image, rec.detect(image, color="rgb"), 40, rec.crop_margin)
    assert not np.allclose(list(face.probs.values()), rec.classify(small)[0], atol=1e-4)
    unaligned = crop_faces(image, rec.detect(image, color="rgb"), 48, rec.crop_margin, align=False)
    assert not np.allclose(list(face.probs.values()), rec.classify(unaligned)[0], atol=1e-4)


def test_annotate_draws_on_a_bgr_copy(rec, hopper):
    bgr = hopper.copy()
    faces = rec.predict(bgr)
    out = rec.annotate(bgr, faces)
    assert out.shape == bgr.shape and out.dtype == np.uint8
    assert not np.array_equal(out, bgr) and np.array_equal(bgr, hopper)
    # Pixels far from any face are untouched, and in the same (BGR) order.
    assert np.array_equal(out[-5:, -5:], bgr[-5:, -5:])
    too_small = [FaceResult((10, 10, 5, 5), 0.9, None, None, {})]
    assert rec.annotate(bgr, too_small).shape == bgr.shape


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_one_recognizer_serves_many_threads(checkpoint, hopper, backend):
    # Torch on a seeded checkpoint, ONNX Runtime on the shipped "fast" model (no export needed).
    model = checkpoint if backend == "torch" else "fast"
    rec = Recognizer(model=model, detector="haar", backend=backend, device="cpu")
    small = cv2.resize(hopper, (256, 300), interpolation=cv2.INTER_AREA)  # Haar is quick on small frames
    images = [small, np.ascontiguousarray(small[:, ::-1]), cv2.resize(hopper, (200, 234))]
    expected = [rec.predict(im) for im in images]
    assert [len(faces) for faces in expected] == [1, 1, 1]
    same: list[bool] = []

    def work(k: int):
        for i in range(3):
            n = (i + k) % len(images)  # each thread its own order: neighbours run different images at once
            same.append(rec.predict(images[n]) == expected[n])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert same == [True] * 12


def test_unreadable_input_raises_data_error(rec):
    with pytest.raises(DataError, match="not an image"):
        rec.predict(b"definitely not a jpeg")


def test_an_empty_frame_and_an_unknown_colour_order_are_clear_errors(rec):
    # An empty BGR frame (a video source that returned nothing) used to reach OpenCV and fail there.
    with pytest.raises(DataError, match=r"got shape \(0, 0, 3\)"):
        rec.predict(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(FerkitError, match="color must be 'bgr' or 'rgb'"):
        rec.predict(np.zeros((8, 8, 3), np.uint8), color="bgra")


def test_missing_shipped_model_is_a_clear_error(tmp_path, monkeypatch):
    import ferkit.inference.classifier
    import ferkit.models.checkpoint

    # An installation without its weights folder (a broken or partial install).
    monkeypatch.setattr(ferkit.models.checkpoint, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(ferkit.inference.classifier, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ModelError, match="shipped model 'default' is not in this installation"):
        Recognizer(detector="haar")


def test_unknown_backend(checkpoint):
    with pytest.raises(FerkitError, match="unknown backend 'tflite'"):
        Recognizer(model=checkpoint, detector="haar", backend="tflite")


def test_in_memory_model_and_config(checkpoint):
    from ferkit.models.checkpoint import load_model

    model, config = load_model(checkpoint)
    a = Recognizer(model=(model, config), detector="haar", device="cpu").predict(sample_image_path())
    b = Recognizer(model=checkpoint, detector="haar", device="cpu").predict(sample_image_path())
    assert a == b


def test_tta_modes_are_checked_up_front(checkpoint):
    with pytest.raises(FerkitError, match="unknown TTA mode 'mirror'"):
        Recognizer(model=checkpoint, detector="haar", tta="mirror")


@pytest.mark.parametrize("setting, message", [
    (dict(min_face=-1), "min_face must be 0 or more"),
    (dict(batch_size=0), "batch_size at least 1"),
    (dict(max_side=-480), "max_side 0 or more"),
    (dict(crop_margin=-0.2), "crop_margin is the share of the face box"),
    (dict(device="gpu"), "unknown device 'gpu'"),
])
def test_settings_are_checked_when_the_recognizer_is_built(checkpoint, setting, message):
    with pytest.raises(FerkitError, match=message):
        Recognizer(model=checkpoint, detector="haar", backend="torch", **setting)
