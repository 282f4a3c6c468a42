"""Stacked training: K dense networks of one shape as one model whose weights carry a branch axis.

Every Dense kernel is held as `(K, inputs, units)` and runs as one batched matmul for all K
branches, instead of K small ones. Each branch keeps exactly what its isolated twin has: the
initial weights are taken from the twin built with the trial's seed, the activation, initializer,
kernel and activity penalties, batch normalization and its momentum, the dropout masks (drawn
from a copy of the twin's own seed generator) and, with SGD, the learning rate, so a branch trains
as the trial would alone.
`restack` keeps only some branches, with their optimizer state, so stopped branches cost nothing.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _quiet_import  # noqa: F401  (first: Keras is loaded through backend.get_keras)
import keras

from ..config import BN_MOMENTUM
from .models import build_model

ops = keras.ops


def _activation_key(settings: dict[str, Any]) -> tuple:
    name = settings["activation"]
    return (name, settings["leaky_alpha"]) if name == "leaky_relu" else (name, None)


class _Plan:
    """Per-branch constants of one stack, in stack order."""

    def __init__(self, ids: list[int], settings: list[dict[str, Any]], base_lr: float):
        self.ids = list(ids)
        self.settings = list(settings)
        self.base_lr = base_lr
        layers = len(settings[0]["hidden"])
        col = lambda f: np.array([f(s) for s in settings], dtype="float32")  # noqa: E731
        self.kernel_l1, self.kernel_l2 = col(lambda s: s["kernel_l1"]), col(lambda s: s["kernel_l2"])
        self.activity_l1, self.activity_l2 = col(lambda s: s["activity_l1"]), col(lambda s: s["activity_l2"])
        self.penalized = bool(self.kernel_l1.any() or self.kernel_l2.any())
        # SGD branches with their own learning rate: the optimizer runs at `base_lr` and each branch's
        # loss is scaled by its rate over it, so its gradient step is its own rate times its gradient.
        self.lr_scale = col(lambda s: s["optimizer"]["learning_rate"] / base_lr)
        self.scaled = bool((self.lr_scale != 1.0).any())
        self.active = bool(self.activity_l1.any() or self.activity_l2.any())
        # Batch normalization: branches without it keep their statistics (momentum 1) and skip it.
        self.bn_input = np.array([s["batch_norm"] == "input" for s in settings])
        self.bn_hidden = np.array([s["batch_norm"] is True for s in settings])
        momentum = col(lambda s: s.get("batch_norm_momentum") or BN_MOMENTUM)  # as models.py reads it
        self.momentum_input = np.where(self.bn_input, momentum, 1.0).astype("float32")
        self.momentum_hidden = np.where(self.bn_hidden, momentum, 1.0).astype("float32")
        self.dropout = [s["dropout"] for s in settings]
        # Contiguous runs of equal activations: one op per run, not per branch.
        self.runs: list[tuple[tuple, int, int]] = []
        for k, s in enumerate(settings):
            key = _activation_key(s)
            if self.runs and self.runs[-1][0] == key:
                self.runs[-1] = (key, self.runs[-1][1], k + 1)
            else:
                self.runs.append((key, k, k + 1))
        self.layers = layers

    def subset(self, positions: list[int]) -> "_Plan":
        return _Plan([self.ids[p] for p in positions], [self.settings[p] for p in positions], self.base_lr)


def _apply_activation(key: tuple, x):
    name, alpha = key
    if name == "linear":
        return x
    if name == "leaky_relu":
        return keras.activations.leaky_relu(x, negative_slope=alpha)
    return keras.activations.get(name)(x)


def twin_parts(model) -> dict[str, list]:
    """The layers of an isolated model that the stack mirrors, by role, in order."""
    parts: dict[str, list] = {"dense": [], "bn_input": [], "bn_hidden": [], "dropout": [], "normalize": []}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            parts["dense"].append(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            parts["bn_hidden" if parts["dense"] else "bn_input"].append(layer)
        elif isinstance(layer, keras.layers.Dropout):
            parts["dropout"].append(layer)
        elif isinstance(layer, keras.layers.Normalization):
            parts["normalize"].append(layer)
    return parts


def branch_weights(model, layers: int) -> dict[str, np.ndarray]:
    """One isolated model's weights under the stack's variable names; absent layers get neutral values."""
    parts = twin_parts(model)
    value = keras.ops.convert_to_numpy
    weights: dict[str, np.ndarray] = {}
    for j, dense in enumerate(parts["dense"]):
        weights[f"kernel{j}"], weights[f"bias{j}"] = value(dense.kernel), value(dense.bias)

    def bn(prefix: str, layer, units: int):
        if layer is None:
            ones, zeros = np.ones(units, "float32"), np.zeros(units, "float32")
            weights.update({f"{prefix}_gamma": ones, f"{prefix}_beta": zeros, f"{prefix}_mean": zeros,
                            f"{prefix}_var": ones})
        else:
            weights.update({f"{prefix}_gamma": value(layer.gamma), f"{prefix}_beta": value(layer.beta),
                            f"{prefix}_mean": value(layer.moving_mean), f"{prefix}_var": value(layer.moving_variance)})

    bn("bn_in", parts["bn_input"][0] if parts["bn_input"] else None, parts["dense"][0].kernel.shape[0])
    for j in range(layers):
        bn(f"bn{j}", parts["bn_hidden"][j] if parts["bn_hidden"] else None, parts["dense"][j].kernel.shape[1])
    return weights


def set_branch_weights(model, weights: dict[str, np.ndarray]) -> None:
    """Put one branch's weights back into its isolated model (the inverse of `branch_weights`)."""
    parts = twin_parts(model)
    for j, dense in enumerate(parts["dense"]):
        dense.kernel.assign(weights[f"kernel{j}"])
        dense.bias.assign(weights[f"bias{j}"])
    named = [("bn_in", layer) for layer in parts["bn_input"]] + [
        (f"bn{j}", layer) for j, layer in enumerate(parts["bn_hidden"])]
    for prefix, layer in named:
        layer.gamma.assign(weights[f"{prefix}_gamma"])
        layer.beta.assign(weights[f"{prefix}_beta"])
        layer.moving_mean.assign(weights[f"{prefix}_mean"])
        layer.moving_variance.assign(weights[f"{prefix}_var"])


