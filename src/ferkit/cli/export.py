"""`ferkit export`: a checkpoint as a self-describing ONNX file for ONNX Runtime (`--backend onnx`).

    ferkit export default --format onnx --out ferkit-default.onnx
"""
from __future__ import annotations

import argparse

from ferkit.cli.options import DefaultsHelpFormatter

from ferkit.paths import SHIPPED_MODELS
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

    if args.out:
        check_writable(args.out, "--out")
    path = export_onnx(args.model, args.out, tta=args.tta, opset=args.opset, verify=not args.no_verify)
    clf = OnnxClassifier(path)
    checked = "" if args.no_verify else ", checked against PyTorch"
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; input uint8 N x {clf.input_size} x "
          f"{clf.input_size} x 3 RGB, tta={clf.tta}{checked})", file=sys.stderr)
    print(f"run it with: ferkit predict IMAGE --backend onnx --model {path}", file=sys.stderr)
    return 0
