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


# ---------------------------------------------------------------------------------------------------------------
# The other datasets ferkit reads, each written in its published layout (names, codes, columns), tiny images.


def band_face(label: str, size: int = 24, seed: int = 0, color: bool = False, width: int | None = None) -> np.ndarray:
    """A face a small CNN learns from any dataset: a bright band whose row encodes the canonical class (its
    index in EMOTIONS; contempt gets no band), on noise. ``width`` makes a wide frame with the band across it;
    ``color`` tints it (RGB)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (size, width or size), dtype=np.uint8)
    if label in EMOTIONS:
        band = size // len(EMOTIONS)
        k = EMOTIONS.index(label)
        img[k * band:(k + 1) * band] = 230
    if not color:
        return img
    rgb = np.stack([img, (img * 0.8).astype(np.uint8), (img * 0.5).astype(np.uint8)], axis=-1)
    return np.ascontiguousarray(rgb)


def encode(img: np.ndarray, ext: str = ".jpg") -> bytes:
    """An RGB (or gray) array as image-file bytes (OpenCV writes BGR, so RGB is flipped first)."""
    if img.ndim == 3:
        img = img[..., ::-1]
    params = [cv2.IMWRITE_JPEG_QUALITY, 98] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, img, params)
    assert ok
    return buf.tobytes()


def write_rafdb(root: Path, per_class: int = 3, test_per_class: int = 1, size: int = 24,
                variant: str = "aligned") -> Path:
    """RAF-DB basic: EmoLabel/list_patition_label.txt ('train_00001.jpg 5', codes 1 surprise ... 7 neutral)
    and Image/aligned/train_00001_aligned.jpg (or Image/original/train_00001.jpg), colour band faces."""
    from ferkit.labels import RAFDB_CODES

    lines, seed = [], 0
    for split, n in (("train", per_class), ("test", test_per_class)):
        count = 0
        for code in range(1, 8):
            for _ in range(n):
                count += 1
                seed += 1
                name = f"{split}_{count:05d}.jpg"
                lines.append(f"{name} {code}")
                file = f"{split}_{count:05d}_aligned.jpg" if variant == "aligned" else name
                path = root / "Image" / variant / file
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(encode(band_face(RAFDB_CODES[code], size, seed, color=True)))
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
                    "valence,arousal")


def write_affectnet(root: Path, per_class: int = 2, val_per_class: int = 1) -> Path:
    """AffectNet: Manually_Annotated_file_lists/{training,validation}.csv and Manually_Annotated_Images/<n>/<id>.jpg
    photos (60 x 80, RGB) with the face box at (10, 20, 40, 40); codes 0-7 plus one row each of 8, 9, 10.
    Valence is code / 10, arousal -code / 10."""
    from ferkit.labels import AFFECTNET_CODES

    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    seed = 0
    for file, n in (("training.csv", per_class), ("validation.csv", val_per_class)):
        rows = [AFFECTNET_HEADER]
        for code in list(range(8)) * n + [8, 9, 10]:
            seed += 1
            rel = f"{seed % 3 + 1}/{file[0]}{seed:04d}.jpg"
            photo = np.zeros((80, 60, 3), np.uint8)
            photo[:] = (20, 40, 60)
            label = AFFECTNET_CODES[code] if code < 8 else "neutral"
            photo[20:60, 10:50] = band_face(label, 40, seed, color=True)
            path = root / "Manually_Annotated_Images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(photo))
            landmarks = ";".join(["30.0"] * 136)
            rows.append(f"{rel},10,20,40,40,\"{landmarks}\",{code},{code / 10:g},{-code / 10:g}")
        (lists / file).write_text("\n".join(rows) + "\n")
    return root


def write_ckplus(root: Path, subjects: tuple[str, ...] = ("S005", "S010", "S011", "S014"),
                 codes: tuple[int, ...] = (1, 3, 4, 5, 6, 7), frames: int = 5, height: int = 24,
                 width: int = 32) -> Path:
    """CK+: cohn-kanade-images/S005/001/S005_001_00000001.png ... (gray frames wider than tall, the last frames
    with the sequence's band, the first neutral's) and Emotion/S005/001/S005_001_0000000N_emotion.txt holding
    the code as CK+ writes it ('   3.0000000e+00'). Subject i has sequences for codes[i::2] plus contempt (2)
    for the first subject; and one unlabelled sequence 099."""
    from ferkit.labels import CKPLUS_CODES

    seed = 0
    for s, subject in enumerate(subjects):
        seq_codes = list(codes[s % 2::2]) + ([2] if s == 0 else [])
        for q, code in enumerate(seq_codes + [None], start=1):
            seq = f"{q:03d}" if code is not None else "099"
            folder = root / "cohn-kanade-images" / subject / seq
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(1, frames + 1):
                seed += 1
                label = "neutral" if f <= 2 or code is None else CKPLUS_CODES[code]
                img = band_face(label, height, seed, width=width)
                (folder / f"{subject}_{seq}_{f:08d}.png").write_bytes(encode(img, ".png"))
            if code is not None:
                emo = root / "Emotion" / subject / seq
                emo.mkdir(parents=True, exist_ok=True)
                (emo / f"{subject}_{seq}_{frames:08d}_emotion.txt").write_text(f"   {code:.7e}\n")
    return root


def write_ckplus_crops(root: Path, subjects: tuple[str, ...] = ("S010", "S011", "S014"), size: int = 24) -> Path:
    """The common 48x48 CK+ class-folder crops (here ``size``): CK+48/<anger|contempt|...>/S010_004_00000017.png,
    three frames per subject and class."""
    folders = {"anger": "angry", "contempt": "contempt", "disgust": "disgust", "fear": "fear", "happy": "happy",
               "sadness": "sad", "surprise": "surprise"}
    seed = 0
    for folder, label in folders.items():
        for s, subject in enumerate(subjects):
            for f in (15, 16, 17):
                seed += 1
                path = root / "CK+48" / folder / f"{subject}_{s + 1:03d}_{f:08d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(encode(band_face(label, size, seed), ".png"))
    return root


JAFFE_SUBJECTS = ("KA", "KL", "KM", "KR", "MK")


def write_jaffe(root: Path, subjects: tuple[str, ...] = JAFFE_SUBJECTS, size: int = 32) -> Path:
    """JAFFE: jaffe/KA.AN1.39.tiff ..., one picture per subject and expression code (AN DI FE HA NE SA SU)."""
    from ferkit.labels import JAFFE_CODES

    folder = root / "jaffe"
    folder.mkdir(parents=True, exist_ok=True)
    number = 0
    for subject in subjects:
        for code, label in JAFFE_CODES.items():
            number += 1
            (folder / f"{subject}.{code}1.{number}.tiff").write_bytes(encode(band_face(label, size, number), ".tiff"))
    return root


def write_expw(root: Path, photos: int = 7) -> Path:
    """ExpW: data/label/label.lst ('image face_id top left right bottom confidence label', FER2013 codes) and
    data/image/origin/<name>.jpg photos (64 x 48 RGB), two faces in each: the band face of the photo's code at
    top=4,left=4 (24 px) and a second, neutral, at top=8,left=34 (20 x 24, not square)."""
    origin = root / "data" / "image" / "origin"
    origin.mkdir(parents=True, exist_ok=True)
    lines = []
    for p in range(photos):
        code = p % 7
        name = f"{FER2013_CSV_CODES[code]}_actor_{p}.jpg"
        photo = np.full((48, 64, 3), 90, np.uint8)
        photo[4:28, 4:28] = band_face(FER2013_CSV_CODES[code], 24, p, color=True)
        photo[8:32, 34:54] = band_face("neutral", 24, 100 + p, color=True, width=20)
        (origin / name).write_bytes(encode(photo))
        lines.append(f"{name} 0 4 4 28 28 {50 + p}.5 {code}")
        lines.append(f"{name} 1 8 34 54 32 12.25 6")
    (root / "data" / "label").mkdir(parents=True, exist_ok=True)
    (root / "data" / "label" / "label.lst").write_text("\n".join(lines) + "\n")
    return root


FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def write_ferplus(root: Path, votes: list[tuple[str, str, list[int]]]) -> Path:
    """FER+: fer2013new.csv with one row per (usage, image name, 10 vote counts) and, beside it, the original
    fer2013.csv whose rows it follows (a distinct face per row, all labelled angry there)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "pixels", "Usage"])
        for k, (usage, _, _) in enumerate(votes):
            writer.writerow([0, " ".join(map(str, face(k + 1).ravel())), usage])
    rows = [FERPLUS_HEADER] + [",".join([usage, name, *map(str, v)]) for usage, name, v in votes]
    (root / "fer2013new.csv").write_text("\n".join(rows) + "\n")
    return root
