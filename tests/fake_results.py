"""Synthetic results directories in the real layout (written through `store.py`), for tests and benchmarks."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from mnist_sweep.results.store import ResultsStore, _csv_text, atomic_write, summary_columns, summary_row

DEFAULT_FACTORS = {"activation": ["relu", "tanh", "sigmoid"], "dropout": [0.0, 0.2]}


def _history(rng, epochs: int, quality: float, diverge_at: int | None = None) -> list[dict[str, float]]:
    """Loss falling and accuracy rising towards a level set by `quality`, validation a little worse."""
    rows = []
    for epoch in range(1, epochs + 1):
        progress = 1 - math.exp(-epoch / (2 + 4 * (1 - quality)))
        acc = 0.1 + (0.8 + 0.15 * quality) * progress + rng.normal(0, 0.004)
        val_acc = acc - 0.01 - 0.02 * progress * (1 - quality) + rng.normal(0, 0.006)
        loss = 2.3 * (1 - progress) + 0.1 + 0.2 * (1 - quality) + rng.normal(0, 0.01)
        val_loss = loss + 0.05 + 0.01 * epoch * (1 - quality)
        if diverge_at is not None and epoch >= diverge_at:
            loss = val_loss = math.nan
        rows.append({"epoch": epoch, "loss": loss, "accuracy": min(acc, 1.0), "val_loss": val_loss,
                     "val_accuracy": min(val_acc, 1.0), "epoch_seconds": 0.4 + rng.uniform(0, 0.1)})
    return rows


def write_sweep(root: str | Path, name: str = "fake", factors: dict[str, list[Any]] | None = None,
                seeds: int = 2, epochs: int = 8, statuses: dict[int, str] | None = None,
                ragged: bool = False, seed: int = 0, group_seconds: bool = False) -> Path:
    """Write a finished sweep: one trial per combination of `factors` and seed.

    `statuses` maps a trial's position to failed, diverged, running or interrupted; `ragged` makes
    some trials stop early. Returns the sweep directory.
    """
    factors = DEFAULT_FACTORS if factors is None else factors
    statuses = statuses or {}
    rng = np.random.default_rng(seed)
    store = ResultsStore(root, name)
    store.prepare({"name": name, "model": {k: v for k, v in factors.items()}, "seeds": seeds,
                   "train": {"epochs": epochs}})
    combos = [dict(zip(factors, values)) for values in itertools.product(*factors.values())] or [{}]
    rows, index = [], 0
    summary_factors = list(factors) if len(combos) > 1 else []
    for s in range(seeds):
        for c, combo in enumerate(combos):
            trial_id = re.sub(r"[^a-z0-9]+", "-", "-".join(str(v) for v in combo.values()).lower()).strip("-") or "trial"
            trial_id = f"{trial_id}-s{s}-{c:04x}{s:04x}"
            status = statuses.get(index, "ok")
            quality = (c + 1) / (len(combos) + 1)
            n_epochs = epochs - (int(rng.integers(0, epochs // 2)) if ragged else 0)
            record = {"trial_id": trial_id, "config_id": f"cfg{c:05d}", "seed": s, "sweep": name,
                      "settings": dict(combo), "factors": {k: combo[k] for k in summary_factors},
                      "status": status, "error": None, "traceback": None, "notes": [], "device": "cpu",
                      "dataset": {"name": "mnist", "source": "bundled", "origin": "synthetic test data",
                                  "n_train": 480, "n_val": 120, "n_test": 200, "fingerprint": "abc123"},
                      "versions": {"python": "3.11", "keras": "3.0", "backend": "tensorflow"},
                      "host": "test-host", "started_at": "2026-01-01T00:00:00+00:00", "finished_at": None}
            if status == "failed":
                record["error"] = "ValueError: <bad> shape & size"
                record["timing"] = {"wall_seconds": 0.3}
            else:
                history = _history(rng, n_epochs if status == "ok" else max(2, n_epochs // 2), quality,
                                   diverge_at=3 if status == "diverged" else None)
                store.write_history(trial_id, history)
                store.write_text(trial_id, "model.txt", f'Model: "mlp"\n Total params: {1000 + c}\n')
                if status in ("ok", "diverged"):
                    last = history[-1]
                    fit = sum(r["epoch_seconds"] for r in history)
                    record["metrics"] = {
                        "epochs_run": len(history), "best_epoch": len(history), "stopped_early": ragged,
                        "train_loss": last["loss"], "train_accuracy": last["accuracy"],
                        "val_loss": last["val_loss"], "val_accuracy": last["val_accuracy"],
                        "test_loss": math.nan if status == "diverged" else last["val_loss"] + 0.01,
                        "test_accuracy": math.nan if status == "diverged" else last["val_accuracy"] - 0.005}
                    record["params"] = {"params": 1000 + c, "trainable_params": 1000 + c, "non_trainable_params": 0}
                    record["timing"] = {"fit_seconds": fit, "seconds_per_epoch": fit / len(history),
                                        "wall_seconds": fit + 0.2 + 0.05 * c}
                    record["finished_at"] = "2026-01-01T00:01:00+00:00"
                elif status == "interrupted":
                    record["error"] = "interrupted by the user (Ctrl-C)"
                    record["timing"] = {"wall_seconds": sum(r["epoch_seconds"] for r in history)}
            store.write_record(record)
            row = summary_row(record, record["factors"])
            if group_seconds:
                row.update(execution="fused", group_id=f"g{c % 2}", group_seconds=12.5)
            rows.append(row)
            index += 1
    columns = summary_columns(summary_factors) + (["execution", "group_id", "group_seconds"] if group_seconds else [])
    atomic_write(store.dir / "summary.csv", _csv_text(columns, rows))
    return store.dir
