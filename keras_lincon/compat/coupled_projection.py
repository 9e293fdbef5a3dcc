"""The former ``keras_lincon.coupled_projection``: the plan (numpy) and the kernel (``keras.ops``) in one
namespace (the finder in :mod:`keras_lincon.compat` warns)."""

from keras_lincon.layers.coupled_kernel import project  # noqa: F401
from keras_lincon.planning.coupled_plan import ProjectionPlan, plan_projection  # noqa: F401
