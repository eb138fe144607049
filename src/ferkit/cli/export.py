"""`ferkit export`: a checkpoint as a self-describing ONNX file for ONNX Runtime (`--backend onnx`).

    ferkit export default --format onnx --out ferkit-default.onnx
    ferkit export default --int8 --calibration fer2013.zip --out ferkit-default-int8.onnx
"""
from __future__ import annotations

import argparse

from ferkit.cli.options import DefaultsHelpFormatter

from ferkit.errors import FerkitError
from ferkit.paths import SHIPPED_MODELS
from ferkit.inference.quantize import CALIBRATION_METHODS
from ferkit.transforms.views import TTA_MODES


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a model to ONNX",
        description="Export a shipped model or checkpoint to ONNX. The graph takes uint8 N x S x S x 3 RGB face "
                    "crops and includes normalisation, test-time augmentation, temperature and softmax; the "
                    "model's config is embedded as metadata.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL",
                   help=f"shipped model name ({', '.join(SHIPPED_MODELS)}) or checkpoint .pt")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format")
    p.add_argument("--out", metavar="FILE", help="output file (default: MODEL's name with .onnx, here)")
    p.add_argument("--tta", choices=TTA_MODES, default=None,
                   help="test-time augmentation baked into the graph (default: the checkpoint's own)")
    p.add_argument("--tta-on-host", action="store_true",
                   help="export one view and record the TTA mode, which ferkit's ONNX backend then runs by cutting "
                        "the views on the host (any other mode stays one --tta away without re-exporting)")
    p.add_argument("--int8", action="store_true",
                   help="quantize to INT8 (uint8 activations, int8 per-channel weights; implies --tta-on-host): "
                        "2-3x faster on x86 CPUs for a fraction of a point; needs --calibration")
    p.add_argument("--calibration", metavar="DATA", help="dataset whose training faces calibrate --int8")
    p.add_argument("--calibration-faces", type=int, default=512, metavar="N", help="faces sampled for calibration")
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="minmax",
                   help="how activation ranges are set from the calibration faces")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ferkit.deps import require
    from ferkit.paths import check_writable

    require("torch", "onnx", "onnxruntime", for_what="ONNX export")
    from ferkit.inference.export import export_onnx
    from ferkit.inference.onnx_backend import OnnxClassifier

    if args.int8 and not args.calibration:
        raise FerkitError("--int8 needs --calibration DATA: a dataset whose training faces set the activation ranges")
    if args.calibration and not args.int8:
        raise FerkitError("--calibration is for --int8")
    if args.out:
        check_writable(args.out, "--out")
    faces = None
    if args.int8:  # read before exporting, so a bad dataset path fails fast and writes nothing
        from ferkit.data import sample_faces

        faces = sample_faces(args.calibration, args.calibration_faces)
    path = export_onnx(args.model, args.out, tta=args.tta, tta_on_host=args.tta_on_host or args.int8,
                       opset=args.opset, verify=not args.no_verify)
    checked = "" if args.no_verify else ", checked against PyTorch"
    if args.int8:
        from ferkit.inference.quantize import quantize_onnx

        quantize_onnx(path, path, faces, method=args.calibration_method)
        checked += f"; INT8, calibrated on {len(faces)} faces"
    clf = OnnxClassifier(path)
    where = " on the host" if clf.graph_tta != clf.tta else ""
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; input uint8 N x {clf.input_size} x "
          f"{clf.input_size} x 3 RGB, tta={clf.tta}{where}{checked})", file=sys.stderr)
    print(f"run it with: ferkit predict IMAGE --backend onnx --model {path}", file=sys.stderr)
    return 0
