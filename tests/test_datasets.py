"""Tests of keras_lincon.experiments.datasets (local files only, never a download)."""

import gzip

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.experiments import datasets


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
    np.savez(
        path,
        x_train=np.zeros((2, 28, 28), np.uint8),
        y_train=np.zeros(2),
        x_test=np.full((1, 28, 28), 255, np.uint8),
        y_test=np.zeros(1),
    )
    monkeypatch.setattr(datasets, "MNIST_FILES", (path,))
    data = datasets.load("mnist")
    assert data.x_train.min() == -1.0 and data.x_test.max() == 1.0


def test_bad_idx_file(tmp_path):
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00"))
    with pytest.raises(datasets.MalformedDataError, match="unsigned-byte IDX"):
        datasets._read_idx(tmp_path / "bad.gz")


def _fashion_files(tmp_path, images=5, labels=5, test_images=3, test_labels=3):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (images, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(labels) % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (test_images, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(test_labels) % 10)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "bad magic"),  # empty file
        (b"\x00\x01\x08\x01\x00\x00\x00\x02\x00\x00", "bad magic"),  # wrong magic bytes
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated"),  # header cut short
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated or corrupt"),  # 2 of 5 bytes
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "truncated or corrupt"),  # trailing bytes
    ],
)
def test_malformed_idx_is_a_library_error(tmp_path, payload, message):
    path = tmp_path / "f-ubyte"
    path.write_bytes(payload)
    with pytest.raises(datasets.MalformedDataError, match=message) as info:
        datasets._read_idx(path)
    assert isinstance(info.value, klc.LinconError)


def test_idx_wrong_dims_and_broken_gzip(tmp_path):
    write_idx(tmp_path / "labels.gz", np.zeros((2, 3)))
    with pytest.raises(datasets.MalformedDataError, match="2 dimensions, expected 1"):
        datasets._read_idx(tmp_path / "labels.gz", ndim=1)
    whole = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(datasets.MalformedDataError, match="cannot be read"):
        datasets._read_idx(tmp_path / "cut.gz")


def test_fashion_mnist_images_are_3d_and_labels_match(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", (tmp_path,))
    _fashion_files(tmp_path, images=5, labels=4)
    with pytest.raises(datasets.MalformedDataError, match="5 images but .* 4 labels"):
        datasets.load("fashion_mnist")
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 784)))
    with pytest.raises(datasets.MalformedDataError, match="2 dimensions, expected 3"):
        datasets.load("fashion_mnist")


def test_mnist_npz_with_mismatched_counts(tmp_path, monkeypatch):
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=np.zeros((3, 28, 28), np.uint8),
        y_train=np.zeros(2),
        x_test=np.zeros((1, 28, 28), np.uint8),
        y_test=np.zeros(1),
    )
    monkeypatch.setattr(datasets, "MNIST_FILES", (path,))
    with pytest.raises(datasets.MalformedDataError, match="x_train has shape"):
        datasets.load("mnist")
    path.write_bytes(b"not a zip")
    with pytest.raises(datasets.MalformedDataError, match="not a readable mnist.npz"):
        datasets.load("mnist")


@pytest.mark.parametrize("kwargs", [dict(max_train=0), dict(max_test=-5), dict(max_train=2.5)])
def test_load_refuses_non_positive_sizes(kwargs):
    with pytest.raises(klc.LinconError, match="positive integer"):
        datasets.load("digits", **kwargs)
