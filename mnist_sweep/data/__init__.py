"""Datasets: sources, file formats, hostile-input checks and splits; the only place that reads data files.

Imports only `config/` and `errors`; Keras is reached (for its MNIST download) through `backend`.
"""

from .dataset import (PIXEL_COLUMNS, Dataset, load_dataset, read_idx, read_images, read_kaggle_csv, read_npz,
                      scale_images, stratified_split)

__all__ = ["PIXEL_COLUMNS", "Dataset", "load_dataset", "read_idx", "read_images", "read_kaggle_csv", "read_npz",
           "scale_images", "stratified_split"]
