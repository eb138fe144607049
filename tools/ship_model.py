"""Turn a training run into a shipped model: src/ferkit/weights/NAME.pt and its ONNX twin NAME.onnx.

    python tools/ship_model.py RUN_DIR --name default --data ../shared/data/fer2013.zip
    python tools/ship_model.py ensemble.pt --name default --data ../shared/data/fer2013.zip --half
    python tools/ship_model.py --twin-only --name default --data ../shared/data/fer2013.zip --int8

Selection uses publictest only (PrivateTest is held out): the TTA mode with the best publictest accuracy is
stored as the model's inference default (or the one given with --tta: `none` for the speed-first `fast`),
and a temperature fitted on publictest probabilities is kept if it lowers the expected calibration error.
The shipped file holds weights and config only (no optimiser state), plus the training command, wall time
and the publictest metrics it was selected on. An ensemble (`ferkit ensemble`) ships the same way; its
members' training commands, wall times and hardware are read from their run folders.

The ONNX twin is what `backend="auto"` runs on CPUs. With --int8 it is the network alone, quantized (uint8
activations, int8 weights, calibrated on 512 seeded training faces), with the model's TTA cut on the host; its
own accuracy on --split, per TTA mode, is stored in its metadata (`ferkit.evaluated`) for the model card.
--twin-only rebuilds the twin of the shipped NAME.pt and leaves the .pt as it is; --retune-tta MODE stores another
inference TTA in the shipped NAME.pt (weights, temperature and training record as they are), then rebuilds the twin.

`adaptive` TTA (flip, then flip_shift for the faces flip is unsure of) is never picked by itself: it is a speed
setting, given with --tta or --retune-tta. It reads calibrated probabilities, so its temperature is the one fitted
on flip_shift's probabilities, the answer it gives on unsure faces.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ferkit.evaluation.calibrate import fit_temperature, rescale
from ferkit.models.ensemble import ARCH as ENSEMBLE_ARCH
from ferkit.models.checkpoint import (SHIPPED_MODELS, WEIGHTS_DIR, ModelConfig, build_model, load_checkpoint,
                                     load_state_dict_checked, member_checkpoint, save_checkpoint, split_member)
from ferkit.data import load_dataset, sample_faces
from ferkit.evaluation.evaluate import evaluate_model
from ferkit.inference.export import export_onnx, update_metadata
from ferkit.inference.onnx_backend import OnnxClassifier
from ferkit.inference.quantize import quantize_onnx
from ferkit.transforms.views import FIXED_TTA_MODES, TTA_MODES, fixed_views
from ferkit.evaluation.metrics import expected_calibration_error


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, nargs="?",
                    help="training run folder (with best.pt and config.json), or an ensemble .pt")
    ap.add_argument("--name", required=True, choices=SHIPPED_MODELS, help="shipped model name")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="publictest")
    ap.add_argument("--tta", choices=TTA_MODES,
                    help="store this TTA mode instead of the most accurate one (e.g. none for a speed-first model)")
    ap.add_argument("--half", action="store_true", help="store the weights as float16 (half the file)")
    ap.add_argument("--int8", action="store_true", help="ship the ONNX twin quantized to INT8, TTA on the host")
    ap.add_argument("--twin-only", action="store_true", help="only rebuild the ONNX twin of the shipped NAME.pt")
    ap.add_argument("--retune-tta", choices=TTA_MODES, metavar="MODE",
                    help="only store this inference TTA in the shipped NAME.pt, then rebuild its twin")
    args = ap.parse_args()
    if args.retune_tta:
        retune_tta(args.name, args.retune_tta, args.data, args.split, int8=args.int8)
        return
    if args.twin_only:
        ship_onnx_twin(args.name, args.data, args.split, int8=args.int8)
        return
    if args.run is None:
        ap.error("give RUN (or --twin-only)")

    source = args.run if args.run.is_file() else args.run / "best.pt"
    ckpt = load_checkpoint(source)
    model, config = network_of(ckpt, source)
    if args.half:  # round now, so every number below is what the float16 file will give
        model.half().float()
    split = load_dataset(args.data).split(args.split)

    by_tta = {}
    for tta in FIXED_TTA_MODES:
        config.temperature = 1.0
        by_tta[tta] = evaluate_model(model, config, split, tta=tta, progress=True)
        print(f"tta={tta}: accuracy {by_tta[tta].metrics['accuracy']:.4f}")
    best_tta = args.tta or max(FIXED_TTA_MODES, key=lambda t: by_tta[t].metrics["accuracy"])
    chosen = by_tta[fixed_views(best_tta)]  # adaptive: flip_shift's probabilities, its answer on unsure faces
    temperature = fit_temperature(chosen.probs, chosen.y_true)
    calibrated = rescale(chosen.probs, 1.0, temperature)
    ece_before = expected_calibration_error(chosen.y_true, chosen.probs)
    ece_after = expected_calibration_error(chosen.y_true, calibrated)
    if ece_after >= ece_before:
        temperature, calibrated = 1.0, chosen.probs
    print(f"chosen tta={best_tta}, temperature {temperature:.3f} (ECE {ece_before:.4f} -> "
          f"{min(ece_before, ece_after):.4f})")

    config.tta, config.temperature = best_tta, temperature
    # Recomputed with the final config, exactly as `ferkit evaluate --model NAME` will compute it.
    metrics = evaluate_model(model, config, split).metrics
    accuracy_by_tta = {t: by_tta[t].metrics["accuracy"] for t in FIXED_TTA_MODES}
    # Adaptive's escalation reads calibrated probabilities: scored with the fitted temperature.
    accuracy_by_tta["adaptive"] = evaluate_model(model, config, split, tta="adaptive").metrics["accuracy"]
    meta = {
        "name": args.name, "selected_on": args.split, "accuracy_by_tta": accuracy_by_tta,
        "ece_uncalibrated": ece_before, "metrics": metrics,
    }
    if config.arch == ENSEMBLE_ARCH:
        meta["command"] = ckpt["meta"]["command"]
        meta["members"] = [member_info(args.run, m) for m in ckpt["meta"]["members"]]
    else:
        meta.update(run_info(args.run), best_epoch=ckpt["meta"].get("epoch"))
    out = WEIGHTS_DIR / f"{args.name}.pt"
    save_checkpoint(out, model.half() if args.half else model, config, meta=meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    ship_onnx_twin(args.name, args.data, args.split, int8=args.int8, split_data=split)


def network_of(ckpt: dict, source: Path):
    """(the checkpoint's network with its weights, in eval mode; its config, a copy the caller may change)."""
    config = ModelConfig.from_dict(ckpt["config"])
    model = build_model(config)
    load_state_dict_checked(model, ckpt["state_dict"], source=str(source))
    return model.eval(), config


def retune_tta(name: str, tta: str, data: str, split_name: str, *, int8: bool) -> None:
    """Store ``tta`` as the shipped NAME.pt's inference TTA, with its metrics, and rebuild the twin."""
    pt = WEIGHTS_DIR / f"{name}.pt"
    ckpt = load_checkpoint(pt)
    model, config = network_of(ckpt, pt)
    split = load_dataset(data).split(split_name)
    before = config.tta
    config.tta = tta
    metrics = evaluate_model(model, config, split, progress=True).metrics
    meta = dict(ckpt["meta"])
    meta["accuracy_by_tta"] = {**meta.get("accuracy_by_tta", {}), tta: metrics["accuracy"]}
    meta["metrics"], meta["tta_changed"] = metrics, f"{before} -> {tta} (tools/ship_model.py --retune-tta)"
    half = any(str(v.dtype) == "torch.float16" for v in ckpt["state_dict"].values())
    save_checkpoint(pt, model.half() if half else model, config, meta=meta)
    print(f"wrote {pt}: tta {before} -> {tta}, accuracy {metrics['accuracy']:.4f} on {split_name}")
    ship_onnx_twin(name, data, split_name, int8=int8, split_data=split)


def ship_onnx_twin(name: str, data: str, split_name: str, *, int8: bool, split_data=None) -> None:
    """NAME.onnx from the shipped NAME.pt: it lets backend="auto" serve the model without importing torch (cold
    start). An INT8 twin records its own accuracy per TTA mode, the numbers the default CPU pipeline gives."""
    pt, onnx_path = WEIGHTS_DIR / f"{name}.pt", WEIGHTS_DIR / f"{name}.onnx"
    export_onnx(pt, onnx_path, tta_on_host=int8)
    if not int8:
        print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB)")
        return
    quantize_onnx(onnx_path, onnx_path, sample_faces(data, 512))
    split = split_data if split_data is not None else load_dataset(data).split(split_name)
    shipped = OnnxClassifier(onnx_path)
    by_tta = {t: evaluate_model(OnnxClassifier(onnx_path, tta=t), shipped.config, split).metrics for t in TTA_MODES}
    for tta, metrics in by_tta.items():
        print(f"int8 tta={tta}: accuracy {metrics['accuracy']:.4f}")
    record = {"split": split_name, "tta": shipped.tta, "metrics": by_tta[shipped.tta],
              "accuracy_by_tta": {t: m["accuracy"] for t, m in by_tta.items()}}
    update_metadata(onnx_path, {"evaluated": json.dumps(record)})
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB, int8, tta={shipped.tta} on the host: "
          f"accuracy {by_tta[shipped.tta]['accuracy']:.4f})")


