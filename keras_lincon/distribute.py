"""Training under ``tf.distribute`` when ``model.fit`` cannot be used.

With ``MirroredStrategy`` on one machine, plain ``model.fit`` works with the
constraint layer and the ConstrainedVAE (create and compile the model inside
``strategy.scope()``). Under ``MultiWorkerMirroredStrategy``, Keras 3.15 /
TF 2.21 ``fit`` fails ("Attempt to convert a value (PerReplica ...)";
keras-team/keras#20585, open). :func:`fit_distributed` is the small loop that
works meanwhile: it runs the model's **own** ``train_step`` under
``strategy.run`` on a distributed dataset — the same step ``fit`` would run —
so losses, gradient all-reduce and metrics are Keras's. When upstream ``fit``
works, use ``fit`` and drop this helper.

A cluster run is the same script on every worker, each with its
``TF_CONFIG``::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' python train.py

with, in ``train.py``::

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build_model()            # e.g. Sequential([..., LinearInequalityConstraint(A)])
        model.compile(optimizer="adam", loss="mse")
    history = fit_distributed(model, dataset_batched_with_global_batch, epochs=5)
    if worker_index == 0:
        model.save("model.keras")        # every worker holds identical weights
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import tensorflow as tf


def fit_distributed(
    model,
    dataset: tf.data.Dataset,
    *,
    epochs: int = 1,
    strategy: Optional[tf.distribute.Strategy] = None,
    verbose: int = 1,
) -> dict:
    """Trains ``model`` with its own ``train_step`` under ``strategy.run``.

    Args:
        model: a compiled Keras model (a Sequential/functional model with a
            loss, or a :class:`~keras_lincon.ConstrainedVAE`), created and
            compiled inside ``strategy.scope()``.
        dataset: batches of the **global** batch size (each worker reads the
            whole dataset; the strategy shards it).
        epochs: passes over ``dataset``.
        strategy: default: the model's ``distribute_strategy``.
        verbose: 1 prints one line per epoch (to stderr).

    Returns:
        History as a dict: metric name -> list of per-epoch values.
    """
    strategy = strategy or model.distribute_strategy
    if getattr(model, "optimizer", None) is None:
        raise ValueError("compile the model (inside strategy.scope()) before fit_distributed.")
    first = next(iter(dataset))
    with strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        # Builds compiled losses and metrics outside the replica context, as fit does.
        model._symbolic_build(data_batch=first)
    distributed = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def step(batch):
        logs = strategy.run(model.train_step, args=(batch,))
        return {name: strategy.experimental_local_results(value)[0] for name, value in logs.items()}

    history: dict = {}
    for epoch in range(epochs):
        start = time.perf_counter()
        for metric in model.metrics:
            metric.reset_state()
        logs = {}
        for batch in distributed:
            logs = step(batch)
        for name, value in logs.items():
            history.setdefault(name, []).append(float(value))
        if verbose:
            shown = " ".join(f"{k}={float(v):.4g}" for k, v in logs.items())
            print(f"epoch {epoch + 1}/{epochs} ({time.perf_counter() - start:.1f} s) {shown}", file=sys.stderr)
    return history
