"""Tutorial: a variational autoencoder whose every sample obeys the constraints.

A VAE decodes latent codes into images. Here the decoder's output layer is a
``LinearInequalityConstraint``: its output is a combination of precomputed
generators of the feasible set, so every reconstruction *and every sample
drawn from the prior* satisfies the constraints — no projection afterwards,
no penalty weight to tune. This follows the paper's application (Frerix et
al., CVPR-W 2020) with the checkerboard constraint on images in [-1, 1].

Run it:

    python tutorials/constrained_vae.py            # ~2 minutes on 2 cores
    python tutorials/constrained_vae.py --quick    # seconds (used by the tests)

For the full comparison with an unconstrained twin, run ``make demo``.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import keras_lincon as klc  # noqa: E402
from keras_lincon.experiments import datasets  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a constrained VAE and check its samples.")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    # 1. Data: real images scaled to [-1, 1] (Fashion-MNIST if installed, else 8x8 digits).
    data = datasets.load("digits" if args.quick else "auto", max_train=512 if args.quick else 20_000)
    shape = data.image_shape

    # 2. The constraint: the paper's checkerboard. Block (r, c) of the image must
    #    have (-1)^(r+c) * (sum of its pixels) <= 0; every pixel stays in [-1, 1].
    A = klc.checkerboard(shape, datasets.checkerboard_grid(shape))
    print(f"{len(A)} constraints on {A.shape[1]} pixels; generators:", klc.h_to_v(A))

    # 3. Encoder and decoder are ordinary Keras models. The decoder ends with
    #    features; ConstrainedVAE adds the Gaussian posterior head and the
    #    constrained output layer.
    hidden = 32 if args.quick else 256
    encoder = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(hidden, activation="relu")]
    )
    decoder = keras.Sequential([keras.layers.Dense(hidden, activation="relu")])

    # 4. The prior is a TFP distribution: here a mixture of Gaussians, learned
    #    with the model (the KL is then estimated by Monte Carlo). Latent codes
    #    can be constrained too: latent_A z <= 0 with latent_A = -I makes every
    #    code non-negative (the KL is taken over the unconstrained code u, with
    #    z = g(u) computed by a second constraint layer).
    latent = 4 if args.quick else 8
    vae = klc.ConstrainedVAE(
        encoder,
        decoder,
        A,
        latent_dim=latent,
        box=(-1.0, 1.0),
        output_shape=shape,
        prior="mixture",
        prior_components=5,
        latent_A=-np.eye(latent),
    )
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(data.x_train, epochs=2 if args.quick else 10, batch_size=128, verbose=0 if args.quick else 2)

    # 5. Every sample satisfies the constraints, by construction.
    samples = np.asarray(vae.sample(1000, seed=0)).reshape(1000, -1)
    worst = vae.output_constraint.assert_constraints(samples)
    print(f"1000 samples: worst relative violation {worst:.1e} (tolerance 1e-5)")
    block_sums = samples @ A.T
    print("block sums of the first sample (signs alternate, all <= 0 after the sign):", np.round(block_sums[0], 2))
    codes = np.asarray(vae.encode(data.x_test[:100]))
    print(f"latent codes non-negative: {bool(np.all(codes >= -1e-6))}")

    # 6. Check it yourself with a projection baseline: OSQP moves feasible points nowhere.
    try:
        from keras_lincon.baselines.projection import OSQPProjector

        projected = OSQPProjector(A, box=(-1.0, 1.0)).project(samples[:20])
        print(f"distance from 20 samples to their projection: {np.abs(projected - samples[:20]).max():.1e}")
    except ImportError:
        pass
    _ = tfp  # TFP powers the prior and the likelihood inside the model
    return worst


if __name__ == "__main__":
    main()
