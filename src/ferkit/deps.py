"""Optional dependencies: what each part of ferkit needs beyond the base install, and the one line that says
what to install when it is missing.

The base install (numpy, Pillow, OpenCV, ONNX Runtime, tqdm) runs inference: ``ferkit predict`` and the
Recognizer on ONNX Runtime. ``pip install 'ferkit[train]'`` adds PyTorch and the training, evaluation, export,
explanation and study stack; ``ferkit[plot]`` adds matplotlib alone. Checks look modules up without importing
them, so asking costs nothing even for PyTorch.
"""
from __future__ import annotations

import importlib.util
from typing import Iterable

from ferkit.errors import FerkitError

# Import name -> (what users call it, pip package).
_PACKAGES = {
    "torch": ("PyTorch", "torch"),
    "sklearn": ("scikit-learn", "scikit-learn"),
    "matplotlib": ("matplotlib", "matplotlib"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("ONNX Runtime", "onnxruntime"),
    "cv2": ("OpenCV", "opencv-python-headless"),
    "PIL": ("Pillow", "pillow"),
    "fastapi": ("FastAPI", "fastapi"),
    "uvicorn": ("uvicorn", "uvicorn"),
    "python_multipart": ("python-multipart", "python-multipart"),
    "fastapi_offline": ("fastapi-offline", "fastapi-offline"),
    "scipy": ("SciPy", "scipy"),
    "pyarrow": ("pyarrow", "pyarrow"),
}
# The extras in pyproject.toml, smallest first: a hint names the smallest one that holds every missing module.
EXTRAS = {"plot": ("matplotlib",), "video": ("scipy",), "serve": ("fastapi", "uvicorn", "python_multipart", "fastapi_offline"),
          "train": ("torch", "sklearn", "matplotlib", "onnx")}


class MissingDependency(FerkitError):
    """An optional package that this feature needs is not installed; the message has the pip command."""


def available(module: str) -> bool:
    """Whether ``module`` (a top-level import name) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        return False


def missing(*modules: str) -> list[str]:
    """The ones among ``modules`` that are not installed, in the order given."""
    return [m for m in modules if not available(m)]


def install_command(modules: Iterable[str]) -> str:
    """The pip command that installs ``modules``: ferkit's smallest extra holding them, else the packages."""
    modules = list(modules)
    optional = {m for m in modules if any(m in held for held in EXTRAS.values())}
    if optional:
        # `pip install 'ferkit[x]'` also brings back any base dependency missing beside them.
        extra = next(name for name, held in EXTRAS.items() if optional <= set(held))
        return f"pip install 'ferkit[{extra}]'"
    return "pip install " + " ".join(_PACKAGES.get(m, (m, m))[1] for m in modules)


def missing_message(modules: Iterable[str], for_what: str) -> str:
    """E.g. "training needs PyTorch, which is not installed: pip install 'ferkit[train]'"."""
    modules = list(modules)
    names = [_PACKAGES.get(m, (m, m))[0] for m in modules]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    verb = "is" if len(names) == 1 else "are"
    return f"{for_what} needs {listed}, which {verb} not installed: {install_command(modules)}"


def require(*modules: str, for_what: str) -> None:
    """Raise MissingDependency, naming the pip command, unless every one of ``modules`` is installed.

    ``for_what`` starts the message: ``require("torch", for_what="training")`` says "training needs PyTorch,
    which is not installed: pip install 'ferkit[train]'".
    """
    absent = missing(*modules)
    if absent:
        raise MissingDependency(missing_message(absent, for_what))


def is_known(module: str) -> bool:
    """Whether ``module`` is one ferkit knows how to tell the user to install (see ``missing_message``)."""
    return module in _PACKAGES
