"""The optimization-proxy benchmark: DC3's data, its reference optima, the experiment and its tutorial."""

import json

import numpy as np
import pytest

from keras_lincon.errors import LinconError
from keras_lincon.experiments import qp_problems
from tests.conftest import run_python

pytest.importorskip("osqp", reason="the references and the baseline are OSQP's (pip install osqp)")


@pytest.fixture(scope="module")
def convex():
    return qp_problems.make_problem("convex")


def test_data_follow_the_published_recipe(convex):
    # The recipe itself, with the legacy global generator, drawn in its order.
    np.random.seed(17)
    Q = np.diag(np.random.random(100))
    p = np.random.random(100)
    A = np.random.normal(loc=0, scale=1.0, size=(50, 100))
    X = np.random.uniform(-1, 1, size=(10_000, 50))
    G = np.random.normal(loc=0, scale=1.0, size=(50, 100))
    h = np.sum(np.abs(G @ np.linalg.pinv(A)), axis=1)
    for ours, recipe in ((np.diag(convex.q_diag), Q), (convex.p, p), (convex.A, A), (convex.X, X), (convex.G, G)):
        np.testing.assert_array_equal(ours, recipe)
    np.testing.assert_allclose(convex.h, h, rtol=1e-12)
    # Deterministic, and pinned: a change of generator or order would move these.
    again = qp_problems.make_problem("convex")
    np.testing.assert_array_equal(again.h, convex.h)
    np.testing.assert_allclose(convex.h[:3], [5.74945203, 6.97377947, 5.42768461], rtol=1e-8)
    np.testing.assert_allclose(convex.q_diag[:3], [0.294665, 0.53058676, 0.19152079], rtol=1e-6)


def test_the_moving_centre_is_strictly_feasible(convex):
    """DESIGN.md: pinv(A) x is feasible for every x in the box, with slack >= 2.46 on this data."""
    centres = convex.X @ np.linalg.pinv(convex.A).T
    slack = convex.h - centres @ convex.G.T
    assert slack.min() > 2.4
    assert convex.violations(centres, convex.X).max() < 1e-12


def test_nonconvex_variant_shares_the_data(convex):
    nonconvex = qp_problems.make_problem("nonconvex")
    np.testing.assert_array_equal(nonconvex.G, convex.G)
    np.testing.assert_array_equal(nonconvex.X, convex.X)
    y = np.full((1, 100), 0.5)
    assert nonconvex.objective(y)[0] == pytest.approx(0.125 * convex.q_diag.sum() + np.sin(0.5) * convex.p.sum())


def test_splits(convex):
    assert (convex.rows("pinet", "train")[[0, -1]] == [0, 7951]).all()
    assert (convex.rows("pinet", "valid")[[0, -1]] == [7952, 8975]).all()
    assert (convex.rows("pinet", "test")[[0, -1]] == [8976, 9999]).all()
    assert (convex.rows("dc3", "train")[[0, -1]] == [0, 8333]).all()
    assert (convex.rows("dc3", "test")[[0, -1]] == [9167, 9999]).all()
    with pytest.raises(LinconError, match="pinet"):
        convex.rows("yes", "test")
    with pytest.raises(LinconError, match="convex"):
        qp_problems.make_problem("yes")


def test_convex_references_are_feasible_and_kkt_optimal(convex):
    rows = convex.rows("pinet", "test")[:6]
    reference = qp_problems.solve_reference(convex, rows)
    assert reference.unpolished == 0
    kkt = reference.kkt
    assert kkt["primal"] < 1e-11 and kkt["stationarity"] < 1e-11
    assert kkt["dual"] == 0 and kkt["complementarity"] < 1e-11
    # An independent solver agrees: OSQP at tight tolerance, polished.
    tight = qp_problems.OSQPSolver(convex, eps=1e-10, polishing=True, max_iter=200_000)
    osqp = np.array([tight.solve(x) for x in convex.X[rows]])
    np.testing.assert_allclose(convex.objective(osqp), reference.objective, rtol=1e-7)
    # Strictly convex: any feasible point does no better.
    centres = convex.X[rows] @ np.linalg.pinv(convex.A).T
    assert np.all(reference.objective < convex.objective(centres))


