"""The tolerance contract of keras_lincon, in one table (a leaf module: it imports nothing).

"Relative" is the residual formula of :func:`keras_lincon.geometry.violations`:
a residual ``a.x - b`` (or ``|c.x - d|``) over ``|b| + ||a|| ||x||``, the scale
at which floating point resolves it. The geometry's own tolerances (the
self-check of ``h_to_v`` at 1e-9, ranks, merging, double description) are
listed with what each guarantees in :mod:`keras_lincon.geometry.tolerances`.

========================  ========  ==============================================================
name                      value     what it guarantees
========================  ========  ==============================================================
FLOAT32_TOLERANCE         1e-5      **the layer's contract in float32**: every output, for inputs
                                    and weights of any scale, within this relative residual of
                                    every row, equality and bound
FLOAT64_TOLERANCE         1e-10     the same contract in float64 (``dtype="float64"``)
LOAD_TOLERANCE            1e-6      stored (float32) generator weights must generate the rows'
                                    set to this relative residual, or loading them is refused
MIN_RELATIVE_SLACK        1e-6      a scaled stage's centre keeps at least this relative slack on
                                    every scaled row (``1 / slack`` would amplify float32 rounding)
TRANSLATION_RTOL          1e-9      ``rhs_input``'s translation ``T`` moves its rows to this
                                    residual (relative to the equilibrated rows), else it is refused
KKT_RTOL_FLOAT64          1e-9      the coupled projection accepts an active-set step whose KKT
KKT_RTOL_FLOAT32          1e-4      residuals are below this, relative to the sample's scale (the
                                    output is made exactly feasible either way)
========================  ========  ==============================================================
"""

FLOAT32_TOLERANCE, FLOAT64_TOLERANCE = 1e-5, 1e-10
LOAD_TOLERANCE = 1e-6
MIN_RELATIVE_SLACK = 1e-6
TRANSLATION_RTOL = 1e-9
KKT_RTOL_FLOAT64, KKT_RTOL_FLOAT32 = 1e-9, 1e-4