def member_info(ensemble: Path, member: dict) -> dict:
    """An ensemble member's training record: a shipped model's from its shipped file (read before anything is
    written, so shipping the ensemble under that member's name still finds it), a member of another ensemble
    (``default#1``, ``runs/ens.pt#0``) from the record that ensemble kept of it, any other from its run folder.
    Member paths are as given to `ferkit ensemble`: relative ones to the folder it ran in, the ensemble's."""
    source = member["source"]
    base, index = split_member(source)
    if base in SHIPPED_MODELS or index is not None:  # how load_checkpoint reads a name too (resolve_checkpoint)
        path = WEIGHTS_DIR / f"{base}.pt" if base in SHIPPED_MODELS else ensemble.parent / base
        ckpt = load_checkpoint(path)
        own = (ckpt if index is None else member_checkpoint(ckpt, index, str(base)))["meta"]
        info = {k: own[k] for k in ("command", "hardware", "train_seconds", "best_epoch") if k in own}
        if "epoch" in own:  # an ensemble not yet shipped keeps its member's best epoch under this key
            info.setdefault("best_epoch", own["epoch"])
    else:
        info = {**run_info((ensemble.parent / source).parent), "best_epoch": member.get("epoch")}
    return {"source": source, **info, "metrics": member.get("metrics")}


def run_info(run: Path) -> dict:
    """Training command, wall time and hardware of a training run folder."""
    run_config = json.loads((run / "config.json").read_text())
    info = {"command": run_config["command"],
            "hardware": {k: run_config.get(k) for k in ("machine", "cpus", "cuda", "torch")}}
    summary = run / "summary.json"
    if summary.exists():
        info["train_seconds"] = json.loads(summary.read_text()).get("train_seconds")
    return info


if __name__ == "__main__":
    main()