def build_twins(trials, x_train) -> list:
    """Each trial's isolated model, built right after seeding exactly as `train_trial` builds it."""
    twins = []
    for trial in trials:
        keras.utils.set_random_seed(trial.seed)
        twins.append(build_model(trial.settings, input_shape=x_train.shape[1:], x_train=x_train))
    return twins


class BranchMetrics(keras.metrics.Metric):
    """Every branch's mean loss and accuracy over an epoch, as `b<id>_loss` / `b<id>_accuracy` logs."""

    def __init__(self, branch_ids):
        super().__init__(name="branches")
        self.branch_ids = list(branch_ids)
        k = len(self.branch_ids)
        self.loss_sum = self.add_variable(shape=(k,), initializer="zeros", name="loss_sum")
        self.hits = self.add_variable(shape=(k,), initializer="zeros", name="hits")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, losses, probs, y):
        size = ops.cast(ops.shape(y)[0], "float32")
        predicted = ops.argmax(probs, axis=-1)
        hit = ops.cast(ops.equal(predicted, ops.cast(y, predicted.dtype)[None, :]), "float32")
        self.loss_sum.assign(self.loss_sum + losses * size)
        self.hits.assign(self.hits + ops.sum(hit, axis=1))
        self.count.assign(self.count + size)

    def result(self):
        loss, accuracy = self.loss_sum / self.count, self.hits / self.count
        out = {}
        for k, i in enumerate(self.branch_ids):
            out[f"b{i}_loss"], out[f"b{i}_accuracy"] = loss[k], accuracy[k]
        return out

