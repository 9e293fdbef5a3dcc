"""DC3's "simple" QP family, regenerated from its published recipe, and its reference optima.

The problem (Donti, Rolnick & Kolter, ICLR 2021; reused by HardNet and Πnet)::

    min_y  1/2 y'Qy + p'y          (nonconvex variant: 1/2 y'Qy + p' sin(y))
    s.t.   A y = x,  G y <= h

with ``Q``, ``p``, ``A``, ``G``, ``h`` fixed and one ``x`` per instance. The
recipe (numpy's legacy generator, seed 17, draws in this order)::

    Q = diag(random(n)); p = random(n); A = normal(0, 1, (neq, n))
    X = uniform(-1, 1, (N, neq)); G = normal(0, 1, (nineq, n))
    h = sum_j |G pinv(A)|_ij

``X`` is drawn between ``A`` and ``G``, so ``G`` depends on ``N``: the data
always has ``N = 10,000`` rows and quick runs take subsets of them.

Reference optima: the convex QP by OSQP (tight tolerance, polishing), then
an exact active-set polish (the equality-constrained KKT system of the active
rows, rows added or dropped until primal and dual feasibility hold); the
nonconvex variant by SLSQP warm-started from the convex optimum, then the
same polish with Newton steps (a local optimum, as in DC3). NumPy, SciPy and
OSQP only: nothing here imports Keras.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keras_lincon.errors import LinconError

#: problem name -> (variables, equalities, inequalities, nonconvex objective)
PROBLEMS: dict[str, tuple[int, int, int, bool]] = {
    "convex": (100, 50, 50, False),
    "nonconvex": (100, 50, 50, True),
    "large": (1000, 500, 500, False),
}
NUM_EXAMPLES = 10_000
SEED = 17
#: protocol -> (first valid row, first test row); train rows start at 0, test rows end at N.
SPLITS: dict[str, tuple[int, int]] = {
    "pinet": (7952, 8976),  # Πnet: train 0-7951, valid 7952-8975, test 8976-9999
    "dc3": (8334, 9167),  # DC3 (valid and test fractions 0.0833): 0-8333 / 8334-9166 / 9167-9999
}
PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class SimpleQP:
    """One instance family of DC3's simple problem; ``x`` (a row of ``X``) varies.

    Attributes:
        q_diag: (n,) the diagonal of ``Q`` (entries in (0, 1)).
        p: (n,) linear (or ``sin``) coefficients.
        A: (neq, n) equality rows; the right-hand side is the instance ``x``.
        G: (nineq, n) inequality rows.
        h: (nineq,) their right-hand side, ``|G pinv(A)|`` summed over columns,
            so ``pinv(A) x`` is feasible for every ``x`` in ``[-1, 1]^neq``.
        X: (N, neq) the instances' equality right-hand sides.
        nonconvex: objective ``1/2 y'Qy + p' sin(y)`` instead of ``+ p'y``.
        name: the key of :data:`PROBLEMS` it was made for.
    """

    q_diag: np.ndarray
    p: np.ndarray
    A: np.ndarray
    G: np.ndarray
    h: np.ndarray
    X: np.ndarray
    nonconvex: bool = False
    name: str = "convex"

    @property
    def num_var(self) -> int:
        return self.A.shape[1]

    @property
    def num_eq(self) -> int:
        return self.A.shape[0]

    @property
    def num_ineq(self) -> int:
        return self.G.shape[0]

    @functools.cached_property
    def constraint_gram(self) -> np.ndarray:
        """(neq + nineq, neq + nineq): ``[A; G] Q^-1 [A; G]'``, the convex polish's Schur blocks."""
        rows = np.vstack([self.A, self.G])
        return (rows / self.q_diag) @ rows.T

    @functools.cached_property
    def constraint_outer(self) -> np.ndarray:
        """(neq + nineq, neq + nineq): ``[A; G][A; G]'``, for the KKT check's least squares."""
        rows = np.vstack([self.A, self.G])
        return rows @ rows.T

    def objective(self, Y: np.ndarray) -> np.ndarray:
        """(B, n) solutions -> (B,) objective values."""
        Y = np.asarray(Y, dtype=np.float64)
        linear = np.sin(Y) if self.nonconvex else Y
        return 0.5 * (Y * Y) @ self.q_diag + linear @ self.p

    def gradient(self, Y: np.ndarray) -> np.ndarray:
        """(B, n) -> (B, n) gradients of the objective."""
        Y = np.asarray(Y, dtype=np.float64)
        return self.q_diag * Y + self.p * (np.cos(Y) if self.nonconvex else 1.0)

    def hessian_diag(self, Y: np.ndarray) -> np.ndarray:
        """(B, n) -> (B, n): the objective's Hessian is diagonal."""
        Y = np.asarray(Y, dtype=np.float64)
        if self.nonconvex:
            return self.q_diag - self.p * np.sin(Y)
        return np.broadcast_to(self.q_diag, Y.shape).copy()

    def violations(self, Y: np.ndarray, X: np.ndarray) -> np.ndarray:
        """(B,) per instance: the max of ``||A y - x||_inf`` and ``max relu(G y - h)`` (absolute)."""
        Y, X = np.asarray(Y, dtype=np.float64), np.asarray(X, dtype=np.float64)
        equality = np.max(np.abs(Y @ self.A.T - X), axis=1)
        inequality = np.max(np.maximum(Y @ self.G.T - self.h, 0.0), axis=1)
        return np.maximum(equality, inequality)

    def rows(self, protocol: str, part: str) -> np.ndarray:
        """Row indices of ``X`` in ``part`` ("train", "valid", "test") of ``protocol``'s split."""
        if protocol not in SPLITS:
            raise LinconError(f"protocol must be one of {tuple(SPLITS)}; got {protocol!r}.")
        if part not in PARTS:
            raise LinconError(f"part must be one of {PARTS}; got {part!r}.")
        valid_start, test_start = SPLITS[protocol]
        bounds = {"train": (0, valid_start), "valid": (valid_start, test_start), "test": (test_start, len(self.X))}
        return np.arange(*bounds[part])


