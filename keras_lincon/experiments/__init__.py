"""Applications built on keras_lincon: the studies, benchmarks and data behind the CLI.

Nothing in the library core (``polyhedra``, ``layers``, ``models``,
``serving``, ``distribute``, ``precision``, ``projection``) imports this
subpackage; it imports the core like any user would.

Modules:

* :mod:`~keras_lincon.experiments.datasets`: offline image data in [-1, 1].
* :mod:`~keras_lincon.experiments.vae_study`: constrained VAE vs its
  unconstrained twin, with a report (``keras-lincon vae``).
* :mod:`~keras_lincon.experiments.checkerboard_projection`: the paper's toy
  experiment, learning the projection onto the checkerboard cone
  (``keras-lincon toy``).
* :mod:`~keras_lincon.experiments.inference_bench`: constrained layer vs
  project-at-test-time, timed (``keras-lincon bench``).
* :mod:`~keras_lincon.experiments.qp_problems`: DC3's QP data from its
  published recipe, splits and reference optima (numpy, scipy, OSQP).
* :mod:`~keras_lincon.experiments.optimization_proxy`: a network trained on
  the objective alone to solve those QPs, with the layer taking ``A y = x``
  from its input (``keras-lincon proxy``).
* :mod:`~keras_lincon.experiments.timing`, :mod:`~keras_lincon.experiments.plots`,
  :mod:`~keras_lincon.experiments.feasibility`: the shared helpers.
"""
