"""Each tutorial runs in its quick mode and shows what it promises."""

import json

import keras_lincon as klc
from tests.conftest import run_python


def test_checkerboard_projection_tutorial_quick(tmp_path):
    out = run_python(f"""
        import sys; sys.path.insert(0, "tutorials")
        import checkerboard_projection as t
        r = t.main(["--quick", "--out", "{tmp_path}"])
        print("RESULT", r["layer_feasible_share"], r["unconstrained_projected_feasible_share"])
    """)
    assert "RESULT 1.0 1.0" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["layer_mse"] > 0 and metrics["optimal_mse"] <= metrics["layer_mse"] + 1e-9
    assert (tmp_path / "projections.png").stat().st_size > 1000 and (tmp_path / "loss.png").is_file()


def test_constrained_vae_tutorial_quick():
    out = run_python("""
        import sys; sys.path.insert(0, "tutorials")
        import constrained_vae as t
        print("WORST", t.main(["--quick"]))
    """)
    worst = float(out.split("WORST")[-1])
    assert worst <= klc.layers.FLOAT32_TOLERANCE
    assert "latent codes non-negative: True" in out
