"""Predicting digits with a saved model: images in, a Kaggle submission CSV (ImageId, Label) out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.dataset import TITLES, read_images, scale_images
from ..errors import DataError, ResultsError
from .saving import find_model, load_model
from ..results.store import atomic_write

PREDICT_BATCH = 1024  # inference only: large batches are faster and change nothing
# What MNIST digits look like once scaled to [0, 1]: a mean pixel near 0.13 (the bundled subset: 0.13; 99% of
# its images between 0.05 and 0.24) and an almost empty 4-pixel frame (digits are fitted into the central
# 20x20 box: 0.009 on average). Fashion-MNIST's clothing is brighter (mean 0.29) and fills the frame.
DIGIT_MEAN = (0.04, 0.24)
DIGIT_FRAME = 0.05


@dataclass(frozen=True)
class Predictions:
    """What `predict_file` wrote: where, how many rows, and with which model."""

    out: Path
    rows: int
    model: Path
    counts: dict[int, int]  # images predicted per digit
    dataset: str | None = None  # the dataset the model was trained on, as its trial recorded it
    warnings: list[str] = field(default_factory=list)


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


def trained_on(model_path: Path) -> str | None:
    """The dataset (mnist, fashion_mnist) the trial beside a model recorded, or None when none did."""
    try:
        record = json.loads((Path(model_path).parent / "trial.json").read_text(encoding="utf-8"))
        name = record["dataset"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) else None


def looks_like_digits(x: np.ndarray) -> tuple[bool, str]:
    """Whether scaled (n, 28, 28) images look like MNIST's digits, and the numbers that say so.

    Digits are dark on average with an empty frame; clothing, photos or noise are not. Judged on the whole
    file, so a handful of odd images does not decide it.
    """
    images = x.reshape(len(x), 28, 28)
    frame = np.ones((28, 28), bool)
    frame[4:24, 4:24] = False
    mean, edge = float(images.mean()), float(images[:, frame].mean())
    digits = DIGIT_MEAN[0] <= mean <= DIGIT_MEAN[1] and edge <= DIGIT_FRAME
    return digits, (f"mean pixel {mean:.2f} and {edge:.2f} in the 4-pixel frame; MNIST digits average 0.13 and "
                    f"0.01, Fashion-MNIST's clothing 0.29 and fills the frame")


def _scale_warnings(images: np.ndarray, input_path: Path) -> list[str]:
    """A warning when float pixels all lie in 0-1: every format is read as 0-255, so they may be scaled twice."""
    if not np.issubdtype(images.dtype, np.floating) or not images.size or not 0 < float(images.max()) <= 1:
        return []
    return [f"{input_path}: every pixel is at most {float(images.max()):g}, read as 0-255 like every input (so "
            f"nearly black); if these were already divided by 255, multiply them by 255 (or save as uint8)"]


def _dataset_warnings(dataset: str | None, x: np.ndarray, input_path: Path) -> list[str]:
    """A warning when the input does not look like the data the model was trained on (none when that is unknown)."""
    if dataset is None:
        return []
    if x.shape[1:] != (28, 28) and int(np.prod(x.shape[1:])) != 784:
        return []
    digits, numbers = looks_like_digits(x)
    title = TITLES.get(dataset, dataset)
    if dataset == "mnist" and not digits:
        return [f"{input_path} does not look like MNIST digits ({numbers}), but the model was trained on MNIST: "
                f"its labels are digits; use a model trained on this kind of image"]
    if dataset != "mnist" and digits:
        return [f"{input_path} looks like MNIST digits ({numbers}), but the model was trained on {title}: its "
                f"labels 0-9 are {title} classes, not digits; use a model trained on MNIST"]
    return []


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
    dataset = trained_on(model_path)
    warnings = _scale_warnings(images, input_path) + _dataset_warnings(dataset, scale_images(images), input_path)
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    out = Path(out).expanduser()
    try:
        atomic_write(out, submission_csv(probs, probabilities))
    except OSError as exc:
        raise ResultsError(f"cannot write {out}: {exc.strerror or exc}") from None
    digits, counts = np.unique(probs.argmax(axis=1), return_counts=True)
    return Predictions(out, len(probs), model_path, dict(zip(digits.tolist(), counts.tolist())), dataset, warnings)
