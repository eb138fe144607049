"""The training loop, top to bottom: batch, forward, loss, backward, step, validate, checkpoint.

``run`` is the loop; what it calls follows it, in the order it calls it. The options stay out of the loop:
fp16 loss scaling, SAM and the moving average are in ``train_step``, SWA and the validation of the averages in
``end_of_epoch``; a distillation teacher only rewrites the targets. The rest of the package holds the pieces:
config.py (TrainConfig, recipes, check_config), schedule.py (optimiser, learning rate, Plateau), batches.py
(the augmented training batches), state.py (TrainState, what ``--resume`` continues from), distributed.py
(torchrun).
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit import __version__
from ferkit.batching import iter_batches
from ferkit.data.dataset import FaceDataset
from ferkit.errors import DataError, FerkitError
from ferkit.inference.torch_backend import view_logits
from ferkit.models.checkpoint import (ModelConfig, build_model, load_checkpoint, load_state_dict_checked, member_range,
                                     save_checkpoint)
from ferkit.models.ensemble import ARCH as ENSEMBLE_ARCH
from ferkit.training.averaging import EqualAverage, WeightAverage, recompute_batchnorm
from ferkit.training.batches import SOFT_TARGET_MODES, TrainingBatches, class_weight_vector, epoch_seed
from ferkit.training.config import TrainConfig, check_config, val_share
from ferkit.training.distill import Teacher, distill_targets, fixed_teacher_probs
from ferkit.training.distributed import distribute, setup_distributed
from ferkit.training.precision import autocast_dtype, mixed_precision
from ferkit.training.sam import SharpnessAware, frozen_batchnorm_statistics
from ferkit.training.schedule import Plateau, lr_factor, make_optimizer
from ferkit.training.state import TrainState
from ferkit.transforms.preprocess import faces_to_tensor
from ferkit.transforms.views import adaptive_mean

log = logging.getLogger(__name__)


class TrainingDiverged(FerkitError):
    pass


def train(cfg: TrainConfig, dataset: FaceDataset | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the summary also written to ``summary.json`` in the run folder."""
    check_config(cfg)
    share = val_share(cfg.val_split)
    if dataset is None:
        from ferkit.data import load_dataset

        dataset = load_dataset(cfg.data, drop=tuple(cfg.drop), **cfg.data_options)
    if share:  # carved from the training split: stratified, seeded, whole subjects together
        from ferkit.data.splits import with_validation_split

        dataset = with_validation_split(dataset, share, seed=cfg.seed)
    if cfg.folds and cfg.folds > 1:
        return train_folds(cfg, dataset)
    train_ds = dataset.split(cfg.train_split)
    try:
        val_ds = dataset.split("val" if share else cfg.val_split) if cfg.val_split else None
    except DataError as exc:  # RAF-DB, CK+, JAFFE ... ship no validation split
        raise DataError(f"{exc}; validate on a share of train with --val-split 0.15, on another split with "
                        f"--val-split NAME, or on none with --val-split ''") from None
    return run(cfg, train_ds, val_ds, dataset.label_names)


