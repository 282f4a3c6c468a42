"""One sub-stack: K dense networks of one shape, one `normalize` setting and one optimizer family.

The weights are arrays with a leading branch axis, `(K, inputs, units)` for a kernel, and every layer
runs as one batched matmul for all K branches. The computation is pure (`forward` and `losses` take
the arrays and return new ones), so the trainer can run a whole epoch of it as one compiled loop.

Each branch keeps exactly what its isolated twin has: the initial weights are read from the twin
built with the trial's seed, and the activation, initializer, kernel and activity penalties, batch
normalization and its momentum, and the dropout rate and seed stream are the twin's, so a branch
computes what the trial would compute alone.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ...backend import get_keras
from ...config import BN_MOMENTUM
from ..branch_optimizers import make_branch_optimizer
from ..stacked import activation_key, apply_activation, branch_weights, twin_parts

keras = get_keras()  # loaded quietly, as every training module loads it
ops = keras.ops

BN_EPSILON = 1e-3  # BatchNormalization's default
MOVING = ("_mean", "_var")  # batch normalization's moving statistics: state, not trained


def plus(x, y):
    """`x + y` where `y` broadcasts over `x`: broadcast first when `y` has one non-unit axis, because Keras'
    TensorFlow `ops.add` takes such an operand for a bias and adds it along `x`'s first or last axis
    (a (K, 1, 1) column with K equal to the batch size would be added to the wrong rows)."""
    if sum(1 for d in y.shape if d != 1) == 1 and tuple(y.shape) != tuple(x.shape):
        y = ops.broadcast_to(y, ops.shape(x))
    return x + y


def _column(settings: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([s[key] for s in settings], dtype="float32")


class SubStack:
    """The constants of one sub-stack, in stack order, and its pure forward pass and losses.

    `slots[k]` is the row of the step's batch table that branch k reads (one row per distinct seed
    of the whole model); `shared` says every branch reads the same row, so one input serves them all.
    """

    def __init__(self, members: list[int], settings: list[dict[str, Any]], twins: list, slots: list[int],
                 dropout_seeds: np.ndarray, norm: Optional[tuple[float, float]]):
        self.members = list(members)  # the branches' positions in the whole group
        self.settings = list(settings)
        self.twins = list(twins)
        self.slots = np.asarray(slots, dtype="int32")
        self.shared = len(set(self.slots.tolist())) == 1
        self.dropout_seeds = np.asarray(dropout_seeds)  # (K, layers, 2): each dropout layer's seed state at step 0
        self.norm = norm
        self.layers = len(settings[0]["hidden"])
        self.kernel_l1, self.kernel_l2 = _column(settings, "kernel_l1"), _column(settings, "kernel_l2")
        self.activity_l1, self.activity_l2 = _column(settings, "activity_l1"), _column(settings, "activity_l2")
        self.penalized = bool(self.kernel_l1.any() or self.kernel_l2.any())
        self.active = bool(self.activity_l1.any() or self.activity_l2.any())
        # Batch normalization: branches without it keep their statistics (momentum 1) and skip it.
        self.bn_input = np.array([s["batch_norm"] == "input" for s in settings])
        self.bn_hidden = np.array([s["batch_norm"] is True for s in settings])
        # In float64: Keras computes `1.0 - momentum` from the Python float, then rounds it to float32.
        momentum = np.array([s.get("batch_norm_momentum") or BN_MOMENTUM for s in settings], dtype="float64")
        self.momentum_input = np.where(self.bn_input, momentum, 1.0)
        self.momentum_hidden = np.where(self.bn_hidden, momentum, 1.0)
        self.dropout = np.array([s["dropout"] for s in settings], dtype="float64")  # exact rates, as Keras has them
        # Contiguous runs of equal activations: one op per run, not per branch.
        self.runs: list[tuple[tuple, int, int]] = []
        for k, s in enumerate(settings):
            key = activation_key(s)
            if self.runs and self.runs[-1][0] == key:
                self.runs[-1] = (key, self.runs[-1][1], k + 1)
            else:
                self.runs.append((key, k, k + 1))
        self.optimizer = make_branch_optimizer([s["optimizer"] for s in settings])

    @classmethod
    def from_twins(cls, members: list[int], settings: list[dict[str, Any]], twins: list, slots: list[int]):
        """A sub-stack whose branches start from their twins' weights, dropout seed states and normalization."""
        layers = len(settings[0]["hidden"])
        seeds = np.zeros((len(twins), max(layers, 1), 2), dtype="int64")
        for k, twin in enumerate(twins):
            for j, layer in enumerate(twin_parts(twin)["dropout"]):
                seeds[k, j] = ops.convert_to_numpy(layer.seed_generator.state.value)
        normalize = twin_parts(twins[0])["normalize"]
        norm = None if not normalize else (
            float(ops.convert_to_numpy(normalize[0].mean).ravel()[0]),
            float(ops.convert_to_numpy(normalize[0].variance).ravel()[0]))
        return cls(members, settings, twins, slots, seeds, norm)

    def subset(self, positions: list[int]) -> "SubStack":
        """The same sub-stack holding only the branches at these positions."""
        pick = lambda xs: [xs[p] for p in positions]  # noqa: E731
        sub = SubStack(pick(self.members), pick(self.settings), pick(self.twins), self.slots[positions].tolist(),
                       self.dropout_seeds[positions], self.norm)
        sub.optimizer = self.optimizer.subset(positions)
        return sub

    # ------------------------------------------------------------ the arrays

    def variable_names(self) -> list[str]:
        """The stacked arrays this sub-stack holds: batch-norm ones only where some branch uses them."""
        names = branch_weights(self.twins[0], self.layers)
        return [n for n in names if not (n.startswith("bn_in_") and not self.bn_input.any())
                and not (n[:2] == "bn" and n[2:3].isdigit() and not self.bn_hidden.any())]

    def twin_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(trainable, moving) stacked arrays holding the twins' current weights."""
        weights = [branch_weights(twin, self.layers) for twin in self.twins]
        stacked = {name: np.ascontiguousarray(np.stack([w[name] for w in weights]), dtype="float32")
                   for name in self.variable_names()}
        params = {n: v for n, v in stacked.items() if not n.endswith(MOVING)}
        moving = {n: v for n, v in stacked.items() if n.endswith(MOVING)}
        return params, moving

    # ------------------------------------------------------------ the computation

    def _batch_norm(self, x, params, moving, new_moving, prefix: str, momentum: np.ndarray, training: bool):
        gamma, beta = params[f"{prefix}_gamma"][:, None, :], params[f"{prefix}_beta"][:, None, :]
        if training:
            mean, var = ops.moments(x, axes=[1])
            m = ops.convert_to_tensor(momentum[:, None].astype("float32"))
            rest = ops.convert_to_tensor((1.0 - momentum[:, None]).astype("float32"))
            new_moving[f"{prefix}_mean"] = moving[f"{prefix}_mean"] * m + mean * rest
            new_moving[f"{prefix}_var"] = moving[f"{prefix}_var"] * m + var * rest
        else:
            mean, var = moving[f"{prefix}_mean"], moving[f"{prefix}_var"]
        inv = ops.rsqrt(var[:, None, :] + BN_EPSILON) * gamma
        return plus(x * inv, beta - mean[:, None, :] * inv)

    @staticmethod
    def _masked(x, y, mask: np.ndarray):
        if mask.all():
            return y
        return ops.where(ops.convert_to_tensor(mask[:, None, None]), y, x)

    def forward(self, params, moving, x, training: bool, step=None, dropout=None):
        """Class probabilities (K, B, 10), the activity penalties (K,) or None, and the new moving statistics.

        `x` is (B, inputs) when every branch reads the same batch, else (K, B, inputs). `dropout(z, rates,
        seeds)` is the backend's per-branch dropout; `step` the number of training steps taken before this one.
        """
        h = x
        if self.norm is not None:  # Normalization: (x - mean) / max(sqrt(variance), epsilon)
            mean, variance = self.norm
            h = (h - mean) / max(float(np.sqrt(variance)), keras.backend.epsilon())
        stacked = len(h.shape) == 3
        new_moving = dict(moving)
        k = len(self.members)
        if self.bn_input.any():
            if not stacked:
                h = ops.broadcast_to(h[None], (k, *h.shape))
                stacked = True
            h = self._masked(h, self._batch_norm(h, params, moving, new_moving, "bn_in", self.momentum_input,
                                                 training), self.bn_input)
        activity = None
        for j in range(self.layers):
            z = ops.einsum("kbi,kio->kbo" if stacked else "bi,kio->kbo", h, params[f"kernel{j}"])
            z = plus(z, params[f"bias{j}"][:, None, :])
            stacked = True
            if self.active:  # Keras' activity penalty on the Dense output: the sum over units, averaged over the batch
                term = (ops.convert_to_tensor(self.activity_l1) * ops.mean(ops.sum(ops.abs(z), axis=-1), axis=1)
                        + ops.convert_to_tensor(self.activity_l2) * ops.mean(ops.sum(ops.square(z), axis=-1), axis=1))
                activity = term if activity is None else activity + term
            if self.bn_hidden.any():
                z = self._masked(z, self._batch_norm(z, params, moving, new_moving, f"bn{j}", self.momentum_hidden,
                                                     training), self.bn_hidden)
            if len(self.runs) == 1:
                z = apply_activation(self.runs[0][0], z)
            else:
                z = ops.concatenate([apply_activation(key, z[a:b]) for key, a, b in self.runs], axis=0)
            if training and self.dropout.any():
                assert dropout is not None and step is not None
                seeds = self.dropout_seeds[:, j, :]
                z = dropout(z, self.dropout, seeds, step)
            h = z
        out = self.layers
        logits = ops.einsum("kbi,kio->kbo" if stacked else "bi,kio->kbo", h, params[f"kernel{out}"])
        probs = keras.activations.softmax(plus(logits, params[f"bias{out}"][:, None, :]))
        return probs, activity, new_moving

    def losses(self, params, probs, activity, y):
        """Each branch's loss as its twin computes it: mean cross-entropy plus its own penalties. `y` (B,) or (K, B)."""
        targets = ops.broadcast_to(ops.cast(y, "int32"), ops.shape(probs)[:2])
        losses = ops.mean(keras.losses.sparse_categorical_crossentropy(targets, probs), axis=1)
        if self.penalized:
            for j in range(self.layers):
                kernel = params[f"kernel{j}"]
                losses = losses + (ops.convert_to_tensor(self.kernel_l1) * ops.sum(ops.abs(kernel), axis=(1, 2))
                                   + ops.convert_to_tensor(self.kernel_l2) * ops.sum(ops.square(kernel), axis=(1, 2)))
        if activity is not None:
            losses = losses + activity
        return losses

    @staticmethod
    def hits(probs, y):
        """How many of the batch each branch classified right, (K,)."""
        predicted = ops.argmax(probs, axis=-1)
        return ops.sum(ops.cast(ops.equal(predicted, ops.cast(y, predicted.dtype)), "float32"), axis=-1)
