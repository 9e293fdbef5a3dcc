"""Tests of the applications room keras_lincon.experiments (helpers; the runs are tested via the CLI)."""

import ast
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.experiments import _deps, feasibility, outputs, plots, timing
from tests.conftest import run_python

PACKAGE = Path(klc.__file__).parent
# Modules that may reach into the applications: the CLI and the deprecated re-export shims.
ALLOWED = {"cli.py", "bench.py", "datasets.py", "experiment.py"}


def test_the_core_never_imports_experiments():
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n.startswith("keras_lincon.experiments") for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_feasible_mask_counts_nan_and_box_violations_as_infeasible():
    A = klc.checkerboard((4, 4), (2, 2))
    y = np.zeros((4, 16))
    y[1, 0] = np.nan
    y[2, 0] = -1.5  # outside the box only (block sum -1.5 <= 0)
    y[3, :4] = 1.0  # block (0, 0) sum > 0: violates its row, inside the box
    np.testing.assert_array_equal(feasibility.feasible_mask(y, A), [True, False, False, False])
    np.testing.assert_array_equal(feasibility.feasible_mask(y[[0, 2]], A, box=None), [True, True])
    assert feasibility.feasible_share(y, A) == 0.25


def test_prepare_output_dir(tmp_path):
    fresh = outputs.prepare_output_dir(tmp_path / "a" / "b")
    assert fresh.is_dir() and list(fresh.iterdir()) == []
    (fresh / "old.json").write_text("{}")
    with pytest.raises(klc.LinconError, match="not empty"):
        outputs.prepare_output_dir(fresh)
    assert outputs.prepare_output_dir(fresh, overwrite=True) == fresh
    with pytest.raises(klc.LinconError, match="is a file"):
        outputs.prepare_output_dir(fresh / "old.json")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(klc.LinconError, match="cannot write"):
            outputs.prepare_output_dir(locked)


def test_fit_verbosity_is_one_line_per_epoch_off_a_terminal(monkeypatch):
    assert outputs.fit_verbosity(0) == 0
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert outputs.fit_verbosity(1) == 2
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert outputs.fit_verbosity(1) == 1


def test_require_names_the_pip_package():
    _deps.require("x", "json")  # present: no error
    with pytest.raises(_deps.MissingDependencyError, match="pip install no_such_module_lincon"):
        _deps.require("the study", "no_such_module_lincon")
    with pytest.raises(ImportError):  # also an ImportError, for callers that catch that
        _deps.require("the study", "no_such_module_lincon")


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    images = np.random.default_rng(0).uniform(-1, 1, (10, 16))
    plots.image_grid(tmp_path / "g.png", {"a": images, "b": images}, (4, 4), marks={"b": [False] * 10}, rows=2, cols=3)
    plots.curves(tmp_path / "c.png", {"loss": {"train": [3.0, 2.0, 1.0], "test": [3.5, 2.5, 1.5]}}, log=True)
    assert (tmp_path / "g.png").stat().st_size > 500 and (tmp_path / "c.png").stat().st_size > 500


def test_timing_helpers():
    with timing.Stopwatch() as sw:
        sum(range(1000))
    assert sw.seconds > 0
    t = timing.time_side_by_side(
        {"a": lambda: None, "b": lambda: sum(range(100))}, min_seconds=0.001, rounds=2, warmup=1
    )
    assert set(t) == {"a", "b"} and all(v > 0 for v in t.values())
    assert timing.format_seconds(1.5e-5) == "15.0 us" and timing.format_seconds(2.0) == "2.00 s"


def test_vae_config_validates_numbers():
    from keras_lincon.experiments.vae_study import VAEConfig

    for bad in (dict(epochs=0), dict(train_size=-5), dict(num_samples=0), dict(data="cifar")):
        with pytest.raises(klc.LinconError):
            VAEConfig(**bad)
    assert json.dumps(VAEConfig.quick().__dict__, default=str)


def test_scaled_rows_benchmark_quick(tmp_path):
    """benchmarks/scaled_rows.py runs in its quick mode; every layer output it checked is feasible (no timings)."""
    out_file = tmp_path / "scaled_rows.txt"
    out = run_python(f"""
        import sys; sys.path.insert(0, "benchmarks")
        import scaled_rows
        r = scaled_rows.main(["--quick", "--out", "{out_file}"])
        print("RESULT", r["feasible"], r["worst"] <= 1e-5, len(r["rows"]), sorted(r["speedups"]))
    """)
    assert "every layer output checked feasible (relative violation <= 1e-05): True" in out
    speedups = ["budget mix", "budget per_block", "budget/box mix", "budget/box per_block", "budget/box project"]
    assert f"RESULT True True 8 {speedups}" in out
    text = out_file.read_text()
    assert "load average before" in text and "load average after" in text and "numpy" in text


@pytest.mark.slow  # a benchmark's smoke test (about 25 s); `make test` stays under 15 minutes
def test_box_scaling_benchmark_quick(tmp_path):
    """benchmarks/box_scaling.py --quick: the exact variants stay feasible, ratios are reported (no quality claim)."""
    out_file = tmp_path / "box_scaling.txt"
    out = run_python(f"""
        import sys; sys.path.insert(0, "benchmarks")
        import box_scaling
        r = box_scaling.main(["--quick", "--archs", "mlp", "--variants", "scaled_project", "per_block",
                              "--seed", "3", "--data", "digits", "--out", "{out_file}"])
        print("RESULT", [(x["variant"], x["max_violation"] <= 1e-5, x["final"] > 0) for x in r])
    """)
    assert "RESULT [('scaled_project', True, True), ('per_block', True, True)]" in out
    assert "seed 3" in out_file.read_text()
