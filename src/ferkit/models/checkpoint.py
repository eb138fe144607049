"""Checkpoints: weights plus the model's own config, loadable with ``torch.load(weights_only=True)``.

A checkpoint file is a dict of tensors and plain data only::

    {"format": "ferkit", "version": 1, "config": ModelConfig.to_dict(), "state_dict": {...},
     "meta": {...plain data: training command, metrics...}, "train_state": {...} (last.pt only)}

``load_model("default")`` (or "fast", "robust") loads a model shipped in ``ferkit/weights``. ``SPEC#K`` names member
``K`` of an ensemble checkpoint (``ferkit.models.ensemble``) as a checkpoint of its own, so that one network of an
ensemble can be fine-tuned, explained or exported wherever a model is taken. Weights may be stored
as float16 (halving the file); they load into float32 models. A file that is not a ferkit checkpoint (a pickled
object, a truncated download, a bare state dict) is refused with one line saying which and what to do; ferkit
never unpickles code from a file, and never tells the user to. Importing this module does not import torch, so
``resolve_checkpoint`` and ``ModelConfig`` work in the base install.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferkit.devices import resolve_device
from ferkit.errors import ModelError
from ferkit.models.config import ModelConfig
from ferkit.paths import SHIPPED_MODELS, WEIGHTS_DIR, atomic_write

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

FORMAT = "ferkit"
VERSION = 1
MEMBER_MARK = "#"  # "default#0": member 0 of the ensemble checkpoint "default"


def split_member(spec: str | Path) -> tuple[str | Path, int | None]:
    """``("ens.pt", 1)`` for ``"ens.pt#1"``; ``(spec, None)`` for anything else, a file whose name holds the
    mark included."""
    base, mark, index = str(spec).rpartition(MEMBER_MARK)
    if not mark or not base or not index.isdigit() or Path(spec).exists():
        return spec, None
    return base, int(index)


def build_model(config: ModelConfig) -> nn.Module:
    from ferkit.models import create_model

    if config.arch == "ensemble":  # not an architecture: members built from their own configs
        from ferkit.models.ensemble import build_ensemble

        return build_ensemble(config)

    return create_model(
        config.arch, num_classes=config.num_classes, in_chans=config.in_chans, input_size=config.input_size,
        **config.model_kwargs,
    )


def save_checkpoint(path: str | Path, model: nn.Module, config: ModelConfig, meta: dict | None = None,
                    train_state: dict | None = None) -> None:
    """Write atomically: a crash mid-write leaves the previous file intact."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    payload: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_write(path) as f:
        torch.save(payload, f)


def resolve_checkpoint(spec: str | Path) -> Path:
    """The file of a shipped model name (see SHIPPED_MODELS) or a path to a .pt file; of ``SPEC#K``, SPEC's."""
    spec, _ = split_member(spec)
    if str(spec) in SHIPPED_MODELS:
        path = WEIGHTS_DIR / f"{spec}.pt"
        if not path.exists():
            raise ModelError(f"the shipped model {spec!r} is not in this installation ({path} is missing)")
        return path
    path = Path(spec)
    if not path.exists():
        raise ModelError(
            f"checkpoint {str(spec)!r} not found; give a .pt file written by `ferkit train` "
            f"or one of the shipped models: {', '.join(SHIPPED_MODELS)}"
        )
    if path.is_dir():
        inside = [p.name for p in (path / "best.pt", path / "last.pt") if p.is_file()]
        hint = f" (it holds {' and '.join(inside)})" if inside else ""
        raise ModelError(f"checkpoint {str(spec)!r} is a folder{hint}; give the .pt file, e.g. {path / 'best.pt'}")
    return path


