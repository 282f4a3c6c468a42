"""A stacked branch and its isolated twin: the twin's layers by role, its weights under the stack's names.

A stacked branch mirrors the dense network `build_model` builds for its trial (its twin): these
helpers read a twin's weights into the stack's layout and write them back, so a branch starts
from its twin's initial weights and ends in its twin, an ordinary model to save and load.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _quiet_import  # noqa: F401  (first: Keras is loaded through backend.get_keras)
import keras

from .models import build_model

ops = keras.ops


def activation_key(settings: dict[str, Any]) -> tuple:
    name = settings["activation"]
    return (name, settings["leaky_alpha"]) if name == "leaky_relu" else (name, None)


def apply_activation(key: tuple, x):
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
