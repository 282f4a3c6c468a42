"""K optimizers of one family as one pure update over weights that carry a leading branch axis.

A stacked model holds K branches' weights as `(K, ...)` arrays. `make_branch_optimizer(specs)` gives
each branch exactly the update its own Keras optimizer (`models.build_optimizer(spec)`) would make
alone: every hyperparameter is a per-branch constant broadcast over the branch axis, and each update
mirrors Keras 3's `update_step` op for op (same casts, same order, same float32 rounding of Python
floats), so an eager run matches the isolated optimizers bit for bit. `apply` assigns nothing and uses
only `keras.ops`, so it runs inside `tf.function`, `keras.ops.fori_loop` and `jax.jit`.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Sequence

import numpy as np

from . import _quiet_import  # noqa: F401  (first: Keras is loaded through backend.get_keras)
import keras

ops = keras.ops
Tensors = dict[str, Any]


def make_branch_optimizer(specs: list[dict[str, Any]]) -> BranchOptimizer:
    """One optimizer for K branches from their K specs (`{"name": "adam", "learning_rate": 0.01, ...}`),
    all of one family; absent or None keys take Keras' defaults."""
    if not specs:
        raise ValueError("a branch optimizer needs at least one branch's optimizer spec")
    names = sorted({spec.get("name") for spec in specs}, key=str)
    if len(names) > 1:
        raise ValueError(f"the branches of one stack need one optimizer family, got {', '.join(map(str, names))}: "
                         f"stack each family separately")
    if names[0] not in FAMILIES:
        raise ValueError(f"no branch optimizer for {names[0]!r}; use one of: {', '.join(FAMILIES)}")
    return FAMILIES[names[0]](specs)


def take_branches(tensors: Tensors, positions: Sequence[int]) -> Tensors:
    """These branches of stacked weights or optimizer state, in this order: every array's leading axis."""
    index = np.asarray(positions, dtype="int32")
    return {key: ops.take(value, index, axis=0) for key, value in tensors.items()}


