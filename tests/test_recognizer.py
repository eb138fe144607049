"""The Recognizer: any image input gives the same faces, batching changes nothing, results are plain data."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ferkit import Recognizer
from ferkit.assets import sample_image_path
from ferkit.models.checkpoint import ModelConfig, save_checkpoint
from ferkit.errors import DataError, FerkitError, ModelError
from ferkit.labels import EMOTIONS
from ferkit.models import create_model
from ferkit.inference.results import FaceResult


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained but seeded baseline CNN: real weights, deterministic outputs."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "seeded.pt"
    save_checkpoint(path, create_model("baseline_cnn"), ModelConfig(arch="baseline_cnn", tta="flip"))
    return path


@pytest.fixture(scope="module")
def rec(checkpoint, yunet_model) -> Recognizer:
    return Recognizer(model=checkpoint, detector="yunet", detector_model=yunet_model, device="cpu")


def test_sample_photo_ships_with_one_face(rec):
    assert sample_image_path().is_file()
    (face,) = rec.predict(sample_image_path())
    assert face.emotion in EMOTIONS and face.landmarks is not None
    assert sum(face.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert face.probs[face.emotion] == max(face.probs.values())


def test_path_bytes_pil_and_arrays_give_the_same_result(rec):
    path = sample_image_path()
    rgb = np.asarray(Image.open(path).convert("RGB"))
    expected = rec.predict(path)
    for image, color in [(str(path), "bgr"), (path.read_bytes(), "bgr"), (Image.open(path), "bgr"),
                         (rgb[..., ::-1].copy(), "bgr"), (rgb, "rgb")]:
        assert rec.predict(image, color=color) == expected


@pytest.mark.integration
def test_predict_batch_equals_predict_per_image(rec, media_dir):
    paths = [media_dir / "photos" / n for n in ("multi_face.jpg", "no-faces.jpg", "justin.jpg", "two_people.jpg")]
    batched = rec.predict_batch(paths)
    assert [len(r) for r in batched] == [5, 0, 1, 2]
    for one_by_one, together in zip((rec.predict(p) for p in paths), batched):
        assert [f.box for f in one_by_one] == [f.box for f in together]
        for a, b in zip(one_by_one, together):
            assert a.emotion == b.emotion
            assert np.allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-5)


def test_to_dict_follows_the_json_contract(rec):
    (face,) = rec.predict(sample_image_path())
    d = face.to_dict()
    assert list(d) == ["box", "score", "landmarks", "emotion", "probs"]
    assert len(d["box"]) == 4 and all(isinstance(v, int) for v in d["box"])
    assert np.array(d["landmarks"]).shape == (5, 2)
    assert list(d["probs"]) == list(EMOTIONS)
    assert json.loads(json.dumps(d)) == d


def test_boxes_are_clipped_to_the_image(rec):
    image = cv2.imread(str(sample_image_path()))
    h, w = image.shape[:2]
    shifted = np.ascontiguousarray(image[:, w // 3 + 10:])  # cut the face at the left border
    faces = rec.predict(shifted)
    assert len(faces) == 1
    for face in faces:
        x, y, bw, bh = face.box
        assert x >= 0 and y >= 0 and x + bw <= shifted.shape[1] and y + bh <= h


def test_faces_below_min_face_are_reported_unclassified(checkpoint, yunet_model):
    # The sample's face is about 170 x 210 px: found (faces down to min_face / 2 are), not classified.
    rec = Recognizer(model=checkpoint, detector="yunet", detector_model=yunet_model, min_face=300)
    (face,) = rec.predict(sample_image_path())
    assert face.emotion is None and face.probs == {} and face.to_dict()["emotion"] is None


def test_detector_none_classifies_the_whole_crop(checkpoint):
    rec = Recognizer(model=checkpoint, detector="none")
    face48 = np.random.default_rng(0).integers(0, 256, (48, 48), np.uint8)
    (face,) = rec.predict(face48)
    assert face.box == (0, 0, 48, 48) and face.landmarks is None
    assert np.allclose(list(face.probs.values()), rec.classify(face48[None])[0], atol=1e-6)


def test_crop_margin_comes_from_the_checkpoint_and_can_be_overridden(checkpoint, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "margin.pt"
    save_checkpoint(path, create_model("baseline_cnn"), ModelConfig(arch="baseline_cnn", crop_margin=0.15))
    assert Recognizer(model=path, detector="haar").crop_margin == 0.15
    assert Recognizer(model=path, detector="haar", crop_margin=0.05).crop_margin == 0.05


def test_faces_are_cropped_so_the_model_sees_the_centre_it_was_trained_on(tmp_path, yunet_model):
    # A model trained on the centre 40 of 48 px gets 48 px crops, centre-cropped to 40 at native resolution.
    from ferkit.inference.align import crop_faces
    from ferkit.inference.imageio import load_image

    torch.manual_seed(0)
    path = tmp_path / "centre.pt"
    config = ModelConfig(arch="baseline_cnn", input_size=40, face_crop=40 / 48)
    save_checkpoint(path, create_model("baseline_cnn", input_size=40), config)
    rec = Recognizer(model=path, detector="yunet", detector_model=yunet_model, backend="torch")
    assert rec.classifier.crop_size == 48
    image = load_image(sample_image_path())  # RGB
    (face,) = rec.predict(image, color="rgb")
    crops = crop_faces(image, rec.detect(image, color="rgb"), 48, rec.crop_margin)
    assert np.allclose(list(face.probs.values()), rec.classify(crops)[0], atol=1e-6)
    small = crop_faces(image, rec.detect(image, color="rgb"), 40, rec.crop_margin)
    assert not np.allclose(list(face.probs.values()), rec.classify(small)[0], atol=1e-4)


def test_annotate_draws_on_a_bgr_copy(rec):
    bgr = cv2.imread(str(sample_image_path()))
    faces = rec.predict(bgr)
    out = rec.annotate(bgr, faces)
    assert out.shape == bgr.shape and out.dtype == np.uint8
    assert not np.array_equal(out, bgr) and np.array_equal(bgr, cv2.imread(str(sample_image_path())))
    # Pixels far from any face are untouched, and in the same (BGR) order.
    assert np.array_equal(out[-5:, -5:], bgr[-5:, -5:])
    too_small = [FaceResult((10, 10, 5, 5), 0.9, None, None, {})]
    assert rec.annotate(bgr, too_small).shape == bgr.shape


def test_one_recognizer_serves_many_threads(rec):
    image = cv2.imread(str(sample_image_path()))
    expected = rec.predict(image)
    same: list[bool] = []

    def work():
        same.extend(rec.predict(image) == expected for _ in range(3))

    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert same == [True] * 12


def test_unreadable_input_raises_data_error(rec):
    with pytest.raises(FerkitError, match="not an image"):
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
