"""Tutorial: the paper's toy experiment — learning to project onto a cone.

Frerix et al. (CVPR-W 2020, section 4.1) train a network to map an image to
the closest image that satisfies the *checkerboard constraint*: cut the
28x28 image into 4x4 blocks of 7x7 pixels; block (r, c) must have
``(-1)^(r+c) * (sum of its pixels) <= 0``, and every pixel stays in
[-1, 1]. With the constrained layer as output and the loss
``||f(x) - x||^2``, training *is* learning the orthogonal projection, and no
output is ever infeasible. The experiment compares (a) the constrained layer,
(b) an unconstrained twin projected with OSQP at test time, and (c) the
optimal projection. Its code is packaged in
:mod:`keras_lincon.experiments.checkerboard_projection` (read it there: the
model is ``build_model``, the run ``run``), so ``keras-lincon toy`` works
from an installed wheel; this script is the same thing.

Run it:

    python tutorials/checkerboard_projection.py            # a few minutes on 2 cores
    python tutorials/checkerboard_projection.py --quick    # seconds (used by the tests)

It writes ``runs/checkerboard/``: ``projections.png`` (input | layer |
optimal | unconstrained), ``loss.png`` and ``metrics.json``; pass
``--overwrite`` to write over an earlier run.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_lincon.experiments import checkerboard_projection  # noqa: E402


def main(argv=None) -> dict:
    """Runs the toy experiment with command-line options ``argv``; returns its metrics (a dict)."""
    return checkerboard_projection.main(argv)


if __name__ == "__main__":
    main()
