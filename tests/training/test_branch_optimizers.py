"""Per-branch optimizers: each branch of a stack moves exactly as its own Keras optimizer would move it alone."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_sweep.backend import get_keras
from mnist_sweep.config import OPTIMIZER_KEYS
from tests.helpers import lazy

make_branch_optimizer = lazy("mnist_sweep.training.branch_optimizers", "make_branch_optimizer")
take_branches = lazy("mnist_sweep.training.branch_optimizers", "take_branches")
build_optimizer = lazy("mnist_sweep.training.models", "build_optimizer")

# Three branches per family, each with its own learning rate and the other settings the config offers, some
# left at Keras' defaults. epsilon and initial_accumulator_value are not config settings (yet) but Keras takes them.
CASES = {
    "sgd": [{"learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
            {"learning_rate": 0.05, "momentum": 0.5, "nesterov": False},
            {"learning_rate": 0.02}],  # no momentum: Keras keeps no slot for it
    "rmsprop": [{"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5},
                {"learning_rate": 0.003},
                {"learning_rate": 0.02, "rho": 0.95, "epsilon": 1e-4}],
    "adagrad": [{"learning_rate": 0.1}, {"learning_rate": 0.01},
                {"learning_rate": 0.5, "initial_accumulator_value": 0.3, "epsilon": 1e-3}],
    "adadelta": [{"learning_rate": 1.0, "rho": 0.9}, {"learning_rate": 0.5},
                 {"learning_rate": 2.0, "rho": 0.5, "epsilon": 1e-5}],
    "adam": [{"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99}, {"learning_rate": 0.001},
             {"learning_rate": 0.05, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-4}],
    "adamw": [{"learning_rate": 0.01, "weight_decay": 0.1}, {"learning_rate": 0.001},  # Keras' 0.004
              {"learning_rate": 0.05, "beta_1": 0.7, "beta_2": 0.95, "weight_decay": 0.0}],
    "nadam": [{"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99}, {"learning_rate": 0.002},
              {"learning_rate": 0.05, "beta_1": 0.95, "beta_2": 0.9, "epsilon": 1e-4}],
}
# The last axis is as long as the branch axis (K = 3): a per-branch value broadcast along the wrong axis shows.
SHAPES = {"kernel": (5, 3), "bias": (3,)}
STEPS = 6
COMPILED_RTOL = 1e-6  # a compiler may fuse a multiply and an add, rounding once where Keras rounds twice


def _specs(family: str) -> list[dict]:
    return [{"name": family, **spec} for spec in CASES[family]]


def _problem(k: int, seed: int = 0):
    """Random stacked weights and STEPS steps of random gradients, as float32 numpy arrays."""
    rng = np.random.default_rng(seed)
    params = {name: rng.normal(size=(k, *shape)).astype("float32") for name, shape in SHAPES.items()}
    grads = [{name: rng.normal(size=(k, *shape)).astype("float32") for name, shape in SHAPES.items()}
             for _ in range(STEPS)]
    return params, grads


def _alone(spec: dict, params: dict, grads: list, branch: int) -> dict:
    """One branch's weights after its own Keras optimizer applied its gradients to keras.Variables."""
    keras = get_keras()
    variables = {name: keras.Variable(value[branch]) for name, value in params.items()}
    optimizer = build_optimizer(spec)
    for step in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(step[name][branch]), variables[name])
                                   for name in variables])
    return {name: keras.ops.convert_to_numpy(v) for name, v in variables.items()}


def _tensors(arrays: dict) -> dict:
    return {name: get_keras().ops.convert_to_tensor(value) for name, value in arrays.items()}


def _stacked(optimizer, params: dict, grads: list, state=None, first_step: int = 0):
    """The stacked weights and state after `apply` ran eagerly once per step of `grads`."""
    ops = get_keras().ops
    params = _tensors(params)
    state = optimizer.init(params) if state is None else state
    for i, step in enumerate(grads):
        params, state = optimizer.apply(params, _tensors(step), state, ops.convert_to_tensor(first_step + i, "int32"))
    return params, state


def _compilers() -> dict:
    """The ways the backend compiles a train step: jax.jit on JAX; tf.function with and without XLA on TensorFlow."""
    if get_keras().backend.backend() == "jax":
        import jax
        return {"jax.jit": jax.jit}
    import tensorflow as tf
    return {"tf.function": tf.function, "tf.function(jit_compile=True)": lambda fn: tf.function(fn, jit_compile=True)}


def _stacked_compiled(optimizer, params: dict, grads: list, compile_fn) -> dict:
    """The stacked weights after all steps ran in one compiled `fori_loop`, as the stacked engine runs them."""
    ops = get_keras().ops
    stacked_grads = {name: np.stack([step[name] for step in grads]) for name in params}
    steps = len(grads)

    def train(params, grads):
        def body(i, carry):
            weights, state = carry
            return optimizer.apply(weights, {n: ops.take(g, i, axis=0) for n, g in grads.items()}, state, i)
        return ops.fori_loop(0, steps, body, (params, optimizer.init(params)))[0]

    return compile_fn(train)(_tensors(params), _tensors(stacked_grads))


