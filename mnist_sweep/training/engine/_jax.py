"""The stacked engine's JAX half: gradients, compilation (cached on disk) and dropout in one draw."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from ...data.dataset import cache_dir


def _use_compilation_cache() -> None:
    """Keep compiled epochs on disk, so a shape compiles once per machine (unless the user chose a cache)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or getattr(jax.config, "jax_compilation_cache_dir", None):
        return
    try:
        path = cache_dir() / "jax"
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable cache: compile every time
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def value_and_grad(fn):
    """`fn(params, *args) -> (loss, aux)` as `(params, *args) -> ((loss, aux), grads)`."""
    return jax.value_and_grad(fn, has_aux=True)


def compile_function(fn, xla: bool = True):
    """`jax.jit`: JAX always compiles with XLA, so `xla` changes nothing here."""
    _use_compilation_cache()
    return jax.jit(fn)


def dropout(z, rates: np.ndarray, seeds: np.ndarray, step):
    """Every branch's dropout in one draw, each with exactly its twin's mask.

    Keras' Dropout on JAX draws `jax.random.bernoulli(key, 1 - rate, shape)` with the layer's seed
    state `[s, t]` at its t-th call as the key; vmapped over the branches' keys, it is one draw.
    """
    keys = jnp.asarray(seeds.astype("uint32")) + jnp.stack([jnp.uint32(0), jnp.asarray(step, jnp.uint32)])
    keep = jnp.asarray((1.0 - rates.astype("float64")).astype("float32"))
    masks = jax.vmap(lambda key, p: jax.random.bernoulli(key, p=p, shape=z.shape[1:]))(keys, keep)
    return jax.lax.select(masks, z / keep[:, None, None], jnp.zeros_like(z))
