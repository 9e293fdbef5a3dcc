"""The sdist and wheel: metadata, contents, and a clean install without pycddlib.

The fast tests build both distributions from a copy of the source tree
(``python -m build --no-isolation``: no network) and inspect them. The slow
test installs the wheel into a fresh virtual environment (no system site
packages) with only keras and JAX, and runs the README quickstart and the
paper's checkerboard through the installed package.
"""

import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TF_DISTRIBUTIONS = {
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-gpu",
    "tensorflow-intel",
    "tensorflow-macos",
    "tf-nightly",
    "tf-nightly-cpu",
}
# Not part of a distribution: local state, build outputs, virtual environments.
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "runs",
    "*.egg-info",
    "__pycache__",
    ".hypothesis",
    ".pytest_cache",
    ".gl",
    ".whl",
    ".device",
    "serving",
)


def build_distributions(out: Path) -> tuple[Path, Path]:
    """Builds (sdist, wheel) of a copy of this checkout into ``out``; returns their paths."""
    pytest.importorskip("build", reason="the `build` package is needed (pip install build; in the tests extra)")
    src = out / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    (sdist,) = out.glob("keras[-_]lincon-*.tar.gz")
    (wheel,) = out.glob("keras_lincon-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    return build_distributions(tmp_path_factory.mktemp("dist"))


def _requirement_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0].lower().replace("_", "-")


def _extra_of(req: str) -> str | None:
    match = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
    return match.group(1) if match else None


def wheel_metadata(wheel: Path) -> tuple[list[str], email.message.Message, str]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        (entry,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        return names, email.message_from_bytes(zf.read(meta)), zf.read(entry).decode()


def test_wheel_contents(dists):
    _, wheel = dists
    names, _, entry_points = wheel_metadata(wheel)
    for package in ("geometry", "planning", "layers", "models", "export", "baselines", "experiments", "compat"):
        assert f"keras_lincon/{package}/__init__.py" in names, package
    assert "keras_lincon/layers/linear_inequality_constraint.py" in names
    assert not [n for n in names if n.startswith(("tests/", "tutorials/", "benchmarks/", "scripts/"))]
    assert any(re.search(r"\.dist-info/(licenses/)?LICENSE$", n) for n in names), names
    assert re.search(r"^keras-lincon\s*=\s*keras_lincon\.cli:main$", entry_points, re.M), entry_points


def test_wheel_requirements(dists):
    from packaging.specifiers import SpecifierSet

    _, wheel = dists
    _, meta, _ = wheel_metadata(wheel)
    requires = meta.get_all("Requires-Dist") or []
    core = {_requirement_name(r) for r in requires if _extra_of(r) is None}
    assert core == {"keras", "numpy", "scipy"}, f"core must install without a compiler: {core}"
    by_extra: dict[str, set[str]] = {}
    for req in requires:
        if _extra_of(req):
            by_extra.setdefault(_extra_of(req), set()).add(_requirement_name(req))
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"cdd", "tensorflow", "probability", "jax", "projection", "onnx", "data", "plots", "tests", "all"} <= extras
    assert "pycddlib" in by_extra["cdd"]
    # One TensorFlow: no extra, and no documented combination, installs two TF distributions.
    for combo in [{e} for e in extras] + [{"tensorflow", "probability"}, {"probability", "onnx"}, set(extras)]:
        tf = set().union(*(by_extra.get(e, set()) for e in combo)) & TF_DISTRIBUTIONS
        assert len(tf) <= 1, f"extras {sorted(combo)} install {sorted(tf)}"
    # osqp 0.6.x raises TypeError with our calls: the pin must exclude it and admit 1.x.
    (osqp,) = [r for r in requires if _requirement_name(r) == "osqp" and _extra_of(r) == "projection"]
    spec = SpecifierSet(re.sub(r"^osqp|;.*$", "", osqp).strip(" ()"))
    assert "0.6.7" not in spec and "1.1.3" in spec, osqp


