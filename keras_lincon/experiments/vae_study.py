"""The main job: a constrained VAE vs its unconstrained twin, with a report.

``keras-lincon vae`` (and ``make demo``) trains both on real images with the
paper's checkerboard constraint and the [-1, 1] box, then writes to
``runs/<name>/``: ``samples.png``, ``reconstructions.png``, ``loss.png``,
``metrics.json`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np

import keras_lincon as klc
from keras_lincon.errors import LinconError
from keras_lincon.experiments import datasets
from keras_lincon.experiments._deps import require
from keras_lincon.experiments.feasibility import FEASIBLE, feasible_mask  # noqa: F401  (FEASIBLE: old public name)
from keras_lincon.experiments.outputs import fit_verbosity, prepare_output_dir
from keras_lincon.experiments.plots import curves, image_grid
from keras_lincon.experiments.timing import Stopwatch
from keras_lincon.models import ConstrainedVAE


@dataclasses.dataclass
class VAEConfig:
    """Settings of the experiment; ``quick()`` gives a seconds-long run."""

    data: str = "auto"
    latent_dim: int = 16
    hidden: tuple = (512, 256)
    epochs: int = 12
    batch_size: int = 128
    train_size: int | None = None
    test_size: int = 2000
    num_samples: int = 10_000
    projection_samples: int = 1000  # OSQP on this many, time scaled to num_samples
    likelihood_scale: float = 0.1
    learning_rate: float = 1e-3
    seed: int = 0
    scaling: str = "per_block"  # the constraint layer's box treatment (LinearInequalityConstraint)
    out: str = "runs/vae"
    verbose: int = 1
    overwrite: bool = False  # write into a non-empty ``out``

    def __post_init__(self):
        for name in ("latent_dim", "epochs", "batch_size", "test_size", "num_samples", "projection_samples"):
            _positive(name, getattr(self, name))
        if self.train_size is not None:
            _positive("train_size", self.train_size)
        if self.scaling not in klc.layers.SCALINGS:
            raise LinconError(f"unknown scaling {self.scaling!r}; choose one of {klc.layers.SCALINGS}.")
        if self.data not in datasets.NAMES + ("auto",):
            raise LinconError(f"unknown data set {self.data!r}; choose one of {datasets.NAMES + ('auto',)}.")

    @classmethod
    def quick(cls, **overrides) -> VAEConfig:
        base = dict(
            data="digits",
            latent_dim=4,
            hidden=(64, 32),
            epochs=2,
            train_size=512,
            test_size=128,
            num_samples=500,
            projection_samples=50,
            out="runs/vae-quick",
            verbose=0,
        )
        base.update(overrides)
        return cls(**base)


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise LinconError(f"{name.replace('_', '-')} must be a positive integer; got {value!r}.")


def _mlp(units, name):
    return keras.Sequential([keras.layers.Dense(u, activation="relu") for u in units], name=name)


def build_vae(image_shape, cfg: VAEConfig, constrained: bool) -> ConstrainedVAE:
    """The experiment's VAE; ``constrained=False`` gives the twin (Dense output)."""
    h, w = image_shape
    encoder = keras.Sequential(
        [keras.Input(image_shape), keras.layers.Flatten(), _mlp(cfg.hidden, "enc")], name="encoder"
    )
    decoder = _mlp(cfg.hidden[::-1], "decoder")
    A = klc.checkerboard(image_shape, datasets.checkerboard_grid(image_shape)) if constrained else None
    return ConstrainedVAE(
        encoder,
        decoder,
        A,
        latent_dim=cfg.latent_dim,
        box=(-1.0, 1.0) if constrained else None,
        scaling=cfg.scaling if constrained else None,
        output_shape=image_shape,
        likelihood_scale=cfg.likelihood_scale,
        name="constrained_vae" if constrained else "unconstrained_vae",
    )


