"""The stacked engine's TensorFlow half: gradients, compilation and per-branch dropout."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def value_and_grad(fn):
    """`fn(params, *args) -> (loss, aux)` as `(params, *args) -> ((loss, aux), grads)`."""

    def wrapped(params, *args):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss, aux = fn(params, *args)
        return (loss, aux), tape.gradient(loss, params)

    return wrapped


def compile_function(fn, xla: bool = False):
    """One traced graph; with `xla`, compiled by XLA (faster steps, slower start; see `trainer.XLA_MIN_STEPS`)."""
    return tf.function(fn, autograph=False, jit_compile=xla)


def dropout(z, rates: np.ndarray, seeds: np.ndarray, step):
    """Each branch's dropout exactly as its twin's Dropout layer draws it at this step.

    Keras' Dropout on TensorFlow is one `stateless_dropout` whose seed is the layer's seed state
    `[s, t]` at its t-th call, folded into int32 (`keras.src.backend.tensorflow.random._cast_seed`).
    TensorFlow has no stateless draw that takes one seed per slice, so the draw is per branch.
    """
    step = tf.cast(step, tf.int64)
    out = []
    for k, rate in enumerate(rates.tolist()):
        if rate == 0.0:
            out.append(z[k])
            continue
        seed = tf.constant(seeds[k], dtype=tf.int64) + tf.stack([tf.constant(0, tf.int64), step])
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        # tf.nn.experimental.stateless_dropout, spelled out with its algorithm named: under XLA,
        # "auto_select" picks another generator than TensorFlow's own kernel does (Philox on CPU)
        keep = tf.random.stateless_uniform(tf.shape(z[k]), seed=seed, dtype=z.dtype, alg="philox") >= rate
        scaled = z[k] * tf.constant(1 / (1 - rate), dtype=z.dtype)
        out.append(tf.where(keep, scaled, tf.constant(0, dtype=z.dtype)))
    return tf.stack(out)