def make_problem(name: str = "convex") -> SimpleQP:
    """DC3's data for ``name`` in :data:`PROBLEMS`, from the published recipe (deterministic).

    The large size (1000 variables) takes a few seconds, for the
    pseudo-inverse of its 500x1000 ``A``.
    """
    if name not in PROBLEMS:
        raise LinconError(f"problem must be one of {tuple(PROBLEMS)}; got {name!r}.")
    num_var, num_eq, num_ineq, nonconvex = PROBLEMS[name]
    return generate_problem(num_var, num_eq, num_ineq, nonconvex=nonconvex, name=name)


def generate_problem(
    num_var: int, num_eq: int, num_ineq: int, *, nonconvex: bool = False, name: str = "custom"
) -> SimpleQP:
    """DC3's recipe for any size (seed 17, ``N = 10,000`` instances); :func:`make_problem` names the published ones."""
    # The legacy global generator, as the recipe: the draws and their order fix the data.
    state = np.random.RandomState(SEED)
    q_diag = state.random_sample(num_var)
    p = state.random_sample(num_var)
    A = state.normal(loc=0.0, scale=1.0, size=(num_eq, num_var))
    X = state.uniform(-1.0, 1.0, size=(NUM_EXAMPLES, num_eq))
    G = state.normal(loc=0.0, scale=1.0, size=(num_ineq, num_var))
    h = np.sum(np.abs(G @ np.linalg.pinv(A)), axis=1)
    return SimpleQP(q_diag, p, A, G, h, X, nonconvex=nonconvex, name=name)


# ---------------------------------------------------------------- references


@dataclass
class Reference:
    """Reference optima of some instances.

    Attributes:
        rows: (B,) row indices into ``problem.X``.
        Y: (B, n) optimal solutions.
        objective: (B,) optimal objective values.
        kkt: worst KKT residuals over the rows (see :func:`kkt_residuals`).
        seconds: solve time, all rows.
        unpolished: how many rows the exact polish did not settle (the
            solver's solution is kept for them).
    """

    rows: np.ndarray
    Y: np.ndarray
    objective: np.ndarray
    kkt: dict
    seconds: float
    unpolished: int = 0


