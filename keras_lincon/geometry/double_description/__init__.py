"""Bounded, exact-first double description (numpy + pycddlib, no Keras).

:func:`enumerate_generators` turns ``P = {x : A x <= b, C x = d}`` into
vertices, extreme rays and a lineality basis with pycddlib 3, and guards the
three ways a plain cddlib call goes wrong:

* **Round-off.** Small systems run in exact rational arithmetic
  (``cdd.gmp``; ``Fraction(float)`` is exact; integer rows go in as coprime
  integers), where a generator is a ray exactly when its first entry is
  ``0``. Larger systems, for which exact arithmetic is measured to be about
  100-300 times slower (see :data:`EXACT_MAX_BOUND`), run in floating point
  on rows scaled by powers of two (exact in floating point; each row's
  largest entry in ``[1/2, 1)``), with a relative tolerance to tell rays
  from vertices, a soundness check (every generator satisfies the rows) and
  a completeness check (every edge of every simple vertex ends at a found
  vertex or ray; LP support values of ``P`` in row normals and random
  directions equal those of the generators;
  :mod:`keras_lincon.geometry.generator_check`); a failed check raises instead of
  returning a partial set. Integer or small-rational systems (denominators
  <= 10^6) always run exactly (measured 5-20x slower than float, not 100x).
* **Unbounded work.** A call is refused without a finished run only when a
  *true lower bound* on the vertex count exceeds ``max_generators``
  (:class:`GeneratorExplosionError`, ``reason == "bound"``, "certainly above
  the cap"; :func:`generator_lower_bound`: products of intervals,
  symmetric-group orbits, perfect-matching polytopes), never on McMullen's
  upper bound, which ignores structure and refused 16-vertex sets (it only
  steers arithmetic and the worker). Every other set is enumerated; runs
  that McMullen's bound says may be long (above :data:`WORKER_MIN_BOUND`) go
  to a worker process, so Ctrl-C stops them promptly and ``time_budget``
  ends them with :class:`ConstructionTimeoutError` (``reason == "time"``).
  When the bound exceeds the cap, the parent, otherwise idle, guards the run
  after :data:`GUARD_DELAY`: the lower bound first (a refusal in ~0.1 s),
  then a :class:`VertexWalk` along the edges of simple vertices, which stops
  cddlib with :class:`TooManyGeneratorsError` (``reason == "count"``, "above
  the cap after N generators") once it has counted past the cap (cddlib has
  no hook to stop at a count), or answers instead of cddlib when it ends
  complete (the permutahedra). A finished run over the cap raises the same
  error. The worker process is kept between calls (a fork costs ~30 ms with
  TensorFlow imported, more than a small exact run) and replaced after a
  timeout, Ctrl-C, a guard's refusal or an error. Cross-polytopes (``2^n``
  rows, 2n vertices) are recognised and need no enumeration.
* **Near-duplicates.** Vertices and rays closer than
  :data:`keras_lincon.geometry.representation.MERGE_RTOL` (relative) are one
  generator (:func:`keras_lincon.geometry.representation.merge_close_rows`) before
  they are counted, so counts do not depend on the order or scale of rows.
* **Raw cddlib errors** (``RuntimeError: Numerical inconsistency``, ...)
  become :class:`RepresentationCheckError` with advice.

Measured thresholds (random Gaussian polytopes, pycddlib 3.0.2, one core of a
shared 2-core machine; bound = McMullen(m + 1, n)):

======  =====  ========  ==========  =========  ============
n       m      bound     generators  float (s)  exact (s)
======  =====  ========  ==========  =========  ============
6       20     952       197         0.001      0.27
8       20     2,940     661         0.008      1.1 - 3.4
10      20     5,733     1,052       0.012      5.0
10      30     78,430    4,635       0.83       60
======  =====  ========  ==========  =========  ============

The float path's check cost 0.4-2 s on the last three rows (edge walk
0.06-0.8 s, the rest LPs), about the DD time. On 500 random 6-10 x 2-4
Gaussian systems with row scales 10^-6..10^6, plain float cddlib with the
``first column != 0`` rule was wrong or raised on 58; the float path here
matched the exact reference on all 500 (and raises when its check fails).
A worker process start costs 10-30 ms (fork, measured with TensorFlow
imported), once: the process is kept. In-process runs (bound <= :data:`WORKER_MIN_BOUND`) cannot be interrupted
but take about a second at most.

The modules follow one run: :mod:`.generators` (``enumerate_generators``:
options, bound, arithmetic, retry), :mod:`.closed_forms` (sets that need no
enumeration), :mod:`.upper_bounds` and :mod:`.lower_bound` (McMullen's
steering bound; the certain bound that refuses), :mod:`.tables` (cddlib's
input), :mod:`.cddlib` (one run), :mod:`.worker` (the kept process) and
:mod:`.vertex_walk` (the guard). The steering constants are read where they
are used (``generators.WORKER_MIN_BOUND``, ``worker.GUARD_DELAY``, ...):
set them there.
"""

from keras_lincon.geometry.double_description.closed_forms import cross_polytope_vertices, matching_vertices
from keras_lincon.geometry.double_description.generators import (
    ARITHMETICS,
    DEFAULT_TIME_BUDGET,
    EXACT_MAX_BOUND,
    WORKER_MIN_BOUND,
    enumerate_generators,
)
from keras_lincon.geometry.double_description.lower_bound import LOWER_BOUND_SECONDS, generator_lower_bound
from keras_lincon.geometry.double_description.tables import normalised_table
from keras_lincon.geometry.double_description.upper_bounds import generator_upper_bound, vertex_upper_bound
from keras_lincon.geometry.double_description.vertex_walk import VertexWalk
from keras_lincon.geometry.double_description.worker import GUARD_DELAY, shutdown_worker
from keras_lincon.geometry.generator_check import check_generators
from keras_lincon.geometry.row_graph import coupled_blocks
from keras_lincon.geometry.tolerances import RAY_RTOL

__all__ = [
    "ARITHMETICS",
    "DEFAULT_TIME_BUDGET",
    "EXACT_MAX_BOUND",
    "GUARD_DELAY",
    "LOWER_BOUND_SECONDS",
    "RAY_RTOL",
    "WORKER_MIN_BOUND",
    "VertexWalk",
    "check_generators",
    "coupled_blocks",
    "cross_polytope_vertices",
    "enumerate_generators",
    "generator_lower_bound",
    "generator_upper_bound",
    "matching_vertices",
    "normalised_table",
    "shutdown_worker",
    "vertex_upper_bound",
]