def run(cfg: VAEConfig) -> dict:
    """Trains both VAEs, measures, writes the report; returns the metrics.

    Raises:
        MissingDependencyError: osqp or matplotlib is missing (checked first).
        LinconError: the output folder is not empty (and not ``cfg.overwrite``)
            or not writable; the data set is missing or corrupt.
    """
    require("the VAE study", "osqp", "matplotlib", "tensorflow_probability")
    out = prepare_output_dir(cfg.out, cfg.overwrite)
    from keras_lincon.baselines.projection import OSQPProjector

    keras.utils.set_random_seed(cfg.seed)
    data = datasets.load(cfg.data, max_train=cfg.train_size, max_test=cfg.test_size)
    shape = data.image_shape
    A = klc.checkerboard(shape, datasets.checkerboard_grid(shape))
    say = (lambda *a: print(*a, flush=True)) if cfg.verbose else (lambda *a: None)
    say(
        f"data: {data.name}, {len(data.x_train)} train / {len(data.x_test)} test images {shape}; "
        f"constraint: {len(A)}-block checkerboard + box [-1, 1]"
    )

    models, histories, train_seconds = {}, {}, {}
    for name, constrained in (("constrained", True), ("unconstrained", False)):
        vae = build_vae(shape, cfg, constrained)
        vae.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
        say(f"\ntraining the {name} VAE ({cfg.epochs} epochs)")
        with Stopwatch() as sw:
            hist = vae.fit(
                data.x_train,
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                validation_data=(data.x_test,),
                verbose=fit_verbosity(cfg.verbose),
            )
        train_seconds[name] = sw.seconds
        models[name], histories[name] = vae, hist.history

    x_test = data.x_test
    flat_test = x_test.reshape(len(x_test), -1).astype(np.float64)
    metrics = {"data": data.name, "config": dataclasses.asdict(cfg), "train_seconds": train_seconds}
    recon, samples, sample_seconds = {}, {}, {}
    for name, vae in models.items():
        say(f"\nevaluating the {name} VAE: test loss, reconstructions, {cfg.num_samples:,} samples")
        evaluation = vae.evaluate(x_test, batch_size=256, verbose=0, return_dict=True)
        recon[name] = np.asarray(vae.predict(x_test, batch_size=256, verbose=0)).reshape(len(x_test), -1)
        vae.sample(cfg.num_samples, seed=cfg.seed)  # compile (XLA) before timing
        with Stopwatch() as sw:
            samples[name] = np.asarray(vae.sample(cfg.num_samples, seed=cfg.seed + 1)).reshape(cfg.num_samples, -1)
        sample_seconds[name] = sw.seconds
        metrics[name] = {
            "test_negative_elbo": float(evaluation["loss"]),
            "test_reconstruction_mse": float(np.mean((recon[name] - flat_test) ** 2)),
            "feasible_reconstructions": float(np.mean(feasible_mask(recon[name], A))),
            "feasible_samples": float(np.mean(feasible_mask(samples[name], A))),
            "sample_seconds": sample_seconds[name],
        }
        say(f"  sampled in {sw.seconds:.3f} s; feasible samples {metrics[name]['feasible_samples']:.1%}")

    # Making the twin feasible: OSQP per sample (time extrapolated from a subset).
    osqp = OSQPProjector(A, box=(-1.0, 1.0))
    count = min(cfg.projection_samples, cfg.num_samples)
    say(f"\nOSQP: projecting {count:,} twin samples (timing) and {len(recon['unconstrained']):,} twin reconstructions")
    with Stopwatch() as sw:
        osqp.project(samples["unconstrained"][:count])
    per_sample = sw.seconds / count
    projected_recon = _project_in_chunks(osqp, recon["unconstrained"], say)
    twin = metrics["unconstrained"]
    twin["osqp_seconds_per_sample"] = per_sample
    twin["projected_sample_seconds"] = sample_seconds["unconstrained"] + per_sample * cfg.num_samples
    twin["projected_reconstruction_mse"] = float(np.mean((projected_recon - flat_test) ** 2))
    metrics["generation_speedup_vs_projection"] = twin["projected_sample_seconds"] / sample_seconds["constrained"]
    metrics["reconstruction_ratio_vs_projected_twin"] = (
        metrics["constrained"]["test_reconstruction_mse"] / twin["projected_reconstruction_mse"]
    )

    say("writing the figures and the report")
    marks = {
        "constrained VAE": feasible_mask(samples["constrained"][:64], A),
        "unconstrained VAE": feasible_mask(samples["unconstrained"][:64], A),
    }
    image_grid(
        out / "samples.png",
        {"constrained VAE": samples["constrained"], "unconstrained VAE": samples["unconstrained"]},
        shape,
        marks=marks,
    )
    image_grid(
        out / "reconstructions.png",
        {
            "test images": flat_test,
            "constrained VAE": recon["constrained"],
            "unconstrained VAE": recon["unconstrained"],
        },
        shape,
    )
    loss_panels = {"loss (negative ELBO per image)": {}, "reconstruction term": {}}
    for name, hist in histories.items():
        loss_panels["loss (negative ELBO per image)"][f"{name} train"] = hist["loss"]
        if "val_loss" in hist:
            loss_panels["loss (negative ELBO per image)"][f"{name} test"] = hist["val_loss"]
        loss_panels["reconstruction term"][name] = hist["reconstruction"]
    curves(out / "loss.png", loss_panels)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.md").write_text(report(metrics))
    say("\n" + report(metrics))
    say(f"wrote {out}/samples.png, reconstructions.png, loss.png, metrics.json, report.md")
    return metrics