def kkt_residuals(problem: SimpleQP, X: np.ndarray, Y: np.ndarray, active_tol: float = 1e-7) -> dict:
    """Worst KKT residuals of candidate solutions ``Y`` (B, n) for instances ``X`` (B, neq).

    Rows with slack ``h - G y <= active_tol`` count as active; their
    multipliers and the equalities' come from least squares on the
    stationarity condition. Returns the max over instances of: ``primal``
    (absolute violation), ``stationarity`` (``||grad f + A'nu + G_S'mu||_inf``),
    ``dual`` (``max relu(-mu)``) and ``complementarity`` (``max |mu_i slack_i|``);
    for the nonconvex objective also ``curvature``, the min over instances of
    the smallest eigenvalue of the Hessian on the active rows' null space
    (positive: a strict local minimum).
    """
    worst = dict(primal=0.0, stationarity=0.0, dual=0.0, complementarity=0.0)
    if problem.nonconvex:
        worst["curvature"] = -np.inf  # negated while taking maxima
    gradients = problem.gradient(Y)
    for x, y, g in zip(np.atleast_2d(X), np.atleast_2d(Y), gradients, strict=True):
        slack = problem.h - problem.G @ y
        active = slack <= active_tol
        E = np.vstack([problem.A, problem.G[active]])
        # Least squares by the normal equations (blocks of the precomputed [A; G][A; G]'), plus one
        # refinement step for the accuracy a QR would give; an SVD per row took 0.8 s on the large size.
        rows = np.concatenate([np.arange(problem.num_eq), problem.num_eq + np.flatnonzero(active)])
        normal = problem.constraint_outer[np.ix_(rows, rows)]
        multipliers = np.linalg.solve(normal, -(E @ g))
        multipliers -= np.linalg.solve(normal, E @ (g + E.T @ multipliers))
        mu = multipliers[problem.num_eq :]
        residual = g + E.T @ multipliers
        values = dict(
            primal=float(max(np.max(np.abs(problem.A @ y - x)), np.max(np.maximum(-slack, 0.0)))),
            stationarity=float(np.max(np.abs(residual))),
            dual=float(np.max(np.maximum(-mu, 0.0), initial=0.0)),
            complementarity=float(np.max(np.abs(mu * slack[active]), initial=0.0)),
        )
        if problem.nonconvex:
            values["curvature"] = -reduced_curvature(problem, y, active)
        worst = {k: max(worst[k], values[k]) for k in worst}
    if problem.nonconvex:
        worst["curvature"] = -worst["curvature"]
    return worst


def reduced_curvature(problem: SimpleQP, y: np.ndarray, active: np.ndarray) -> float:
    """Smallest eigenvalue of the Hessian at ``y`` (n,) on the null space of ``[A; G_active]``."""
    constraints = np.vstack([problem.A, problem.G[active]])
    # A complete QR of E' (E has full row rank for this data: generic Gaussian rows) spans null(E) by its last columns.
    orthonormal = np.linalg.qr(constraints.T, mode="complete")[0]
    basis = orthonormal[:, len(constraints) :]
    if basis.shape[1] == 0:
        return np.inf  # a vertex: the active rows fix y
    hessian = problem.hessian_diag(y[None])[0]
    return float(np.linalg.eigvalsh(basis.T @ (hessian[:, None] * basis))[0])


