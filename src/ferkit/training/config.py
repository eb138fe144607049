"""What a training run is told: the TrainConfig dataclass, the named recipes (``--recipe``), and check_config,
which refuses settings that cannot train before any data is read."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ferkit.devices import resolve_device
from ferkit.errors import FerkitError
from ferkit.models import get_entry
from ferkit.training.averaging import check_decay, check_swa
from ferkit.training.distill import check_mode, check_weight
from ferkit.training.sam import check_rho
from ferkit.transforms.augment import AugmentConfig
from ferkit.transforms.occlusion import check_mask
from ferkit.transforms.views import check_tta

SCHEDULES = ("onecycle", "cosine", "step", "plateau", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    data: str = ""
    out: str = "runs/ferkit"
    model: str = "fernet"
    input_size: int = 48
    in_chans: int = 0  # 0: the dataset's channels (1 for gray faces, 3 for colour)
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
    early_stop: int = 0  # stop after this many epochs in a row without a better best.pt (0: never)
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
    # A split name ("val" is FER2013's publictest), a share of train to validate on instead ("0.15": stratified,
    # seeded, whole subjects together), or "" for no validation.
    val_split: str = "val"
    data_options: dict[str, Any] = field(default_factory=dict)  # load_dataset keywords: format, size, colour, ...
    pretrained: str | None = None  # ImageNet state dict file (torchvision names)
    finetune: str | None = None  # ferkit checkpoint to start from
    teacher: str | None = None  # distil from this checkpoint, shipped name or ensemble (ferkit.training.distill)
    distill: float = 0.5  # the teacher's share of each training target
    teacher_tta: str = "none"  # TTA the teacher averages over (flip doubles its cost)
    teacher_mode: str = "online"  # online: it sees each augmented batch; fixed: it labels each clean face once
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


def check_config(cfg: TrainConfig, has_val: bool | None = None) -> None:
    """Refuse settings that cannot train before any data is read or any step taken: most of them would
    otherwise surface as a traceback, or silently train something else, minutes or an epoch into the run.
    ``has_val``: whether the run validates (default: what ``cfg`` says; cross-validation always does)."""

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
    need(cfg.step_size >= 1 and cfg.plateau_patience >= 1,
         f"--step-size and --plateau-patience count epochs, 1 or more; got {cfg.step_size} and {cfg.plateau_patience}")
    need(cfg.in_chans in (0, 1, 3), f"--in-chans is 1 (gray), 3 (colour) or 0 (the dataset's); got {cfg.in_chans}")
    share = val_share(cfg.val_split)
    need(share is None or 0 < share < 1,
         f"--val-split is a split name or the share of train to validate on, in (0, 1); got {cfg.val_split}")
    if has_val is None:
        has_val = bool(cfg.val_split) or cfg.folds > 1
    need(cfg.schedule != "plateau" or has_val,
         "--schedule plateau decays the rate when the validation loss stops falling, and this run has no "
         "validation data; give a --val-split or choose another schedule")
    check_tta(cfg.tta, "--tta")
    for mask in cfg.train_masks:
        check_mask(mask)
    if cfg.teacher:
        check_tta(cfg.teacher_tta, "--teacher-tta")
        check_weight(cfg.distill)
        check_mode(cfg.teacher_mode)
    check_decay(cfg.ema)
    check_swa(cfg.epochs, cfg.swa, cfg.ema)
    check_rho(cfg.sam)
    if cfg.device != "auto":
        resolve_device(cfg.device)


def val_share(val_split: str) -> float | None:
    """The share of train to validate on when ``val_split`` is a number ("0.15"), else None (a split name)."""
    try:
        return float(val_split)
    except (TypeError, ValueError):
        return None
