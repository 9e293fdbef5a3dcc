"""The closed form for rows of full rank: ``{A x <= b}`` (and on ``C x = d``) without enumeration, in numpy.

For ``A`` with full row rank, ``P = {A^+ b} + cone(-(A^+)^T e_i) + null(A)``:
O(n m^2), milliseconds, however large ``n``. With equalities, the same in
the coordinates of ``C x = d``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from keras_lincon.geometry.representation import orthonormal_rows
from keras_lincon.geometry.system import ConstraintSystem, equality_coordinates
from keras_lincon.geometry.tolerances import CONSTANT_ROW_RTOL, RANK_RTOL


def full_row_rank(A: np.ndarray) -> bool:
    """Whether the (m, n) rows are independent (singular values above :data:`RANK_RTOL` of the largest)."""
    if A.shape[0] == 0:
        return True
    if A.shape[0] > A.shape[1]:
        return False
    s = np.linalg.svd(A, compute_uv=False)
    return bool(s[-1] > RANK_RTOL * s[0])


def closed_form_generators(A: np.ndarray, b: np.ndarray):
    """``{A x <= b}`` for full-row-rank A: apex A^+ b, rays -(A^+)^T.

    Returns (apex (1, n), rays (m, n), row_space (m, n)). One thin QR of A^T,
    O(n m^2): A^T = Q R, A^+ = Q R^{-T}; Q^T spans the row space, the
    complement of the lineality space null(A).
    """
    m, n = A.shape
    if m == 0:
        return np.zeros((1, n)), np.zeros((0, n)), np.zeros((0, n))
    q, r = scipy.linalg.qr(A.T, mode="economic")
    # np.linalg.solve: scipy's solve_triangular costs ~8 ms a call here (BLAS dispatch).
    pinv = np.linalg.solve(r, q.T).T  # (n, m)
    apex = (pinv @ b)[None, :]
    rays = -pinv.T  # A r_i = -e_i; rays lie in the row space
    return apex, rays, q.T


def closed_form_on_equalities(system: ConstraintSystem):
    """``{A x <= b, C x = d}`` for ``C`` of full row rank and ``A`` of full row rank on ``null(C)``:
    ``x = x0 + N z`` (``x0 = C^+ d``, ``N`` an orthonormal basis of ``null(C)``), the closed form
    on ``A N z <= b - A x0``, mapped back. Returns (vertices, rays, row_space) or None when the
    ranks do not allow it (double description then)."""
    A, b, C, d = system.A, system.b, system.C, system.d
    if not full_row_rank(C):
        return None
    particular, null_basis = equality_coordinates(C, d)  # (n,), (n, r)
    reduced = A @ null_basis
    # a row constant on C x = d (parallel to C's rows) reduces to ~0, which a relative rank test misses
    constant = np.linalg.norm(reduced, axis=1) <= CONSTANT_ROW_RTOL * np.linalg.norm(A, axis=1)
    if reduced.shape[1] == 0 or constant.any() or not full_row_rank(reduced):
        return None
    apex, rays, _ = closed_form_generators(reduced, b - A @ particular)
    vertices, rays = particular + apex @ null_basis.T, rays @ null_basis.T

    def refine(points, rhs):  # one step of iterative refinement onto C x = rhs: float64 layers use these as is
        return points - np.linalg.lstsq(C, (points @ C.T - rhs).T, rcond=None)[0].T

    return refine(vertices, d), refine(rays, 0.0), orthonormal_rows(np.vstack([A, C]), system.dim)
