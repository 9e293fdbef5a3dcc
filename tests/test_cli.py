"""Tests of the keras-lincon command."""

import json

import pytest

from keras_lincon import cli
from tests.conftest import run_python


def test_generators_command(capsys):
    assert cli.main(["generators", "--size", "8", "--grid", "2", "--compare"]) == 0
    out = capsys.readouterr().out
    assert "method=cdd" in out and "max violation" in out


def test_errors_exit_2_with_the_message(capsys):
    assert cli.main(["generators", "--size", "9", "--grid", "2"]) == 2
    assert "split evenly" in capsys.readouterr().err


def test_vae_quick_writes_the_report(tmp_path, capsys):
    assert cli.main(["vae", "--quick", "--out", str(tmp_path)]) == 0
    for name in ("samples.png", "reconstructions.png", "loss.png", "metrics.json", "report.md"):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["constrained"]["feasible_samples"] == 1.0
    assert metrics["constrained"]["feasible_reconstructions"] == 1.0
    assert metrics["generation_speedup_vs_projection"] > 1
    assert "Constrained VAE vs unconstrained twin" in (tmp_path / "report.md").read_text()


def test_bench_quick(capsys):
    assert cli.main(["bench", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "osqp/layer" in out and "max violation" in out


def test_unknown_command_is_argparse_error():
    with pytest.raises(SystemExit):
        cli.main(["nope"])


# ------------------------------------------------------ start-up and errors


def test_help_imports_neither_keras_nor_tensorflow():
    out = run_python("""
        import sys
        from keras_lincon import cli
        try:
            cli.main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0
        heavy = sorted(m for m in ("keras", "tensorflow", "jax", "torch", "numpy") if m in sys.modules)
        print("HEAVY", heavy)
    """)
    assert "HEAVY []" in out


def test_plain_import_then_load_model_finds_the_classes(tmp_path):
    """`import keras_lincon` is lazy, yet a saved model loads right after it (registration on Keras import)."""
    run_python(f"""
        import keras, numpy as np, keras_lincon as klc
        m = keras.Sequential([keras.Input((3,)), klc.LinearInequalityConstraint(klc.monotone_chain(4))])
        np.save("{tmp_path}/y.npy", m.predict(np.ones((2, 3), "float32"), verbose=0))
        m.save("{tmp_path}/m.keras")
    """)
    # TensorFlow looks up keras's spec without executing it, then imports it: covered by the third order
    for order in (
        "import keras_lincon\nimport keras",
        "import keras\nimport keras_lincon",
        "import keras_lincon\nimport tensorflow\nimport keras",
    ):
        out = run_python(
            order
            + f"""
import sys, numpy as np
assert "keras_lincon.layers" in sys.modules  # registered without touching a lazy name
assert keras.saving.get_registered_object("keras_lincon>ConstrainedVAE") is not None
m = keras.saving.load_model("{tmp_path}/m.keras")
np.testing.assert_allclose(m.predict(np.ones((2, 3), "float32"), verbose=0), np.load("{tmp_path}/y.npy"), atol=1e-6)
print("LOADED", type(m.layers[-1]).__name__)
"""
        )
        assert "LOADED LinearInequalityConstraint" in out


def test_jax_backend_registers_the_layer_without_tensorflow():
    out = run_python(
        """
        import sys, keras_lincon, keras
        print("REG", keras.saving.get_registered_object("keras_lincon>LinearInequalityConstraint") is not None,
              "tensorflow" in sys.modules)
    """,
        env={"KERAS_BACKEND": "jax"},
    )
    assert "REG True False" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["vae", "--epochs", "0"], "--epochs: must be a positive integer, got 0"),
        (["vae", "--train-size", "0"], "--train-size: must be a positive integer"),
        (["vae", "--train-size", "-5"], "--train-size: must be a positive integer, got -5"),
        (["vae", "--samples", "0"], "--samples: must be a positive integer"),
        (["toy", "--epochs", "x"], "expected a positive integer"),
        (["export", "m.keras", "srv", "--version", "0"], "--version: must be a positive integer"),
    ],
)
def test_bad_numbers_are_one_line_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _one_line_error(capsys, argv):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-lincon: error: "), captured.err
    return lines[0]


