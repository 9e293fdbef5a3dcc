"""The vertex walk: counts vertices along edges while cddlib runs, to stop it past the cap (numpy)."""

from __future__ import annotations

import collections
import time

import numpy as np

from keras_lincon.errors import TooManyGeneratorsError
from keras_lincon.geometry.double_description.lower_bound import lp_vertex
from keras_lincon.geometry.tolerances import (
    COMPLETE_COND,
    EDGE_RTOL,
    MAX_BASIS_COND,
    SPAN_RTOL,
    TIGHT_RTOL,
    WALK_MARGIN,
)


class VertexWalk:
    """Counts vertices of ``P = {x : A x <= b, C x = d}`` by walking its edges, to stop at a cap.

    cddlib cannot be stopped when its count passes ``max_generators``; this
    walk, run by the parent while the worker enumerates, can: breadth-first
    from an LP vertex along the edges of *simple* vertices (exactly
    ``dim`` tight rows). An edge from a simple vertex with basis ``B`` that
    leaves row ``k`` ends where a row ``j`` becomes tight; when ``j`` is
    unique with a clear margin, the end is the simple vertex with basis
    ``B - {k} + {j}``, so each counted vertex is identified by its tight rows
    (combinatorially, not by coordinates) and the count is a true lower bound.
    Degenerate vertices and ties are not expanded or counted (the walk then
    counts less, never more). Equalities are eliminated first
    (``x = x0 + N z``); a set with lineality is not walked.

    When the walk ends with every vertex simple and expanded, every edge
    bounded with a clear blocking row and every basis well conditioned
    (:data:`COMPLETE_COND`), it has found *all* vertices (the graph of a
    polytope is connected, Balinski): :attr:`complete` is then True and
    :meth:`vertices` returns them (each solved from its basis in float64),
    so the caller may stop cddlib. The permutahedra are such polytopes.

    Args:
        A: (m, n); b: (m,); C: (p, n); d: (p,) float arrays.
        cap: stop (``passed`` becomes True) once more than ``cap`` vertices are found.
        seed: seed of the starting LP's objective.
    """

    #: Slack (relative to the row norm, rows are unit) below which a row is tight.
    TIGHT = TIGHT_RTOL
    #: Relative gap the first blocking row needs over the second one.
    MARGIN = WALK_MARGIN
    #: Largest condition number (1-norm) of a basis for a complete walk's
    #: coordinates (relative error ~ COMPLETE_COND * eps ~ 1e-12).
    COMPLETE_COND = COMPLETE_COND

    def __init__(self, A, b, C, d, cap: int, seed: int = 0):
        self.cap, self.count, self.passed, self.done = int(cap), 0, False, False
        self._exhaustive = True  # no vertex or edge skipped so far
        self._points: list = []
        self._affine: tuple | None = None  # (x0, N) when equalities were eliminated
        self._problem = (A, b, C, d)
        self._seed = seed
        self._queue: collections.deque = collections.deque()
        self._seen: set = set()

    def _start(self) -> None:
        A, b, C, d = self._problem
        if len(C):
            # x = x0 + N z: a particular solution and a null-space basis of C
            x0 = np.linalg.lstsq(C, d, rcond=None)[0]
            if np.max(np.abs(C @ x0 - d), initial=0.0) > TIGHT_RTOL * max(1.0, float(np.max(np.abs(d)))):
                self.done, self._exhaustive = True, False
                return
            _, s, vt = np.linalg.svd(C)
            rank = int(np.sum(s > SPAN_RTOL * s[0])) if s.size else 0
            N = vt[rank:].T
            A, b = A @ N, b - A @ x0
            self._affine = (x0, N)
        norms = np.linalg.norm(A, axis=1)
        keep = norms > 0
        A, b = A[keep] / norms[keep, None], b[keep] / norms[keep]
        self._A, self._b = A, b
        dim = A.shape[1]
        if dim == 0 or np.linalg.matrix_rank(A) < dim:
            self.done, self._exhaustive = True, False  # a point, or lineality: nothing to walk
            return
        vertex = lp_vertex(A, b, np.zeros((0, dim)), np.zeros(0), np.random.default_rng(self._seed))
        basis = None if vertex is None else self._simple_basis(vertex)
        if basis is None:
            self.done, self._exhaustive = True, False  # the start is degenerate: no certified walk
            return
        self._seen.add(basis)
        self._queue.append(basis)
        self.count = 1

    def _simple_basis(self, x) -> tuple | None:
        slack = self._b - self._A @ x
        tight = np.flatnonzero(np.abs(slack) <= self.TIGHT * max(1.0, float(np.max(np.abs(x)))))
        return tuple(tight.tolist()) if len(tight) == self._A.shape[1] else None

    def step(self, seconds: float) -> bool:
        """Walks for about ``seconds``; returns ``passed`` (more than ``cap`` vertices found)."""
        stop = time.monotonic() + seconds
        if not self._seen and not self.done:
            self._start()
        A, b = getattr(self, "_A", None), getattr(self, "_b", None)
        while self._queue and not self.passed and time.monotonic() < stop:
            assert A is not None and b is not None  # _start sets them before it queues a basis
            m, dim = A.shape
            # a batch of queued bases at once: numpy over (K, dim, m), not a Python loop per vertex
            size = max(1, min(len(self._queue), 256, 2_000_000 // max(1, dim * m)))
            bases = [self._queue.popleft() for _ in range(size)]
            self._expand(A, b, bases)
        if not self._queue:
            self.done = True
        return self.passed

    def _expand(self, A: np.ndarray, b: np.ndarray, bases: list) -> None:
        """Finds the neighbours of the simple vertices with the given bases (K tuples of dim rows)."""
        m, dim = A.shape
        rows = np.array(bases)  # (K, dim)
        M = A[rows]  # (K, dim, dim)
        try:
            inv = np.linalg.inv(M)
        except np.linalg.LinAlgError:  # one singular basis in the batch: one at a time
            if len(bases) > 1:
                for basis in bases:
                    self._expand(A, b, [basis])
            else:
                self._exhaustive = False
            return
        cond = np.abs(M).sum(axis=1).max(axis=1) * np.abs(inv).sum(axis=1).max(axis=1)  # 1-norms
        x = np.einsum("kij,kj->ki", inv, b[rows])  # (K, dim)
        slack = b[None, :] - x @ A.T  # (K, m)
        scale = np.maximum(1.0, np.abs(x).max(axis=1))
        others = np.ones((len(bases), m), dtype=bool)
        others[np.arange(len(bases))[:, None], rows] = False
        degenerate = np.any(others & (slack <= self.TIGHT * scale[:, None]), axis=1)
        # ill-conditioned (tight rows not certain) or degenerate after all: not expanded
        usable = (cond <= MAX_BASIS_COND) & ~degenerate & (m - dim >= 2)
        self._exhaustive &= bool(usable.all()) and bool(np.all(cond <= self.COMPLETE_COND))
        if not usable.any():
            return
        keep = np.flatnonzero(usable)
        inv, x, slack, others, scale = inv[keep], x[keep], slack[keep], others[keep], scale[keep]
        self._points.extend(x)
        edges = -np.transpose(inv, (0, 2, 1))  # edges[i, k]: a_{B_l}.e_k = -delta_kl
        rate = edges @ A.T  # (K, dim, m)
        grow = others[:, None, :] & (rate > EDGE_RTOL * np.linalg.norm(edges, axis=2)[:, :, None])
        ratio = np.where(grow, slack[:, None, :] / np.where(grow, rate, 1.0), np.inf)
        # a bounded edge whose first blocking row is unique with a margin (else: a ray or a tie)
        two = np.partition(ratio, 1, axis=2)[:, :, :2]
        with np.errstate(invalid="ignore"):  # inf - inf: an unbounded edge, not clear
            gap = two[:, :, 1] - two[:, :, 0]
        clear = np.isfinite(two[:, :, 0]) & (gap > self.MARGIN * np.maximum(two[:, :, 0], scale[:, None]))
        self._exhaustive &= bool(clear.all())  # a ray or a tie: not a certified enumeration
        blocking = np.argmin(ratio, axis=2)  # (K, dim)
        for i, k in zip(*np.nonzero(clear), strict=True):
            basis = bases[keep[i]]
            nxt = tuple(sorted(basis[:k] + basis[k + 1 :] + (int(blocking[i, k]),)))
            if nxt not in self._seen:
                self._seen.add(nxt)
                self._queue.append(nxt)
                self.count += 1
                if self.count > self.cap:
                    self.passed = True
                    return

    @property
    def complete(self) -> bool:
        """The walk has ended and found every vertex (a polytope, all vertices simple; see the class)."""
        return self.done and self._exhaustive and not self.passed and self.count == len(self._points) > 0

    def vertices(self) -> np.ndarray:
        """(count, n) the vertices found (all of them when :attr:`complete`), in the original coordinates."""
        z = np.array(self._points).reshape(len(self._points), -1)
        if self._affine is None:
            return z
        x0, N = self._affine
        return x0[None, :] + z @ N.T


class CapGuard:
    """What the parent does while the worker runs, to stop it as soon as the set is above the cap.

    First (once) ``check``, the certain lower bound of
    :func:`generator_lower_bound`, which raises :class:`GeneratorExplosionError`
    ("certainly above the cap"); then :class:`VertexWalk` steps, and
    :class:`TooManyGeneratorsError` ("above the cap after N generators") once
    the walk has counted more than the cap. Off the critical path: a run the
    guard does not stop costs no more than cddlib's own time. With
    ``may_answer``, a complete walk (:attr:`VertexWalk.complete`) is the
    answer and cddlib is stopped.
    """

    def __init__(self, check, walk: VertexWalk, describe: str, may_answer: bool = True):
        self._check, self.walk, self.describe, self.may_answer = check, walk, describe, may_answer

    @property
    def done(self) -> bool:
        return self._check is None and self.walk.done

    def step(self, seconds: float) -> np.ndarray | None:
        """Advances the guard; raises past the cap; returns all vertices when the walk completes."""
        if self._check is not None:
            check, self._check = self._check, None
            check()
            return None
        if self.walk.done:
            return None
        if self.walk.step(seconds):
            raise TooManyGeneratorsError(
                f"double description of {self.describe} is above the cap after {self.walk.count} "
                f"generators: a walk along the edges of its simple vertices counted more than "
                f"max_generators={self.walk.cap} distinct vertices while cddlib ran, so the run was "
                "stopped. Split the constraints into independent blocks (method='auto' does "
                "this), use fewer constraints, or put a box on a cone (box=...) instead of "
                "listing bounds as rows of A; raise max_generators only if the layer can "
                "afford that many."
            )
        return self.walk.vertices() if self.may_answer and self.walk.complete else None