def check_family(family: str) -> None:
    """Every branch equals its isolated Keras twin: exactly when eager, within COMPILED_RTOL when compiled."""
    ops = get_keras().ops
    specs = _specs(family)
    params, grads = _problem(len(specs))
    alone = [_alone(spec, params, grads, k) for k, spec in enumerate(specs)]
    optimizer = make_branch_optimizer(specs)
    eager, _ = _stacked(optimizer, params, grads)
    for k, twin in enumerate(alone):
        for name in SHAPES:
            assert not np.allclose(twin[name], params[name][k]), f"{family} branch {k} did not move its {name}"
            np.testing.assert_array_equal(ops.convert_to_numpy(eager[name])[k], twin[name],
                                          err_msg=f"{family} branch {k}'s {name}, eager")
    for how, compile_fn in _compilers().items():
        compiled = _stacked_compiled(optimizer, params, grads, compile_fn)
        for k, twin in enumerate(alone):
            for name in SHAPES:
                np.testing.assert_allclose(ops.convert_to_numpy(compiled[name])[k], twin[name], rtol=COMPILED_RTOL,
                                           err_msg=f"{family} branch {k}'s {name}, {how}")


def test_cases_cover_every_optimizer_and_every_setting_the_config_offers():
    assert set(CASES) == set(OPTIMIZER_KEYS)
    for family, keys in OPTIMIZER_KEYS.items():
        given = {key for spec in CASES[family] for key in spec}
        assert keys | {"learning_rate"} <= given, f"{family}'s cases leave out {keys - given}"
        assert len({spec["learning_rate"] for spec in CASES[family]}) == 3


@pytest.mark.keras
@pytest.mark.parametrize("family", sorted(CASES))
def test_each_branch_updates_as_its_own_keras_optimizer(family):
    check_family(family)


@pytest.mark.keras
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_each_branch_updates_as_its_own_keras_optimizer_on_jax():
    # Keras' backend is fixed per process: run the same checks in one with KERAS_BACKEND=jax.
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    code = ("from mnist_sweep.backend import get_keras\n"
            "assert get_keras().backend.backend() == 'jax'\n"
            "from tests.training.test_branch_optimizers import CASES, check_family\n"
            "for family in sorted(CASES):\n"
            "    check_family(family)\n"
            "print('checked', len(CASES))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "checked 7" in result.stdout


@pytest.mark.keras
@pytest.mark.parametrize("family, keep", [("sgd", [2]), ("adam", [2, 0]), ("nadam", [2, 0])])
def test_dropped_branches_leave_the_others_as_their_twins_would_be(family, keep):
    # After 3 steps some branches stop; the others go on, maybe reordered, with their sliced state from step 3.
    # sgd's branch 2 has no momentum but keeps the stack's slot; nadam carries a per-branch product across steps.
    ops = get_keras().ops
    specs = _specs(family)
    params, grads = _problem(len(specs), seed=1)
    optimizer = make_branch_optimizer(specs)
    weights, state = _stacked(optimizer, params, grads[:3])
    weights = {name: ops.convert_to_numpy(value) for name, value in take_branches(weights, keep).items()}
    later = [{name: g[keep] for name, g in step.items()} for step in grads[3:]]
    subset = optimizer.subset(keep)
    weights, later_state = _stacked(subset, weights, later, take_branches(state, keep), first_step=3)
    assert set(later_state) == set(state)
    for position, k in enumerate(keep):
        twin = _alone(specs[k], params, grads, k)
        for name in SHAPES:
            np.testing.assert_array_equal(ops.convert_to_numpy(weights[name])[position], twin[name])


@pytest.mark.keras
def test_a_stack_takes_one_optimizer_family_and_only_settings_it_can_mirror():
    with pytest.raises(ValueError, match="one optimizer family, got adam, sgd: stack each family separately"):
        make_branch_optimizer([{"name": "adam"}, {"name": "sgd"}])
    with pytest.raises(ValueError, match="branch 1's adam optimizer takes no 'amsgrad' in a stack; it takes beta_1"):
        make_branch_optimizer([{"name": "adam"}, {"name": "adam", "amsgrad": True}])
    optimizer = make_branch_optimizer(_specs("adam"))
    with pytest.raises(ValueError, match=r"leading branch axis of 3, got shapes \{'bias': \(2, 3\)\}"):
        optimizer.init(_tensors({"bias": np.zeros((2, 3), "float32")}))
    with pytest.raises(ValueError, match=r"positions must be some of 0..2, got \[3\]"):
        optimizer.subset([3])
