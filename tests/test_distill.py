"""Knowledge distillation: the student learns what the teacher knows, even where the labels say otherwise."""
import csv
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from ferkit.models.checkpoint import load_model, save_checkpoint
from ferkit.training.distill import Teacher, distill_targets
from ferkit.errors import FerkitError
from ferkit.inference.torch_backend import classify
from ferkit.transforms.preprocess import faces_to_tensor
from ferkit.training.loop import train
from synthetic import learnable_dataset
from test_train import tiny


@pytest.fixture(scope="module")
def data():
    return learnable_dataset(n_train=224, n_val=70, size=24)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("teacher")
    summary = train(tiny(out, epochs=4, optimizer="adam", lr=3e-3), data)
    assert summary["best_val_accuracy"] > 0.6
    return out / "run" / "best.pt"


def scrambled(data, seed=1):
    """The same faces with the training labels shuffled: nothing left to learn from the labels alone."""
    labels = data.labels.copy()
    train_rows = np.flatnonzero(data.splits == "train")
    labels[train_rows] = np.random.default_rng(seed).permutation(labels[train_rows])
    return replace(data, labels=labels)


def test_a_student_learns_from_the_teacher_when_the_labels_are_noise(tmp_path, data, teacher_ckpt):
    noisy = scrambled(data)
    taught = train(tiny(tmp_path / "kd", epochs=4, optimizer="adam", lr=3e-3, teacher=str(teacher_ckpt),
                        distill=1.0), noisy)
    alone = train(tiny(tmp_path / "alone", epochs=4, optimizer="adam", lr=3e-3), noisy)
    # Validation labels are the true ones: the teacher carries them across, the shuffled labels cannot.
    assert taught["best_val_accuracy"] > 0.6
    assert alone["best_val_accuracy"] < 0.4
    config = (tmp_path / "kd" / "run" / "config.json").read_text()
    assert str(teacher_ckpt) in config  # the run folder says where its targets came from
    rows = list(csv.DictReader(open(tmp_path / "kd" / "run" / "metrics.csv")))
    assert all(0 < float(r["teacher_share"]) < 1 for r in rows)  # the teacher's cost, apart from the data's
    assert "teacher_share" not in next(csv.DictReader(open(tmp_path / "alone" / "run" / "metrics.csv")))