class BranchOptimizer:
    """The updates of K Keras optimizers of one family, over weights stacked along a leading branch axis.

    Hyperparameters are held as float64 per-branch vectors and rounded to the weights' dtype only where
    Keras rounds them, so `1 - beta_1` is rounded once, from the double, exactly as Keras' Python does.
    """

    name: str
    keras_class: str
    keys: frozenset[str] = frozenset()  # the spec keys besides name, learning_rate and weight_decay

    def __init__(self, specs: list[dict[str, Any]], structure: Optional[dict[str, bool]] = None):
        allowed = self.keys | {"name", "learning_rate", "weight_decay"}
        for i, spec in enumerate(specs):
            unknown = sorted(set(k for k, v in spec.items() if v is not None) - allowed)
            if unknown:
                raise ValueError(f"branch {i}'s {self.name} optimizer takes no {', '.join(map(repr, unknown))} in a "
                                 f"stack; it takes {', '.join(sorted(allowed - {'name'}))}")
        self.specs = [dict(spec) for spec in specs]
        defaults = inspect.signature(getattr(keras.optimizers, self.keras_class).__init__).parameters
        self.h: dict[str, np.ndarray] = {}
        for key in allowed - {"name", "nesterov"}:
            default = defaults[key].default
            values = [spec.get(key) if spec.get(key) is not None else default for spec in specs]
            if key == "weight_decay":
                values = [0.0 if v is None else v for v in values]  # 0 leaves a weight exactly as it was
            elif any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
                raise ValueError(f"{self.name}'s {key} must be a number in a stack, got {values}")
            self.h[key] = np.asarray(values, dtype="float64")
        # Which optional steps run, fixed here and kept by `subset` so its state keeps the same slots.
        self.structure = structure or self._structure()
        self.structure.setdefault("weight_decay", any(spec.get("weight_decay") is not None for spec in specs)
                                  or defaults["weight_decay"].default is not None)

    @property
    def size(self) -> int:
        """K, the number of branches."""
        return len(self.specs)

    def subset(self, positions: Sequence[int]) -> BranchOptimizer:
        """The optimizer of only these branches, in this order; `take_branches(state, positions)` is its state."""
        bad = [p for p in positions if not 0 <= p < self.size]
        if bad or not positions:
            raise ValueError(f"positions must be some of 0..{self.size - 1}, got {list(positions)}")
        return type(self)([self.specs[p] for p in positions], dict(self.structure))

    def init(self, params: Tensors) -> Tensors:
        """The optimizer state for stacked weights: each weight's slots, keyed `{weight}/{slot}`."""
        self._check(params)
        state = {}
        for name, param in params.items():
            for slot, value in self._slots(param).items():
                state[f"{name}/{slot}"] = value
        state.update(self._global_slots(params))
        return state

    def apply(self, params: Tensors, grads: Tensors, state: Tensors, step) -> tuple[Tensors, Tensors]:
        """The weights and state after one update; `step` counts the updates before this one (Keras'
        `optimizer.iterations` before it), as a scalar tensor. Pure: nothing is assigned."""
        self._check(params)
        new_state = dict(state)
        per_step = self._per_step(params, state, step, new_state)
        new_params = {}
        for name, param in params.items():
            grad = ops.cast(grads[name], param.dtype)
            lr = self._col("learning_rate", param)
            if self.structure["weight_decay"]:  # base_optimizer._apply_weight_decay, before the update
                param = ops.subtract(param, ops.multiply(ops.multiply(param, self._col("weight_decay", param)), lr))
            slots = {slot: state[f"{name}/{slot}"] for slot in self._slot_names()}
            new_params[name], slots = self._update(param, grad, lr, slots, per_step)
            new_state.update({f"{name}/{slot}": value for slot, value in slots.items()})
        return new_params, new_state

    # What each family defines.
    def _structure(self) -> dict[str, bool]:
        return {}

    def _slot_names(self) -> tuple[str, ...]:
        return ()

    def _slots(self, param) -> Tensors:
        return {slot: ops.zeros_like(param) for slot in self._slot_names()}

    def _global_slots(self, params: Tensors) -> Tensors:
        return {}

    def _per_step(self, params: Tensors, state: Tensors, step, new_state: Tensors) -> dict[str, Any]:
        """Per-branch (K,) values that every weight's update shares in one step."""
        return {}

    def _update(self, param, grad, lr, slots: Tensors, per_step: dict[str, Any]):
        raise NotImplementedError

    # Helpers.
    def _check(self, params: Tensors) -> None:
        wrong = {name: tuple(p.shape) for name, p in params.items() if len(p.shape) < 1 or p.shape[0] != self.size}
        if wrong:
            raise ValueError(f"stacked weights need a leading branch axis of {self.size}, got shapes {wrong}")

    def _shape(self, param) -> tuple[int, ...]:
        return (self.size,) + (1,) * (len(param.shape) - 1)

    def _col(self, key: str, like, value: Optional[np.ndarray] = None):
        """A hyperparameter (or `value`, computed from them in float64) rounded once to `like`'s dtype, as
        Keras rounds a Python float, shaped to broadcast over `like`'s branch axis."""
        value = self.h[key] if value is None else value
        dtype = keras.backend.standardize_dtype(like.dtype)
        return ops.convert_to_tensor(np.asarray(value).astype(dtype).reshape(self._shape(like)), dtype)

    def _plus(self, x, col):
        """`x + col` for a per-branch column: broadcast first, because Keras' TensorFlow `ops.add` takes a
        second operand with one non-unit axis for a bias and adds it along `x`'s first or last axis,
        so `(K, 5, 3) + (K, 1, 1)` with K == 3 would add branch i's value to column i of every branch."""
        return ops.add(x, ops.broadcast_to(col, ops.shape(x)))

    def _bcast(self, vector, like):
        """A per-branch (K,) tensor shaped to broadcast over `like`'s branch axis."""
        return ops.reshape(vector, self._shape(like))

    def _power(self, key: str, dtype: str, exponent):
        """`ops.power(float32(hyperparameter), exponent)` per branch, as (K,): one scalar power per distinct
        value, as Keras computes it, so a vectorized kernel cannot round any branch differently."""
        distinct, index = np.unique(self.h[key], return_inverse=True)
        powers = [ops.power(ops.convert_to_tensor(np.asarray(v, dtype), dtype), exponent) for v in distinct]
        return ops.take(ops.stack(powers), np.asarray(index, dtype="int32").reshape(-1), axis=0)


def _dtype(params: Tensors) -> str:
    first = next(iter(params.values()), None)
    return keras.backend.standardize_dtype(first.dtype) if first is not None else keras.backend.floatx()