def _equality_kkt_step(problem: SimpleQP, x: np.ndarray, y: np.ndarray, active: np.ndarray):
    """One Newton step on ``min f s.t. A y = x, G_S y = h_S`` (S = ``active``) from ``y``.

    Returns ``(y_new, mu)``: the new point and the active rows' multipliers.
    With a positive diagonal Hessian the step goes through the Schur
    complement ``E H^-1 E'`` (cheap for the large size); otherwise the full
    KKT matrix is solved.
    """
    E = np.vstack([problem.A, problem.G[active]])
    e = np.concatenate([x, problem.h[active]])
    g = problem.gradient(y[None])[0]
    H = problem.hessian_diag(y[None])[0]
    residual = e - E @ y
    if not problem.nonconvex:  # constant Hessian: blocks of the precomputed [A; G] Q^-1 [A; G]'
        rows = np.concatenate([np.arange(problem.num_eq), problem.num_eq + np.flatnonzero(active)])
        schur = problem.constraint_gram[np.ix_(rows, rows)]
        multipliers = np.linalg.solve(schur, -(residual + E @ (g / H)))
        step = -(g + E.T @ multipliers) / H
    elif np.all(H > 0):
        E_scaled = E / H  # E H^-1
        schur = E_scaled @ E.T
        multipliers = np.linalg.solve(schur, -(residual + E_scaled @ g))
        step = -(g + E.T @ multipliers) / H
    else:
        n, m = problem.num_var, len(e)
        kkt = np.zeros((n + m, n + m))
        kkt[np.arange(n), np.arange(n)] = H
        kkt[:n, n:], kkt[n:, :n] = E.T, E
        solution = np.linalg.solve(kkt, np.concatenate([-g, residual]))
        step, multipliers = solution[:n], solution[n:]
    return y + step, multipliers[problem.num_eq :]


def polish(
    problem: SimpleQP, x: np.ndarray, y: np.ndarray, active_tol: float = 1e-6, max_rounds: int = 30
) -> tuple[np.ndarray, bool]:
    """Exact active-set polish of an approximate solution ``y`` (n,) of instance ``x`` (neq,).

    Guesses the active rows from ``y``'s slack, solves the equality-constrained
    KKT system (Newton steps until they stop moving ``y``; one for the convex
    QP), then swaps rows as a primal-dual active-set method: a row stays
    active while its multiplier is positive and joins when it is violated.
    Returns ``(y, settled)``; ``settled`` is False when the rounds ran out
    (then ``y`` is returned unchanged).
    """
    active = problem.h - problem.G @ y <= active_tol
    scale = 1e-12 * (1.0 + np.abs(problem.h))
    point = y
    for _ in range(max_rounds):
        moved = np.inf
        for _ in range(50 if problem.nonconvex else 1):
            new_point, mu = _equality_kkt_step(problem, x, point, active)
            previous, moved = moved, np.max(np.abs(new_point - point))
            point = new_point
            # Newton converges quadratically: stop once a step no longer shrinks (rounding level).
            if moved <= 1e-14 * (1.0 + np.max(np.abs(point))) or moved >= previous:
                break
        multipliers = np.zeros(problem.num_ineq)
        multipliers[active] = mu
        excess = problem.G @ point - problem.h
        new_active = (active & (multipliers > 0)) | (~active & (excess > scale))
        if np.array_equal(new_active, active):
            return point, True
        active = new_active
    return y, False


def solve_reference(
    problem: SimpleQP,
    rows: np.ndarray,
    *,
    print_fn: Callable[[str], None] | None = None,
) -> Reference:
    """Reference optima of ``problem`` for the instances ``rows`` (indices into ``problem.X``).

    Convex: OSQP at its default accuracy, then :func:`polish` (OSQP with
    ``eps = 1e-9`` and its own polishing first where that does not settle).
    Nonconvex: :func:`polish` (Newton steps, active-set swaps) from the
    convex optimum; where that does not settle on a point with positive
    curvature, SLSQP (``ftol = 1e-12``) from the convex optimum, then
    :func:`polish`. ``print_fn`` gets a progress line every 10% of the rows.
    """
    with _one_blas_thread():
        return _solve_reference(problem, np.asarray(rows), print_fn)


