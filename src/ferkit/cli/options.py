"""Arguments shared by the verbs that find faces in photos (``predict``, ``explain``): one definition, so the
same flags mean the same thing, and the same faces and probabilities come out, in both.

Imports only argparse at module level, like every verb module.
"""
from __future__ import annotations

import argparse
from typing import Any

#: dest -> (flag, default) of every option ``add_recognizer_options`` declares.
RECOGNIZER_OPTIONS: dict[str, tuple[str, Any]] = {
    "detector": ("--detector", "auto"),
    "detector_model": ("--detector-model", None),
    "backend": ("--backend", "auto"),
    "device": ("--device", "auto"),
    "min_face": ("--min-face", 20),
    "max_side": ("--max-side", 480),
    "crop_margin": ("--crop-margin", None),
    "tta": ("--tta", None),
}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to a flag's help only where there is a default to say: "(default: None)" and
    "(default: False)" tell the reader nothing, and flags without a fixed default describe theirs in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def add_recognizer_options(p: argparse.ArgumentParser) -> None:
    """How faces are found, cropped and classified: the ``Recognizer``'s arguments, as flags."""
    from ferkit.transforms.views import TTA_MODES

    d = {dest: default for dest, (_, default) in RECOGNIZER_OPTIONS.items()}
    p.add_argument("--detector", default=d["detector"], choices=("auto", "yunet", "haar", "none"),
                   help="face detector; auto = YuNet (fetched once when online; `ferkit download`), else Haar; "
                        "none = each image already is a face crop")
    p.add_argument("--detector-model", metavar="FILE", default=d["detector_model"],
                   help="the YuNet ONNX file (face_detection_yunet_2023mar.onnx)")
    p.add_argument("--backend", default=d["backend"], choices=("auto", "torch", "onnx"),
                   help="inference backend; auto = ONNX Runtime on CPU for shipped models and .onnx files "
                        "when onnxruntime is installed, else torch")
    p.add_argument("--device", default=d["device"], help="cpu, cuda, mps or auto")
    p.add_argument("--min-face", type=int, default=d["min_face"], metavar="PX",
                   help="faces smaller than this are reported without an emotion")
    p.add_argument("--max-side", type=int, default=d["max_side"], metavar="PX",
                   help="detect on images downscaled to this longer side (raise it for small faces in big photos; "
                        "0: full size)")
    p.add_argument("--crop-margin", type=float, default=d["crop_margin"],
                   help="override the model's face-crop margin (fraction of the face box on each side)")
    p.add_argument("--tta", choices=TTA_MODES, default=d["tta"],
                   help="override the model's test-time augmentation (default's own is adaptive: flip, plus "
                        "flip_shift's shifted views for the faces flip is unsure of; flip_shift: all ten views for "
                        "every face, 0.1 point more on FER2013 at up to 3x the cost; flip: 0.9 point less)")


def add_recursive_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recursive", action="store_true", help="also read images in sub-folders")


def recognizer_from_args(args: argparse.Namespace, **overrides: Any):
    """The ``Recognizer`` the flags describe (``--model`` included); ``overrides`` replace any argument."""
    from ferkit.inference.recognizer import Recognizer

    kwargs = {dest: getattr(args, dest) for dest in RECOGNIZER_OPTIONS}
    kwargs.update(model=args.model, **overrides)
    return Recognizer(**kwargs)


def changed_recognizer_options(args: argparse.Namespace) -> list[str]:
    """The flags of ``add_recognizer_options`` set to something other than their default, for a verb mode
    that finds no faces and must refuse them rather than ignore them. ``--device`` is not one of them."""
    return [flag for dest, (flag, default) in RECOGNIZER_OPTIONS.items()
            if dest != "device" and getattr(args, dest) != default]


def image_files(paths: list[str], recursive: bool) -> list:
    """Files as given (whatever their suffix: decoding decides), folders expanded to their image files
    (sub-folders too when ``recursive``). A missing path is kept so it gets its own error entry; finding
    nothing at all is a FerkitError."""
    from pathlib import Path

    from ferkit.errors import FerkitError
    from ferkit.inference.imageio import IMAGE_SUFFIXES

    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found += sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    if not found:
        raise FerkitError(f"no image files found in {', '.join(paths)}"
                          + ("" if recursive else " (add --recursive to search sub-folders)"))
    return found