def test_a_fixed_teacher_labels_each_face_once_and_a_resumed_run_reuses_its_labels(tmp_path, data, teacher_ckpt):
    noisy = scrambled(data)
    cfg = tiny(tmp_path / "fixed", epochs=3, optimizer="adam", lr=3e-3, teacher=str(teacher_ckpt), distill=1.0,
               teacher_tta="flip", teacher_mode="fixed")
    taught = train(cfg, noisy)
    assert taught["best_val_accuracy"] > 0.6  # the fixed labels carry the truth the shuffled ones lost
    run = tmp_path / "fixed" / "run"
    with np.load(run / "teacher_probs.npz") as stored:
        probs = stored["probs"]
    n_train = int((data.splits == "train").sum())
    assert probs.shape == (n_train, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # They are the teacher's own flip-averaged probabilities for the clean training faces, in order.
    model, tcfg = load_model(teacher_ckpt)
    expected = classify(model, data.images[data.splits == "train"][:16], tcfg, tta="flip")
    assert np.allclose(probs[:16], expected, atol=2e-2)
    assert "teacher_share" not in next(csv.DictReader(open(run / "metrics.csv")))  # no teacher in the steps
    # A resumed run takes the stored labels instead of paying for the teacher's views again.
    assert teacher_calls(lambda: train(replace(cfg, epochs=4, resume=True), noisy)) == 0


def teacher_calls(run) -> int:
    """How many batches the teacher labels while ``run()`` runs."""
    from ferkit.training import distill

    calls = []
    original = distill.Teacher.__call__
    distill.Teacher.__call__ = lambda self, x: calls.append(1) or original(self, x)
    try:
        run()
    finally:
        distill.Teacher.__call__ = original
    return len(calls)


def test_a_new_teacher_under_the_same_name_labels_the_faces_again(tmp_path, data, teacher_ckpt):
    from synthetic import seeded_checkpoint

    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(teacher_ckpt.read_bytes())
    cfg = tiny(tmp_path / "kd", epochs=1, teacher=str(teacher), teacher_mode="fixed")
    train(cfg, data)
    _, tcfg = load_model(teacher_ckpt)
    seeded_checkpoint(teacher, arch=tcfg.arch, input_size=tcfg.input_size, labels=tcfg.labels)  # a new release
    assert teacher_calls(lambda: train(replace(cfg, epochs=2, resume=True), data)) > 0  # old file's labels


def test_an_unknown_teacher_mode_is_refused(tmp_path, data, teacher_ckpt):
    with pytest.raises(FerkitError, match="--teacher-mode"):
        train(tiny(tmp_path / "bad", teacher=str(teacher_ckpt), teacher_mode="offline"), data)


def test_targets_blend_labels_and_teacher_and_stay_distributions():
    labels = torch.eye(3)[[0, 1, 2]]
    teacher = torch.softmax(torch.randn(3, 3), 1)
    assert torch.equal(distill_targets(labels, teacher, 0.0), labels)
    assert torch.allclose(distill_targets(labels, teacher, 1.0), teacher)
    blend = distill_targets(labels, teacher, 0.3)
    assert torch.allclose(blend, 0.7 * labels + 0.3 * teacher)
    assert torch.allclose(blend.sum(1), torch.ones(3))


def test_teacher_at_another_input_size_sees_its_own_preprocessing(data, teacher_ckpt):
    # Teacher at 24 px, student at 32 px with its own normalisation: the teacher must get the faces exactly as
    # its own pipeline would make them from the same pixels.
    model, tcfg = load_model(teacher_ckpt)
    student = replace(tcfg, input_size=32, mean=[0.4], std=[0.3])
    teacher = Teacher(teacher_ckpt, student, torch.device("cpu"))
    assert not teacher.same_input
    faces = np.stack([cv2.resize(f, (32, 32)) for f in data.split("publictest").images[:20]])
    probs = teacher(faces_to_tensor(faces, student))
    assert np.allclose(probs.numpy(), classify(model, faces, tcfg, tta="none"), atol=1e-5)


def test_teacher_trained_on_the_face_centre_sees_that_centre(tmp_path, data, teacher_ckpt):
    # A `default` trained with --face-crop teaching a student that sees whole faces (the `fast` recipe).
    model, tcfg = load_model(teacher_ckpt)
    centre_cfg = replace(tcfg, face_crop=0.75)
    centre_ckpt = tmp_path / "centre.pt"
    save_checkpoint(centre_ckpt, model, centre_cfg)
    teacher = Teacher(centre_ckpt, tcfg, torch.device("cpu"))
    assert not teacher.same_input
    faces = data.split("publictest").images[:20]
    probs = teacher(faces_to_tensor(faces, tcfg))
    assert np.allclose(probs.numpy(), classify(model, faces, centre_cfg, tta="none"), atol=1e-5)
    assert not np.allclose(probs.numpy(), classify(model, faces, tcfg, tta="none"), atol=1e-3)
    with pytest.raises(FerkitError, match="--face-crop 0.75"):
        Teacher(centre_ckpt, replace(tcfg, face_crop=0.5), torch.device("cpu"))


def test_teacher_tta_averages_the_flipped_view(data, teacher_ckpt):
    model, tcfg = load_model(teacher_ckpt)
    faces = data.split("publictest").images[:20]
    x = faces_to_tensor(faces, tcfg)
    plain = Teacher(teacher_ckpt, tcfg, torch.device("cpu"))(x)
    flip = Teacher(teacher_ckpt, tcfg, torch.device("cpu"), tta="flip")(x)
    assert np.allclose(plain.numpy(), classify(model, faces, tcfg, tta="none"), atol=1e-5)
    assert np.allclose(flip.numpy(), classify(model, faces, tcfg, tta="flip"), atol=1e-5)
    assert not torch.allclose(plain, flip)


def test_bad_teachers_and_weights_are_refused_before_training(tmp_path, data, teacher_ckpt):
    _, tcfg = load_model(teacher_ckpt)
    with pytest.raises(FerkitError, match="labels"):
        Teacher(teacher_ckpt, replace(tcfg, labels=list(reversed(tcfg.labels))), torch.device("cpu"))
    with pytest.raises(FerkitError, match="in-chans"):
        Teacher(teacher_ckpt, replace(tcfg, in_chans=3), torch.device("cpu"))
    with pytest.raises(FerkitError, match="TTA"):
        Teacher(teacher_ckpt, tcfg, torch.device("cpu"), tta="mirror")
    with pytest.raises(FerkitError, match="between 0 and 1"):
        train(tiny(tmp_path, teacher=str(teacher_ckpt), distill=1.5), data)
    assert not (tmp_path / "run" / "last.pt").exists()
    with pytest.raises(FerkitError):
        train(tiny(tmp_path, teacher=str(tmp_path / "missing.pt")), data)


def test_the_cli_passes_the_teacher_and_none_switches_it_off():
    from ferkit.cli import build_parser
    from ferkit.cli.train import build_config

    def config(*flags):
        return build_config(build_parser().parse_args(["train", "--data", "x.zip", "--out", "runs/x", *flags]))

    cfg = config("--recipe", "fast", "--teacher", "default", "--distill", "0.7", "--teacher-tta", "flip")
    assert (cfg.teacher, cfg.distill, cfg.teacher_tta) == ("default", 0.7, "flip")
    assert config("--recipe", "fast", "--teacher", "none").teacher is None
    assert config("--model", "fernet_s").teacher is None
