"""Building and compiling a Keras model from one trial's settings: a dense network or a CNN."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..backend import get_keras
from ..config import BN_MOMENTUM

NUM_CLASSES = 10


def _initializer(spec: Any):
    keras = get_keras()
    if isinstance(spec, str):
        return keras.initializers.get(spec)
    params = {k: v for k, v in spec.items() if k != "name" and v is not None}
    return keras.initializers.get({"class_name": spec["name"], "config": params})


def _regularizer(l1: float, l2: float):
    keras = get_keras()
    return keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None


def _activation(settings: dict[str, Any]):
    keras = get_keras()
    name = settings["activation"]
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=settings["leaky_alpha"])
    return keras.layers.Activation(name)


def _augmentation(spec: dict[str, Any]):
    """The random distortions as one `augment` block; Keras' Random* layers act only when training."""
    keras = get_keras()
    layers = keras.layers
    steps = []  # fill with black, MNIST's background, where an image moved away from the border
    if spec["rotation"]:
        steps.append(layers.RandomRotation(spec["rotation"] / 360.0, fill_mode="constant"))  # turns, not degrees
    if spec["width_shift"] or spec["height_shift"]:
        steps.append(layers.RandomTranslation(spec["height_shift"], spec["width_shift"], fill_mode="constant"))
    if spec["shear"]:
        # A range, not a number: RandomShear saves a number s as (-s, s), which its loader rejects (Keras 3.15).
        # Its sign is random either way, so (0, s) shears by -s..s all the same.
        steps.append(layers.RandomShear(x_factor=(0.0, spec["shear"]), y_factor=(0.0, 0.0), fill_mode="constant"))
    if spec["zoom"]:
        steps.append(layers.RandomZoom(spec["zoom"], spec["zoom"], fill_mode="constant"))
    return keras.Sequential(steps, name="augment") if steps else None


def _normalization(x_train):
    """Standardize pixels with the training images' mean and variance, kept in the layer's config."""
    if x_train is None:
        raise ValueError("model.normalize needs the training images (x_train) to compute their mean and variance")
    x = np.asarray(x_train)
    return get_keras().layers.Normalization(axis=None, mean=float(x.mean(dtype=np.float64)),
                                            variance=float(x.var(dtype=np.float64)), name="normalize")


def _momentum(settings: dict[str, Any]) -> float:
    return settings.get("batch_norm_momentum") or BN_MOMENTUM  # absent from trials recorded before it existed


def _conv_stack(x, settings: dict[str, Any]):
    """Conv(filters, k×k, activation) per number and MaxPool(2×2) per `pool`; BatchNormalization after
    each convolution, after the pools that follow it (SEEDS.md #3's order)."""
    layers = get_keras().layers
    leaky = settings["activation"] == "leaky_relu"
    pending_norm = False
    for item in settings["conv"]:
        if item == "pool":
            x = layers.MaxPooling2D(2)(x)
            continue
        if pending_norm:
            x = layers.BatchNormalization(momentum=_momentum(settings))(x)
        x = layers.Conv2D(item, settings["kernel_size"], activation=None if leaky else settings["activation"],
                          kernel_initializer=_initializer(settings["initializer"]))(x)
        if leaky:
            x = _activation(settings)(x)
        pending_norm = settings["conv_batch_norm"]
    if pending_norm:
        x = layers.BatchNormalization(momentum=_momentum(settings))(x)
    return x


def _dense_head(x, settings: dict[str, Any]):
    """(Dense → [BN] → activation → [Dropout]) per hidden layer, with the regularizers and initializer."""
    layers = get_keras().layers
    for units in settings["hidden"]:
        x = layers.Dense(
            units,
            kernel_initializer=_initializer(settings["initializer"]),
            kernel_regularizer=_regularizer(settings["kernel_l1"], settings["kernel_l2"]),
            activity_regularizer=_regularizer(settings["activity_l1"], settings["activity_l2"]),
        )(x)
        if settings["batch_norm"] is True:
            x = layers.BatchNormalization(momentum=_momentum(settings))(x)
        if settings["activation"] != "linear":
            x = _activation(settings)(x)
        if settings["dropout"] > 0:
            x = layers.Dropout(settings["dropout"])(x)
    return x


def build_model(settings: dict[str, Any], input_shape=(28, 28), name: Optional[str] = None, x_train=None):
    """[augment] → [normalize] → [conv stack] → Flatten → [BN] → dense head → Dense(10, softmax).

    `x_train` (the training images) is needed only for `normalize`. Every layer is a built-in Keras
    layer, so the saved model loads in Keras' safe mode.
    """
    keras = get_keras()
    layers = keras.layers
    kind = settings.get("type") or "mlp"  # settings recorded before convolutional networks have no type
    augment = _augmentation(settings["augment"]) if settings.get("augment") else None
    inputs = keras.Input(shape=input_shape)
    x = inputs
    if (augment is not None or kind == "cnn") and len(input_shape) == 2:
        x = layers.Reshape((*input_shape, 1))(x)  # image layers want a channel axis
    if augment is not None:
        x = augment(x)
    if settings.get("normalize"):
        x = _normalization(x_train)(x)
    if kind == "cnn":
        x = _conv_stack(x, settings)
    x = layers.Flatten()(x)
    if settings["batch_norm"] == "input":
        x = layers.BatchNormalization(momentum=_momentum(settings))(x)
    x = _dense_head(x, settings)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax",
                           kernel_initializer=_initializer(settings["initializer"]))(x)
    return keras.Model(inputs, outputs, name=name or kind)


def build_optimizer(spec: dict[str, Any]):
    """A Keras optimizer from `{name, learning_rate, ...}`."""
    keras = get_keras()
    classes = {"sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad", "adadelta": "Adadelta",
               "adam": "Adam", "adamw": "AdamW", "nadam": "Nadam"}
    params = {k: v for k, v in spec.items() if k != "name" and v is not None}
    return getattr(keras.optimizers, classes[spec["name"]])(**params)


def compile_model(model, settings: dict[str, Any]):
    """Compile with the trial's optimizer, sparse categorical cross-entropy and accuracy."""
    model.compile(optimizer=build_optimizer(settings["optimizer"]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def count_params(model) -> dict[str, int]:
    """Total, trainable and non-trainable parameter counts, as Keras' summary shows them."""
    keras = get_keras()
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    non_trainable = sum(int(keras.ops.size(w)) for w in model.non_trainable_weights)
    return {"params": trainable + non_trainable, "trainable_params": trainable,
            "non_trainable_params": non_trainable}


def summary_text(model) -> str:
    """The Keras model summary as plain text, every column shown."""
    import os

    lines: list[str] = []
    width = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "120"  # Keras draws the table with rich, which crops to the console width
    try:
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    finally:
        if width is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = width
    return "\n".join(lines)
