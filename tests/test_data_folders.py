"""Any class-folder tree: with or without split folders, any class spelling, native size and colour."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic import band_face, encode, write_folder, write_zip

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.errors import DataError


def _tree(prefixes=("",), classes=("Anger", "happiness", "Neutral", "sadness"), n=2, size=20, color=True):
    items, seed = {}, 0
    for prefix in prefixes:
        for cls in classes:
            for _ in range(n):
                seed += 1
                label = {"Anger": "angry", "happiness": "happy", "Neutral": "neutral", "sadness": "sad"}[cls]
                items[f"{prefix}{cls}/img_{seed}.png"] = encode(band_face(label, size, seed, color=color), ".png")
    return items


def test_class_folders_without_splits_are_all_train(tmp_path):
    ds, report = load_dataset_with_report(write_folder(tmp_path / "faces", _tree()))
    assert report.format == "folders"
    assert ds.label_names == ("angry", "happy", "neutral", "sad")  # the classes present, canonical order
    assert ds.class_counts() == {"angry": 2, "happy": 2, "neutral": 2, "sad": 2}
    assert ds.available_splits() == ["train"] and ds.groups is None
    assert ds.images.shape == (8, 20, 20, 3)


def test_split_folders_without_fer2013_names(tmp_path):
    items = _tree(("train/", "validation/", "test/"))
    ds = load_dataset(write_zip(tmp_path / "faces.zip", items, prefix="wrapper/"))
    assert ds.name == "folders" and ds.available_splits() == ["train", "val", "test"]
    assert ds.evaluation_split() == "test" and len(ds.split("val")) == 8


def test_gray_images_are_stored_gray_and_mixed_sizes_are_resized(tmp_path):
    items = _tree(color=False)
    items["Neutral/big.png"] = encode(band_face("neutral", 40, 99, width=50), ".png")
    ds, report = load_dataset_with_report(write_folder(tmp_path / "faces", items))
    assert ds.images.shape == (9, 20, 20)
    assert any("1 image(s) were not 20x20" in w for w in report.warnings)
    assert load_dataset(tmp_path / "faces", size=32, color="rgb").images.shape == (9, 32, 32, 3)


def test_images_may_sit_deeper_inside_a_class_folder(tmp_path):
    items = {f"happy/S010/{k}.png": encode(band_face("happy", 16, k), ".png") for k in range(3)}
    ds = load_dataset(write_folder(tmp_path / "faces", items))
    assert ds.class_counts() == {"happy": 3}


def test_split_folders_beside_class_folders_are_a_mix(tmp_path):
    items = {**_tree(("train/",)), **_tree()}
    with pytest.raises(DataError, match=r"a mix of layouts: split folders \(train/\) beside class folders"):
        load_dataset(write_folder(tmp_path / "faces", items))


def test_unknown_class_folder_and_numeric_codes(tmp_path):
    items = _tree(("train/",))
    items["train/smirk/a.png"] = items["train/Anger/img_1.png"]
    with pytest.raises(DataError, match=r"class folder train/smirk/ is not a known emotion"):
        load_dataset(write_folder(tmp_path / "a", items))
    coded = {f"train/{code}/{k}.png": encode(band_face("fear", 16, k), ".png") for code in (0, 7) for k in range(2)}
    with pytest.raises(DataError, match=r"class folder train/0/ is not a known emotion.*codes=fer2013, affectnet"):
        load_dataset(write_folder(tmp_path / "b", coded))
    ds = load_dataset(tmp_path / "b", codes="affectnet")  # 0 neutral, 7 contempt
    assert ds.class_counts() == {"neutral": 2, "contempt": 2}


def test_empty_class_folder_and_corrupt_image_are_reported(tmp_path):
    root = write_folder(tmp_path / "faces", _tree())
    (root / "fear").mkdir()
    (root / "sadness" / "broken.png").write_bytes(b"\x89PNG no")
    ds, report = load_dataset_with_report(root)
    assert sorted(str(i) for i in report.issues) == ["fear/: class folder has no images",
                                                     "sadness/broken.png: not a decodable image"]
    with pytest.raises(DataError, match=r"2 unusable item\(s\) \(strict mode\)"):
        load_dataset(root, strict=True)


def test_colour_survives_the_cache(tmp_path):
    root = write_folder(tmp_path / "faces", _tree())
    first, second = load_dataset(root), load_dataset_with_report(root)
    assert second[1].from_cache
    np.testing.assert_array_equal(first.images, second[0].images)
    assert second[0].images.ndim == 4


def test_fit_pad_keeps_whole_photos_for_a_detector(tmp_path):
    photo = np.full((20, 40), 200, np.uint8)  # a wide photo
    root = write_folder(tmp_path / "photos", {"happy/p.png": encode(photo, ".png")})
    cropped, padded = load_dataset(root).images[0], load_dataset(root, fit="pad").images[0]
    assert cropped.shape == (20, 20) and (cropped == 200).all()
    assert padded.shape == (40, 40)
    assert (padded[:10] == 0).all() and (padded[10:30] == 200).all() and (padded[30:] == 0).all()
