"""Convolutional networks, input normalization and augmentation: config, trials and the built model."""

import numpy as np
import pytest

from mnist_sweep.backend import get_keras
from mnist_sweep.config import config_to_dict, load_config, validate_config
from mnist_sweep.plan.grid import expand
from mnist_sweep.training.models import build_model, count_params
from mnist_sweep.training.saving import load_model, model_to_bytes
from tests.helpers import tiny_config

IMAGES = np.random.default_rng(0).random((16, 28, 28), dtype=np.float32)


def _trials(**sections):
    return expand(validate_config(tiny_config(**sections)))


def _settings(augment=False, **model):
    return _trials(model={"type": "cnn", "conv": [4, "pool"], **model}, augment=augment)[0].settings


def _layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


# --- config and trials ------------------------------------------------------------------------------

@pytest.mark.keras
def test_defaults_leave_dense_networks_as_they_were():
    [trial] = _trials()
    s = trial.settings
    assert (s["type"], s["normalize"], s["augment"]) == ("mlp", False, False)
    assert s["conv"] is s["kernel_size"] is s["conv_batch_norm"] is None  # a dense network reads none of them
    assert _layer_types(build_model(s)) == ["InputLayer", "Flatten", "Dense", "Activation", "Dense"]


def test_augment_true_means_the_seeds_3_settings():
    [trial] = _trials(augment=True)
    assert trial.settings["augment"] == {"rotation": 8.0, "width_shift": 0.08, "height_shift": 0.08,
                                         "shear": 0.3, "zoom": 0.08}


def test_a_dense_network_is_one_trial_whatever_the_conv_axis():
    ts = _trials(model={"type": ["mlp", "cnn"], "conv": [[4, "pool"], [8, "pool"]]})
    assert sorted((t.settings["type"], str(t.settings["conv"])) for t in ts) == [
        ("cnn", "[4, 'pool']"), ("cnn", "[8, 'pool']"), ("mlp", "None")]
    assert {t.trial_id.split("-s0-")[0] for t in ts} == {"mlp", "cnn_c4-pool", "cnn_c8-pool"}


def test_augment_axis_gives_readable_ids_and_exclude_works():
    ts = _trials(augment=[False, True, {"rotation": 15}], exclude=[{"augment": {"rotation": 15.0}}])
    assert [t.trial_id.split("-s0-")[0] for t in ts] == ["aug-off", "aug-on"]


def test_save_model_does_not_change_trial_ids():
    ids = {mode: [t.trial_id for t in _trials(train={"epochs": 1, "save_model": mode})]
           for mode in ("none", "best", "all")}
    assert ids["none"] == ids["best"] == ids["all"]


def test_dense_sweep_yaml_names_no_convolution_settings():
    data = config_to_dict(validate_config(tiny_config()))
    assert not {"conv", "kernel_size", "conv_batch_norm"} & set(data["model"])
    assert validate_config(data) == validate_config(tiny_config())


# --- the model ------------------------------------------------------------------------------------------

@pytest.mark.keras
def test_seeds_3_network_has_about_600000_parameters():
    settings = expand(load_config("configs/cnn_augmentation.yaml"))[0].settings
    model = build_model(settings, x_train=IMAGES)
    # SEEDS.md #3 says "about 600,000"; its last BatchNormalization normalizes the 1,024 flattened
    # features (4,096 weights), this one the last block's 64 channels (256).
    assert count_params(model) == {"params": 597_738, "trainable_params": 596_330, "non_trainable_params": 1_408}
    assert _layer_types(model) == [
        "InputLayer", "Reshape", "Normalization",
        "Conv2D", "BatchNormalization", "Conv2D", "MaxPooling2D", "BatchNormalization",
        "Conv2D", "BatchNormalization", "Conv2D", "MaxPooling2D", "BatchNormalization",
        "Flatten", "Dense", "BatchNormalization", "Activation", "Dropout", "Dense"]


@pytest.mark.keras
def test_kernel_size_and_leaky_relu_reach_the_convolutions():
    model = build_model(_settings(conv=[4, 4], kernel_size=5, activation="leaky_relu"))
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert _layer_types(model)[2:6] == ["Conv2D", "LeakyReLU", "Conv2D", "LeakyReLU"]


@pytest.mark.keras
def test_normalization_uses_the_training_images_mean_and_variance():
    model = build_model(_settings(normalize=True), x_train=IMAGES)
    layer = model.get_layer("normalize")
    out = np.asarray(layer(IMAGES[..., None]))
    assert abs(out.mean()) < 1e-4 and out.std() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.keras
def test_normalization_without_training_images_is_a_clear_error():
    with pytest.raises(ValueError, match="model.normalize needs the training images"):
        build_model(_settings(normalize=True))


@pytest.mark.keras
def test_augmentation_is_active_in_training_and_inactive_in_evaluation_and_prediction():
    # No dropout or batch norm: the only randomness in the network is the augmentation.
    keras = get_keras()
    keras.utils.set_random_seed(0)
    model = build_model(_settings(augment=True, hidden=[8]))
    model.compile(loss="sparse_categorical_crossentropy")
    augment = model.get_layer("augment")
    x = IMAGES[:4, :, :, None]
    first, second = (np.asarray(augment(x, training=True)) for _ in range(2))
    assert np.abs(first - x).max() > 0.1 and np.abs(first - second).max() > 0.1  # distorted, differently
    assert np.array_equal(np.asarray(augment(x, training=False)), x)  # untouched
    # The whole model: random when training, deterministic in evaluate/predict, which run with training=False.
    train_a, train_b = (np.asarray(model(IMAGES, training=True)) for _ in range(2))
    assert np.abs(train_a - train_b).max() > 1e-4
    predicted = model.predict(IMAGES, verbose=0)
    assert np.array_equal(predicted, model.predict(IMAGES, verbose=0))
    np.testing.assert_allclose(predicted, np.asarray(model(IMAGES, training=False)), atol=1e-6)
    labels = np.zeros(len(IMAGES), int)
    assert model.evaluate(IMAGES, labels, verbose=0) == model.evaluate(IMAGES, labels, verbose=0)


@pytest.mark.keras
def test_saved_model_loads_in_safe_mode_and_predicts_the_same(tmp_path):
    settings = _settings(augment=True, normalize=True, conv_batch_norm=True)
    model = build_model(settings, x_train=IMAGES)
    path = tmp_path / "model.keras"
    path.write_bytes(model_to_bytes(model))
    loaded = load_model(path)  # safe_mode=True: would refuse a Lambda layer
    assert _layer_types(loaded) == _layer_types(model)
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), model.predict(IMAGES, verbose=0), atol=1e-6)
