"""The models built from the shipped configs are the ones SEEDS.md describes."""

import pytest

from mnist_sweep.config import load_config, validate_config
from mnist_sweep.plan.grid import expand
from mnist_sweep.training.models import build_model, build_optimizer, count_params
from tests.helpers import tiny_config

pytestmark = pytest.mark.keras  # every test here builds or trains a Keras model


def _first_trial(path):
    return expand(load_config(path))[0]


@pytest.mark.parametrize("path, total, non_trainable", [
    ("configs/regularization.yaml", 23_860, 0),
    ("configs/early_stopping.yaml", 669_706, 0),
    ("configs/activations_optimizers.yaml", 104_906, 1_568),
])
def test_seed_models_have_the_published_parameter_counts(path, total, non_trainable):
    counts = count_params(build_model(_first_trial(path).settings))
    assert counts["params"] == total
    assert counts["non_trainable_params"] == non_trainable


def _layer_types(settings):
    return [type(layer).__name__ for layer in build_model(settings).layers]


def _settings(**model):
    return expand(validate_config(tiny_config(model=model)))[0].settings


def test_layer_order_follows_the_documented_block():
    types = _layer_types(_settings(hidden=[8, 4], batch_norm=True, dropout=0.5, activation="tanh"))
    assert types == ["InputLayer", "Flatten",
                     "Dense", "BatchNormalization", "Activation", "Dropout",
                     "Dense", "BatchNormalization", "Activation", "Dropout",
                     "Dense"]


def test_input_batch_norm_and_linear_activation_add_no_hidden_layers():
    types = _layer_types(_settings(hidden=[8], batch_norm="input", activation="linear"))
    assert types == ["InputLayer", "Flatten", "BatchNormalization", "Dense", "Dense"]


def test_leaky_relu_uses_the_configured_slope():
    model = build_model(_settings(activation="leaky_relu", leaky_alpha=0.01))
    leaky = [layer for layer in model.layers if type(layer).__name__ == "LeakyReLU"]
    assert len(leaky) == 1 and leaky[0].negative_slope == pytest.approx(0.01)


def test_regularizers_and_initializer_reach_the_dense_layer():
    settings = _settings(kernel_l2=0.02, activity_l1=0.0001,
                         initializer={"name": "random_normal", "stddev": 0.01})
    dense = build_model(settings).layers[2]
    assert dense.kernel_regularizer.l2 == pytest.approx(0.02)
    assert dense.activity_regularizer.l1 == pytest.approx(0.0001)
    assert dense.kernel_initializer.stddev == pytest.approx(0.01)


def test_optimizer_settings_are_passed_through():
    optimizer = build_optimizer({"name": "sgd", "learning_rate": 0.3, "momentum": 0.9})
    assert type(optimizer).__name__ == "SGD"
    assert float(optimizer.learning_rate) == pytest.approx(0.3)
    assert optimizer.momentum == pytest.approx(0.9)
    assert float(build_optimizer({"name": "rmsprop", "learning_rate": 0.01, "rho": 0.99}).rho) == pytest.approx(0.99)


@pytest.mark.parametrize("model", [
    {"batch_norm": True, "hidden": [8, 4]},
    {"batch_norm": "input"},
    {"type": "cnn", "conv": [4, "pool", 4], "conv_batch_norm": True, "batch_norm": True},
])
def test_batch_norm_momentum_reaches_every_batch_normalization_layer(model):
    def momenta(settings):
        return [layer.momentum for layer in build_model(settings).layers
                if type(layer).__name__ == "BatchNormalization"]

    assert momenta(_settings(**model)) and set(momenta(_settings(**model))) == {0.99}  # Keras' default
    assert set(momenta(_settings(**model, batch_norm_momentum=0.9))) == {0.9}