def _one_blas_thread():
    """Small dense solves on one BLAS thread: with threads, a loaded 2-core machine ran them 40x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _solve_reference(problem: SimpleQP, rows: np.ndarray, print_fn) -> Reference:
    start = time.perf_counter()
    X = problem.X[rows]
    convex = problem if not problem.nonconvex else convex_twin(problem)
    # OSQP's default accuracy finds the active rows for the exact polish; tight OSQP where it does not.
    solvers = {"default": OSQPSolver(convex)}
    Y = np.empty((len(rows), problem.num_var))
    unpolished = 0
    for i, x in enumerate(X):
        y, settled = polish(convex, x, solvers["default"].solve(x), active_tol=1e-3)
        if not settled:
            if "tight" not in solvers:
                solvers["tight"] = OSQPSolver(convex, eps=1e-9, polishing=True, max_iter=200_000)
            y, settled = polish(convex, x, solvers["tight"].solve(x))
        if problem.nonconvex:
            candidate, settled = polish(problem, x, y)
            active = problem.h - problem.G @ candidate <= 1e-9
            if not settled or reduced_curvature(problem, candidate, active) <= 0:
                candidate, settled = polish(problem, x, local_optimum_slsqp(problem, x, y))
            y = candidate
        Y[i] = y
        unpolished += not settled
        if print_fn and (i + 1) % max(1, len(rows) // 10) == 0:
            print_fn(f"  reference optima: {i + 1}/{len(rows)} ({time.perf_counter() - start:.1f} s)")
    return Reference(
        rows=rows,
        Y=Y,
        objective=problem.objective(Y),
        kkt=kkt_residuals(problem, X, Y),
        seconds=time.perf_counter() - start,
        unpolished=unpolished,
    )


def convex_twin(problem: SimpleQP) -> SimpleQP:
    """The same data with the convex objective (the nonconvex solve's warm start)."""
    return SimpleQP(problem.q_diag, problem.p, problem.A, problem.G, problem.h, problem.X, nonconvex=False)


def local_optimum_slsqp(problem: SimpleQP, x: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """A local optimum of the nonconvex objective from ``y0`` by SciPy's SLSQP."""
    from scipy.optimize import minimize

    result = minimize(
        lambda y: float(problem.objective(y[None])[0]),
        y0,
        jac=lambda y: problem.gradient(y[None])[0],
        method="SLSQP",
        constraints=[
            {"type": "eq", "fun": lambda y: problem.A @ y - x, "jac": lambda y: problem.A},
            {"type": "ineq", "fun": lambda y: problem.h - problem.G @ y, "jac": lambda y: -problem.G},
        ],
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    return result.x


class OSQPSolver:
    """The convex QP set up once in OSQP; each instance updates the equality bounds.

    Args:
        problem: a convex :class:`SimpleQP`.
        eps: OSQP's absolute and relative tolerances (``None``: OSQP's
            defaults, 1e-3, what a user timing "OSQP per instance" runs).
        polishing: OSQP's own polishing step.
        **settings: other OSQP settings.
    """

    def __init__(self, problem: SimpleQP, eps: float | None = None, polishing: bool = False, **settings):
        import osqp
        import scipy.sparse

        if problem.nonconvex:
            raise LinconError("OSQPSolver solves the convex QP; pass the convex problem.")
        self.problem = problem
        self._upper_h = problem.h
        constraint_matrix = scipy.sparse.csc_matrix(np.vstack([problem.A, problem.G]))
        tolerances = {} if eps is None else {"eps_abs": eps, "eps_rel": eps}
        self._solver = osqp.OSQP()
        self._solver.setup(
            scipy.sparse.diags(problem.q_diag, format="csc"),
            problem.p,
            constraint_matrix,
            *self._bounds(problem.X[0]),
            verbose=False,
            polishing=polishing,
            **tolerances,
            **settings,
        )

    def _bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lower = np.concatenate([x, np.full(self.problem.num_ineq, -np.inf)])
        upper = np.concatenate([x, self._upper_h])
        return lower, upper

    def solve(self, x: np.ndarray) -> np.ndarray:
        """(neq,) instance -> (n,) solution. Raises LinconError when OSQP fails."""
        lower, upper = self._bounds(np.asarray(x, dtype=np.float64))
        self._solver.update(l=lower, u=upper)
        result = self._solver.solve(raise_error=False)
        if result.info.status not in ("solved", "solved inaccurate"):
            raise LinconError(f"OSQP did not solve the QP: status {result.info.status!r}.")
        return result.x

    def time_per_instance(self, X: np.ndarray) -> float:
        """Mean wall-clock seconds of :meth:`solve` over the instances ``X`` (B, neq)."""
        start = time.perf_counter()
        for x in X:
            self.solve(x)
        return (time.perf_counter() - start) / len(X)
