"""The layer's plan, computed once from the constraint system (numpy only, no Keras).

Which rows get generators and which are scaled (:mod:`.stage_plan`), the
scaled stage and its centres (:mod:`.scaling_plan`), the coupled blocks'
projection plan (:mod:`.coupled_projection`), and the weight arrays
(:mod:`.weight_arrays`).
"""
