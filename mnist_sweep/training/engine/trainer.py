"""The stacked engine: a group of dense trials trained as one compiled model, one epoch per compiled call.

The group's branches form sub-stacks (one per layer shape, `normalize` setting and optimizer family,
`plan.grouping.substack_key`) that step together: one training step computes every sub-stack's
forward pass, takes the gradient of the sum of all branch losses (branches share no weights, so each
gets exactly its own gradient) and applies each sub-stack's optimizer over the branch axis.

An epoch is one compiled loop (`keras.ops.fori_loop`) over the full batches, plus one compiled step
for the partial last batch; the data stays on the device. Each branch reads its own batch, gathered
in the graph from its seed's order (`order.epoch_order`), so it sees exactly its isolated twin's
batches; branches with one seed share one gathered batch. Early stopping, divergence, pruning and
the time limit act at epoch ends, through the group's callback (`fused._GroupCallback`).

The backend's half (gradients, compilation, per-branch dropout) is `_tf.py` or `_jax.py`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Optional

import numpy as np

from ...backend import get_keras
from ...plan.grouping import substack_key
from ...records import Trial
from ..order import epoch_order
from ..stacked import activation_key, build_twins, set_branch_weights
from .stack import SubStack

keras = get_keras()  # loaded quietly, as every training module loads it
ops = keras.ops

EVAL_CHUNK = 1024  # rows per compiled evaluation call: the result does not depend on it
BACKENDS = {"tensorflow": "_tf", "jax": "_jax"}
# On TensorFlow, XLA takes about a third off a step of a small stacked model but adds seconds of compiling
# at the start; it is used when the group plans at least this many steps. Never with dropout: TensorFlow's
# generators under XLA draw other masks than Keras' Dropout draws alone, and exactness comes first.
XLA_MIN_STEPS = 1500


def supported() -> bool:
    """Whether the running Keras backend has an engine half (TensorFlow and JAX do)."""
    return keras.backend.backend() in BACKENDS


def _backend_half():
    return import_module(f".{BACKENDS[keras.backend.backend()]}", __package__)


def _take_rows(value, positions: list[int], k: int):
    """A stacked array's (or an optimizer state entry's) rows for these branches; anything else unchanged."""
    array = ops.convert_to_numpy(value)
    if array.ndim and array.shape[0] == k:
        return ops.convert_to_tensor(array[positions])
    return value


class StackEngine:
    """The trials of one group as one compiled model; `fit` trains it, `evaluate` scores every branch."""

    def __init__(self, trials: list[Trial], data):
        if not trials:
            raise ValueError("a stacked group needs at least one trial")
        batch, epochs = {t.settings["batch_size"] for t in trials}, {t.settings["epochs"] for t in trials}
        if len(batch) > 1 or len(epochs) > 1:
            raise ValueError("the trials of one stacked group share batch size and epochs")
        self.trials = trials
        self.batch_size = batch.pop()
        epochs_planned = epochs.pop()
        self.half = _backend_half()
        self.twins = build_twins(trials, data.x_train)
        n = len(data.x_train)
        self.n_train = n
        flat = lambda a: ops.convert_to_tensor(np.asarray(a, dtype="float32").reshape(len(a), -1))  # noqa: E731
        self.x_train, self.y_train = flat(data.x_train), ops.convert_to_tensor(np.asarray(data.y_train, "int32"))
        self.validation = (np.asarray(data.x_val, "float32").reshape(len(data.x_val), -1),
                           np.asarray(data.y_val, "int32")) if len(data.x_val) else None
        self.steps = 0  # training steps taken: each branch's optimizer iterations and dropout calls
        planned = -(-n // self.batch_size) * epochs_planned
        self.xla = planned >= XLA_MIN_STEPS and not any(t.settings["dropout"] for t in trials)
        self._load([self._fresh(ids) for ids in self._layout()], None)

    # ------------------------------------------------------------ layout

    def _layout(self) -> list[list[int]]:
        """Every branch's sub-stack: the group's positions by `substack_key`, equal activations side by side."""
        groups: dict[tuple, list[int]] = {}
        for i, trial in enumerate(self.trials):
            groups.setdefault(substack_key(trial.settings), []).append(i)
        return [sorted(ids, key=lambda i: (activation_key(self.trials[i].settings), i)) for ids in groups.values()]

    def _fresh(self, ids: list[int]) -> SubStack:
        return SubStack.from_twins(ids, [self.trials[i].settings for i in ids], [self.twins[i] for i in ids],
                                   [0] * len(ids))

    def _load(self, subs: list[SubStack], state: Optional[list[dict]]) -> None:
        """Hold these sub-stacks (with this state, or their twins' weights) and trace their steps anew."""
        self.seeds = sorted({self.trials[i].seed for sub in subs for i in sub.members})
        slot = {seed: k for k, seed in enumerate(self.seeds)}
        for sub in subs:
            sub.slots = np.array([slot[self.trials[i].seed] for i in sub.members], dtype="int32")
            sub.shared = len(set(sub.slots.tolist())) == 1
        self.subs = subs
        if state is None:
            state = []
            for sub in subs:
                params, moving = sub.twin_arrays()
                params = {n: ops.convert_to_tensor(v) for n, v in params.items()}
                state.append({"params": params, "moving": {n: ops.convert_to_tensor(v) for n, v in moving.items()},
                              "opt": sub.optimizer.init(params)})
        self.state = state
        self._epoch_fn = self.half.compile_function(self._epoch, self.xla)
        self._step_fn = self.half.compile_function(self._one_step, self.xla)
        self._eval_fn = self.half.compile_function(self._evaluate)
        self._grad = self.half.value_and_grad(self._loss)

    def size(self) -> int:
        """How many branches the compiled model holds."""
        return sum(len(sub.members) for sub in self.subs)

    def held(self) -> list[int]:
        return [i for sub in self.subs for i in sub.members]

    def describe(self) -> dict[str, int]:
        return {"branches": len(self.trials), "substacks": len(self.subs), "seeds": len({t.seed for t in self.trials}),
                "xla": int(self.xla)}

    # ------------------------------------------------------------ the computation (pure, compiled)

    def _inputs(self, sub: SubStack, xb, yb):
        if sub.shared:
            return xb[int(sub.slots[0])], yb[int(sub.slots[0])]
        slots = ops.convert_to_tensor(sub.slots)
        return ops.take(xb, slots, axis=0), ops.take(yb, slots, axis=0)

    def _loss(self, params: list, state: list, xb, yb, step):
        total, aux = 0.0, []
        for sub, p, st in zip(self.subs, params, state):
            x, y = self._inputs(sub, xb, yb)
            probs, activity, moving = sub.forward(p, st["moving"], x, True, step, self.half.dropout)
            losses = sub.losses(p, probs, activity, y)
            aux.append((losses, sub.hits(probs, y), moving))
            total = total + ops.sum(losses)
        return total, aux

    def _train_step(self, state: list, xb, yb, step):
        (_, aux), grads = self._grad([st["params"] for st in state], state, xb, yb, step)
        new_state, sums = [], []
        for sub, st, g, (losses, hits, moving) in zip(self.subs, state, grads, aux):
            params, opt = sub.optimizer.apply(st["params"], g, st["opt"], step)
            new_state.append({"params": params, "moving": moving, "opt": opt})
            sums.append((losses, hits))
        return new_state, sums

    def _accumulate(self, sums, step_sums, size):
        return [(loss + losses * size, hit + hits) for (loss, hit), (losses, hits) in zip(sums, step_sums)]

    def _zeros(self):
        return [(ops.zeros((len(sub.members),)), ops.zeros((len(sub.members),))) for sub in self.subs]

    def _epoch(self, state, x, y, orders, step):
        """The full batches of one epoch: `orders` is (seeds, steps, batch), each seed's batches in order."""
        size = float(self.batch_size)

        def body(i, carry):
            state, sums = carry
            idx = ops.take(orders, i, axis=1)  # (seeds, batch)
            state, step_sums = self._train_step(state, ops.take(x, idx, axis=0), ops.take(y, idx, axis=0),
                                                step + i)
            return state, self._accumulate(sums, step_sums, size)

        return keras.ops.fori_loop(0, orders.shape[1], body, (state, self._zeros()))

    def _one_step(self, state, x, y, idx, step):
        """One step on the batch `idx` (seeds, rows): the partial last batch of an epoch."""
        state, step_sums = self._train_step(state, ops.take(x, idx, axis=0), ops.take(y, idx, axis=0), step)
        return state, self._accumulate(self._zeros(), step_sums, float(idx.shape[1]))

    def _evaluate(self, state, x, y):
        """Each branch's summed loss and hits on one chunk of rows every branch reads."""
        out = []
        for sub, st in zip(self.subs, state):
            probs, activity, _ = sub.forward(st["params"], st["moving"], x, False)
            losses = sub.losses(st["params"], probs, activity, y)
            out.append((losses * float(x.shape[0]), sub.hits(probs, y)))
        return out

    # ------------------------------------------------------------ training

    def _train_epoch(self, epoch: int) -> list:
        n, b = self.n_train, self.batch_size
        full = n // b
        orders = np.stack([epoch_order(seed, epoch, n) for seed in self.seeds])
        sums = None
        if full:
            self.state, sums = self._epoch_fn(self.state, self.x_train, self.y_train,
                                              ops.convert_to_tensor(orders[:, :full * b].reshape(len(self.seeds),
                                                                                                 full, b)),
                                              ops.convert_to_tensor(self.steps, "int32"))
            self.steps += full
        if n % b:
            self.state, rest = self._step_fn(self.state, self.x_train, self.y_train,
                                             ops.convert_to_tensor(orders[:, full * b:]),
                                             ops.convert_to_tensor(self.steps, "int32"))
            self.steps += 1
            sums = rest if sums is None else [(a + c, h + g) for (a, h), (c, g) in zip(sums, rest)]
        return sums or []

    def score(self, x: np.ndarray, y: np.ndarray) -> dict[int, tuple[float, float]]:
        """Each held branch's (mean loss, accuracy) on these rows, by position in the group."""
        x, y = np.asarray(x, "float32").reshape(len(x), -1), np.asarray(y, "int32")
        totals = None
        for start in range(0, len(x), EVAL_CHUNK):
            part = self._eval_fn(self.state, ops.convert_to_tensor(x[start:start + EVAL_CHUNK]),
                                 ops.convert_to_tensor(y[start:start + EVAL_CHUNK]))
            part = [(ops.convert_to_numpy(a).astype("float64"), ops.convert_to_numpy(h)) for a, h in part]
            totals = part if totals is None else [(a + c, h + g) for (a, h), (c, g) in zip(totals, part)]
        out = {}
        for sub, (loss, hits) in zip(self.subs, totals or []):
            for k, i in enumerate(sub.members):
                out[i] = (float(loss[k]) / len(x), float(hits[k]) / len(x))
        return out

    def fit(self, epochs: int, callback) -> None:
        """Train up to `epochs` epochs, telling `callback` each epoch's logs (`b<i>_loss`, `val_b<i>_accuracy`...)."""
        for epoch in range(epochs):
            callback.on_epoch_begin(epoch)
            sums = self._train_epoch(epoch)
            logs: dict[str, float] = {}
            for sub, (loss, hits) in zip(self.subs, sums):
                loss, hits = ops.convert_to_numpy(loss), ops.convert_to_numpy(hits)
                for k, i in enumerate(sub.members):
                    logs[f"b{i}_loss"] = float(loss[k]) / self.n_train
                    logs[f"b{i}_accuracy"] = float(hits[k]) / self.n_train
            if self.validation is not None:
                for i, (loss, accuracy) in self.score(*self.validation).items():
                    logs[f"val_b{i}_loss"], logs[f"val_b{i}_accuracy"] = loss, accuracy
            callback.on_epoch_end(epoch, logs)
            if callback.stop_training:
                break

    # ------------------------------------------------------------ branches in and out

    def snapshot(self, ids: list[int]) -> dict[int, dict[str, np.ndarray]]:
        """These held branches' current weights (trainable and moving), under the stack's names."""
        wanted, out = set(ids), {}
        for sub, st in zip(self.subs, self.state):
            positions = [k for k, i in enumerate(sub.members) if i in wanted]
            if not positions:
                continue
            arrays = {n: ops.convert_to_numpy(v) for part in ("params", "moving") for n, v in st[part].items()}
            for k in positions:
                out[sub.members[k]] = {n: v[k].copy() for n, v in arrays.items()}
        return out

    def drop(self, live: list[int]) -> None:
        """Keep only these branches, with their weights and optimizer state; the compiled steps are traced anew."""
        keep = set(live)
        subs, state = [], []
        for sub, st in zip(self.subs, self.state):
            positions = [k for k, i in enumerate(sub.members) if i in keep]
            if not positions:
                continue
            k = len(sub.members)
            subs.append(sub.subset(positions))
            state.append({part: {n: _take_rows(v, positions, k) for n, v in st[part].items()}
                          for part in ("params", "moving", "opt")})
        self._load(subs, state)

    def finish(self, final: dict[int, dict[str, np.ndarray]]) -> None:
        """Every branch's twin gets the weights it ends with (`final`, else its current ones), and the engine
        holds every branch again with those weights, ready for `score`."""
        current = self.snapshot(self.held())
        for i, twin in enumerate(self.twins):
            weights = final.get(i) or current.get(i)
            if weights is not None:
                set_branch_weights(twin, weights)
        if self.size() == len(self.trials):  # nobody left: the traced evaluation stays valid
            for sub, st in zip(self.subs, self.state):
                params, moving = sub.twin_arrays()
                st["params"] = {n: ops.convert_to_tensor(v) for n, v in params.items()}
                st["moving"] = {n: ops.convert_to_tensor(v) for n, v in moving.items()}
            return
        self._load([self._fresh(ids) for ids in self._layout()], None)
