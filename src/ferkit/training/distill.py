"""Knowledge distillation: a trained model (or ensemble) supplies soft targets while another one trains.

The teacher sees exactly the batch the student sees, after augmentation and CutMix/mixup ("consistent
teaching"), so its probabilities describe the very pixels the student is graded on, mixed faces included.
Its probabilities are temperature-scaled as its checkpoint says (a shipped model's calibrated temperature),
and the training target becomes ``(1 - weight) * labels + weight * teacher``::

    ferkit train --data fer2013.zip --recipe fast --teacher default --distill 0.5 --out runs/fast-kd

A teacher whose test-time augmentation costs more than the student's whole step (``default``'s ten
``flip_shift`` views are about nine training steps' worth) runs in ``fixed`` mode instead: it labels every
training face once, unaugmented, averaged over its TTA views, and those probabilities stand in for the labels'
share of the targets in every epoch (mixed by CutMix with the labels they belong to). That is how a TTA's
accuracy is distilled into a student that needs no TTA::

    ferkit train --data fer2013.zip --recipe default --teacher default --teacher-tta flip_shift \
        --teacher-mode fixed --tta none --out runs/default-kd
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ferkit.models.checkpoint import ModelConfig, load_model
from ferkit.errors import FerkitError
from ferkit.inference.torch_backend import predict_logits
from ferkit.training.precision import mixed_precision
from ferkit.transforms.preprocess import centre_crop, denormalize, normalize, resize
from ferkit.transforms.views import check_tta


class Teacher:
    """A frozen model that turns the student's normalised input batch into target probabilities."""

    def __init__(self, spec: str | Path, student: ModelConfig, device: torch.device, tta: str = "none",
                 amp_dtype: torch.dtype | None = None):
        check_tta(tta, "teacher TTA")
        self.model, self.config = load_model(spec, device=device)
        self.model.requires_grad_(False)
        if self.config.labels != student.labels:
            raise FerkitError(f"teacher {spec} predicts {self.config.labels}, but the student learns "
                              f"{student.labels}; a teacher must share the student's labels in order")
        if self.config.in_chans != student.in_chans:
            raise FerkitError(f"teacher {spec} takes {self.config.in_chans}-channel input, the student "
                              f"{student.in_chans}; train the student with --in-chans {self.config.in_chans}")
        # The teacher's face crop as a share of the student's: it can zoom into what the student sees, but
        # cannot see past its edges.
        self.crop_share = self.config.face_crop / student.face_crop
        if self.crop_share > 1 + 1e-6:
            raise FerkitError(f"teacher {spec} was trained on {self.config.face_crop:.3g} of each face, more than "
                              f"the student's {student.face_crop:.3g}; train the student with --face-crop "
                              f"{self.config.face_crop:.6g} or higher")
        self.student = student
        self.tta, self.amp_dtype, self.device = tta, amp_dtype, device
        # Same crop, size and normalisation (the usual case): the student's batch goes in as it is.
        self.same_input = (abs(self.crop_share - 1) < 1e-6 and self.config.input_size == student.input_size
                           and list(self.config.mean) == list(student.mean)
                           and list(self.config.std) == list(student.std))

    def _teacher_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_input:
            return x
        pixels = denormalize(x.float(), self.student)  # back to [0, 255], then the teacher's crop, size, scale
        pixels = centre_crop(pixels, self.crop_share)
        return normalize(resize(pixels, self.config.input_size), self.config).contiguous(
            memory_format=torch.channels_last)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (N x classes, float32) for the student's normalised batch ``x``."""
        x = self._teacher_input(x)
        with mixed_precision(self.device, self.amp_dtype):
            logits = predict_logits(self.model, x, self.tta, self.config.temperature)
        return torch.softmax(logits.float() / self.config.temperature, dim=1)


TEACHER_MODES = ("online", "fixed")


def check_mode(mode: str) -> None:
    if mode not in TEACHER_MODES:
        raise FerkitError(f"unknown --teacher-mode {mode!r}; choose online (the teacher sees each augmented batch) "
                          f"or fixed (it labels every training face once, unaugmented)")


def fixed_teacher_probs(teacher: Teacher, faces: Iterable[torch.Tensor], n: int, cache: Path | None = None,
                        key: str = "", progress: bool = False) -> torch.Tensor:
    """The teacher's probabilities (n x classes) for ``faces``, the training split's clean, preprocessed batches
    in order. Kept in ``cache`` (the run folder) under ``key``, so a resumed run reuses them instead of paying
    for the teacher's views again."""
    meta = {"key": key, "n": n}
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            if str(stored["digest"]) == digest and stored["probs"].shape[0] == n:
                return torch.from_numpy(stored["probs"])
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=n, desc="teacher labels", unit="face", disable=not progress, leave=False) as bar:
        for x in faces:
            parts.append(teacher(x).cpu())
            bar.update(len(x))
    probs = torch.cat(parts) if parts else torch.empty(0)
    if probs.shape[0] != n:
        raise FerkitError(f"the teacher labelled {probs.shape[0]} faces of {n}")
    if cache is not None:
        from ferkit.paths import atomic_write

        with atomic_write(cache) as f:
            np.savez(f, probs=probs.numpy(), digest=np.array(digest))
    return probs


def check_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise FerkitError(f"--distill must be between 0 and 1 (the teacher's share of the target); got {weight}")


def distill_targets(targets: torch.Tensor, teacher_probs: torch.Tensor, weight: float) -> torch.Tensor:
    """Blend the (smoothed, mixed) label targets with the teacher's probabilities; rows still sum to 1."""
    return targets * (1.0 - weight) + teacher_probs * weight