class StackedModel(keras.Model):
    """The stacked model of branches `ids` (their settings and isolated twins, in that order).

    Left unbuilt: fit builds it from a first batch, as it does an isolated model, and that draw is
    part of the shuffling sequence on backends that shuffle with numpy's generator (JAX).
    """

    optimizer: Any  # set by compile, replaced by restack

    def __init__(self, ids: list[int], settings: list[dict[str, Any]], twins: list, input_shape):
        super().__init__(name="stacked")
        self.input_dims = int(np.prod(input_shape))
        self.plan: Optional[_Plan] = None
        self.var_names: list[str] = []
        self.branch_metrics: Optional[BranchMetrics] = None
        self.seed_generators: list = []  # one per branch and dropout layer, copied from the twins
        self.generator_of: dict = {}
        normalize = twin_parts(twins[0])["normalize"]
        self.norm = None if not normalize else (
            float(ops.convert_to_numpy(normalize[0].mean).ravel()[0]),
            float(ops.convert_to_numpy(normalize[0].variance).ravel()[0]))
        for i, twin in zip(ids, twins):
            for j, layer in enumerate(twin_parts(twin)["dropout"]):
                generator = keras.random.SeedGenerator(0)
                generator.state.assign(layer.seed_generator.state.value)
                self.generator_of[(i, j)] = len(self.seed_generators)
                self.seed_generators.append(generator)
        weights = [branch_weights(twin, len(s["hidden"])) for s, twin in zip(settings, twins)]
        self.base_lr = settings[0]["optimizer"]["learning_rate"]  # the rate the group's optimizer is built with
        plan = _Plan(ids, settings, self.base_lr)
        # Batch-norm variables only where some branch uses them: bn_in_* on the input, bn<j>_* after layer j.
        names = [n for n in weights[0] if not (n.startswith("bn_in_") and not plan.bn_input.any())
                 and not (n[:2] == "bn" and n[2:3].isdigit() and not plan.bn_hidden.any())]
        self.load(ids, settings, {name: np.stack([w[name] for w in weights]) for name in names})

    # ------------------------------------------------------------ the stack's state

    def _set_variable(self, name: str, value: np.ndarray, trainable: bool) -> None:
        """Replace one stacked variable; Keras untracks a deleted one, and is told to accept the new one."""
        if hasattr(self, name):
            delattr(self, name)
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            setattr(self, name, self.add_weight(shape=value.shape, initializer=lambda shape, dtype=None: value,
                                                trainable=trainable, name=name))
        finally:
            if locked:
                self._tracker.lock()

    def load(self, branch_ids, branch_settings, stacked: dict[str, np.ndarray]) -> None:
        """Hold these branches, with these stacked weights (name -> (K, ...) array)."""
        self.plan = _Plan(branch_ids, branch_settings, self.base_lr)
        self.var_names = list(stacked)
        for name, value in stacked.items():
            trainable = not name.endswith(("_mean", "_var"))
            self._set_variable(name, np.ascontiguousarray(value, dtype="float32"), trainable)
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            self.branch_metrics = BranchMetrics(self.plan.ids)
        finally:
            if locked:
                self._tracker.lock()
        self.train_function = self.test_function = self.predict_function = None

    def assign(self, stacked: dict[str, np.ndarray]) -> None:
        """New values for the branches it holds, in place: the traced steps stay valid."""
        for name, value in stacked.items():
            getattr(self, name).assign(np.asarray(value, dtype="float32"))

    def stacked_values(self) -> dict[str, np.ndarray]:
        return {name: ops.convert_to_numpy(getattr(self, name)) for name in self.var_names}

    def branch_slices(self) -> dict[int, dict[str, np.ndarray]]:
        """Each branch's current weights, by branch id."""
        values = self.stacked_values()
        return {i: {name: v[k].copy() for name, v in values.items()} for k, i in enumerate(self.plan.ids)}

    def restack(self, keep_ids: list[int]) -> None:
        """Keep only these branches: their weights and their optimizer state; the rest is dropped."""
        positions = [self.plan.ids.index(i) for i in keep_ids]
        values = self.stacked_values()
        old_optimizer = self.optimizer
        self.load(keep_ids, [self.plan.settings[p] for p in positions],
                  {name: v[positions] for name, v in values.items()})
        optimizer = old_optimizer.__class__.from_config(old_optimizer.get_config())
        optimizer.build(self.trainable_variables)
        for new, old in zip(optimizer.variables, old_optimizer.variables):
            value = ops.convert_to_numpy(old)
            if tuple(new.shape) != tuple(value.shape):  # a per-branch slot: keep the survivors' rows
                value = value[positions]
            new.assign(value)
        self.optimizer = optimizer
        self.make_train_function(force=True)  # fit calls it next without asking for a new one

    @property
    def metrics(self):
        tracker = getattr(self, "_loss_tracker", None)
        return [m for m in (tracker, self.branch_metrics) if m is not None]

    # ------------------------------------------------------------ the computation

    def _batch_norm(self, x, prefix: str, momentum: np.ndarray, training: bool):
        gamma, beta = getattr(self, f"{prefix}_gamma")[:, None, :], getattr(self, f"{prefix}_beta")[:, None, :]
        moving_mean, moving_var = getattr(self, f"{prefix}_mean"), getattr(self, f"{prefix}_var")
        if training:
            mean, var = ops.moments(x, axes=[1])
            m = ops.convert_to_tensor(momentum[:, None])
            moving_mean.assign(moving_mean * m + mean * (1.0 - m))
            moving_var.assign(moving_var * m + var * (1.0 - m))
        else:
            mean, var = moving_mean, moving_var
        inv = ops.rsqrt(var[:, None, :] + 1e-3) * gamma  # BatchNormalization's default epsilon
        return x * inv + (beta - mean[:, None, :] * inv)

    def _masked(self, x, y, mask: np.ndarray):
        if mask.all():
            return y
        return ops.where(ops.convert_to_tensor(mask[:, None, None]), y, x)

    def call(self, x, training=False):
        plan = self.plan
        h = ops.reshape(x, (-1, self.input_dims))
        if self.norm is not None:  # Normalization: (x - mean) / max(sqrt(variance), epsilon)
            mean, variance = self.norm
            h = (h - mean) / max(float(np.sqrt(variance)), keras.backend.epsilon())
        stacked = False
        if plan.bn_input.any():
            h = ops.broadcast_to(h[None], (len(plan.ids), *ops.shape(h)))
            h = self._masked(h, self._batch_norm(h, "bn_in", plan.momentum_input, training), plan.bn_input)
            stacked = True
        activity = None
        for j in range(plan.layers):
            kernel, bias = getattr(self, f"kernel{j}"), getattr(self, f"bias{j}")
            z = ops.einsum("kbi,kio->kbo" if stacked else "bi,kio->kbo", h, kernel) + bias[:, None, :]
            stacked = True
            if plan.active:  # activity penalty on the Dense output, over the batch
                term = (ops.convert_to_tensor(plan.activity_l1) * ops.mean(ops.sum(ops.abs(z), axis=-1), axis=1)
                        + ops.convert_to_tensor(plan.activity_l2) * ops.mean(ops.sum(ops.square(z), axis=-1),
                                                                              axis=1))
                activity = term if activity is None else activity + term
            if plan.bn_hidden.any():
                z = self._masked(z, self._batch_norm(z, f"bn{j}", plan.momentum_hidden, training), plan.bn_hidden)
            if len(plan.runs) == 1:
                z = _apply_activation(plan.runs[0][0], z)
            else:
                z = ops.concatenate([_apply_activation(key, z[a:b]) for key, a, b in plan.runs], axis=0)
            if training and any(plan.dropout):
                z = ops.stack([
                    keras.random.dropout(z[k], rate, seed=self.seed_generators[self.generator_of[(i, j)]])
                    if rate > 0 else z[k] for k, (i, rate) in enumerate(zip(plan.ids, plan.dropout))])
            h = z
        out = plan.layers
        logits = ops.einsum("kbi,kio->kbo" if stacked else "bi,kio->kbo", h, getattr(self, f"kernel{out}"))
        probs = keras.activations.softmax(logits + getattr(self, f"bias{out}")[:, None, :])
        return probs, activity

    def branch_losses(self, y, probs, activity):
        """Each branch's loss as its isolated twin computes it: cross-entropy plus its own penalties."""
        plan = self.plan
        targets = ops.broadcast_to(ops.cast(y, "int32")[None, :], ops.shape(probs)[:2])
        losses = ops.mean(keras.losses.sparse_categorical_crossentropy(targets, probs), axis=1)
        if plan.penalized:
            for j in range(plan.layers):
                kernel = getattr(self, f"kernel{j}")
                losses = losses + (ops.convert_to_tensor(plan.kernel_l1) * ops.sum(ops.abs(kernel), axis=(1, 2))
                                   + ops.convert_to_tensor(plan.kernel_l2) * ops.sum(ops.square(kernel),
                                                                                     axis=(1, 2)))
        if activity is not None:
            losses = losses + activity
        return losses

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        probs, activity = y_pred
        losses = self.branch_losses(y, probs, activity)
        self.branch_metrics.update_state(losses, probs, y)
        if self.plan.scaled:  # each branch's own SGD learning rate (see _Plan.lr_scale)
            losses = losses * ops.convert_to_tensor(self.plan.lr_scale)
        return ops.sum(losses)  # branches share no weights: each gets exactly its own gradient
