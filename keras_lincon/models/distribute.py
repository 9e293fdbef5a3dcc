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

Fault tolerance: with ``checkpoint_dir`` (a folder every worker can reach),
the model, its optimizer and the epoch count are saved after every epoch
(``tf.train.Checkpoint`` + ``CheckpointManager``; the chief writes there, the
other workers to a scratch folder they delete, as TensorFlow's multi-worker
guide prescribes). Calling the same script again resumes after the last
finished epoch, so a worker that dies costs at most the epoch in progress:
restart **all** workers (a collective cannot rejoin a running group).
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from keras_lincon._backend import require_tensorflow
from keras_lincon.errors import LinconError


def _checkpoint_writer_dir(strategy, checkpoint_dir: str) -> tuple[str, bool]:
    """(folder this worker writes to, whether it is the chief's real folder)."""
    if getattr(strategy.extended, "should_checkpoint", True):
        return checkpoint_dir, True
    resolver = getattr(strategy, "cluster_resolver", None)
    task = f"{getattr(resolver, 'task_type', 'worker')}_{getattr(resolver, 'task_id', os.getpid())}"
    return os.path.join(checkpoint_dir, f".scratch_{task}"), False


def fit_distributed(
    model,
    dataset,
    *,
    epochs: int = 1,
    strategy=None,
    verbose: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    max_to_keep: int = 2,
) -> dict:
    """Trains ``model`` with its own ``train_step`` under ``strategy.run``.

    Args:
        model: a compiled Keras model (with a loss, or a
            :class:`~keras_lincon.ConstrainedVAE`), created and compiled inside ``strategy.scope()``.
        dataset: a ``tf.data.Dataset`` of batches of the **global** batch size,
            e.g. ``(x, y)`` of shapes (batch, ...) (each worker reads all of it; the strategy shards it).
        epochs: the total number of passes over ``dataset``, counting those a resumed run already finished.
        strategy: default: the model's ``distribute_strategy``.
        verbose: 1 prints one line per epoch (to stderr).
        checkpoint_dir: save model, optimizer and epoch count here after
            every epoch, and resume from the latest checkpoint found there.
        max_to_keep: checkpoints kept in ``checkpoint_dir``.

    Returns:
        History of the epochs run by this call: metric name -> list of
        per-epoch values (empty when a checkpoint already covers ``epochs``).

    Raises:
        LinconError: Keras is not on the TensorFlow backend, bad arguments, or
            a checkpoint in ``checkpoint_dir`` that belongs to another model.
        ValueError: the model is not compiled.

    Example:
        >>> import keras, numpy as np, tensorflow as tf, keras_lincon as klc
        >>> strategy = tf.distribute.MirroredStrategy()  # MultiWorkerMirroredStrategy on a cluster
        >>> with strategy.scope():
        ...     model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
        ...                               klc.LinearInequalityConstraint(klc.monotone_chain(4))])
        ...     model.compile(optimizer="adam", loss="mse")
        >>> data = tf.data.Dataset.from_tensor_slices((np.ones((8, 3)), np.ones((8, 4)))).batch(4)
        >>> history = klc.fit_distributed(model, data, epochs=2, verbose=0)
        >>> sorted(history), len(history["loss"])
        (['loss'], 2)
    """
    tf = require_tensorflow("fit_distributed")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise LinconError(f"epochs must be a non-negative integer; got {epochs!r}.")
    strategy = strategy or model.distribute_strategy
    _build_for_training(model, strategy, dataset)
    # The epoch counter is a plain (not mirrored) variable: only Python reads it.
    done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    save = None
    if checkpoint_dir is not None:
        save = _resume_and_checkpoint(model, done, strategy, os.fspath(checkpoint_dir), max_to_keep, verbose)
    return _train_epochs(model, strategy, dataset, done, epochs, save, verbose)


def _build_for_training(model, strategy, dataset) -> None:
    """Builds the optimizer, and the compiled losses and metrics outside the replica context, as ``fit`` does."""
    if getattr(model, "optimizer", None) is None:
        raise ValueError("compile the model (inside strategy.scope()) before fit_distributed.")
    first = next(iter(dataset))
    with strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model._symbolic_build(data_batch=first)


def _resume_and_checkpoint(model, done, strategy, checkpoint_dir: str, max_to_keep: int, verbose: int):
    """Restores the latest checkpoint in ``checkpoint_dir`` (if any); returns ``save(epoch_number)``."""
    import tensorflow as tf

    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epochs_done=done)
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest:
        # Every variable of this model and optimizer must find its saved value: a
        # checkpoint of another architecture fails here instead of half-loading.
        try:
            checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise LinconError(
                f"the checkpoint {latest} does not match this model and optimizer "
                f"({' '.join(str(exc).split())[:300]}); use another checkpoint_dir or delete it."
            ) from None
        if verbose:
            print(f"resuming from {latest} after epoch {int(done.numpy())}", file=sys.stderr)
    write_dir, is_chief = _checkpoint_writer_dir(strategy, checkpoint_dir)
    manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=max_to_keep if is_chief else 1)

    def save(epoch_number: int) -> None:
        # Every worker saves (variables may need all of them); only the chief's copy is kept.
        manager.save(checkpoint_number=epoch_number)
        if not is_chief:
            shutil.rmtree(write_dir, ignore_errors=True)

    return save


def _train_epochs(model, strategy, dataset, done, epochs: int, save, verbose: int) -> dict:
    """Runs the epochs after ``done`` up to ``epochs``; returns their history."""
    import tensorflow as tf

    distributed = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def step(batch):
        logs = strategy.run(model.train_step, args=(batch,))
        return {name: strategy.experimental_local_results(value)[0] for name, value in logs.items()}

    history: dict = {}
    for epoch in range(int(done.numpy()), epochs):
        start = time.perf_counter()
        for metric in model.metrics:
            metric.reset_state()
        logs = {}
        for batch in distributed:
            logs = step(batch)
        for name, value in logs.items():
            history.setdefault(name, []).append(float(value))
        done.assign(epoch + 1)
        if save is not None:
            save(epoch + 1)
        if verbose:
            shown = " ".join(f"{k}={float(v):.4g}" for k, v in logs.items())
            print(f"epoch {epoch + 1}/{epochs} ({time.perf_counter() - start:.1f} s) {shown}", file=sys.stderr)
    return history
