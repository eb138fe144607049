"""Builders for small synthetic FER2013 datasets in every format (imported by the test_data_* modules).

Every format is written from the same JPEG bytes: the folder and zip hold them, the CSV holds their decoded
pixels, so all three readers must return identical arrays.
"""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import cv2
import numpy as np

from ferkit.labels import EMOTIONS, FER2013_CSV_CODES

USAGE = {"train": "Training", "publictest": "PublicTest", "privatetest": "PrivateTest"}


def face(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random image: distinct per seed, far from blank, stable under JPEG."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def standard_items(per_class: int = 2) -> dict[str, bytes]:
    """{relative path: jpeg bytes}: per class `per_class` train images, one PublicTest and one PrivateTest."""
    items: dict[str, bytes] = {}
    seed = 0
    for label in EMOTIONS:
        for k in range(per_class):
            seed += 1
            items[f"train/{label}/Training_{seed}.jpg"] = jpeg(face(seed))
        for prefix in ("PublicTest", "PrivateTest"):
            seed += 1
            items[f"test/{label}/{prefix}_{seed}.jpg"] = jpeg(face(seed))
    return items


def write_folder(root: Path, items: dict[str, bytes]) -> Path:
    for rel, data in items.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_zip(path: Path, items: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in items.items():
            zf.writestr(prefix + rel, data)
    return path


def split_of(rel: str) -> str:
    top, _, name = rel.split("/")
    if top == "train":
        return "train"
    return "publictest" if name.startswith("PublicTest_") else "privatetest"


def write_csv(path: Path, items: dict[str, bytes]) -> Path:
    """fer2013.csv with rows in sorted path order (the order the folder reader yields)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "pixels", "Usage"])
        for rel in sorted(items):
            pixels = cv2.imdecode(np.frombuffer(items[rel], np.uint8), cv2.IMREAD_GRAYSCALE)
            code = FER2013_CSV_CODES.index(rel.split("/")[1])
            writer.writerow([code, " ".join(map(str, pixels.ravel())), USAGE[split_of(rel)]])
    return path


def csv_row(code, pixels, usage="Training") -> str:
    return f"{code},{pixels},{usage}\n"


def learnable_dataset(n_train: int = 280, n_val: int = 70, size: int = 48, seed: int = 0):
    """A FaceDataset a small CNN learns in a few dozen steps: the class is a bright horizontal band whose
    row position encodes the label, on a noisy background."""
    from ferkit.data.dataset import FaceDataset

    rng = np.random.default_rng(seed)
    n = n_train + n_val
    labels = np.arange(n) % len(EMOTIONS)
    rng.shuffle(labels)
    images = rng.integers(0, 60, (n, size, size), dtype=np.uint8)
    band = size // len(EMOTIONS)
    for i, label in enumerate(labels):
        images[i, label * band:(label + 1) * band] = 230
    splits = np.array(["train"] * n_train + ["publictest"] * n_val)
    sources = np.array([f"synthetic/{i}.png" for i in range(n)])
    return FaceDataset(images, labels.astype(np.int64), splits, sources, EMOTIONS, "synthetic")


def tiny_config(tmp_path: Path, **kw):
    """A TrainConfig for the 24 px baseline CNN on learnable_dataset: a few seconds per run, no augmentation."""
    from ferkit.transforms.augment import AugmentConfig
    from ferkit.training.loop import TrainConfig

    base = dict(model="baseline_cnn", input_size=24, epochs=3, batch_size=16, lr=0.02, schedule="cosine",
                warmup_epochs=0, out=str(tmp_path / "run"), progress=False, threads=1,
                augment=AugmentConfig(hflip=0, rotate=0, shift=0, zoom=0, shear=0, erase=0))
    return TrainConfig(**{**base, **kw})


def seeded_checkpoint(path: Path, arch: str = "baseline_cnn", seed: int = 0, **config) -> Path:
    """An untrained checkpoint with seeded weights: real layers, deterministic outputs. ``config`` goes to
    ModelConfig (``input_size`` also sizes the model)."""
    import torch

    from ferkit.models import create_model
    from ferkit.models.checkpoint import ModelConfig, save_checkpoint

    torch.manual_seed(seed)
    model = create_model(arch, input_size=config.get("input_size", 48))
    save_checkpoint(path, model, ModelConfig(arch=arch, **config))
    return path


class FixedDetector:
    """A stand-in face detector that reports the same detections for every image: faces at known places (with
    landmarks, if given) for tests that must not depend on a detector model."""

    name = "fixed"

    def __init__(self, *detections):
        self.detections = list(detections)
        self.calls: list[tuple[tuple[int, ...], str]] = []  # (image shape, colour) of each call

    def detect(self, image: np.ndarray, color: str = "bgr") -> list:
        self.calls.append((image.shape, color))
        return list(self.detections)


def hopper_detection():
    """Where the face is in ferkit's sample photo (600 x 512; Haar's box), with 5 landmarks (eyes, nose tip,
    mouth corners) a little rolled, so alignment rotates the crop."""
    from ferkit.inference.detectors import Detection

    landmarks = np.array([[225.0, 190.0], [305.0, 196.0], [266.0, 240.0], [232.0, 278.0], [298.0, 283.0]],
                         np.float32)
    return Detection((153.75, 103.75, 227.5, 227.5), 0.98, landmarks)