def load_checkpoint(spec: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, read with ``weights_only=True``; ModelError (one line) for anything else."""
    from ferkit.deps import require

    path = resolve_checkpoint(spec)
    require("torch", for_what=f"reading the checkpoint {path}")
    import torch

    try:
        with warnings.catch_warnings():  # torch's multi-line note on foreign pickles; the error says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise ModelError(f"cannot read the checkpoint {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        # `from None`: a traceback would show torch's advice too.
        raise ModelError(f"{path} is not a ferkit checkpoint: {unreadable_reason(path, exc)}") from None
    problem = _not_ferkit(ckpt)
    if problem:
        raise ModelError(f"{path} is not a ferkit checkpoint: {problem}")
    base, index = split_member(spec)
    return ckpt if index is None else member_checkpoint(ckpt, index, str(base))


def member_checkpoint(ckpt: dict[str, Any], index: int, source: str) -> dict[str, Any]:
    """Member ``index`` of the ensemble checkpoint ``ckpt`` (read from ``source``) as a checkpoint of its own:
    its config, its weights, and the training record the ensemble kept of it."""
    from ferkit.models.ensemble import ARCH

    config = ckpt["config"]
    members = config.get("model_kwargs", {}).get("members", []) if config.get("arch") == ARCH else []
    if not members:
        raise ModelError(f"{source}{MEMBER_MARK}{index}: {source} is a single {config.get('arch')!r} network, "
                         f"not an ensemble; give {source} without {MEMBER_MARK}{index}")
    if index >= len(members):
        raise ModelError(f"{source}{MEMBER_MARK}{index}: {source} is an ensemble of {len(members)} networks; "
                         f"its members are {member_range(source, len(members))}")
    prefix = f"members.{index}."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    records = ckpt.get("meta", {}).get("members", [])
    record = dict(records[index]) if index < len(records) else {}
    meta = {**record, "member_of": source, "member": index}
    return {"format": FORMAT, "version": ckpt.get("version", VERSION), "config": members[index],
            "state_dict": state, "meta": meta}


def member_range(spec: str | Path, count: int) -> str:
    """How to name the members of the ensemble ``spec``, for messages: ``"ens.pt#0 to ens.pt#2"``."""
    return f"{spec}{MEMBER_MARK}0 to {spec}{MEMBER_MARK}{count - 1}"


def spec_stem(spec: str | Path) -> str:
    """A file name stem for what ``spec`` loads: ``best`` for runs/a/best.pt, ``ens-member1`` for ens.pt#1."""
    base, index = split_member(spec)
    stem = Path(base).stem
    return stem if index is None else f"{stem}-member{index}"


def checkpoint_digest(spec: str | Path) -> str:
    """SHA-256 of the checkpoint's file, with ``#K`` appended for a member: what caches of anything computed
    from the weights are keyed by (a shipped name is replaced by a new release under the same name)."""
    from ferkit.paths import sha256_file

    _, index = split_member(spec)
    digest = sha256_file(resolve_checkpoint(spec))
    return digest if index is None else f"{digest}{MEMBER_MARK}{index}"


def unreadable_reason(path: Path, exc: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in ferkit's words: torch's own
    message advises retrying with weights_only=False, which runs whatever code the file holds. Told from the
    file's bytes where possible, since torch's exception type depends on where the garbage happens to break."""
    import zipfile

    if path.stat().st_size == 0:
        return "the file is empty"
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return (f"it holds a pickled Python object ({found.group(1)}), which ferkit does not load: a checkpoint "
                "holds only tensors and plain data, never code (save a model with "
                "ferkit.models.checkpoint.save_checkpoint, as `ferkit train` does)")
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    if zipped and not zipfile.is_zipfile(path):
        return "the file is truncated or corrupt (an interrupted download or copy?); get it again"
    if zipped:
        return "it is a zip archive that torch cannot read (corrupt, or not written by torch.save)"
    return "the file is not a PyTorch file (a ferkit checkpoint is written by `ferkit train`)"


def _not_ferkit(ckpt: Any) -> str | None:
    """Why a loaded object is not a ferkit checkpoint, or None when it is one this version reads."""
    if not isinstance(ckpt, dict):
        return f"it holds a {type(ckpt).__name__}, not a dict with 'format': 'ferkit'"
    if ckpt.get("format") != FORMAT:
        import torch

        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            return ("it holds bare weights (a state dict) without ferkit's config; ImageNet weights go to "
                    "`ferkit train --pretrained FILE`")
        keys = ", ".join(repr(k) for k in list(ckpt)[:5]) or "none"
        return f"no 'format': 'ferkit' entry (keys: {keys})"
    version = ckpt.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        return f"it has format version {version!r} and this ferkit reads up to {VERSION}; upgrade ferkit"
    absent = [k for k in ("config", "state_dict") if not isinstance(ckpt.get(k), dict)]
    if absent:
        return f"it has no {' or '.join(repr(k) for k in absent)} entry (an incomplete file?)"
    return None


def load_model(spec: str | Path = "default", device: str | torch.device = "cpu") -> tuple[nn.Module, ModelConfig]:
    """Build the checkpoint's architecture, load its weights, put it in eval mode on ``device``."""
    import torch

    device = resolve_device(device)
    ckpt = load_checkpoint(spec)
    config = ModelConfig.from_dict(ckpt["config"])
    model = build_model(config)
    load_state_dict_checked(model, ckpt["state_dict"], source=str(spec))
    # Inference batches arrive channels-last (faces_to_tensor); matching weights spare oneDNN a layout conversion
    # per convolution, about 2x on CPU for the small CNNs.
    model.eval().to(device, memory_format=torch.channels_last)
    return model, config


def load_state_dict_checked(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load weights, naming the missing, unexpected and mis-shaped keys when they do not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
              for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches {_few(shapes)}")
        raise ModelError(f"weights in {source} do not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict)


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")
