"""TEMPORARY stand-in (sgd, adam) until the i24-optim branch lands."""
import numpy as np
import keras
ops = keras.ops


class BranchOptimizer:
    def __init__(self, specs):
        self.specs = list(specs)
        self.name = specs[0]["name"]
        col = lambda key, default: np.array([s.get(key, default) if s.get(key) is not None else default for s in specs], dtype="float32")
        self.lr = col("learning_rate", 0.001)
        self.momentum = col("momentum", 0.0)
        self.beta_1, self.beta_2 = col("beta_1", 0.9), col("beta_2", 0.999)

    def subset(self, positions):
        return BranchOptimizer([self.specs[p] for p in positions])

    def init(self, params):
        z = {n: ops.zeros_like(v) for n, v in params.items()}
        if self.name == "adam":
            return {**{f"m/{n}": v for n, v in z.items()}, **{f"v/{n}": ops.zeros_like(v) for n, v in z.items()}}
        return {f"m/{n}": v for n, v in z.items()}

    def apply(self, params, grads, state, step):
        new, st = {}, dict(state)
        for n, p in params.items():
            g = grads[n]
            shape = (-1,) + (1,) * (len(p.shape) - 1)
            lr = ops.reshape(ops.convert_to_tensor(self.lr), shape)
            if self.name == "sgd":
                mom = ops.reshape(ops.convert_to_tensor(self.momentum), shape)
                m = -g * lr + state[f"m/{n}"] * mom
                st[f"m/{n}"] = m
                new[n] = p + m
            else:
                b1 = ops.reshape(ops.convert_to_tensor(self.beta_1), shape)
                b2 = ops.reshape(ops.convert_to_tensor(self.beta_2), shape)
                t = ops.cast(step + 1, "float32")
                alpha = lr * ops.sqrt(1 - ops.power(b2, t)) / (1 - ops.power(b1, t))
                m = state[f"m/{n}"] + (g - state[f"m/{n}"]) * (1 - b1)
                v = state[f"v/{n}"] + (ops.square(g) - state[f"v/{n}"]) * (1 - b2)
                st[f"m/{n}"], st[f"v/{n}"] = m, v
                new[n] = p - (m * alpha) / (ops.sqrt(v) + 1e-7)
        return new, st


def make_branch_optimizer(specs):
    return BranchOptimizer(specs)
