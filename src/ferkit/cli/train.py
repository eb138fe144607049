"""`ferkit train`: train any registered model on any supported dataset."""
from __future__ import annotations

import argparse

from ferkit.cli.data import DATA_HELP, add_dataset_options, dataset_options
from ferkit.transforms.views import TTA_MODES

# Flags that map one-to-one onto TrainConfig fields: (flag, type, help).
_FIELDS = [
    ("model", str, "architecture (see `ferkit models`)"),
    ("input-size", int, "model input side in pixels"),
    ("in-chans", int, "input channels: 1 gray, 3 RGB (default: the dataset's)"),
    ("epochs", int, "number of epochs"),
    ("batch-size", int, "batch size (per process under torchrun)"),
    ("optimizer", str, "sgd, adam, adamw or rmsprop"),
    ("lr", float, "peak learning rate"),
    ("momentum", float, "SGD/RMSprop momentum"),
    ("weight-decay", float, "L2 weight decay"),
    ("schedule", str, "onecycle, cosine, step, plateau or constant"),
    ("warmup-epochs", float, "linear warm-up length"),
    ("step-size", int, "step schedule: epochs between decays"),
    ("gamma", float, "step/plateau decay factor"),
    ("plateau-patience", int, "plateau schedule: epochs without a lower validation loss before the rate is "
                              "multiplied by --gamma (needs validation data)"),
    ("early-stop", int, "stop after N epochs in a row without a better best.pt (0: never)"),
    ("label-smoothing", float, "label smoothing epsilon"),
    ("mixup", float, "mixup Beta alpha (0: off)"),
    ("cutmix", float, "cutmix Beta alpha (0: off)"),
    ("mix-prob", float, "probability that a batch is mixed"),
    ("occlusion", float, "probability of a random occlusion per image (robust training)"),
    ("mask-prob", float, "with --train-masks: share of images masked"),
    ("tta", str, f"test-time augmentation stored for inference: {', '.join(TTA_MODES)}"),
    ("crop-margin", float, "face-crop margin stored for the face pipeline"),
    ("face-crop", float, "centre share of each face the model sees, e.g. 0.8333 for 40-of-48 px crops (1: all)"),
    ("precision", str, "auto, fp32, bf16 or fp16"),
    ("seed", int, "random seed"),
    ("train-split", str, "split to train on"),
    ("val-split", str, "split to validate and select on (default val: FER2013's publictest), or the share of train to "
                       "validate on instead, e.g. 0.15 (stratified, seeded, whole subjects together); '' for none"),
    ("pretrained", str, "ImageNet state dict file (torchvision parameter names)"),
    ("finetune", str, "ferkit checkpoint to start from"),
    ("teacher", str, "distil from this checkpoint, shipped model name or ensemble ('none': no teacher)"),
    ("distill", float, "with --teacher: the teacher's share of each target (0-1, default 0.5)"),
    ("teacher-tta", str, f"with --teacher: TTA the teacher averages over ({', '.join(TTA_MODES)})"),
    ("teacher-mode", str, "with --teacher: online (it sees each augmented batch, default) or fixed (it labels "
                          "every training face once, unaugmented: for a teacher TTA dearer than a training step)"),
    ("ema", float, "keep an average of the weights with this decay per step, e.g. 0.9995 (0: off); best.pt holds it"),
    ("swa", int, "stochastic weight averaging: average the weights at the end of each of the last N epochs "
                 "(give them a constant --schedule); best.pt holds the average (0: off)"),
    ("sam", float, "sharpness-aware minimisation with this radius rho, e.g. 0.05 (0: off); each step costs two "
                   "forward and backward passes"),
    ("freeze", int, "freeze the first N blocks (batch norm stays trainable)"),
    ("folds", int, "K-fold cross-validation on the training split (stratified, a subject's faces in one fold)"),
    ("device", str, "auto, cpu, cuda"),
    ("threads", int, "CPU threads (0: torch default)"),
    ("limit-steps", int, "at most N steps per epoch (smoke runs)"),
]
_AUGMENT = [
    ("hflip", "probability of a horizontal flip"), ("rotate", "max rotation, degrees"),
    ("shift", "max shift, fraction of the side"), ("zoom", "zoom range +-"), ("shear", "max shear, degrees"),
    ("erase", "random-erasing probability"),
]


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model", description="Train a model; writes a run folder with "
                       "best.pt, last.pt, metrics.csv, curves.png and config.json.")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--recipe", help="start from a named recipe: default, fast, baseline, vgg")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    for flag, typ, text in _FIELDS:
        p.add_argument(f"--{flag}", type=typ, help=text)
    for flag, text in _AUGMENT:
        p.add_argument(f"--{flag}", type=float, help=f"augmentation: {text}")
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--class-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="inverse-frequency class-weighted loss")
    p.add_argument("--oversample", action=argparse.BooleanOptionalAction, default=None,
                   help="draw minority classes more often")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    p.add_argument("--train-masks", help="comma-separated occlusion masks to fine-tune on, e.g. upper,lower")
    p.add_argument("--drop", help="comma-separated quality filters for the training set: duplicates,leaks,blanks")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    add_dataset_options(p, val_split=False)  # the trainer's own --val-split and --seed take a share too
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    import shlex
    import sys
    from dataclasses import replace

    from ferkit.errors import FerkitError
    from ferkit.training.config import RECIPES, TrainConfig

    values: dict = {}
    if args.recipe:
        if args.recipe not in RECIPES:
            raise FerkitError(f"unknown recipe {args.recipe!r}; choose one of {', '.join(RECIPES)}")
        values.update(RECIPES[args.recipe])
    for flag, _, _ in _FIELDS:
        name = flag.replace("-", "_")
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for name in ("nesterov", "class_weights", "oversample", "compile"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if values.get("teacher") in ("", "none"):  # switch off a recipe's teacher
        values["teacher"] = None
    if args.train_masks:
        values["train_masks"] = [m.strip() for m in args.train_masks.split(",") if m.strip()]
    if args.drop:
        values["drop"] = [d.strip() for d in args.drop.split(",") if d.strip()]
    cfg = TrainConfig(**values, data=args.data, data_options=dataset_options(args, val_split=False), out=args.out, resume=args.resume,
                      progress=not args.no_progress, command="ferkit " + shlex.join(sys.argv[1:]))
    aug = {flag: getattr(args, flag) for flag, _ in _AUGMENT if getattr(args, flag) is not None}
    if aug:
        cfg.augment = replace(cfg.augment, **aug)
    return cfg


def run(args: argparse.Namespace) -> int:
    import json

    from ferkit.deps import require

    require("torch", "sklearn", "matplotlib", for_what="training")
    from ferkit.training.loop import train

    summary = train(build_config(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    elif "mean_accuracy" in summary:
        print(f"{summary['folds']}-fold CV accuracy: {summary['mean_accuracy']:.4f} +- {summary['std_accuracy']:.4f} "
              f"(folds: {', '.join(f'{a:.4f}' for a in summary['fold_accuracy'])})")
        print(f"runs in {summary['run_dir']}")
    else:
        print(f"best validation accuracy {summary['best_val_accuracy']:.4f} at epoch {summary['best_epoch']} "
              f"({summary['epochs_run']} epochs, {summary['train_seconds'] / 60:.1f} min)")
        print(f"run folder: {summary['run_dir']} (best.pt, last.pt, metrics.csv, curves.png, config.json)")
    return 0
