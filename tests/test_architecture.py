"""The layout of the package is the data path: every import goes down (docs/ARCHITECTURE.md).

Read from the source (nothing is imported): each module's imports of keras_lincon
may only reach its own subpackage or one listed below it, and the numpy core
(geometry/, planning/) never imports Keras, TensorFlow, JAX or torch.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keras_lincon"
# top-down: a module may import its own room and the rooms after it
ORDER = ["cli", "compat", "experiments", "baselines", "export", "models", "layers", "planning", "geometry", "leaves"]
LEAVES = {"errors", "tolerances", "_backend"}
FRAMEWORKS = {"keras", "tensorflow", "tensorflow_probability", "jax", "torch"}


def room(module: str) -> str:
    """The room of ``keras_lincon.<...>`` (the package itself counts as the top, like the CLI)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "cli"
    head = parts[1]
    return "leaves" if head in LEAVES else head if head in ORDER else "cli"


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in the file (at any depth: lazy imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_go_down(path):
    own = room("keras_lincon." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    upward = [
        f"line {line}: {target}"
        for line, target in imports(path)
        if target.startswith("keras_lincon.") and ORDER.index(room(target)) < ORDER.index(own)
    ]
    assert not upward, f"{path.relative_to(PACKAGE)} ({own}) imports upwards: {upward}"


@pytest.mark.parametrize("room_name", ["geometry", "planning"])
def test_the_numpy_core_imports_no_framework(room_name):
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line} {target}"
        for path in (PACKAGE / room_name).rglob("*.py")
        for line, target in imports(path)
        if target.split(".")[0] in FRAMEWORKS
    ]
    assert not offenders, offenders
