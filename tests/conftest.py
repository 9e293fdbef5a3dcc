"""Shared test helpers."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_python(code: str, timeout: int = 300, env: dict | None = None) -> str:
    """Runs ``code`` in a fresh Python process; returns stdout, fails on error."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    assert proc.returncode == 0, f"subprocess failed:\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr[-4000:]}"
    return proc.stdout


#: Prepended to subprocess code to make keras_lincon unimportable.
BLOCK_KERAS_LINCON = "import sys; sys.modules['keras_lincon'] = None\n"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def h_from_v(points, rays):
    """H-representation (A, b) of conv(points) + cone(rays), via exact cdd."""
    # pycddlib is the optional [cdd] extra: imported here so the rest of the suite runs without it.
    pytest.importorskip("cdd", reason="pycddlib not installed (pip install 'keras-lincon[cdd]')")
    import cdd
    import cdd.gmp

    rows = [[1, *p] for p in points] + [[0, *r] for r in rays]
    mat = cdd.gmp.matrix_from_array([[int(v) for v in row] for row in rows], rep_type=cdd.RepType.GENERATOR)
    ineq = cdd.gmp.copy_inequalities(cdd.gmp.polyhedron_from_matrix(mat))
    arr = np.array(ineq.array, dtype=float)
    lin = sorted(ineq.lin_set)
    keep = [i for i in range(len(arr)) if i not in lin]
    # cdd rows are b + A' x >= 0, i.e. (-A') x <= b; equalities become two rows
    A = np.vstack([-arr[keep, 1:], -arr[lin, 1:], arr[lin, 1:]])
    b = np.concatenate([arr[keep, 0], arr[lin, 0], -arr[lin, 0]])
    return A, b
