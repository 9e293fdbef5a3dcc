"""The README's code blocks and the docstring examples run as written.

Every ```python block of README.md runs in a fresh Python process, in a
temporary working folder, importing this checkout of keras_lincon. A block
whose first line is ``# continued`` runs after the blocks before it (same
process), for examples that build on each other. The documentation site's
pages (docs/) follow the same rules (tests/test_docs.py).
"""

import doctest
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONTINUED = "# continued"


def markdown_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of a Markdown file, continuations merged into their chain."""
    text = path.read_text(encoding="utf-8")
    blocks: list[tuple[int, str]] = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        line = text.count("\n", 0, match.start()) + 1
        code = match.group(1)
        if code.lstrip().startswith(CONTINUED):
            assert blocks, f"{path.name}:{line}: '{CONTINUED}' block has no block before it"
            code = blocks[-1][1] + "\n" + code
        blocks.append((line, code))
    return blocks


def readme_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of README.md, continuations merged into their chain."""
    return markdown_blocks(README)


# Optional modules a block needs, by what its code mentions (it is skipped, with the reason, when one is missing).
NEEDS = {
    "ConstrainedVAE": ["tensorflow_probability", "sklearn"],
    "LatentPrior": ["tensorflow_probability"],
    "experiments import datasets": ["sklearn"],
    "export_for_serving": ["tensorflow"],
    "export_tflite": ["tensorflow"],
    "fit_distributed": ["tensorflow"],
    "import tensorflow": ["tensorflow"],
    "onnxruntime": ["onnxruntime", "tf2onnx", "onnx"],
    '"KERAS_BACKEND": "jax"': ["jax"],
}


def _needs(code: str) -> list[str]:
    """Optional modules a block needs (it is skipped, with the reason, when one is missing)."""
    return [module for marker, modules in NEEDS.items() if marker in code for module in modules]


def run_block(code: str, where: str, tmp_path: Path) -> str:
    """Runs one block in a fresh process in ``tmp_path``; fails on an error or a printed ``False``."""
    for module in _needs(code):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{where} needs {module}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, (
        f"{where} failed:\n{code}\nSTDOUT:\n{proc.stdout[-2000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
    )
    # Blocks print booleans for their checks: none may print False.
    assert "False" not in proc.stdout, f"{where} printed a failed check:\n{proc.stdout}"
    return proc.stdout


BLOCKS = readme_blocks()


def test_readme_has_python_blocks():
    """The README is the front page: its quickstart runs here, the other examples live in docs/."""
    assert BLOCKS, "README.md should show a runnable quickstart"
    assert any("LinearInequalityConstraint" in code and "fit(" in code for _, code in BLOCKS)


def test_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200, "README.md is the front page: the guides belong in docs/"
    for page in re.findall(r"`(docs/[\w/.-]+\.md)`", text):
        assert (ROOT / page).is_file(), f"README.md points to {page}, which does not exist"


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, code, tmp_path):
    run_block(code, f"README.md:{line}", tmp_path)


def doctest_modules() -> list[str]:
    """keras_lincon modules whose docstrings hold ``>>>`` examples (found without importing them)."""
    package = ROOT / "keras_lincon"
    return sorted(
        ".".join(("keras_lincon", *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        for p in package.rglob("*.py")
        if ">>>" in p.read_text(encoding="utf-8") and "experiments" not in p.parts
    )


# Docstring examples that fail today, with why; the module owners fix them (then drop the entry).
KNOWN_FAILING: dict = {}  # module -> reason, for an example that cannot pass yet


@pytest.mark.parametrize("name", doctest_modules())
def test_docstring_examples(name, request):
    if name in KNOWN_FAILING:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_FAILING[name], strict=False))
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    tests = [t for t in finder.find(module, name) if t.examples]
    assert tests, f"{name}: no doctest found"
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed\n" + "".join(report)