def _project_in_chunks(osqp, y: np.ndarray, say, chunk: int = 250) -> np.ndarray:
    """OSQP projection of the rows of ``y`` with a progress line per chunk (it can take minutes)."""
    parts = []
    with Stopwatch() as sw:
        for start in range(0, len(y), chunk):
            parts.append(osqp.project(y[start : start + chunk]))
            if len(y) > chunk:
                say(f"  projected {min(start + chunk, len(y)):,}/{len(y):,}")
    say(f"  OSQP projection took {sw.seconds:.1f} s")
    return np.concatenate(parts) if parts else y


def report(m: dict) -> str:
    """The run's report as Markdown."""
    c, u, cfg = m["constrained"], m["unconstrained"], m["config"]
    n = cfg["num_samples"]
    lines = [
        "# Constrained VAE vs unconstrained twin",
        "",
        f"Data: {m['data']}; checkerboard constraint + box [-1, 1]; latent dim {cfg['latent_dim']}; "
        f"{cfg['epochs']} epochs each; training took {m['train_seconds']['constrained']:.0f} s (constrained) and "
        f"{m['train_seconds']['unconstrained']:.0f} s (unconstrained).",
        "",
        "| | constrained VAE | unconstrained VAE |",
        "|---|---:|---:|",
        f"| test negative ELBO per image | {c['test_negative_elbo']:.1f} | {u['test_negative_elbo']:.1f} |",
        f"| test reconstruction MSE | {c['test_reconstruction_mse']:.4f} | {u['test_reconstruction_mse']:.4f} |",
        f"| ... after OSQP projection | (already feasible) | {u['projected_reconstruction_mse']:.4f} |",
        f"| feasible reconstructions | {c['feasible_reconstructions']:.1%} | {u['feasible_reconstructions']:.1%} |",
        f"| feasible samples (of {n:,}) | {c['feasible_samples']:.1%} | {u['feasible_samples']:.1%} |",
        f"| time to generate {n:,} samples | {c['sample_seconds']:.3f} s | {u['sample_seconds']:.3f} s |",
        f"| ... plus OSQP projection to make them feasible | — | {u['projected_sample_seconds']:.1f} s |",
        "",
        f"Feasible generation: constrained VAE **{m['generation_speedup_vs_projection']:.0f}x faster** than the "
        f"unconstrained VAE + per-sample OSQP projection ({u['osqp_seconds_per_sample'] * 1e3:.2f} ms per sample, "
        f"measured on {cfg['projection_samples']} samples).",
        f"Reconstruction MSE, constrained / projected twin: **{m['reconstruction_ratio_vs_projected_twin']:.2f}**.",
        "",
        "Feasible means every constraint and box row holds within the layer's stated tolerance "
        "`a_i.x - b_i <= 1e-5 (|b_i| + ||a_i|| ||x||)`. In the pictures, infeasible samples have a red frame.",
        "",
    ]
    return "\n".join(lines)
