"""The README's code blocks and the docstring examples run as written.

Every ```python block of README.md runs in a fresh Python process, in a
temporary working folder, importing this checkout of keras_lincon. A block
whose first line is ``# continued`` runs after the blocks before it (same
process), for examples that build on each other.
"""

import doctest
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONTINUED = "# continued"


def readme_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block, continuations merged into their chain."""
    text = README.read_text(encoding="utf-8")
    blocks: list[tuple[int, str]] = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        line = text.count("\n", 0, match.start()) + 1
        code = match.group(1)
        if code.lstrip().startswith(CONTINUED):
            assert blocks, f"README.md:{line}: '{CONTINUED}' block has no block before it"
            code = blocks[-1][1] + "\n" + code
        blocks.append((line, code))
    return blocks


def _needs(code: str) -> list[str]:
    """Optional modules a block needs (it is skipped, with the reason, when one is missing)."""
    needs = []
    if "ConstrainedVAE" in code:
        needs += ["tensorflow_probability", "sklearn"]
    if "export_for_serving" in code:
        needs += ["tensorflow"]
    return needs


BLOCKS = readme_blocks()


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5, "README.md should show runnable examples"
    assert any("LinearInequalityConstraint" in code for _, code in BLOCKS)


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, code, tmp_path):
    for module in _needs(code):
        pytest.importorskip(module, reason=f"README.md:{line} needs {module}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, (
        f"README.md:{line} failed:\n{code}\nSTDOUT:\n{proc.stdout[-2000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
    )
    # Blocks print booleans for their checks: none may print False.
    assert "False" not in proc.stdout, f"README.md:{line} printed a failed check:\n{proc.stdout}"


def doctest_modules() -> list[str]:
    """keras_lincon modules whose docstrings hold ``>>>`` examples (found without importing them)."""
    return sorted(
        f"keras_lincon.{p.stem}" for p in (ROOT / "keras_lincon").glob("*.py") if ">>>" in p.read_text(encoding="utf-8")
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