def test_long_description_has_no_relative_links(dists):
    _, wheel = dists
    _, meta, _ = wheel_metadata(wheel)
    description = meta.get_payload()
    assert "Quickstart" in description
    # On PyPI a relative link or image points nowhere.
    relative = re.findall(r"!?\[[^\]]*\]\((?!https?://|#)([^)]+)\)", description)
    assert not relative, f"relative links in README.md: {relative}"


def test_sdist_contents(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in (
        "LICENSE",
        "README.md",
        "setup.cfg",
        "setup.py",
        "tests/conftest.py",
        "tests/test_linear_inequality_constraint.py",
        "tutorials/checkerboard_projection.py",
        "keras_lincon/layers/linear_inequality_constraint.py",
    ):
        assert needed in names, f"{needed} missing from the sdist"


# The checkerboard through the installed package: closed form, no pycddlib.
CHECKERBOARD = textwrap.dedent(
    """
    import numpy as np, keras, keras_lincon as klc
    assert "site-packages" in klc.__file__, klc.__file__
    A = klc.checkerboard((28, 28), (4, 4))
    rep = klc.h_to_v(A)
    assert rep.rays.shape == (16, 784) and rep.lineality.shape == (768, 784), rep
    assert klc.max_violation(rep.sample(100, seed=0), A) <= 1e-9
    layer = klc.LinearInequalityConstraint(A, box=(-1.0, 1.0))
    y = keras.ops.convert_to_numpy(layer(np.random.default_rng(0).normal(size=(32, 20)).astype("float32") * 50))
    layer.assert_constraints(y)
    print("checkerboard ok", keras.backend.backend())
    """
)


def torch_cpu_wheel() -> str | None:
    """A CPU torch wheel from pip's find-links folders (PyPI's torch is a multi-GB CUDA build), or None."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True
    )
    for folder in (proc.stdout.split() if proc.returncode == 0 else []) + os.environ.get("PIP_FIND_LINKS", "").split():
        found = sorted(Path(folder).glob("torch-*+cpu-*.whl")) if Path(folder).is_dir() else []
        if found:
            return str(found[-1])
    return None


# backend -> what the fresh venv installs besides the wheel (pycddlib deliberately absent everywhere)
BACKEND_INSTALLS = {"jax": ["[jax]"], "tensorflow": ["[tensorflow]"], "torch": []}


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKEND_INSTALLS))
def test_wheel_installs_and_runs_the_quickstart(tmp_path, backend):
    from tests.test_readme import readme_blocks

    _, wheel = build_distributions(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    requirements = [f"{wheel}{extra}" for extra in BACKEND_INSTALLS[backend]] or [str(wheel)]
    if backend == "torch":
        torch = torch_cpu_wheel()
        if torch is None:
            pytest.skip("no CPU torch wheel in pip's find-links folders (PyPI's torch is a multi-GB CUDA build)")
        requirements.append(torch)
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", *requirements], capture_output=True, text=True, timeout=2400
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    env.update(KERAS_BACKEND=backend, PYTHONNOUSERSITE="1")
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def run(code: str) -> str:
        out = subprocess.run([str(py), "-c", code], cwd=run_dir, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"{code}\nSTDOUT:\n{out.stdout[-2000:]}\nSTDERR:\n{out.stderr[-4000:]}"
        return out.stdout

    run("import importlib.util as u; assert u.find_spec('cdd') is None, 'pycddlib must not be installed'")
    quickstart = [code for _, code in readme_blocks() if "klc.checkerboard((28, 28)" in code and "fit(" in code]
    assert quickstart, "README quickstart not found"
    run(quickstart[0])
    assert f"checkerboard ok {backend}" in run(CHECKERBOARD)
    help_out = subprocess.run(
        [str(venv / "bin" / "keras-lincon"), "--help"],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert help_out.returncode == 0 and "usage" in help_out.stdout.lower(), help_out.stderr[-3000:]
