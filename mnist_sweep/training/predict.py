"""Predicting digits with a saved model: images in, a Kaggle submission CSV (ImageId, Label) out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.dataset import read_images, scale_images
from ..errors import DataError, ResultsError
from .saving import find_model, load_model
from ..results.store import atomic_write

PREDICT_BATCH = 1024  # inference only: large batches are faster and change nothing


@dataclass(frozen=True)
class Predictions:
    """What `predict_file` wrote: where, how many rows, and with which model."""

    out: Path
    rows: int
    model: Path
    counts: dict[int, int]  # images predicted per digit


def _fit_to_model(images: np.ndarray, model, input_path: Path, model_path: Path) -> np.ndarray:
    """The images shaped as the model takes them, or a DataError saying how they differ."""
    expected = tuple(model.input_shape[1:])
    if images.shape[1:] == expected:
        return images
    if int(np.prod(images.shape[1:])) == int(np.prod(expected)):
        return images.reshape(len(images), *expected)  # e.g. flat rows of 784 for a 28x28 model
    shown = lambda shape: "x".join(map(str, shape))  # noqa: E731
    raise DataError(f"{input_path}: images are {shown(images.shape[1:])} pixels, but the model "
                    f"{model_path} takes {shown(expected)}")


def submission_csv(probabilities: np.ndarray, with_probabilities: bool = False) -> str:
    """Kaggle's submission format: ImageId (from 1), Label; optionally p0..p9, each digit's probability."""
    labels = probabilities.argmax(axis=1)
    header = ["ImageId", "Label"] + ([f"p{d}" for d in range(probabilities.shape[1])] if with_probabilities else [])
    lines = [",".join(header)]
    for i, (label, probs) in enumerate(zip(labels, probabilities), start=1):
        extra = "".join(f",{p:.6f}" for p in probs) if with_probabilities else ""
        lines.append(f"{i},{label}{extra}")
    return "\n".join(lines) + "\n"


def predict_file(results: str | Path, input_path: str | Path, out: str | Path = "predictions.csv",
                 probabilities: bool = False, batch_size: int = PREDICT_BATCH) -> Predictions:
    """Predict every image of INPUT (Kaggle test CSV, IDX images or .npz) with a sweep's best model
    (or one trial's), and write the submission CSV atomically.

    Bad input raises DataError naming the file (and, for a CSV, the line); a missing model ResultsError.
    """
    model_path = find_model(results)
    input_path = Path(input_path).expanduser()
    images = read_images(input_path)  # before loading Keras: bad input fails fast
    if not len(images):
        raise DataError(f"{input_path}: holds no images")
    model = load_model(model_path)
    x = scale_images(_fit_to_model(images, model, input_path, model_path))
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    out = Path(out).expanduser()
    try:
        atomic_write(out, submission_csv(probs, probabilities))
    except OSError as exc:
        raise ResultsError(f"cannot write {out}: {exc.strerror or exc}") from None
    digits, counts = np.unique(probs.argmax(axis=1), return_counts=True)
    return Predictions(out, len(probs), model_path, dict(zip(digits.tolist(), counts.tolist())))
