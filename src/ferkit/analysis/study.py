"""Occlusion studies: fine-tune one copy of a model per mask, evaluate every model under every mask.

This reproduces the trained-on x evaluated-on table of the published occlusion studies on FER2013: a base model trained on full faces, one
fine-tuned copy per mask (each on full faces plus faces with that region hidden), and every model evaluated
on the test set with each region hidden. Optional extra rows (``extra``, e.g. a model trained with random
occlusion) are evaluated the same way without fine-tuning.

The full FER2013 study with ferkit's default architecture (the ``default`` recipe: ``fernet`` at 40 px),
training the base first (40 epochs), then 10 fine-tune epochs per mask, evaluating on the whole test set
(7,178 images); run from the repository root::

    ferkit study --data ../shared/data/fer2013.zip --train-base --recipe default \\
        --finetune upper,lower,right,left --evaluate full,upper,lower,right,left,forehead,eyes,mouth \\
        --eval-split test --out runs/study-fer2013

(with an already trained base, ``--base runs/fernet/best.pt`` replaces ``--train-base --recipe default``).
The command is resumable: run it again with the same arguments after an interruption.

Layout of ``OUT``::

    base/                 the base run when trained here (--train-base)
    finetune-<mask>/      one trainer run folder per fine-tuned copy
    cells/<model>__<condition>.json   one finished evaluation each (the cache that makes resuming cheap)
    matrix.csv, matrix.md, heatmap_<metric>.png, per_class.csv,
    region_importance.md, region_importance.json, study.json

Choices worth knowing (each has a why):

* Fine-tune recipe (as in those studies): the base's optimiser, weight decay 5e-4. The learning rate is the base's peak
  rate times ``finetune_lr_scale`` (0.1) on a cosine schedule without warm-up: restarting the base's
  one-cycle peak would first undo much of what the base learned.
* Fine-tunes keep their *last* checkpoint, not the best: the trainer selects ``best.pt`` on full-face
  validation accuracy, which would favour the epoch closest to the base and hide what masked training did.
* Evaluation uses no test-time augmentation by default: a horizontal flip turns a left-masked face into a
  right-masked one, which would blur exactly the left/right distinction the study measures.
* ``full`` is always evaluated: it is the reference every drop (and the region-importance summary) is
  measured against.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferkit.models.checkpoint import (MEMBER_MARK, ModelConfig, checkpoint_digest, load_checkpoint, load_model,
                                     member_range, resolve_checkpoint, split_member)
from ferkit.data.dataset import FaceDataset
from ferkit.devices import resolve_device
from ferkit.errors import FerkitError
from ferkit.paths import sha256_file
from ferkit.models.ensemble import ARCH as ENSEMBLE_ARCH
from ferkit.evaluation.evaluate import evaluate_model
from ferkit.transforms.occlusion import MASKS
from ferkit.training.config import RECIPES, TrainConfig
from ferkit.training.loop import model_config_for, train
from ferkit.transforms.views import check_tta

log = logging.getLogger(__name__)

#: Metrics of the study table, in table order, with their display names.
METRICS: dict[str, str] = {
    "accuracy": "accuracy", "macro_f1": "macro F1", "weighted_f1": "weighted F1",
    "weighted_auc": "weighted AUC", "micro_auc": "micro AUC", "macro_auc": "macro AUC",
}
DEFAULT_FINETUNE: tuple[str, ...] = ("upper", "lower", "right", "left")
DEFAULT_EVALUATE: tuple[str, ...] = ("full", "upper", "lower", "right", "left")
FINETUNE_WEIGHT_DECAY = 5e-4  # the published studies' fine-tune recipe
QUICK_STEPS = 20  # --quick: training steps per epoch
QUICK_EVAL = 500  # --quick: evaluation images per cell
# Relative cost of one training image (forward + backward) against one evaluation image (forward only); the
# progress bar weighs fine-tunes and cells by it so that its ETA means something.
TRAIN_COST = 3.0
# TrainConfig fields that describe where or how verbosely a run happens, not what it learns: a finished run
# is reused whatever these say.
_VOLATILE = ("data", "out", "resume", "progress", "command", "device", "threads", "drop")


@dataclass
class StudyConfig:
    data: str = ""
    out: str = "runs/study"
    base: str | None = None  # checkpoint of the model trained on full faces
    train_base: bool = False  # ... or train it first, into OUT/base
    model: str | None = None  # --train-base: architecture (default: the recipe's)
    recipe: str = "default"  # --train-base: trainer recipe; also the fallback fine-tune recipe
    base_epochs: int | None = None  # --train-base: epochs (default: the recipe's)
    finetune: list[str] = field(default_factory=lambda: list(DEFAULT_FINETUNE))
    evaluate: list[str] = field(default_factory=lambda: list(DEFAULT_EVALUATE))
    eval_split: str = "test"  # the table uses the whole test set
    epochs: int | None = None  # fine-tune epochs (default 10; 1 with quick)
    finetune_lr_scale: float = 0.1
    mask_prob: float = 0.5  # share of fine-tune images masked; the rest stay full faces
    extra: list[str] = field(default_factory=list)  # more rows: "CKPT" or "NAME=CKPT", evaluated as they are
    tta: str = "none"
    eval_limit: int = 0  # evaluate on a fixed random subset of this many images (0: all)
    limit_steps: int = 0  # at most this many training steps per epoch (0: all)
    quick: bool = False  # smoke run: QUICK_STEPS steps per epoch, QUICK_EVAL images per cell, 1 epoch
    seed: int = 0
    batch_size: int = 256  # evaluation batch size
    device: str = "auto"
    threads: int = 0
    progress: bool = True
    command: str = ""

    def resolved(self) -> "StudyConfig":
        """A copy with --quick and the defaults that depend on it filled in, and the mask lists checked."""
        cfg = StudyConfig(**asdict(self))
        if cfg.base and cfg.train_base:
            raise FerkitError("give either --base CKPT or --train-base, not both")
        if not cfg.base and not cfg.train_base:
            raise FerkitError("a study needs a base model: give --base CKPT (a checkpoint trained on full faces) "
                              "or --train-base to train one first (with --recipe/--model/--base-epochs)")
        if cfg.recipe not in RECIPES:
            raise FerkitError(f"unknown recipe {cfg.recipe!r}; choose one of {', '.join(RECIPES)}")
        cfg.finetune = _check_masks(cfg.finetune, "--finetune", allow_full=False)
        cfg.evaluate = _check_masks(cfg.evaluate, "--evaluate", allow_full=True)
        if "full" not in cfg.evaluate:
            log.info("adding 'full' to the evaluated conditions: it is the reference for every drop")
            cfg.evaluate.insert(0, "full")
        if cfg.epochs is None:
            cfg.epochs = 1 if cfg.quick else 10
        if cfg.epochs < 1:
            raise FerkitError(f"--epochs must be at least 1, got {cfg.epochs}")
        if cfg.finetune_lr_scale <= 0 or cfg.eval_limit < 0:
            raise FerkitError(f"--lr-scale must be positive and --eval-limit 0 or more (0: the whole split); got "
                              f"{cfg.finetune_lr_scale} and {cfg.eval_limit}")
        check_tta(cfg.tta, "--tta")  # used only when evaluating, after the fine-tunes
        if cfg.quick:
            cfg.limit_steps = cfg.limit_steps or QUICK_STEPS
            cfg.eval_limit = cfg.eval_limit or QUICK_EVAL
            cfg.base_epochs = cfg.base_epochs or 1
        return cfg


def _check_masks(names: list[str], flag: str, allow_full: bool) -> list[str]:
    valid = [m for m in MASKS if allow_full or m != "full"]
    unknown = [m for m in names if m not in valid]
    if unknown:
        hint = " ('full' is the base model itself, the first row)" if "full" in unknown and not allow_full else ""
        raise FerkitError(f"{flag}: unknown mask {', '.join(map(repr, unknown))}{hint}; valid masks: "
                          f"{', '.join(valid)}")
    return list(dict.fromkeys(names))  # drop repeats, keep order


@dataclass
class StudyModel:
    """One row of the table."""

    key: str  # file-safe id: base, finetune-upper, extra-robust
    label: str  # row label: full, full + upper, robust
    checkpoint: str
    kind: str  # base, finetune, extra
    mask: str | None = None


@dataclass
class StudyResult:
    out: Path
    models: list[StudyModel]
    conditions: list[str]
    cells: dict[tuple[str, str], dict[str, Any]]  # (model key, condition) -> evaluation metrics
    region_importance: dict[str, Any]
    split: str
    n: int
    seconds: float
    subsampled: bool = False  # evaluated on a random subset of the split (--quick, eval_limit)
    files: list[Path] = field(default_factory=list)

    def matrix(self, metric: str = "accuracy") -> np.ndarray:
        """Rows = models (trained on), columns = conditions (evaluated on); NaN where a metric is undefined."""
        return np.array([[_num(self.cells[m.key, c].get(metric)) for c in self.conditions] for m in self.models])

    def value(self, model: str, condition: str, metric: str = "accuracy") -> float:
        """A cell by model key or row label."""
        key = next((m.key for m in self.models if model in (m.key, m.label)), model)
        return _num(self.cells[key, condition].get(metric))


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def condition_label(condition: str) -> str:
    return "full" if condition == "full" else f"{condition} masked"


# ---------------------------------------------------------------------------------------------------------
# Pieces


def base_train_config(checkpoint: str | Path, recipe: str) -> TrainConfig:
    """The TrainConfig the base was trained with: its run folder's config.json, else the train state in a
    last.pt, else the recipe (a checkpoint from elsewhere carries only its model config)."""
    path = Path(checkpoint)
    run_config = path.parent / "config.json"
    if run_config.exists():
        info = json.loads(run_config.read_text())
        if isinstance(info.get("train"), dict):
            return TrainConfig.from_dict(info["train"])
    state = load_checkpoint(checkpoint).get("train_state") or {}
    if isinstance(state.get("config"), dict):
        return TrainConfig.from_dict(state["config"])
    log.info("%s has no training config beside it; fine-tuning with recipe %r's optimiser", checkpoint, recipe)
    return TrainConfig(**RECIPES[recipe])


def finetune_config(cfg: StudyConfig, base: TrainConfig, mcfg: ModelConfig, base_ckpt: str, mask: str,
                    out: Path) -> TrainConfig:
    """The studies' fine-tune recipe: the base's optimiser and data pipeline, weight decay 5e-4, full + ``mask`` faces."""
    values = base.to_dict()
    values.update(
        # The model must be the base's exactly, whatever its training config said.
        model=mcfg.arch, input_size=mcfg.input_size, in_chans=mcfg.in_chans, model_kwargs=dict(mcfg.model_kwargs),
        mean=mcfg.mean[0], std=mcfg.std[0], tta=mcfg.tta, crop_margin=mcfg.crop_margin,
        face_crop=mcfg.face_crop,
        finetune=str(base_ckpt), pretrained=None, freeze=0, folds=0, early_stop=0,
        epochs=cfg.epochs, lr=base.lr * cfg.finetune_lr_scale, weight_decay=FINETUNE_WEIGHT_DECAY,
        schedule="cosine", warmup_epochs=0.0, train_masks=[mask], mask_prob=cfg.mask_prob, occlusion=0.0,
        limit_steps=cfg.limit_steps, seed=cfg.seed,
        data=cfg.data, out=str(out), progress=cfg.progress, device=cfg.device, threads=cfg.threads,
        command=cfg.command,
    )
    return TrainConfig.from_dict(values)


def base_train_config_new(cfg: StudyConfig, out: Path) -> TrainConfig:
    values = dict(RECIPES[cfg.recipe])
    if cfg.model:
        values["model"] = cfg.model
    if cfg.base_epochs:
        values["epochs"] = cfg.base_epochs
    return TrainConfig(**values, limit_steps=cfg.limit_steps, seed=cfg.seed, data=cfg.data, out=str(out),
                       progress=cfg.progress, device=cfg.device, threads=cfg.threads, command=cfg.command)


def _learning_part(tc: TrainConfig) -> dict[str, Any]:
    d = tc.to_dict()
    for k in _VOLATILE:
        d.pop(k, None)
    return json.loads(json.dumps(d))  # tuples -> lists, as config.json holds them


def run_state(tc: TrainConfig, checkpoint: str) -> str:
    """'done' (reuse), 'partial' (resume from last.pt) or 'new'; a folder holding a different run is an error
    rather than something to overwrite."""
    out = Path(tc.out)
    config = out / "config.json"
    if config.exists():
        theirs = json.loads(config.read_text()).get("train", {})
        ours = _learning_part(tc)
        theirs = {k: v for k, v in theirs.items() if k in ours}
        changed = sorted(k for k in ours if ours[k] != theirs.get(k))
        if changed:
            raise FerkitError(
                f"{out} holds a run with other settings ({', '.join(changed)} differ); give another --out, or "
                f"delete {out} to train it again"
            )
    if (out / "summary.json").exists() and (out / checkpoint).exists():
        return "done"
    return "partial" if (out / "last.pt").exists() else "new"


def train_cost(tc: TrainConfig, n_train: int) -> float:
    steps = n_train // tc.batch_size
    if tc.limit_steps:
        steps = min(steps, tc.limit_steps)
    return TRAIN_COST * tc.epochs * steps * tc.batch_size


def eval_subset(split: FaceDataset, limit: int, seed: int) -> FaceDataset:
    """A fixed random subset (sorted, so the same images in the same order on every run)."""
    if not limit or limit >= len(split):
        return split
    index = np.sort(np.random.default_rng(seed).choice(len(split), limit, replace=False))
    return split.subset(index)


def parse_extra(spec: str) -> tuple[str, str]:
    """'NAME=CKPT' or 'CKPT' -> (name, checkpoint); a bare path is named after its run folder."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        return name.strip(), path.strip()
    path = Path(spec)
    name = path.parent.name if path.stem in ("best", "last") and path.parent.name else path.stem
    return name or spec, spec


