"""The layer's plan, computed once from the validated constraint system (numpy only, no Keras).

:func:`~keras_lincon.planning.layer_plan.plan_layer` is the entry point, and
its steps read top-down, one module each: the options (:mod:`.options`), the
right-hand-side inputs and their translation (:mod:`.rhs_inputs`), the row
split (:mod:`.row_split`), the two stages (:mod:`.stages`: generators, the
scaled stage of :mod:`.scaling_plan`, the coupled blocks' projection of
:mod:`.coupled_plan`), the weights' shapes (:mod:`.layout`) and values
(:mod:`.weight_arrays`).
"""
