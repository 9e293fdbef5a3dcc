"""Install time and installed size of the keras-lincon wheel, per extra.

Builds the wheel from this checkout, then for each requested extra creates a
fresh virtual environment (no system site packages), times
``pip install <wheel>[extra]`` and measures the environment on disk (minus
an empty venv). pip's cache is shared between runs (``--repeat 2`` shows cold and warm);
``--no-cache`` disables it, so that pycddlib is compiled rather than taken
from a wheel pip built earlier.

    python scripts/bench_install.py --extras "" cdd probability jax --no-cache
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build_wheel(out: Path) -> Path:
    src = out / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("keras_lincon-*.whl"))


def measure(wheel: Path, extra: str, work: Path, no_cache: bool = False) -> tuple[float, int, int]:
    """(install seconds, installed bytes above an empty venv, installed distributions)."""
    venv = work / f"venv-{extra or 'core'}"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    empty = dir_size(venv)
    before = len(subprocess.run([py, "-m", "pip", "list"], capture_output=True, text=True).stdout.splitlines())
    spec = f"{wheel}[{extra}]" if extra else str(wheel)
    start = time.perf_counter()
    # --no-cache-dir: pip would otherwise reuse a pycddlib wheel it compiled before.
    subprocess.run([py, "-m", "pip", "install", "-q", *(["--no-cache-dir"] if no_cache else []), spec], check=True)
    seconds = time.perf_counter() - start
    after = len(subprocess.run([py, "-m", "pip", "list"], capture_output=True, text=True).stdout.splitlines())
    size = dir_size(venv) - empty
    shutil.rmtree(venv)
    return seconds, size, after - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extras", nargs="+", default=["", "cdd", "probability"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-cache", action="store_true", help="pip --no-cache-dir (compile pycddlib afresh)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wheel = build_wheel(work)
        print("| install | run | seconds | installed MB | distributions |")
        print("|---|---:|---:|---:|---:|")
        for extra in args.extras:
            for run in range(1, args.repeat + 1):
                seconds, size, count = measure(wheel, extra, work, args.no_cache)
                name = f"keras-lincon[{extra}]" if extra else "keras-lincon"
                print(f"| `{name}` | {run} | {seconds:.1f} | {size / 2**20:.0f} | {count} |", flush=True)


if __name__ == "__main__":
    main()