def train_folds(cfg: TrainConfig, dataset: FaceDataset) -> dict[str, Any]:
    """K-fold cross-validation on the training split (stratified, a subject's faces in one fold); mean and std of
    the best fold scores."""
    from ferkit.data.splits import kfold

    train_ds = dataset.split(cfg.train_split)
    results = []
    for k, (tr, va) in enumerate(kfold(train_ds, cfg.folds, seed=cfg.seed), start=1):
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
    """Train on ``train_ds`` into the run folder ``cfg.out``, validating on ``val_ds`` (None: no validation)
    after every epoch; returns the summary also written to ``summary.json``."""
    check_config(cfg, has_val=val_ds is not None)  # again for callers that bring their own splits
    if not cfg.in_chans:
        cfg = replace(cfg, in_chans=train_ds.channels)  # colour datasets train colour models unless told
    if train_ds.targets is not None and train_ds.target_mode not in SOFT_TARGET_MODES:
        raise FerkitError(f"the training split's soft labels are in {train_ds.target_mode!r} mode, which the trainer "
                          f"cannot learn from; read the dataset with --label-mode "
                          f"{' or '.join(SOFT_TARGET_MODES)} (or majority for hard labels)")
    ddp, device = setup_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
    mcfg = model_config_for(cfg, label_names)
    parts = build_parts(cfg, mcfg, train_ds, device)
    state = resume(cfg, out, parts) if cfg.resume else TrainState(Plateau(cfg.plateau_patience, cfg.gamma))
    parts.train_model = distribute(parts.model, ddp, device)  # after resume: DDP copies rank 0's weights to all
    if cfg.compile:
        parts.train_model = torch.compile(parts.train_model)
    batches = TrainingBatches(cfg, mcfg, train_ds, device, ddp)
    if parts.teacher is not None and cfg.teacher_mode == "fixed":
        batches.set_teacher(fixed_teacher_probs(
            parts.teacher, clean_batches(train_ds, mcfg, device), len(train_ds), cache=out / "teacher_probs.npz",
            key=teacher_labels_key(cfg), progress=cfg.progress and ddp.main),
            cfg.distill)
        parts.teacher = None  # its work is done: the steps take its probabilities from the batches
    steps = batches.steps
    select_key = selection_key(cfg, val_ds is not None)
    if ddp.main:
        write_run_config(out, cfg, mcfg, len(train_ds), len(val_ds) if val_ds is not None else 0)
    bar = progress_bar(cfg, (cfg.epochs - state.epoch) * steps) if cfg.progress and ddp.main else None
    last_plot = time.monotonic()

    for epoch in range(state.epoch, cfg.epochs):
        torch.manual_seed(epoch_seed(cfg, epoch))  # dropout draws
        parts.train_model.train()
        meter = EpochMeter(world=ddp.world)
        epoch_batches = batches.epoch(epoch)
        for step in range(steps):
            # The one place the rate is set (the plateau schedule's scale moves once an epoch, below).
            lr = cfg.lr * lr_factor(cfg, epoch * steps + step, steps, state.plateau.scale)
            for group in parts.optimizer.param_groups:
                group["lr"] = lr
            with meter.timing("data"):
                x, y, targets = next(epoch_batches)
            if parts.teacher is not None:
                with meter.timing("teacher"):
                    targets = distill_targets(targets, parts.teacher(x), cfg.distill)
            loss, logits = train_step(parts, x, targets)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss} at epoch {epoch + 1}, step {step + 1}; stopped. The last good "
                    f"checkpoint is {out / 'last.pt'}. Try a lower --lr (now {cfg.lr}) or --precision fp32.")
            meter.add(loss, logits, y)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", **meter.postfix(), refresh=False)

        row = {"epoch": epoch + 1, "lr": lr, **meter.train_metrics(teacher=parts.teacher is not None)}
        row.update(end_of_epoch(cfg, parts, mcfg, epoch, train_ds, val_ds))
        row["epoch_s"] = meter.elapsed()  # training and validation
        improved = state.finish_epoch(row, select_key)
        if cfg.schedule == "plateau":
            state.plateau.step(row["val_loss"])  # check_config refuses plateau without validation
        if ddp.main:
            save_checkpoints(out, cfg, mcfg, parts, state, improved)
            # Plotting costs ~0.3 s, a tenth of a GPU epoch: redraw the curves at most every 30 s (and at the end).
            plot = time.monotonic() - last_plot > 30 or epoch + 1 == cfg.epochs
            write_history(out, state.history, plot=plot)
            last_plot = time.monotonic() if plot else last_plot
            log.info("epoch %d/%d %s", epoch + 1, cfg.epochs,
                     " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
        if cfg.early_stop and state.stale >= cfg.early_stop:
            log.info("early stop: no improvement for %d epochs", state.stale)
            if ddp.main:
                write_history(out, state.history, plot=True)
            break

    if bar is not None:
        bar.close()
    summary = run_summary(out, state, select_key)
    if ddp.main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


# ----------------------------------------------------------------------------------------------------------
# What the run is made of


def model_config_for(cfg: TrainConfig, label_names: tuple[str, ...], data_channels: int = 1) -> ModelConfig:
    """The ModelConfig a run's checkpoints carry; ``data_channels`` decides when the run left ``in_chans`` to the
    dataset (0)."""
    chans = cfg.in_chans or data_channels
    return ModelConfig(
        arch=cfg.model, num_classes=len(label_names), in_chans=chans, input_size=cfg.input_size,
        labels=list(label_names), mean=[cfg.mean] * chans, std=[cfg.std] * chans,
        model_kwargs=dict(cfg.model_kwargs), tta=cfg.tta, crop_margin=cfg.crop_margin,
        face_crop=cfg.face_crop,
    )


@dataclass
class Parts:
    """What the steps run and update. ``train_model`` is the module a step calls: ``model`` itself, or wrapped
    for torchrun and torch.compile (checkpoints, validation and the averages use ``model``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    amp_dtype: torch.dtype | None  # None: fp32
    scaler: torch.amp.GradScaler | None = None  # fp16 on CUDA
    class_weights: torch.Tensor | None = None
    sam: SharpnessAware | None = None
    ema: WeightAverage | None = None
    swa: EqualAverage | None = None
    teacher: Teacher | None = None
    train_model: nn.Module = field(init=False)

    def __post_init__(self) -> None:
        self.train_model = self.model


def build_parts(cfg: TrainConfig, mcfg: ModelConfig, train_ds: FaceDataset, device: torch.device) -> Parts:
    torch.manual_seed(cfg.seed)  # the initial weights
    mem = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = prepare_model(cfg, mcfg).to(device).to(memory_format=mem)
    optimizer = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    amp_dtype = autocast_dtype(cfg.precision, device)
    teacher = Teacher(cfg.teacher, mcfg, device, tta=cfg.teacher_tta, amp_dtype=amp_dtype) if cfg.teacher else None
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 and device.type == "cuda" else None
    if cfg.sam and scaler is not None:
        raise FerkitError("--sam climbs along unscaled gradients; use it with --precision bf16 or fp32, not fp16")
    return Parts(
        model, optimizer, device, amp_dtype, scaler=scaler, teacher=teacher,
        class_weights=class_weight_vector(train_ds.labels, mcfg.num_classes).to(device) if cfg.class_weights else None,
        sam=SharpnessAware(model, cfg.sam) if cfg.sam else None,
        ema=WeightAverage(model, cfg.ema) if cfg.ema else None,
        swa=EqualAverage(model) if cfg.swa else None,
    )


def prepare_model(cfg: TrainConfig, mcfg: ModelConfig) -> nn.Module:
    model = build_model(mcfg)
    if cfg.pretrained:
        from ferkit.models.pretrained import load_pretrained

        load_pretrained(model, cfg.pretrained, in_chans=mcfg.in_chans, num_classes=mcfg.num_classes)
    if cfg.finetune:
        ckpt = load_checkpoint(cfg.finetune)
        other = ModelConfig.from_dict(ckpt["config"])
        if other.arch == ENSEMBLE_ARCH:
            n = len(other.model_kwargs.get("members", []))
            raise FerkitError(
                f"--finetune {cfg.finetune} is an ensemble of {n} networks, which cannot be fine-tuned as one "
                f"network; fine-tune one of its members ({member_range(cfg.finetune, n)}), or use it as --teacher"
            )
        if other.arch != mcfg.arch or other.labels != mcfg.labels:
            raise FerkitError(
                f"--finetune {cfg.finetune} holds arch {other.arch!r} for labels {other.labels}; this run trains "
                f"{mcfg.arch!r} for labels {mcfg.labels}"
            )
        load_state_dict_checked(model, ckpt["state_dict"], source=cfg.finetune)
    if cfg.freeze:
        from ferkit.models.pretrained import freeze_blocks

        freeze_blocks(model, cfg.freeze)
    return model


def resume(cfg: TrainConfig, out: Path, parts: Parts) -> TrainState:
    """Continue from ``out/last.pt``: its weights, optimiser and averages into ``parts``, its TrainState returned
    (a fresh one, with a warning, when there is no last.pt yet)."""
    plateau = Plateau(cfg.plateau_patience, cfg.gamma)
    path = out / "last.pt"
    if not path.exists():
        log.warning("--resume: no %s yet, starting from scratch", path)
        return TrainState(plateau)
    ckpt = load_checkpoint(path)
    load_state_dict_checked(parts.model, ckpt["state_dict"], source=str(path))
    state = TrainState.from_dict(ckpt["train_state"], plateau)
    parts.optimizer.load_state_dict(state.optimizer)
    torch.set_rng_state(state.torch_rng)
    if parts.ema is not None and state.ema is not None:
        parts.ema.load_state_dict(state.ema)
    elif parts.ema is not None:
        log.warning("--ema: %s holds no weight average; starting one from its weights", path)
        parts.ema = WeightAverage(parts.model, cfg.ema)
    if parts.swa is not None and state.swa is not None:
        parts.swa.load_state_dict(state.swa)
    elif parts.swa is not None and state.epoch > cfg.epochs - cfg.swa:
        raise FerkitError(f"--swa {cfg.swa}: {path} is past epoch {cfg.epochs - cfg.swa}, where the average "
                          f"starts, but holds no average; resume without --swa or start afresh")
    log.info("resumed %s at epoch %d (best %.4f)", out, state.epoch + 1, state.best)
    return state


def progress_bar(cfg: TrainConfig, total_steps: int):
    from tqdm import tqdm

    return tqdm(total=total_steps, unit="step", dynamic_ncols=True, desc=f"train {cfg.model}")


# ----------------------------------------------------------------------------------------------------------
# A step


def train_step(parts: Parts, x: torch.Tensor, targets: torch.Tensor) -> tuple[float, torch.Tensor]:
    """One optimiser step on a batch: forward, loss, backward, step, and the weight average taking in the new
    weights. Returns the loss (the caller stops on a non-finite one) and the logits."""
    try:
        with mixed_precision(parts.device, parts.amp_dtype):
            logits = parts.train_model(x)
        loss = soft_cross_entropy(logits, targets, parts.class_weights)
        parts.optimizer.zero_grad(set_to_none=True)
        if parts.scaler is not None:  # fp16: the loss is scaled up so that small gradients do not flush to zero
            parts.scaler.scale(loss).backward()
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
        else:
            loss.backward()
            if parts.sam is not None:
                sharpness_aware_gradient(parts, x, targets)
            parts.optimizer.step()
        if parts.ema is not None:
            parts.ema.update(parts.model)
    except torch.OutOfMemoryError as exc:
        raise FerkitError(f"out of memory at batch size {len(x)}; try --batch-size {max(1, len(x) // 2)}") from exc
    return loss.item(), logits


def sharpness_aware_gradient(parts: Parts, x: torch.Tensor, targets: torch.Tensor) -> None:
    """Replace the gradient at the weights with the one at the worst point within rho of them (SAM); the
    optimiser then steps the weights themselves."""
    parts.sam.climb()
    with frozen_batchnorm_statistics(parts.train_model), mixed_precision(parts.device, parts.amp_dtype):
        sharp_loss = soft_cross_entropy(parts.train_model(x), targets, parts.class_weights)
    parts.optimizer.zero_grad(set_to_none=True)
    sharp_loss.backward()
    parts.sam.return_back()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    loss = -(targets * F.log_softmax(logits.float(), dim=1)).sum(1)
    if class_weights is not None:
        loss = loss * (targets @ class_weights)
    return loss.mean()


class EpochMeter:
    """Running loss and accuracy of an epoch's training steps, and where its time went."""

    def __init__(self, world: int):
        self.world, self.start = world, time.perf_counter()
        self.seen, self.loss_sum, self.correct = 0, 0.0, 0
        self.seconds = {"data": 0.0, "teacher": 0.0}

    @contextmanager
    def timing(self, part: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[part] += time.perf_counter() - t0

    def add(self, loss: float, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.seen += len(y)
        self.loss_sum += loss * len(y)
        self.correct += int((logits.argmax(1) == y).sum())

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def postfix(self) -> dict[str, str]:
        return {"loss": f"{self.loss_sum / self.seen:.3f}", "img_s": f"{self.seen * self.world / self.elapsed():.0f}"}

    def train_metrics(self, teacher: bool) -> dict[str, float]:
        seconds = self.elapsed()
        row = {"train_loss": self.loss_sum / self.seen, "train_accuracy": self.correct / self.seen,
               "images_per_s": self.seen * self.world / seconds, "data_share": self.seconds["data"] / seconds,
               "epoch_s": seconds}
        if teacher:
            row["teacher_share"] = self.seconds["teacher"] / seconds
        return row


# ----------------------------------------------------------------------------------------------------------
# The end of an epoch


def end_of_epoch(cfg: TrainConfig, parts: Parts, mcfg: ModelConfig, epoch: int, train_ds: FaceDataset,
                 val_ds: FaceDataset | None) -> dict[str, float]:
    """Validation metrics of the weights and of their average. In the last ``--swa`` epochs the average first
    takes in this epoch's weights and gets batch-norm statistics recomputed for them on the training faces."""
    row: dict[str, float] = {}
    if val_ds is not None:
        row.update(validate(parts.model, mcfg, val_ds, parts.device, tta=cfg.tta))
        if parts.ema is not None:
            row.update(validate(parts.ema.module, mcfg, val_ds, parts.device, tta=cfg.tta, prefix="ema_val"))
    if parts.swa is not None and epoch >= cfg.epochs - cfg.swa:
        parts.swa.update(parts.model)
        t0 = time.perf_counter()
        with mixed_precision(parts.device, parts.amp_dtype):
            recompute_batchnorm(parts.swa.module, clean_batches(train_ds, mcfg, parts.device))
        row["swa_bn_s"], row["swa_epochs"] = time.perf_counter() - t0, parts.swa.updates
        if val_ds is not None:
            row.update(validate(parts.swa.module, mcfg, val_ds, parts.device, tta=cfg.tta, prefix="swa_val"))
    return row


def teacher_labels_key(cfg: TrainConfig) -> str:
    """What a fixed teacher's stored labels depend on: the teacher's bytes (a shipped name is replaced by a new
    release under the same name), its TTA and the training faces."""
    from ferkit.models.checkpoint import checkpoint_digest

    teacher = checkpoint_digest(cfg.teacher)
    return f"{teacher}|{cfg.teacher_tta}|{cfg.data}|{cfg.train_split}|{cfg.val_split}|{cfg.drop}|{cfg.data_options}"


def selection_key(cfg: TrainConfig, has_val: bool) -> str:
    """The metrics column best.pt is chosen on: validation accuracy of the weights best.pt holds (the weight
    average with --ema or --swa), under the TTA the checkpoint will be used with, so best.pt is best as shipped."""
    prefix = "ema_" if cfg.ema else "swa_" if cfg.swa else ""
    if not has_val:
        return "swa_epochs" if cfg.swa else "train_accuracy"  # --swa without validation: the last average wins
    return prefix + "val_accuracy" + ("_tta" if cfg.tta != "none" else "")


def clean_batches(ds: FaceDataset, mcfg: ModelConfig, device: torch.device,
                  batch_size: int = 256) -> Iterator[torch.Tensor]:
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
        averaged[sl] = F.softmax(adaptive_mean(logits) if tta == "adaptive" else logits.mean(0), dim=1).cpu().numpy()
    p_true = np.clip(plain[np.arange(len(y)), y], 1e-12, 1.0)
    row = {f"{prefix}_loss": float(-np.log(p_true).mean()), f"{prefix}_accuracy": float((plain.argmax(1) == y).mean())}
    if tta != "none":
        row[f"{prefix}_accuracy_tta"] = float((averaged.argmax(1) == y).mean())
    return row


def save_checkpoints(out: Path, cfg: TrainConfig, mcfg: ModelConfig, parts: Parts, state: TrainState,
                     improved: bool) -> None:
    """best.pt when the epoch just finished is the best so far (holding the weight average when there is one),
    and last.pt, the weights with everything ``--resume`` needs, after every epoch."""
    meta = {"epoch": state.epoch, "metrics": state.history[-1], "command": cfg.command, "ferkit": __version__}
    if improved:
        average = parts.ema if parts.ema is not None else parts.swa
        save_checkpoint(out / "best.pt", average.module if average is not None else parts.model, mcfg, meta=meta)
    state.optimizer = parts.optimizer.state_dict()
    state.ema = parts.ema.state_dict() if parts.ema is not None else None
    state.swa = parts.swa.state_dict() if parts.swa is not None and parts.swa.updates else None
    state.torch_rng = torch.get_rng_state()
    save_checkpoint(out / "last.pt", parts.model, mcfg, meta=meta,
                    train_state={**state.to_dict(), "config": cfg.to_dict()})


def run_summary(out: Path, state: TrainState, select_key: str) -> dict[str, Any]:
    history = state.history
    best_epoch = 1 + int(np.argmax([h.get(select_key, -1.0) for h in history])) if history else 0
    return {"run_dir": str(out), "best_val_accuracy": state.best, "selected_on": select_key,
            "epochs_run": len(history), "best_epoch": best_epoch,
            "train_seconds": float(sum(h["epoch_s"] for h in history))}


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