def region_importance(result_cells: dict[tuple[str, str], dict[str, Any]], model: StudyModel,
                      conditions: list[str]) -> dict[str, Any]:
    """For each emotion: the per-class recall drop (vs full faces) under each hidden region, and the worst."""
    full = result_cells[model.key, "full"]["per_class"]
    hidden = [c for c in conditions if c != "full"]
    per_class: dict[str, Any] = {}
    for emotion, row in full.items():
        if not row["support"]:
            continue  # no faces of this class in the evaluated split: nothing to measure
        drops = {c: row["recall"] - result_cells[model.key, c]["per_class"][emotion]["recall"] for c in hidden}
        worst = max(drops, key=drops.get) if drops else None
        if worst is not None and drops[worst] <= 0:
            worst = None  # hiding nothing hurt this class: no region to blame
        per_class[emotion] = {"recall_full": row["recall"], "support": row["support"], "drops": drops,
                              "worst": worst, "worst_drop": drops[worst] if worst else None}
    return {"model": model.label, "checkpoint": model.checkpoint, "metric": "recall (per-class accuracy)",
            "per_class": per_class}


# ---------------------------------------------------------------------------------------------------------
# The study


def run_study(cfg: StudyConfig, dataset: FaceDataset | None = None) -> StudyResult:
    """Run (or resume) the study ``cfg`` describes; writes everything into ``cfg.out``."""
    t0 = time.perf_counter()
    cfg = cfg.resolved()
    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # Everything that can fail on user input fails here, before hours of training.
    extras = [parse_extra(s) for s in cfg.extra]
    names = [n for n, _ in extras]
    reserved = {"full"} | {f"full + {m}" for m in cfg.finetune}
    clash = sorted({n for n in names if names.count(n) > 1 or n in reserved})
    if clash:
        raise FerkitError(f"--robust: row names {', '.join(clash)} are taken; name them with NAME=CKPT")
    for _, path in extras:
        load_checkpoint(path)  # a missing or foreign file fails now
    base_run: TrainConfig | None = None
    if cfg.base:
        _, member = split_member(cfg.base)  # a member of an ensemble stays that member
        base_ckpt = str(resolve_checkpoint(cfg.base).resolve()) + ("" if member is None else f"{MEMBER_MARK}{member}")
        base_tc = base_train_config(base_ckpt, cfg.recipe)
    else:
        base_run = base_train_config_new(cfg, out / "base")
        base_ckpt, base_tc = str((out / "base" / "best.pt").resolve()), base_run
    if dataset is None:
        from ferkit.data import load_dataset

        dataset = load_dataset(cfg.data, drop=tuple(base_tc.drop))
    labels = list(dataset.label_names)
    n_train = len(dataset.split(base_tc.train_split))
    whole = dataset.split(cfg.eval_split)
    split = eval_subset(whole, cfg.eval_limit, cfg.seed)
    if cfg.base:
        mcfg = ModelConfig.from_dict(load_checkpoint(base_ckpt)["config"])
        if list(mcfg.labels) != labels:
            raise FerkitError(f"the base {cfg.base} predicts {mcfg.labels} but the dataset is labelled {labels}")
        if mcfg.arch == ENSEMBLE_ARCH and cfg.finetune:  # said now, not after the first fine-tune has started
            n = len(mcfg.model_kwargs.get("members", []))
            raise FerkitError(f"--base {cfg.base} is an ensemble of {n} networks, which cannot be fine-tuned as one "
                              f"network; give one of its members as the base ({member_range(cfg.base, n)})")
    else:
        mcfg = model_config_for(base_run, tuple(labels), dataset.channels)  # what the base will be once trained

    # Plan: what is finished, what is left, and how much work each piece is (for the ETA). Checking the run
    # folders now means a changed setting fails before any training, not after the base.
    base_state = run_state(base_run, "best.pt") if base_run else "done"
    ft_runs = {m: finetune_config(cfg, base_tc, mcfg, base_ckpt, m, out / f"finetune-{m}") for m in cfg.finetune}
    ft_state = {m: run_state(tc, "last.pt") for m, tc in ft_runs.items()}
    models = [StudyModel("base", "full", base_ckpt, "base")]
    models += [StudyModel(f"finetune-{m}", f"full + {m}", str(Path(tc.out) / "last.pt"), "finetune", m)
               for m, tc in ft_runs.items()]
    models += [StudyModel(f"extra-{_safe(n)}", n, p, "extra") for n, p in extras]
    ready = {m.key: m.kind != "finetune" or ft_state[m.mask] == "done" for m in models}
    ready["base"] = base_state == "done"
    fingerprint = {"split": cfg.eval_split, "n": len(split), "eval_limit": cfg.eval_limit, "seed": cfg.seed,
                   "tta": cfg.tta, "labels": labels}
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)  # the first write: nothing is created before the checks

    def cell_path(model: StudyModel, condition: str) -> Path:
        return cells_dir / f"{model.key}__{condition}.json"

    def cached(model: StudyModel, condition: str, digest: str) -> dict[str, Any] | None:
        path = cell_path(model, condition)
        if not path.exists():
            return None
        cell = json.loads(path.read_text())
        same = cell.get("checkpoint_sha256") == digest and cell.get("setup") == fingerprint
        return cell["metrics"] if same else None

    digests = {m.key: checkpoint_digest(m.checkpoint) for m in models if ready[m.key]}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for m in models:
        for c in cfg.evaluate:
            hit = cached(m, c, digests[m.key]) if ready[m.key] else None
            if hit is not None:
                cells[m.key, c] = hit
    n_cells = len(models) * len(cfg.evaluate)
    base_cost = train_cost(base_run, n_train) if base_run else 0.0
    ft_cost = {m: train_cost(tc, n_train) for m, tc in ft_runs.items()}
    total = base_cost + sum(ft_cost.values()) + n_cells * len(split)
    left = (base_cost if base_state != "done" else 0.0) + (n_cells - len(cells)) * len(split)
    left += sum(cost for m, cost in ft_cost.items() if ft_state[m] != "done")
    log.info("study in %s: %d models x %d conditions on %s (%d images); %d of %d cells cached", out,
             len(models), len(cfg.evaluate), cfg.eval_split, len(split), len(cells), n_cells)

    bar = None
    if cfg.progress:
        from tqdm import tqdm

        # `initial` keeps finished work out of the rate, so the ETA is about what is left.
        bar = tqdm(total=total, initial=total - left, desc="study", dynamic_ncols=True,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}")

    def doing(what: str) -> None:
        if bar is not None:
            bar.set_postfix_str(what)

    def done(work: float) -> None:
        if bar is not None:
            bar.update(work)

    try:
        # 1. The base.
        if base_run and base_state != "done":
            doing("training the base")
            base_run.resume = base_state == "partial"
            train(base_run, dataset)
            done(base_cost)
            digests["base"] = checkpoint_digest(base_ckpt)

        # 2. The fine-tunes; an interrupted one resumes from its own last.pt.
        for m, tc in ft_runs.items():
            if ft_state[m] == "done":
                continue
            doing(f"fine-tuning full + {m}")
            tc.resume = ft_state[m] == "partial"
            log.info("fine-tuning %s on full + %s faces into %s%s", base_ckpt, m, tc.out,
                     " (resuming)" if tc.resume else "")
            train(tc, dataset)
            done(ft_cost[m])
            digests[f"finetune-{m}"] = sha256_file(Path(tc.out) / "last.pt")

        # 3. Every model under every condition; a model is loaded only if it has cells left.
        for model in models:
            missing = [c for c in cfg.evaluate if (model.key, c) not in cells]
            if not missing:
                continue
            digest = digests[model.key]
            net, config = load_model(model.checkpoint, device=device)
            for c in missing:
                hit = cached(model, c, digest)  # a run finished just now may match cells from before
                if hit is None:
                    doing(f"{model.label} on {condition_label(c)}")
                    ev = evaluate_model(net, config, split, tta=cfg.tta, occlusion=None if c == "full" else c,
                                        batch_size=cfg.batch_size, device=device)
                    hit = ev.metrics
                    _write_json(cell_path(model, c), {"model": model.key, "label": model.label, "condition": c,
                                                      "checkpoint": model.checkpoint, "checkpoint_sha256": digest,
                                                      "setup": fingerprint, "metrics": hit})
                cells[model.key, c] = hit
                done(len(split))
    finally:
        if bar is not None:
            bar.close()

    importance = region_importance(cells, models[0], cfg.evaluate)
    result = StudyResult(out, models, list(cfg.evaluate), cells, importance, cfg.eval_split, len(split),
                         time.perf_counter() - t0, subsampled=len(split) < len(whole))
    result.files = write_outputs(result, cfg)
    log.info("study written to %s in %.1f min", out, result.seconds / 60)
    return result


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _write_json(path: Path, data: Any) -> None:
    """Atomic, so that an interrupted study never leaves a half-written cell behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------
# Outputs


def write_outputs(result: StudyResult, cfg: StudyConfig) -> list[Path]:
    from ferkit.plots.study import plot_matrix

    out = result.out
    files = [out / "matrix.csv", out / "matrix.md", out / "per_class.csv", out / "region_importance.md",
             out / "region_importance.json", out / "study.json"]
    cols = result.conditions
    with open(files[0], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["metric", "trained_on", *cols])
        for metric in METRICS:
            for m, row in zip(result.models, result.matrix(metric)):
                w.writerow([metric, m.label, *("" if np.isnan(v) else f"{v:.6f}" for v in row)])
    files[1].write_text(format_matrix_md(result, cfg))
    with open(files[2], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trained_on", "evaluated_on", "class", "accuracy", "f1", "precision", "support"])
        for m in result.models:
            for c in cols:
                for name, r in result.cells[m.key, c]["per_class"].items():
                    w.writerow([m.label, c, name, f"{r['recall']:.6f}", f"{r['f1']:.6f}", f"{r['precision']:.6f}",
                                r["support"]])
    files[3].write_text(format_region_importance(result.region_importance, result.conditions))
    files[4].write_text(json.dumps(result.region_importance, indent=2))
    for metric, title in METRICS.items():
        path = out / f"heatmap_{metric}.png"
        plot_matrix(result.matrix(metric), [m.label for m in result.models], [condition_label(c) for c in cols],
                    path, title=f"{title} ({result.split}, n={result.n})")
        files.append(path)
    files[5].write_text(json.dumps({
        "config": asdict(cfg), "split": result.split, "n": result.n, "subsampled": result.subsampled,
        "seconds": result.seconds,
        "models": [asdict(m) for m in result.models], "conditions": cols,
        "accuracy": {m.label: dict(zip(cols, result.matrix()[i].tolist())) for i, m in enumerate(result.models)},
    }, indent=2))
    return files


def format_table(result: StudyResult, metric: str = "accuracy") -> str:
    """One metric as a markdown table, the best value of each column in bold."""
    values = result.matrix(metric)
    cols = result.conditions
    lines = ["| trained on \\ evaluated on | " + " | ".join(condition_label(c) for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    best = np.nanmax(np.where(np.isnan(values), -np.inf, values), axis=0)
    for m, row in zip(result.models, values):
        cells = ["n/a" if np.isnan(v) else (f"**{v:.4f}**" if v == best[j] and len(values) > 1 else f"{v:.4f}")
                 for j, v in enumerate(row)]
        lines.append(f"| {m.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_matrix_md(result: StudyResult, cfg: StudyConfig) -> str:
    head = ["# Occlusion study: trained on x evaluated on", "",
            f"Evaluated on `{result.split}` ({result.n} images{', a random subset' if result.subsampled else ''}), "
            f"TTA `{cfg.tta}`. Rows: the base (full faces) and its copies fine-tuned on full + masked faces"
            f"{' plus extra models' if cfg.extra else ''}; bold: best in the column.", ""]
    if cfg.command:
        head += ["Command:", "", f"    {cfg.command}", ""]
    body = [f"## {title}\n\n{format_table(result, metric)}" for metric, title in METRICS.items()]
    return "\n".join(head) + "\n".join(body)


def format_region_importance(info: dict[str, Any], conditions: list[str]) -> str:
    hidden = [c for c in conditions if c != "full"]
    lines = [f"# Region importance ({info['model']} model)", "",
             "Per-class accuracy (recall) on full faces and its drop when each region is hidden; the most "
             "harmful region per emotion is the one whose loss hurts that emotion most.", "",
             "| emotion | full | most harmful | drop | " + " | ".join(f"{c} drop" for c in hidden) + " |",
             "|---|---:|---|---:|" + "---:|" * len(hidden)]
    for emotion, r in info["per_class"].items():
        drops = " | ".join(f"{r['drops'][c]:+.3f}" for c in hidden)
        worst = r["worst"] or "none"
        drop = f"{r['worst_drop']:+.3f}" if r["worst"] else "-"
        lines.append(f"| {emotion} | {r['recall_full']:.3f} | {worst} | {drop} | {drops} |")
    return "\n".join(lines) + "\n"
