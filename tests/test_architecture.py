"""The package layout ARCHITECTURE.md describes, checked from the source: which layer may import which, and
which modules must load without PyTorch (the base install has none)."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ferkit"

FOUNDATION = {"errors", "labels", "paths", "devices", "batching", "deps", "lazy", "assets", "__init__", "__main__"}

# Layer -> the layers its modules may import (module level or inside functions). ARCHITECTURE.md, "Layers".
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "plots": {"data"},  # figures know the reports they draw
    "data": set(),
    "transforms": {"models"},
    "models": {"transforms"},
    "inference": {"models", "transforms"},
    "video": {"inference", "models", "transforms", "plots"},
    "evaluation": {"data", "models", "transforms", "inference", "plots"},
    "training": {"data", "models", "transforms", "inference", "evaluation", "plots"},
    "analysis": {"data", "models", "transforms", "inference", "evaluation", "training", "plots"},
    "serve": {"inference", "video", "analysis", "models", "transforms", "plots"},
    "cli": {"*"},
}

# Modules that run in the base install (no torch): they may not import torch at module level, nor import at
# module level anything that does. Lazy imports inside functions are how they reach torch when asked to.
TORCH_FREE_PREFIXES = (
    "ferkit.errors", "ferkit.labels", "ferkit.paths", "ferkit.devices", "ferkit.batching", "ferkit.deps", "ferkit.lazy",
    "ferkit.assets", "ferkit.data", "ferkit.models.config", "ferkit.transforms.views", "ferkit.inference",
    "ferkit.video", "ferkit.serve", "ferkit.cli", "ferkit.plots",
)
TORCH_BACKEND_MODULES = ("ferkit.inference.torch_backend",)

# Lazy imports against the layer order, each a convenience door the API promises (ARCHITECTURE.md, "Layers").
DOORS = {("ferkit.inference.recognizer", "ferkit.video.pipeline")}  # Recognizer.stream


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[-1] == "__main__":  # `python -m ferkit` is the command line
        return "cli"
    if len(parts) == 1 or parts[1] in FOUNDATION:
        return "foundation"
    return parts[1]


@functools.lru_cache(maxsize=None)
def _imports(module: str, top_level_only: bool) -> tuple[str, ...]:
    tree = ast.parse(_modules()[module].read_text())
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks never run
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]  # `from ferkit.x import submodule`
    known = _modules()
    return tuple(sorted({m for m in found if not m.startswith("ferkit") or m in known}))


MODULES = sorted(_modules())


@pytest.mark.parametrize("module", MODULES)
def test_layers_import_only_what_the_architecture_allows(module):
    layer = _layer(module)
    allowed = ALLOWED[layer]
    bad = []
    for imported in _imports(module, top_level_only=False):
        if not imported.startswith("ferkit."):
            continue
        target = _layer(imported)
        if target in ("foundation", layer) or "*" in allowed or target in allowed or (module, imported) in DOORS:
            continue
        bad.append(imported)
    assert not bad, f"{module} ({layer}) imports {bad}; ARCHITECTURE.md allows {sorted(allowed) or 'foundation only'}"


def _loads_torch(module: str, seen: frozenset[str] = frozenset()) -> str | None:
    """The chain of module-level imports by which ``module`` would import torch, or None."""
    for imported in _imports(module, top_level_only=True):
        if imported == "torch" or imported.startswith("torch."):
            return f"{module} -> torch"
        if imported.startswith("ferkit.") and imported not in seen and imported != module:
            chain = _loads_torch(imported, seen | {module})
            if chain:
                return f"{module} -> {chain}"
    # Importing ferkit.a.b runs ferkit/a/__init__.py first.
    parent = module.rsplit(".", 1)[0]
    if "." in module and parent not in seen and parent != module:
        chain = _loads_torch(parent, seen | {module})
        if chain:
            return f"{module} -> {chain}"
    return None


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(TORCH_FREE_PREFIXES)
                                    and m not in TORCH_BACKEND_MODULES])
def test_inference_side_modules_load_without_torch(module):
    assert _loads_torch(module) is None


def test_the_torch_backend_is_the_one_that_loads_torch():
    # The check above would pass vacuously if it could not see torch imports at all.
    assert _loads_torch("ferkit.inference.torch_backend") is not None
    assert _loads_torch("ferkit.training.loop") is not None


def test_every_subpackage_says_what_it_holds():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(SRC)} needs a docstring saying what the package holds"
