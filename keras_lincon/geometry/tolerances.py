"""Every tolerance of the geometry, in one table, with what it guarantees.

The modules import these names instead of writing the numbers again; a
module that re-exports one (``CHECK_TOLERANCE`` from :mod:`.system`,
``MERGE_RTOL`` from :mod:`.representation`, ...) re-exports this object.
"Relative" means measured by the residual formula of
:func:`keras_lincon.geometry.residual.violations`: a residual ``a.x - b``
over ``|b| + ||a|| ||x||``, the scale at which float64 can resolve it.

=======================  ========  ===========================================================
name                     value     what it guarantees
=======================  ========  ===========================================================
CHECK_TOLERANCE          1e-9      every generator and centre ``h_to_v`` and the box centre
                                   return satisfies the rows to this relative residual
RANK_RTOL                1e-10     singular values below this fraction of the largest are zero
                                   (ranks, row spaces, the closed form's full-rank test)
MERGE_RTOL               1e-9      generators closer than this (relative) are one generator, so
                                   counts do not depend on the order or scale of the rows
RAY_DROP_RTOL            1e-12     a ray whose part outside the lineality space is below this
                                   fraction of its norm lay in the lineality space (dropped)
CONSTANT_ROW_RTOL        1e-9      a row whose part in ``null(C)`` is below this fraction of its
                                   norm is constant on ``C x = d`` (no closed form)
INTERIOR_DEPTH           1e-9      a box centre's depth (fraction of the LP's cap) must exceed
                                   this: the centre is strictly inside the box
RESIDUAL_FLOOR           1e-30     smallest denominator of a relative residual (a zero point
                                   on a zero right-hand side has residual 0, not NaN)
NORM_FLOOR               1e-300    smallest denominator of a ratio to a norm (a zero row gives
                                   0 or a huge ratio, never NaN); a guard, not a tolerance
RAY_RTOL                 1e-12     a float cddlib generator ``(t, x)`` is a ray when
                                   ``|t| <= RAY_RTOL max|x|``
CHECK_RTOL               1e-7      soundness of floating-point double description: every
                                   vertex, ray and lineality vector within this relative residual;
                                   an unbounded edge matches a found ray to this cosine gap
SUPPORT_RTOL             1e-6      completeness: LP support values equal the generators' to
                                   this fraction of the set's reach (HiGHS' accuracy)
TIGHT_RTOL               1e-9      a row is tight at a vertex (relative residual below this),
                                   for the edge walks and the LP vertex of the lower bound
EDGE_RTOL                1e-12     an edge direction moves towards a row when its rate exceeds
                                   this fraction of the norms
WALK_MARGIN              1e-7      the vertex walk follows an edge only when the first
                                   blocking row leads the second by this relative gap
MAX_BASIS_COND           1e8       a basis (tight rows of a simple vertex) better conditioned
                                   than this has certain edges; worse ones are not walked
COMPLETE_COND            1e4       a complete walk's coordinates come from bases conditioned
                                   below this (relative error ~ 1e4 * eps ~ 1e-12)
SPAN_RTOL                1e-12     rank of ``[C, d]`` and of the equalities the walk removes;
                                   a swapped equality row lies in their span to this residual
ORBIT_RTOL               1e-7      coordinates of an LP vertex closer than this (relative) are
                                   equal (fewer values: a smaller orbit, the bound stays true)
CROSS_RADIUS_RTOL        1e-12     the radii of a cross-polytope's rows agree to this (relative)
LOWER_BOUND_MARGIN       1e-9      a lower bound computed in floating point (van der Waerden's)
                                   is lowered by this fraction before rounding down: still true
=======================  ========  ===========================================================
"""

# One line per topic, in the order of the table.
# h_to_v: its self-check, ranks, merging, reduction by the lineality space, the closed form on equalities
CHECK_TOLERANCE, RANK_RTOL, MERGE_RTOL, RAY_DROP_RTOL, CONSTANT_ROW_RTOL = 1e-9, 1e-10, 1e-9, 1e-12, 1e-9
# centres and residuals
INTERIOR_DEPTH, RESIDUAL_FLOOR, NORM_FLOOR = 1e-9, 1e-30, 1e-300
# floating-point double description: rays, soundness, completeness
RAY_RTOL, CHECK_RTOL, SUPPORT_RTOL = 1e-12, 1e-7, 1e-6
# edge walks (the completeness check's and the vertex walk's)
TIGHT_RTOL, EDGE_RTOL, WALK_MARGIN, MAX_BASIS_COND, COMPLETE_COND = 1e-9, 1e-12, 1e-7, 1e8, 1e4
# certain lower bounds and closed forms
SPAN_RTOL, ORBIT_RTOL, CROSS_RADIUS_RTOL, LOWER_BOUND_MARGIN = 1e-12, 1e-7, 1e-12, 1e-9