class _SGD(BranchOptimizer):
    name, keras_class, keys = "sgd", "SGD", frozenset({"momentum", "nesterov"})

    def __init__(self, specs, structure=None):
        super().__init__(specs, structure)
        self.nesterov = np.asarray([bool(spec.get("nesterov") or False) for spec in specs])

    def _structure(self):
        # Keras keeps no momentum slot at momentum 0; a stack keeps one as soon as one branch has momentum.
        # At momentum 0 it holds -g*lr, and `var + (m*0 - g*lr)` is `var - g*lr`, what Keras does.
        return {"momentum": bool(np.any(self.h["momentum"] != 0))}

    def _slot_names(self):
        return ("momentum",) if self.structure["momentum"] else ()

    def _update(self, param, grad, lr, slots, per_step):
        if not self.structure["momentum"]:
            return ops.subtract(param, ops.multiply(grad, lr)), slots
        momentum = self._col("momentum", param)
        m = ops.subtract(ops.multiply(slots["momentum"], momentum), ops.multiply(grad, lr))
        if self.nesterov.any():
            ahead = ops.subtract(ops.multiply(m, momentum), ops.multiply(grad, lr))
            nesterov = ops.convert_to_tensor(self.nesterov.reshape(self._shape(param)))
            param = ops.add(param, ops.where(nesterov, ahead, m))
        else:
            param = ops.add(param, m)
        return param, {"momentum": m}


class _RMSprop(BranchOptimizer):
    name, keras_class, keys = "rmsprop", "RMSprop", frozenset({"rho", "momentum", "epsilon"})

    def _structure(self):
        # As SGD's: at momentum 0 the slot holds the increment itself (`0*m + inc` is `inc`).
        return {"momentum": bool(np.any(self.h["momentum"] > 0))}

    def _slot_names(self):
        return ("velocity", "momentum") if self.structure["momentum"] else ("velocity",)

    def _update(self, param, grad, lr, slots, per_step):
        rho = self._col("rho", param)
        velocity = ops.add(ops.multiply(rho, slots["velocity"]),
                           ops.multiply(self._col("rho", param, 1 - self.h["rho"]), ops.square(grad)))
        denominator = self._plus(velocity, self._col("epsilon", param))
        increment = ops.divide(ops.multiply(lr, grad), ops.sqrt(denominator))
        if not self.structure["momentum"]:
            return ops.subtract(param, increment), {"velocity": velocity}
        momentum = ops.add(ops.multiply(self._col("momentum", param), slots["momentum"]), increment)
        return ops.subtract(param, momentum), {"velocity": velocity, "momentum": momentum}


class _Adagrad(BranchOptimizer):
    name, keras_class, keys = "adagrad", "Adagrad", frozenset({"initial_accumulator_value", "epsilon"})

    def _slot_names(self):
        return ("accumulator",)

    def _slots(self, param):
        return {"accumulator": ops.multiply(ops.ones_like(param), self._col("initial_accumulator_value", param))}

    def _update(self, param, grad, lr, slots, per_step):
        accumulator = ops.add(slots["accumulator"], ops.square(grad))
        param = ops.subtract(param, ops.divide(ops.multiply(lr, grad),
                                               ops.sqrt(self._plus(accumulator, self._col("epsilon", param)))))
        return param, {"accumulator": accumulator}


class _Adadelta(BranchOptimizer):
    name, keras_class, keys = "adadelta", "Adadelta", frozenset({"rho", "epsilon"})

    def _slot_names(self):
        return ("accumulated_grad", "accumulated_delta_var")

    def _update(self, param, grad, lr, slots, per_step):
        rho, one_minus_rho = self._col("rho", param), self._col("rho", param, 1 - self.h["rho"])
        epsilon = self._col("epsilon", param)

        def rms(x):
            return ops.sqrt(self._plus(x, epsilon))

        accumulated_grad = ops.add(ops.multiply(rho, slots["accumulated_grad"]),
                                   ops.multiply(one_minus_rho, ops.square(grad)))
        delta = ops.negative(ops.divide(ops.multiply(rms(slots["accumulated_delta_var"]), grad),
                                        rms(accumulated_grad)))
        accumulated_delta_var = ops.add(ops.multiply(rho, slots["accumulated_delta_var"]),
                                        ops.multiply(one_minus_rho, ops.square(delta)))
        param = ops.add(param, ops.multiply(lr, delta))
        return param, {"accumulated_grad": accumulated_grad, "accumulated_delta_var": accumulated_delta_var}


