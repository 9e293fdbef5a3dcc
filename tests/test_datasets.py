"""Tests of keras_lincon.datasets (local files only, never a download)."""

import gzip

import numpy as np
import pytest

from keras_lincon import datasets


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_digits_are_scaled_to_minus_one_one():
    data = datasets.load("digits")
    assert data.x_train.shape == (1500, 8, 8) and data.x_test.shape == (297, 8, 8)
    assert data.x_train.dtype == np.float32
    assert data.x_train.min() == -1.0 and data.x_train.max() == 1.0
    assert datasets.checkerboard_grid(data.image_shape) == (2, 2)


def test_fashion_mnist_idx_reader(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28))
    for split, n in (("train", 5), ("t10k", 3)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images[:n])
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n))
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", (tmp_path,))
    data = datasets.load("fashion_mnist", max_train=4)
    assert data.x_train.shape == (4, 28, 28) and data.x_test.shape == (3, 28, 28)
    np.testing.assert_allclose(data.x_train[0], images[0] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(data.y_test, [0, 1, 2])
    assert datasets.checkerboard_grid(data.image_shape) == (4, 4)
    assert datasets.load("auto").name == "fashion_mnist"


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", (tmp_path / "nowhere",))
    monkeypatch.setattr(datasets, "MNIST_FILES", (tmp_path / "mnist.npz",))
    with pytest.raises(datasets.DatasetNotFoundError, match="dataset-fashion-mnist"):
        datasets.load("fashion_mnist")
    with pytest.raises(datasets.DatasetNotFoundError, match="mnist.npz"):
        datasets.load("mnist")
    assert datasets.load("auto").name == "digits"  # falls back
    with pytest.raises(ValueError, match="unknown data set"):
        datasets.load("cifar")


def test_cached_mnist_npz(tmp_path, monkeypatch):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2), x_test=np.full((1, 28, 28), 255, np.uint8),
             y_test=np.zeros(1))
    monkeypatch.setattr(datasets, "MNIST_FILES", (path,))
    data = datasets.load("mnist")
    assert data.x_train.min() == -1.0 and data.x_test.max() == 1.0


def test_bad_idx_file(tmp_path):
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00"))
    with pytest.raises(ValueError, match="unsigned-byte IDX"):
        datasets._read_idx(tmp_path / "bad.gz")
