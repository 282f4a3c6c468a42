"""Building and compiling a Keras model from one trial's settings."""

from __future__ import annotations

from typing import Any

from .backend import get_keras

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


def build_model(settings: dict[str, Any], input_shape=(28, 28), name: str = "mlp"):
    """Flatten → [BN] → (Dense → [BN] → activation → [Dropout]) per hidden layer → Dense(10, softmax)."""
    keras = get_keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = layers.Flatten()(inputs)
    if settings["batch_norm"] == "input":
        x = layers.BatchNormalization()(x)
    for units in settings["hidden"]:
        x = layers.Dense(
            units,
            kernel_initializer=_initializer(settings["initializer"]),
            kernel_regularizer=_regularizer(settings["kernel_l1"], settings["kernel_l2"]),
            activity_regularizer=_regularizer(settings["activity_l1"], settings["activity_l2"]),
        )(x)
        if settings["batch_norm"] is True:
            x = layers.BatchNormalization()(x)
        if settings["activation"] != "linear":
            x = _activation(settings)(x)
        if settings["dropout"] > 0:
            x = layers.Dropout(settings["dropout"])(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax",
                           kernel_initializer=_initializer(settings["initializer"]))(x)
    return keras.Model(inputs, outputs, name=name)


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
    """The Keras model summary as plain text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=90)
    return "\n".join(lines)