class _Adam(BranchOptimizer):
    name, keras_class, keys = "adam", "Adam", frozenset({"beta_1", "beta_2", "epsilon"})

    def _slot_names(self):
        return ("momentum", "velocity")

    def _per_step(self, params, state, step, new_state):
        dtype = _dtype(params)
        local_step = ops.cast(ops.add(step, 1), dtype)
        beta_1_power, beta_2_power = self._power("beta_1", dtype, local_step), self._power("beta_2", dtype, local_step)
        lr = ops.convert_to_tensor(self.h["learning_rate"].astype(dtype))
        alpha = ops.divide(ops.multiply(lr, ops.sqrt(ops.subtract(1, beta_2_power))), ops.subtract(1, beta_1_power))
        return {"alpha": alpha}

    def _update(self, param, grad, lr, slots, per_step):
        one_minus_beta_1 = self._col("beta_1", param, 1 - self.h["beta_1"])  # Keras' `1 - self.beta_1`, in double
        one_minus_beta_2 = self._col("beta_2", param, 1 - self.h["beta_2"])
        m = ops.add(slots["momentum"], ops.multiply(ops.subtract(grad, slots["momentum"]), one_minus_beta_1))
        v = ops.add(slots["velocity"], ops.multiply(ops.subtract(ops.square(grad), slots["velocity"]),
                                                    one_minus_beta_2))
        update = ops.divide(ops.multiply(m, self._bcast(per_step["alpha"], param)),
                            self._plus(ops.sqrt(v), self._col("epsilon", param)))
        return ops.subtract(param, update), {"momentum": m, "velocity": v}


class _AdamW(_Adam):
    name, keras_class = "adamw", "AdamW"  # Adam's update after the decoupled decay `apply` makes


class _Nadam(BranchOptimizer):
    name, keras_class, keys = "nadam", "Nadam", frozenset({"beta_1", "beta_2", "epsilon"})
    DECAY = 0.96  # Keras' momentum schedule constant

    def _slot_names(self):
        return ("momentum", "velocity")

    def _global_slots(self, params):
        return {"u_product": ops.ones((self.size,), dtype=_dtype(params))}

    def _per_step(self, params, state, step, new_state):
        # Nadam._backend_update_step's u_product update, then update_step's step-wide values.
        dtype = _dtype(params)
        local_step, next_step = ops.cast(ops.add(step, 1), dtype), ops.cast(ops.add(step, 2), dtype)
        decay = ops.convert_to_tensor(np.asarray(self.DECAY, dtype), dtype)
        beta_1 = ops.convert_to_tensor(self.h["beta_1"].astype(dtype))
        decay_t, decay_t_1 = ops.power(decay, local_step), ops.power(decay, next_step)
        u_product = ops.multiply(ops.multiply(state["u_product"], beta_1),
                                 ops.subtract(1.0, ops.multiply(0.5, decay_t)))
        new_state["u_product"] = u_product
        u_t = ops.multiply(beta_1, ops.subtract(1.0, ops.multiply(0.5, decay_t)))
        u_t_1 = ops.multiply(beta_1, ops.subtract(1.0, ops.multiply(0.5, decay_t_1)))
        return {"u_t": u_t, "u_t_1": u_t_1, "u_product_t": u_product,
                "u_product_t_1": ops.multiply(u_product, u_t_1),
                "beta_2_power": self._power("beta_2", dtype, local_step)}

    def _update(self, param, grad, lr, slots, per_step):
        col = {key: self._bcast(value, param) for key, value in per_step.items()}
        dtype = keras.backend.standardize_dtype(param.dtype)
        # Here Keras casts the betas first, so `1 - beta` is a float32 subtraction, unlike Adam's.
        one = np.asarray(1, dtype)
        one_minus_beta_1 = self._col("beta_1", param, one - self.h["beta_1"].astype(dtype))
        one_minus_beta_2 = self._col("beta_2", param, one - self.h["beta_2"].astype(dtype))
        m = ops.add(slots["momentum"], ops.multiply(ops.subtract(grad, slots["momentum"]), one_minus_beta_1))
        v = ops.add(slots["velocity"], ops.multiply(ops.subtract(ops.square(grad), slots["velocity"]),
                                                    one_minus_beta_2))
        m_hat = ops.add(
            ops.divide(ops.multiply(col["u_t_1"], m), ops.subtract(1, col["u_product_t_1"])),
            ops.divide(ops.multiply(ops.subtract(1, col["u_t"]), grad), ops.subtract(1, col["u_product_t"])))
        v_hat = ops.divide(v, ops.subtract(1, col["beta_2_power"]))
        update = ops.divide(ops.multiply(m_hat, lr), self._plus(ops.sqrt(v_hat), self._col("epsilon", param)))
        return ops.subtract(param, update), {"momentum": m, "velocity": v}


FAMILIES: dict[str, type[BranchOptimizer]] = {
    cls.name: cls for cls in (_SGD, _RMSprop, _Adagrad, _Adadelta, _Adam, _AdamW, _Nadam)}
