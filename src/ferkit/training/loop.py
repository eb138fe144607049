"""The training loop, top to bottom: batch, augment, forward, loss, backward, step, validate, checkpoint.

The whole dataset lives in memory as one uint8 tensor (FER2013 train is 66 MB), so a batch is an index
into it and augmentation runs as batched tensor ops on the training device: no worker processes, no
JPEG decoding per epoch. Each epoch draws its shuffling and augmentation from generators seeded by
(seed, epoch), which is what makes ``--resume`` land on bit-identical weights.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit import __version__
from ferkit.transforms.augment import AugmentConfig, augment, mix_batch
from ferkit.models.checkpoint import ModelConfig, build_model, load_checkpoint, load_state_dict_checked, save_checkpoint
from ferkit.data.dataset import FaceDataset
from ferkit.devices import resolve_device
from ferkit.training.distill import Teacher, check_weight, distill_targets
from ferkit.training.averaging import EqualAverage, WeightAverage, check_decay, check_swa, recompute_batchnorm
from ferkit.errors import FerkitError
from ferkit.batching import iter_batches
from ferkit.inference.torch_backend import view_logits
from ferkit.models import get_entry
from ferkit.transforms.occlusion import check_mask
from ferkit.training.precision import autocast_dtype, mixed_precision
from ferkit.transforms.preprocess import faces_to_tensor, match_channels, normalize, to_input, uint8_to_nchw
from ferkit.training.sam import SharpnessAware, check_rho, frozen_batchnorm_statistics
from ferkit.transforms.views import check_tta

log = logging.getLogger(__name__)

SCHEDULES = ("onecycle", "cosine", "step", "plateau", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/ferkit"
    model: str = "fernet"
    input_size: int = 48
    in_chans: int = 1
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 64  # per process under torchrun
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup_epochs: float = 2.0
    step_size: int = 5  # step schedule: multiply by gamma every step_size epochs
    gamma: float = 0.1
    plateau_patience: int = 2  # plateau schedule: epochs without val-loss improvement before lr *= gamma
    early_stop: int = 0  # stop after this many epochs without val improvement (0: never)
    label_smoothing: float = 0.0
    class_weights: bool = False
    oversample: bool = False
    mixup: float = 0.0  # Beta(alpha, alpha); 0 disables
    cutmix: float = 0.0
    mix_prob: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    occlusion: float = 0.0  # probability of a random occlusion per image (robust training)
    train_masks: list[str] = field(default_factory=list)  # fine-tune on faces with these masks ...
    mask_prob: float = 0.5  # ... each image masked with this probability (the rest stay full faces)
    mean: float = 0.5
    std: float = 0.5
    tta: str = "none"  # inference TTA written into the checkpoint config
    crop_margin: float = 0.0
    face_crop: float = 1.0  # centre share of each face the model sees (ModelConfig.face_crop)
    precision: str = "auto"  # auto, fp32, bf16, fp16
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    train_split: str = "train"
    val_split: str = "publictest"
    pretrained: str | None = None  # ImageNet state dict file (torchvision names)
    finetune: str | None = None  # ferkit checkpoint to start from
    teacher: str | None = None  # distil from this checkpoint, shipped name or ensemble (ferkit.training.distill)
    distill: float = 0.5  # the teacher's share of each training target
    teacher_tta: str = "none"  # TTA the teacher averages over (flip doubles its cost)
    ema: float = 0.0  # decay per step of an average of the weights that best.pt then holds (0: off)
    swa: int = 0  # average the weights of the last N epochs' ends equally (best.pt holds the average; 0: off)
    sam: float = 0.0  # sharpness-aware minimisation radius rho (ferkit.training.sam; 0: off, doubles the cost of a step)
    freeze: int = 0  # freeze the first N blocks (batch norm stays trainable)
    folds: int = 0
    drop: list[str] = field(default_factory=list)  # quality filters: duplicates, leaks, blanks
    device: str = "auto"
    threads: int = 0
    limit_steps: int = 0  # smoke runs: at most this many steps per epoch
    resume: bool = False
    progress: bool = True
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if isinstance(data.get("augment"), dict):
            aug = dict(data["augment"])
            if "erase_area" in aug:
                aug["erase_area"] = tuple(aug["erase_area"])
            data["augment"] = AugmentConfig(**aug)
        return cls(**data)


# Named recipes: `ferkit train --recipe NAME` starts from these values; explicit flags override them.
RECIPES: dict[str, dict[str, Any]] = {
    # 110 epochs: 1.8 h with bf16 autocast on a 2-core CPU with native bf16 (the shipped default); 40 epochs
    # took 3 h in fp32 on an AVX2-only one and reached 68.6% instead of 70.6% (BENCHMARKS.md).
    "default": dict(
        model="fernet", input_size=40, epochs=110, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
        weight_decay=5e-4, schedule="onecycle", warmup_epochs=2, label_smoothing=0.1, mixup=0.0, cutmix=1.0,
        mix_prob=0.3, tta="flip",
        augment=AugmentConfig(hflip=0.5, rotate=12, shift=0.08, zoom=0.12, shear=5, erase=0.4),
    ),
    # The shipped `fast`: `default`'s settings on the narrow net, distilled from the shipped `default` (55 min in
    # bf16; 67.0% on publictest, 66.4% with no teacher in 34 min, 64.9% at 40 epochs in fp32).
    "fast": dict(
        model="fernet_s", input_size=40, epochs=110, teacher="default", distill=0.5, batch_size=64, optimizer="sgd",
        lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle", warmup_epochs=2,
        label_smoothing=0.1, cutmix=1.0, mix_prob=0.3, tta="flip",
        augment=AugmentConfig(hflip=0.5, rotate=12, shift=0.08, zoom=0.12, shear=5, erase=0.4),
    ),
    # The studies' 1.2M-parameter Keras baseline as they trained it (Adam at 1e-3, 48 px, light augmentation),
    # with a cosine decay instead of a fixed rate; on FER2013 it stops improving after about 10 epochs.
    "baseline": dict(
        model="baseline_cnn", input_size=48, epochs=15, batch_size=64, optimizer="adam", lr=1e-3,
        weight_decay=0.0, schedule="cosine", warmup_epochs=1,
        augment=AugmentConfig(hflip=0.5, rotate=10, shift=0.1, zoom=0.1, shear=0, erase=0.0),
    ),
    # The studies' VGG-style net (vgg_fer) at 48 px. It trains at about 30 images/s on a 2-core CPU (16 min an
    # epoch), so the recipe is short. Adam, as the studies used: one-cycle SGD at 0.03 sat near chance for the
    # first three epochs (33.6% on PublicTest after 3 of 8), far too slow a start for a budget of a few epochs.
    # Light augmentation for the same reason; give it more epochs on a GPU.
    "vgg": dict(
        model="vgg_fer", input_size=48, epochs=5, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=1e-4,
        schedule="cosine", warmup_epochs=0.5, label_smoothing=0.1,
        augment=AugmentConfig(hflip=0.5, rotate=10, shift=0.08, zoom=0.1, shear=0, erase=0.0),
    ),
}


class TrainingDiverged(FerkitError):
    pass


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot train before any data is read or any step taken: most of them would
    otherwise surface as a traceback, or silently train something else, minutes or an epoch into the run."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise FerkitError(message)

    get_entry(cfg.model)  # an unknown architecture, before minutes of decoding a new dataset
    need(cfg.epochs >= 1, f"--epochs must be at least 1; got {cfg.epochs}")
    need(cfg.batch_size >= 1, f"--batch-size must be at least 1; got {cfg.batch_size}")
    need(cfg.lr >= 0, f"--lr must be 0 or more; got {cfg.lr}")
    need(cfg.weight_decay >= 0, f"--weight-decay must be 0 or more; got {cfg.weight_decay}")
    need(0 <= cfg.momentum < 1, f"--momentum must be in [0, 1); got {cfg.momentum}")
    need(cfg.warmup_epochs >= 0, f"--warmup-epochs must be 0 or more; got {cfg.warmup_epochs}")
    need(0 <= cfg.label_smoothing < 1, f"--label-smoothing must be in [0, 1); got {cfg.label_smoothing}")
    need(cfg.mixup >= 0 and cfg.cutmix >= 0, f"--mixup and --cutmix are Beta alphas, 0 or more (0: off); "
                                              f"got {cfg.mixup} and {cfg.cutmix}")
    for flag, value in (("mix-prob", cfg.mix_prob), ("occlusion", cfg.occlusion), ("mask-prob", cfg.mask_prob),
                        ("hflip", cfg.augment.hflip), ("erase", cfg.augment.erase)):
        need(0 <= value <= 1, f"--{flag} is a probability, in [0, 1]; got {value}")
    need(0.0 < cfg.face_crop <= 1.0,
         f"--face-crop is the centre share of each face the model sees, in (0, 1]; got {cfg.face_crop}")
    need(cfg.optimizer in OPTIMIZERS, f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    need(cfg.schedule in SCHEDULES, f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    need(cfg.precision in PRECISIONS, f"unknown precision {cfg.precision!r}; choose one of {', '.join(PRECISIONS)}")
    need(cfg.early_stop >= 0 and cfg.threads >= 0 and cfg.freeze >= 0 and cfg.folds >= 0,
         "--early-stop, --threads, --freeze and --folds must be 0 or more")
    check_tta(cfg.tta, "--tta")
    for mask in cfg.train_masks:
        check_mask(mask)
    if cfg.teacher:
        check_tta(cfg.teacher_tta, "--teacher-tta")
        check_weight(cfg.distill)
    check_decay(cfg.ema)
    check_swa(cfg.epochs, cfg.swa, cfg.ema)
    check_rho(cfg.sam)
    if cfg.device != "auto":
        resolve_device(cfg.device)


# ----------------------------------------------------------------------------------------------------------
# Small pieces the loop calls


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Distributed:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, ddp: Distributed) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and ddp.world > 1:
        name = f"cuda:{ddp.local_rank}"
    return torch.device(name)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise AssertionError(cfg.optimizer)  # check_config refuses unknown names


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, plateau_scale: float) -> float:
    """The learning rate at ``step`` as a multiple of cfg.lr. This is the only place the rate changes."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        # Smith's one-cycle: warm up from lr/25 over the first 30% (or warmup_epochs), cosine to ~0.
        warm = max(1, int(steps_per_epoch * cfg.warmup_epochs) if cfg.warmup_epochs else int(0.3 * total))
        if step < warm:
            return 0.04 + 0.96 * step / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    warm = int(steps_per_epoch * cfg.warmup_epochs)
    warmup = min(1.0, (step + 1) / warm) if warm else 1.0
    if cfg.schedule == "cosine":
        progress = max(0.0, (step - warm) / max(1, total - warm))
        return warmup * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if cfg.schedule == "step":
        return warmup * cfg.gamma ** (step // steps_per_epoch // cfg.step_size)
    if cfg.schedule == "plateau":
        return warmup * plateau_scale
    if cfg.schedule == "constant":
        return warmup
    raise AssertionError(cfg.schedule)  # check_config refuses unknown names


def class_weight_vector(labels: np.ndarray, k: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised so a balanced dataset gets all ones."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    weights = len(labels) / (k * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def epoch_order(labels: torch.Tensor, oversample: bool, gen: torch.Generator) -> torch.Tensor:
    """A shuffled index over the training set; with oversampling, drawn with class-balancing weights."""
    n = len(labels)
    if not oversample:
        return torch.randperm(n, generator=gen)
    counts = torch.bincount(labels).float()
    weights = 1.0 / counts[labels]
    return torch.multinomial(weights, n, replacement=True, generator=gen)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    loss = -(targets * F.log_softmax(logits.float(), dim=1)).sum(1)
    if class_weights is not None:
        loss = loss * (targets @ class_weights)
    return loss.mean()


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


# ----------------------------------------------------------------------------------------------------------
# The run


def model_config_for(cfg: TrainConfig, label_names: tuple[str, ...]) -> ModelConfig:
    return ModelConfig(
        arch=cfg.model, num_classes=len(label_names), in_chans=cfg.in_chans, input_size=cfg.input_size,
        labels=list(label_names), mean=[cfg.mean] * cfg.in_chans, std=[cfg.std] * cfg.in_chans,
        model_kwargs=dict(cfg.model_kwargs), tta=cfg.tta, crop_margin=cfg.crop_margin,
        face_crop=cfg.face_crop,
    )


def prepare_model(cfg: TrainConfig, mcfg: ModelConfig) -> nn.Module:
    model = build_model(mcfg)
    if cfg.pretrained:
        from ferkit.models.pretrained import load_pretrained

        load_pretrained(model, cfg.pretrained, in_chans=mcfg.in_chans, num_classes=mcfg.num_classes)
    if cfg.finetune:
        ckpt = load_checkpoint(cfg.finetune)
        other = ModelConfig.from_dict(ckpt["config"])
        if other.arch != mcfg.arch or other.labels != mcfg.labels:
            raise FerkitError(
                f"--finetune {cfg.finetune} holds a {other.arch} for labels {other.labels}; this run trains a "
                f"{mcfg.arch} for labels {mcfg.labels}"
            )
        load_state_dict_checked(model, ckpt["state_dict"], source=cfg.finetune)
    if cfg.freeze:
        from ferkit.models.pretrained import freeze_blocks

        freeze_blocks(model, cfg.freeze)
    return model


def train(cfg: TrainConfig, dataset: FaceDataset | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the summary also written to ``summary.json`` in the run folder."""
    check_config(cfg)
    if dataset is None:
        from ferkit.data import load_dataset

        dataset = load_dataset(cfg.data, drop=tuple(cfg.drop))
    if cfg.folds and cfg.folds > 1:
        return train_folds(cfg, dataset)
    train_ds = dataset.split(cfg.train_split)
    val_ds = dataset.split(cfg.val_split) if cfg.val_split else None
    return run(cfg, train_ds, val_ds, dataset.label_names)


def train_folds(cfg: TrainConfig, dataset: FaceDataset) -> dict[str, Any]:
    """Stratified K-fold cross-validation on the training split; mean and std of the best fold scores."""
    from sklearn.model_selection import StratifiedKFold

    train_ds = dataset.split(cfg.train_split)
    folds = StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed)
    results = []
    for k, (tr, va) in enumerate(folds.split(np.zeros(len(train_ds)), train_ds.labels), start=1):
        fold_cfg = TrainConfig.from_dict({**cfg.to_dict(), "folds": 0, "out": str(Path(cfg.out) / f"fold{k}")})
        log.info("fold %d/%d: %d train, %d validation images", k, cfg.folds, len(tr), len(va))
        results.append(run(fold_cfg, train_ds.subset(tr), train_ds.subset(va), dataset.label_names))
    scores = np.array([r["best_val_accuracy"] for r in results])
    summary = {"folds": cfg.folds, "fold_accuracy": scores.tolist(), "mean_accuracy": float(scores.mean()),
               "std_accuracy": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0, "run_dir": cfg.out}
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "folds.json").write_text(json.dumps(summary, indent=2))
    return summary


def run(cfg: TrainConfig, train_ds: FaceDataset, val_ds: FaceDataset | None,
        label_names: tuple[str, ...]) -> dict[str, Any]:
    check_config(cfg)  # again here for callers that bring their own splits (train() checks before reading data)
    ddp = setup_distributed(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    device = pick_device(cfg.device, ddp)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
    mcfg = model_config_for(cfg, label_names)
    torch.manual_seed(cfg.seed)
    model = prepare_model(cfg, mcfg).to(device)
    mem = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=mem)
    optimizer = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    amp_dtype = autocast_dtype(cfg.precision, device)
    teacher = None
    if cfg.teacher:
        teacher = Teacher(cfg.teacher, mcfg, device, tta=cfg.teacher_tta, amp_dtype=amp_dtype)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 and device.type == "cuda" else None
    sam = SharpnessAware(model, cfg.sam) if cfg.sam else None
    if sam is not None and scaler is not None:
        raise FerkitError("--sam climbs along unscaled gradients; use it with --precision bf16 or fp32, not fp16")
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    swa = EqualAverage(model) if cfg.swa else None
    select_key = selection_key(cfg, val_ds is not None)

    # Resume: everything that decides the rest of the run comes from last.pt.
    start_epoch, best, stale, plateau_scale, best_val_loss, history = 0, -1.0, 0, 1.0, math.inf, []
    if cfg.resume and (out / "last.pt").exists():
        ckpt = load_checkpoint(out / "last.pt")
        load_state_dict_checked(model, ckpt["state_dict"], source=str(out / "last.pt"))
        st = ckpt["train_state"]
        optimizer.load_state_dict(st["optimizer"])
        start_epoch, best, stale = st["epoch"] + 1, st["best"], st["stale"]
        plateau_scale, best_val_loss, history = st["plateau_scale"], st["best_val_loss"], st["history"]
        torch.set_rng_state(st["torch_rng"])
        if average is not None and "ema" in st:
            average.load_state_dict(st["ema"])
        elif average is not None:
            log.warning("--ema: %s holds no weight average; starting one from its weights", out / "last.pt")
            average = WeightAverage(model, cfg.ema)
        if swa is not None and "swa" in st:
            swa.load_state_dict(st["swa"])
        elif swa is not None and start_epoch > cfg.epochs - cfg.swa:
            raise FerkitError(f"--swa {cfg.swa}: {out / 'last.pt'} is past epoch {cfg.epochs - cfg.swa}, where "
                              f"the average starts, but holds no average; resume without --swa or start afresh")
        log.info("resumed %s at epoch %d (best %.4f)", out, start_epoch + 1, best)
    elif cfg.resume:
        log.warning("--resume: no %s yet, starting from scratch", out / "last.pt")

    train_model: nn.Module = model
    if ddp.world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:
        train_model = torch.compile(train_model)

    images = uint8_to_nchw(train_ds.images).to(device)  # uint8 N x C x H x W, resident for the whole run
    labels = torch.as_tensor(train_ds.labels, dtype=torch.long)
    k = len(label_names)
    class_w = class_weight_vector(train_ds.labels, k).to(device) if cfg.class_weights else None
    fill = cfg.mean * 255.0  # erased and occluded pixels: black for occlusion (explicit), mean grey for erasing
    steps_per_epoch = len(labels) // (cfg.batch_size * ddp.world)
    if cfg.limit_steps:
        steps_per_epoch = min(steps_per_epoch, cfg.limit_steps)
    if steps_per_epoch == 0:
        raise FerkitError(f"{len(labels)} training images are fewer than one batch of {cfg.batch_size}; "
                          f"use a smaller --batch-size")
    if ddp.main:
        write_run_config(out, cfg, mcfg, len(train_ds), len(val_ds) if val_ds is not None else 0)

    bar = None
    if cfg.progress and ddp.main:
        from tqdm import tqdm

        bar = tqdm(total=(cfg.epochs - start_epoch) * steps_per_epoch, unit="step", dynamic_ncols=True,
                   desc=f"train {cfg.model}")
    last_plot = time.monotonic()
    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout draws
        order_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # same order on every rank
        aug_gen = torch.Generator().manual_seed((cfg.seed * 100_003 + epoch) * 64 + ddp.rank)
        order = epoch_order(labels, cfg.oversample, order_gen)[ddp.rank::ddp.world]
        train_model.train()
        t_epoch, t_data, t_teacher, seen, loss_sum, correct = time.perf_counter(), 0.0, 0.0, 0, 0.0, 0
        for step in range(steps_per_epoch):
            t0 = time.perf_counter()
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            y = labels[idx].to(device)
            x = match_channels(images[idx.to(device)].float(), mcfg.in_chans)
            x = augment(x, cfg.augment, aug_gen, fill=fill)
            if cfg.train_masks or cfg.occlusion > 0:
                x = apply_occlusion(x, cfg, aug_gen)
            x = normalize(to_input(x, mcfg), mcfg).contiguous(memory_format=mem)
            targets = F.one_hot(y, k).float()
            x, targets = mix_batch(x, targets, cfg.mixup, cfg.cutmix, cfg.mix_prob, aug_gen)
            if cfg.label_smoothing:
                targets = targets * (1 - cfg.label_smoothing) + cfg.label_smoothing / k
            lr = cfg.lr * lr_factor(cfg, epoch * steps_per_epoch + step, steps_per_epoch, plateau_scale)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t1 = time.perf_counter()
            t_data += t1 - t0
            if teacher is not None:
                targets = distill_targets(targets, teacher(x), cfg.distill)
                t_teacher += time.perf_counter() - t1
            try:
                with mixed_precision(device, amp_dtype):
                    logits = train_model(x)
                loss = soft_cross_entropy(logits, targets, class_w)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; stopped. The last "
                        f"good checkpoint is {out / 'last.pt'}. Try a lower --lr (now {cfg.lr}) or --precision fp32."
                    )
                optimizer.zero_grad(set_to_none=True)
                if scaler:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    if sam is not None:
                        sam.climb()
                        with frozen_batchnorm_statistics(train_model), mixed_precision(device, amp_dtype):
                            sharp_loss = soft_cross_entropy(train_model(x), targets, class_w)
                        optimizer.zero_grad(set_to_none=True)
                        sharp_loss.backward()
                        sam.return_back()
                    optimizer.step()
                if average is not None:
                    average.update(model)
            except torch.OutOfMemoryError as exc:
                raise FerkitError(f"out of memory at batch size {cfg.batch_size}; try --batch-size "
                                  f"{max(1, cfg.batch_size // 2)}") from exc
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{loss_sum / seen:.3f}",
                                img_s=f"{seen * ddp.world / (time.perf_counter() - t_epoch):.0f}", refresh=False)
        train_time = time.perf_counter() - t_epoch
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "images_per_s": seen * ddp.world / train_time, "data_share": t_data / train_time,
               "epoch_s": train_time}
        if teacher is not None:
            row["teacher_share"] = t_teacher / train_time
        if val_ds is not None:
            row.update(validate(model, mcfg, val_ds, device, tta=cfg.tta))
            if average is not None:
                row.update(validate(average.module, mcfg, val_ds, device, tta=cfg.tta, prefix="ema_val"))
        if swa is not None and epoch >= cfg.epochs - cfg.swa:
            swa.update(model)
            t_bn = time.perf_counter()
            with mixed_precision(device, amp_dtype):
                recompute_batchnorm(swa.module, clean_batches(train_ds, mcfg, device))
            row["swa_bn_s"], row["swa_epochs"] = time.perf_counter() - t_bn, swa.updates
            if val_ds is not None:
                row.update(validate(swa.module, mcfg, val_ds, device, tta=cfg.tta, prefix="swa_val"))
        row["epoch_s"] = time.perf_counter() - t_epoch
        history.append(row)

        score = row.get(select_key)
        improved = score is not None and score > best
        if score is not None:  # with --swa, epochs before its average starts neither count nor go stale
            best, stale = (score, 0) if improved else (best, stale + 1)
        if cfg.schedule == "plateau" and "val_loss" in row:
            if row["val_loss"] < best_val_loss - 1e-4:
                best_val_loss = row["val_loss"]
            elif stale and stale % cfg.plateau_patience == 0:
                plateau_scale *= cfg.gamma
        if ddp.main:
            meta = {"epoch": epoch + 1, "metrics": row, "command": cfg.command, "ferkit": __version__}
            if improved:
                chosen = average.module if average is not None else swa.module if swa is not None else model
                save_checkpoint(out / "best.pt", chosen, mcfg, meta=meta)
            state = {"optimizer": optimizer.state_dict(), "epoch": epoch, "best": best, "stale": stale,
                     "plateau_scale": plateau_scale, "best_val_loss": best_val_loss, "history": history,
                     "torch_rng": torch.get_rng_state(), "config": cfg.to_dict()}
            if average is not None:
                state["ema"] = average.state_dict()
            if swa is not None and swa.updates:
                state["swa"] = swa.state_dict()
            save_checkpoint(out / "last.pt", model, mcfg, meta=meta, train_state=state)
            # Plotting costs ~0.3 s, a tenth of a GPU epoch: redraw the curves at most every 30 s (and at the end).
            plot = time.monotonic() - last_plot > 30 or epoch + 1 == cfg.epochs
            write_history(out, history, plot=plot)
            last_plot = time.monotonic() if plot else last_plot
            log.info("epoch %d/%d %s", epoch + 1, cfg.epochs,
                     " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
        if cfg.early_stop and stale >= cfg.early_stop:
            log.info("early stop: no improvement for %d epochs", stale)
            if ddp.main:
                write_history(out, history, plot=True)
            break
    if bar is not None:
        bar.close()
    summary = {"run_dir": str(out), "best_val_accuracy": best, "selected_on": select_key, "epochs_run": len(history),
               "best_epoch": 1 + int(np.argmax([h.get(select_key, -1.0) for h in history])) if history else 0,
               "train_seconds": float(sum(h["epoch_s"] for h in history))}
    if ddp.main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def selection_key(cfg: TrainConfig, has_val: bool) -> str:
    """The metrics column best.pt is chosen on: validation accuracy of the weights best.pt holds (the weight
    average with --ema or --swa), under the TTA the checkpoint will be used with, so best.pt is best as shipped."""
    prefix = "ema_" if cfg.ema else "swa_" if cfg.swa else ""
    if not has_val:
        return "swa_epochs" if cfg.swa else "train_accuracy"  # --swa without validation: the last average wins
    return prefix + "val_accuracy" + ("_tta" if cfg.tta != "none" else "")


def clean_batches(ds: FaceDataset, mcfg: ModelConfig, device: torch.device, batch_size: int = 256):
    """A split's faces, unaugmented and preprocessed as at inference, in batches: what --swa recomputes the
    average's batch-norm statistics on, so they match the clean faces it is evaluated and used on."""
    for sl in iter_batches(len(ds), batch_size):
        yield faces_to_tensor(ds.images[sl], mcfg, device)


def validate(model: nn.Module, mcfg: ModelConfig, val_ds: FaceDataset, device: torch.device, tta: str = "none",
             prefix: str = "val", batch_size: int = 256) -> dict[str, float]:
    """Loss and accuracy without TTA and, when ``tta`` is set, accuracy under it, from one forward pass over
    the TTA views, preprocessed exactly as inference (ferkit.inference.torch_backend.classify) does."""
    model.eval()
    y = val_ds.labels
    plain = np.empty((len(y), mcfg.num_classes), dtype=np.float32)
    averaged = np.empty_like(plain)
    for sl in iter_batches(len(y), batch_size):
        logits = view_logits(model, faces_to_tensor(val_ds.images[sl], mcfg, device), tta) / mcfg.temperature
        plain[sl] = F.softmax(logits[0], dim=1).cpu().numpy()
        averaged[sl] = F.softmax(logits.mean(0), dim=1).cpu().numpy()
    p_true = np.clip(plain[np.arange(len(y)), y], 1e-12, 1.0)
    row = {f"{prefix}_loss": float(-np.log(p_true).mean()), f"{prefix}_accuracy": float((plain.argmax(1) == y).mean())}
    if tta != "none":
        row[f"{prefix}_accuracy_tta"] = float((averaged.argmax(1) == y).mean())
    return row


def write_run_config(out: Path, cfg: TrainConfig, mcfg: ModelConfig, n_train: int, n_val: int) -> None:
    info = {"command": cfg.command or " ".join(sys.argv), "train": cfg.to_dict(), "model": mcfg.to_dict(),
            "n_train": n_train, "n_val": n_val, "ferkit": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    (out / "config.json").write_text(json.dumps(info, indent=2))


def write_history(out: Path, history: list[dict[str, float]], plot: bool = True) -> None:
    with open(out / "metrics.csv", "w", newline="") as fh:
        columns = list(dict.fromkeys(k for row in history for k in row))  # --swa adds columns late in a run
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    if not plot:
        return
    from ferkit.plots.training import plot_curves

    plot_curves(history, out / "curves.png")