def test_non_empty_output_folder_is_refused(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text("{}")
    for command in ("vae", "toy"):
        line = _one_line_error(capsys, [command, "--quick", "--out", str(tmp_path)])
        assert "not empty" in line and "--overwrite" in line
    assert (tmp_path / "metrics.json").read_text() == "{}"  # untouched


def test_unwritable_output_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    line = _one_line_error(capsys, ["toy", "--quick", "--out", str(tmp_path / "file" / "sub")])
    assert "cannot write to output folder" in line
    line = _one_line_error(capsys, ["vae", "--quick", "--out", str(tmp_path / "file")])
    assert "is a file" in line


def test_missing_optional_dependency_is_named_before_training(tmp_path, capsys, monkeypatch):
    import importlib.util

    from keras_lincon.experiments import _deps

    real = importlib.util.find_spec
    monkeypatch.setattr(_deps.importlib.util, "find_spec", lambda name, *a: None if name == "osqp" else real(name, *a))
    for argv in (
        ["vae", "--quick", "--out", str(tmp_path / "v")],
        ["toy", "--quick", "--out", str(tmp_path / "t")],
        ["bench", "--quick"],
    ):
        line = _one_line_error(capsys, argv)
        assert "pip install osqp" in line
    assert not (tmp_path / "v").exists() and not (tmp_path / "t").exists()  # failed before any work


def test_export_errors_are_one_line(tmp_path, capsys):
    line = _one_line_error(capsys, ["export", str(tmp_path / "missing.keras"), str(tmp_path / "srv")])
    assert "is not a file" in line
    (tmp_path / "m.keras").write_bytes(b"")
    (tmp_path / "srv" / "1").mkdir(parents=True)
    line = _one_line_error(capsys, ["export", str(tmp_path / "m.keras"), str(tmp_path / "srv")])
    assert "--overwrite" in line


def test_toy_quick_from_the_package(tmp_path, capsys):
    assert cli.main(["toy", "--quick", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["layer_feasible_share"] == 1.0
    assert (tmp_path / "projections.png").is_file() and (tmp_path / "loss.png").is_file()
    # a second run needs --overwrite
    assert cli.main(["toy", "--quick", "--out", str(tmp_path)]) == 2
    assert cli.main(["toy", "--quick", "--out", str(tmp_path), "--overwrite"]) == 0


@pytest.mark.parametrize("command", ["vae", "toy"])
def test_scaling_choices_are_the_layers(command):
    """The CLI lists the treatments itself (its --help imports no Keras); they must be the layer's."""
    from keras_lincon.layers import SCALINGS

    parser = cli.build_parser()._subparsers._group_actions[0].choices[command]
    (scaling,) = [a for a in parser._actions if a.dest == "scaling"]
    assert set(scaling.choices) == set(SCALINGS)


# ------------------------------------------------------ optimization proxy


def test_proxy_quick_prints_the_table(tmp_path, capsys, monkeypatch):
    pytest.importorskip("osqp")
    from keras_lincon.experiments import qp_problems

    # DC3's recipe at 20 variables keeps this to seconds (tests/test_optimization_proxy.py runs the real size).
    monkeypatch.setattr(qp_problems, "make_problem", lambda name: qp_problems.generate_problem(20, 10, 10, name=name))
    assert cli.main(["proxy", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| RS mean / median / max |" in out and "| OSQP per instance (default accuracy) |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["cv_max_relative"] <= 1e-5 and results["protocol"] == "pinet"
    # a second run needs --overwrite; a bad value is a one-line usage error
    assert cli.main(["proxy", "--quick", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["proxy", "--problem", "yes"])


def test_proxy_scaling_choices_are_the_layers():
    from keras_lincon.layers import SCALINGS

    parser = cli.build_parser()._subparsers._group_actions[0].choices["proxy"]
    (scaling,) = [a for a in parser._actions if a.dest == "scaling"]
    assert set(scaling.choices) == set(SCALINGS)
