"""Tests of the keras-lincon command."""

import json

import pytest

from keras_lincon import cli


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
