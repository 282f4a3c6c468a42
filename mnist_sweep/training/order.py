"""The batch order: which training examples each step of each epoch sees, decided here rather than by Keras.

A trial's order depends on its seed and the epoch only, so a stacked or fused branch can be fed exactly
the batches its isolated twin sees: `epoch_order` is the plan, `fit_inputs` feeds `model.fit` by it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _quiet_import  # noqa: F401  (first: Keras is loaded through backend.get_keras)
import keras


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The permutation of range(n) the trial with this seed trains on in this 0-based epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one epoch: the last one partial, never dropped."""
    return math.ceil(n / batch_size)


def fit_inputs(x, y, batch_size: int, seed: int) -> dict[str, Any]:
    """Keyword arguments for `model.fit` that feed epoch e's batch i as x[order[i*B:(i+1)*B]], y[...] with
    order = epoch_order(seed, e, len(x)), for as many epochs as fit runs.

    Validation data, passed to fit as before, is batched by `batch_size` as it was without us.
    Use: `model.fit(**fit_inputs(x, y, B, seed), epochs=..., validation_data=..., callbacks=...)`.
    """
    if len(x) != len(y) or not len(x):
        raise ValueError(f"fit_inputs needs as many labels as images, at least one: got {len(x)} and {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    feed = _tf_batches if keras.backend.backend() == "tensorflow" else OrderedBatches
    return {"x": feed(x, y, batch_size, seed), "steps_per_epoch": steps_per_epoch(len(x), batch_size),
            "validation_batch_size": batch_size,  # without it, fit would batch validation data by 32
            "shuffle": False}  # the order is ours (Keras would only warn that it ignores shuffle=True)


class OrderedBatches(keras.utils.PyDataset):
    """The batches of every epoch in a row (JAX, torch): item k is epoch k // steps' batch k % steps.

    Indexed by the step since fit began, so it relies on no epoch hook (Keras calls on_epoch_end once
    before the first epoch, when it peeks at a batch to build the model) and never ends: fit's
    `epochs` and `steps_per_epoch` say when to stop.
    """

    def __init__(self, x, y, batch_size: int, seed: int):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.steps = steps_per_epoch(len(x), batch_size)
        self._epoch, self._order = -1, np.empty(0, np.int32)

    @property
    def num_batches(self):
        return None  # endless: fit draws steps_per_epoch batches an epoch

    def __getitem__(self, index: int):
        epoch, step = divmod(index, self.steps)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_order(self.seed, epoch, len(self.x))
        rows = self._order[step * self.batch_size:(step + 1) * self.batch_size]
        return self.x[rows], self.y[rows]


def _tf_batches(x, y, batch_size: int, seed: int):
    """The same batches as a tf.data pipeline, built as Keras builds its own shuffled one: per epoch a
    permutation (prefetched), sliced into index batches, gathered in parallel from the arrays held once."""
    import tensorflow as tf  # this feeder is the TensorFlow backend's only

    n = len(x)
    full, rest = divmod(n, batch_size)

    def order(epoch):
        rows = tf.numpy_function(lambda e: epoch_order(seed, int(e), n), [epoch], tf.int32, stateful=False)
        return tf.ensure_shape(rows, [n])

    def batches(rows):
        index = tf.data.Dataset.from_tensor_slices(tf.reshape(rows[:full * batch_size], [full, batch_size]))
        return index.concatenate(tf.data.Dataset.from_tensors(rows[full * batch_size:])) if rest else index

    index = tf.data.Dataset.range(2**62).map(order).prefetch(1).flat_map(batches)
    arrays = tf.data.Dataset.from_tensors((x, y)).repeat()
    data = tf.data.Dataset.zip((index, arrays)).map(
        lambda rows, xy: (tf.gather(xy[0], rows), tf.gather(xy[1], rows)), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False  # as Keras' own feeder: no rewrite cost
    return data.with_options(options).prefetch(tf.data.AUTOTUNE)
