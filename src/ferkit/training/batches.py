"""The training batches: the whole training split resident on the device as one uint8 tensor (FER2013 train is
66 MB), so a batch is an index into it and augmentation runs as batched tensor ops where the model trains: no
worker processes, no JPEG decoding per epoch. A split memory-mapped from the cache (larger than memory) is read
batch by batch from the file instead.

Each epoch draws its order from a generator seeded by (seed, epoch), the same on every rank, and its
augmentation from one seeded by (seed, epoch, rank): a run resumed at any epoch sees exactly the batches of
an uninterrupted one.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ferkit.data.dataset import FaceDataset
from ferkit.errors import FerkitError
from ferkit.models.config import ModelConfig
from ferkit.training.config import TrainConfig
from ferkit.training.distributed import Distributed
from ferkit.transforms.augment import augment, mix_batch
from ferkit.transforms.preprocess import match_channels, normalize, to_input, uint8_to_nchw


def epoch_seed(cfg: TrainConfig, epoch: int) -> int:
    return cfg.seed * 100_003 + epoch


SOFT_TARGET_MODES = ("crossentropy", "probability")


class TrainingBatches:
    """Batches of ``ds`` for this rank, ``steps`` per epoch: (x, y, targets), x augmented, normalised and
    mixed (CutMix/mixup), y the labels, targets the soft targets (mixed, label-smoothed) the loss is taken on."""

    def __init__(self, cfg: TrainConfig, mcfg: ModelConfig, ds: FaceDataset, device: torch.device,
                 ddp: Distributed):
        self.cfg, self.mcfg, self.ddp, self.device = cfg, mcfg, ddp, device
        # Faces memory-mapped from the cache (datasets larger than memory, e.g. AffectNet) stay in the file and
        # are gathered batch by batch; everything else is resident as one uint8 N x C x H x W tensor.
        self.mapped = ds.images if isinstance(ds.images, np.memmap) else None
        self.images = None if self.mapped is not None else uint8_to_nchw(ds.images).to(device)
        self.labels = torch.as_tensor(ds.labels, dtype=torch.long)
        # Vote distributions of a relabelled dataset (FER+), N x K, and how its authors train on them.
        self.soft = None if ds.targets is None else torch.as_tensor(ds.targets, dtype=torch.float32)
        self.soft_mode = ds.target_mode
        self.teacher: torch.Tensor | None = None  # fixed teacher probabilities, N x K (set_teacher)
        self.teacher_weight = 0.0
        self.steps = len(self.labels) // (cfg.batch_size * ddp.world)
        if cfg.limit_steps:
            self.steps = min(self.steps, cfg.limit_steps)
        if self.steps == 0:
            raise FerkitError(f"{len(self.labels)} training images are fewer than one batch of {cfg.batch_size}; "
                              f"use a smaller --batch-size")
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        cfg, bs, k = self.cfg, self.cfg.batch_size, self.mcfg.num_classes
        seed = epoch_seed(cfg, epoch)
        order = self.ddp.shard(epoch_order(self.labels, cfg.oversample, torch.Generator().manual_seed(seed)))
        gen = torch.Generator().manual_seed(seed * 64 + self.ddp.rank)
        fill = cfg.mean * 255.0  # random erasing paints mean grey (occlusion masks paint black)
        for step in range(self.steps):
            idx = order[step * bs:(step + 1) * bs]
            if self.mapped is not None:
                idx = idx.sort().values  # the batch read from the mapped file front to back
            y = self.labels[idx].to(self.device)
            x = match_channels(self.faces(idx).float(), self.mcfg.in_chans)
            x = augment(x, cfg.augment, gen, fill=fill)
            if cfg.train_masks or cfg.occlusion > 0:
                x = apply_occlusion(x, cfg, gen)
            x = normalize(to_input(x, self.mcfg), self.mcfg).contiguous(memory_format=self.memory_format)
            targets = self.targets_for(idx, y, gen)
            x, targets = mix_batch(x, targets, cfg.mixup, cfg.cutmix, cfg.mix_prob, gen)
            if cfg.label_smoothing:
                targets = targets * (1 - cfg.label_smoothing) + cfg.label_smoothing / k
            yield x, y, targets

    def set_teacher(self, probs: torch.Tensor, weight: float) -> None:
        """Blend a fixed teacher's probabilities (one row per training face) into every target with ``weight``,
        before CutMix mixes the targets and label smoothing flattens them."""
        if probs.shape != (len(self.labels), self.mcfg.num_classes):
            raise FerkitError(f"teacher probabilities of shape {tuple(probs.shape)} for {len(self.labels)} faces "
                              f"and {self.mcfg.num_classes} classes")
        self.teacher, self.teacher_weight = probs.float(), weight

    def faces(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 B x C x H x W faces of the batch ``idx``, on the training device."""
        if self.mapped is None:
            return self.images[idx.to(self.device)]
        return uint8_to_nchw(np.ascontiguousarray(self.mapped[idx.numpy()])).to(self.device)

    def targets_for(self, idx: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One-hot labels, or the dataset's soft labels: ``crossentropy`` trains on the vote distribution
        itself, ``probability`` on one class drawn from it per face and epoch (the FER+ authors' two modes)."""
        targets = self.label_targets(idx, y, gen)
        if self.teacher is None:
            return targets
        w = self.teacher_weight
        return targets * (1.0 - w) + self.teacher[idx].to(self.device) * w

    def label_targets(self, idx: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        k = self.mcfg.num_classes
        if self.soft is None:
            return F.one_hot(y, k).float()
        votes = self.soft[idx]
        if self.soft_mode == "probability":
            return F.one_hot(torch.multinomial(votes, 1, generator=gen).squeeze(1), k).float().to(self.device)
        return votes.to(self.device)


def epoch_order(labels: torch.Tensor, oversample: bool, gen: torch.Generator) -> torch.Tensor:
    """A shuffled index over the training set; with oversampling, drawn with class-balancing weights."""
    n = len(labels)
    if not oversample:
        return torch.randperm(n, generator=gen)
    counts = torch.bincount(labels).float()
    weights = 1.0 / counts[labels]
    return torch.multinomial(weights, n, replacement=True, generator=gen)


def class_weight_vector(labels: np.ndarray, k: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised so a balanced dataset gets all ones."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    weights = len(labels) / (k * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def apply_occlusion(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Hide face regions (pixel units, before normalisation) for occlusion fine-tuning and robust training."""
    from ferkit.transforms.occlusion import apply_mask, random_occlusion

    if cfg.train_masks:
        n = x.shape[0]
        choice = torch.randint(len(cfg.train_masks), (n,), generator=gen)
        masked = torch.rand(n, generator=gen) < cfg.mask_prob
        for i, name in enumerate(cfg.train_masks):
            sel = (masked & (choice == i)).to(x.device)
            if sel.any():
                x = torch.where(sel.view(-1, 1, 1, 1), apply_mask(x, name), x)
    if cfg.occlusion > 0:
        x = random_occlusion(x, cfg.occlusion, gen)
    return x
