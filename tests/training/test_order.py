"""The batch order is ours: model.fit sees exactly the planned batches, every epoch, on every backend."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import lazy

epoch_order = lazy("mnist_sweep.training.order", "epoch_order")
fit_inputs = lazy("mnist_sweep.training.order", "fit_inputs")

ROOT = Path(__file__).resolve().parents[2]
CASES = [(10, 4, 7), (12, 4, 8)]  # (training examples, batch size, validation examples): partial last batches, none


def _recording_model():
    """A model that keeps the example numbers (its one input column) of every batch it trains and validates on."""
    from mnist_sweep.backend import get_keras
    keras = get_keras()

    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(10, activation="softmax")
            self.seen = {"train": [], "val": []}

        def call(self, x, training=False):
            return self.dense(x)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            try:  # run eagerly, every step has concrete values; only the build's symbolic pass has none
                rows = [int(v) for v in keras.ops.convert_to_numpy(x)[:, 0]]
            except Exception:
                rows = None
            if rows is not None:
                self.seen["train" if training else "val"].append(rows)
            return super().compute_loss(x, y, y_pred, sample_weight, training)

    model = Recorder()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", run_eagerly=True)
    return model, keras


def fed_batches(seed, n, batch_size, n_val, epochs=3, stop_after=None):
    """What a real fit on fit_inputs trained and validated on, example by example, batch by batch."""
    model, keras = _recording_model()
    x = np.arange(n, dtype="float32")[:, None]
    x_val = 1000 + np.arange(n_val, dtype="float32")[:, None]
    callbacks = [keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)] if stop_after else []
    history = model.fit(**fit_inputs(x, np.arange(n) % 10, batch_size, seed), epochs=epochs, verbose=0,
                        validation_data=(x_val, np.arange(n_val) % 10), callbacks=callbacks)
    return {"train": model.seen["train"], "val": model.seen["val"], "epochs": len(history.history["loss"])}


def planned(seed, n, batch_size, n_val, epochs=3):
    """The batches the plan says: each epoch's order cut by the batch size, validation in its own order."""
    train = [epoch_order(seed, e, n)[i:i + batch_size].tolist() for e in range(epochs) for i in range(0, n, batch_size)]
    val = [list(range(1000 + i, 1000 + min(i + batch_size, n_val))) for i in range(0, n_val, batch_size)] * epochs
    return {"train": train, "val": val, "epochs": epochs}


def _in_subprocess(code: str, backend: str) -> str:
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.keras  # the module loads Keras, for its feeders
def test_an_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    first = epoch_order(7, 0, 1000)
    assert first.dtype == np.int32 and sorted(first.tolist()) == list(range(1000))
    assert np.array_equal(first, epoch_order(7, 0, 1000))
    assert not np.array_equal(first, epoch_order(7, 1, 1000)), "each epoch has its own order"
    assert not np.array_equal(first, epoch_order(8, 0, 1000)), "two seeds have different orders"


@pytest.mark.keras
@pytest.mark.parametrize("n, batch_size, n_val", CASES)
def test_fit_trains_on_the_planned_batches_every_epoch_on_tensorflow(n, batch_size, n_val):
    from mnist_sweep.backend import backend_name
    if backend_name() != "tensorflow":
        pytest.skip(f"this process runs Keras on {backend_name()}")
    assert fed_batches(5, n, batch_size, n_val) == planned(5, n, batch_size, n_val)


@pytest.mark.keras
def test_fit_trains_on_the_planned_batches_every_epoch_on_jax():
    """Keras' backend is fixed per process: the same check in a fresh one, against the plan made here."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    code = ("import json; from tests.training.test_order import fed_batches, CASES; "
            "print(json.dumps([fed_batches(5, *case) for case in CASES]))")
    assert json.loads(_in_subprocess(code, "jax")) == [planned(5, *case) for case in CASES]


@pytest.mark.keras
def test_the_same_seed_gives_the_same_order_in_another_process():
    code = ("import json; from mnist_sweep.training.order import epoch_order; "
            "print(json.dumps([epoch_order(s, e, 500).tolist() for s in (0, 1) for e in (0, 4)]))")
    assert json.loads(_in_subprocess(code, "tensorflow")) == \
        [epoch_order(s, e, 500).tolist() for s in (0, 1) for e in (0, 4)]


@pytest.mark.keras
def test_early_stopping_still_ends_the_fit_after_the_planned_batches_of_its_epochs():
    fed = fed_batches(3, 10, 4, 7, epochs=20, stop_after=True)  # patience 0, no epoch can improve: stops after 2
    assert fed == planned(3, 10, 4, 7, epochs=2)