def test_nonconvex_references_are_local_optima():
    nonconvex = qp_problems.make_problem("nonconvex")
    rows = nonconvex.rows("pinet", "test")[:4]
    reference = qp_problems.solve_reference(nonconvex, rows)
    assert reference.unpolished == 0
    assert reference.kkt["primal"] < 1e-11 and reference.kkt["stationarity"] < 1e-11
    assert reference.kkt["dual"] == 0 and reference.kkt["curvature"] > 0  # a strict local minimum
    # No worse than SciPy's SLSQP from the same start (the convex optimum).
    starts = qp_problems.solve_reference(qp_problems.convex_twin(nonconvex), rows).Y
    for x, start, objective in zip(nonconvex.X[rows], starts, reference.objective, strict=True):
        slsqp = qp_problems.local_optimum_slsqp(nonconvex, x, start)
        assert objective <= nonconvex.objective(slsqp[None])[0] + 1e-9


def test_options_name_their_choices():
    from keras_lincon.experiments.optimization_proxy import ProxyConfig

    with pytest.raises(LinconError, match="'convex', 'nonconvex', 'large'"):
        ProxyConfig(problem="yes").resolved()
    with pytest.raises(LinconError, match="'pinet', 'dc3'"):
        ProxyConfig(protocol="yes").resolved()
    resolved = ProxyConfig(protocol="dc3").resolved()
    assert (resolved.batch_size, resolved.learning_rate) == (200, 1e-4)
    assert ProxyConfig(quick=True, epochs=50).resolved().epochs == 2


def small_problem(name: str = "convex") -> qp_problems.SimpleQP:
    """DC3's recipe at 20 variables, 10 + 10 rows: every step of the pipeline in a few seconds."""
    return qp_problems.generate_problem(20, 10, 10, nonconvex=name == "nonconvex", name=name)


def check_quick_results(results: dict, out) -> None:
    assert results["cv_max_relative"] <= 1e-5  # the float32 promise, every test row
    assert results["cv_max"] < 1e-3
    assert np.isfinite(results["rs_mean"]) and results["rs_max"] >= results["rs_mean"] >= -1e-6
    assert results["osqp_seconds_per_instance"] > 0 and results["inference_1024_seconds"] > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["rs_mean"] == results["rs_mean"] and len(saved["loss"]) == 2
    assert "| RS mean / median / max |" in (out / "results.md").read_text()


def test_nonconvex_float64_pipeline_on_a_small_qp(tmp_path, monkeypatch):
    import keras

    from keras_lincon.experiments import optimization_proxy

    monkeypatch.setattr(qp_problems, "make_problem", small_problem)
    config = optimization_proxy.ProxyConfig(problem="nonconvex", float64=True, quick=True, out=str(tmp_path), verbose=0)
    results = optimization_proxy.run(config)
    check_quick_results(results, tmp_path)
    assert results["size"] == [20, 10, 10] and results["problem"] == "nonconvex"
    assert results["floatx"] == "float64" and results["cv_max_relative"] <= 1e-12
    assert keras.config.floatx() == "float32"  # restored after the run


def test_quick_experiment_end_to_end(tmp_path):
    """The real 100/50/50 set in quick mode: 512 train rows, 64 test rows, 2 epochs."""
    from keras_lincon.experiments import optimization_proxy

    results = optimization_proxy.run(optimization_proxy.ProxyConfig(quick=True, out=str(tmp_path), verbose=0))
    check_quick_results(results, tmp_path)
    assert results["optimum_mean"] == pytest.approx(-15.1, abs=0.1)  # the quick rows' mean


@pytest.mark.slow
def test_tutorial_quick():
    out = run_python("""
        import sys; sys.path.insert(0, "tutorials")
        import optimization_proxy as t
        r = t.main(["--quick"])
        print("RESULT", r["max_relative_violation"] <= 1e-5, r["rs_mean"] > -1e-6)
    """)
    assert "RESULT True True" in out
    assert "False" not in out.split("RESULT")[0]


def test_reference_mean_optimum_on_pinets_test_rows(convex):
    """The published mean optimum, about -15.04 on rows 8976-9999 (measured -15.0372; 3-7 s)."""
    reference = qp_problems.solve_reference(convex, convex.rows("pinet", "test"))
    assert reference.objective.mean() == pytest.approx(-15.04, abs=0.01)
    assert reference.unpolished == 0 and reference.kkt["primal"] < 1e-11
