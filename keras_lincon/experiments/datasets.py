"""Offline image data, scaled to [-1, 1]. Nothing here downloads.

Sources, in the order searched:

* Fashion-MNIST: ``/usr/share/datasets/fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``) or ``~/.keras/datasets/fashion-mnist`` (the files
  ``keras.datasets.fashion_mnist`` caches).
* MNIST: ``~/.keras/datasets/mnist.npz`` (cached by ``keras.datasets.mnist``).
* digits: scikit-learn's bundled 8x8 digits (1797 images), always present.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np

from keras_lincon.errors import LinconError
from keras_lincon.geometry import checkerboard

FASHION_MNIST_DIRS = (
    Path("/usr/share/datasets/fashion-mnist"),
    Path("~/.keras/datasets/fashion-mnist").expanduser(),
)
MNIST_FILES = (Path("~/.keras/datasets/mnist.npz").expanduser(),)
NAMES = ("fashion_mnist", "mnist", "digits")


class DatasetNotFoundError(LinconError, FileNotFoundError):
    """A data set is not on this machine (nothing is ever downloaded)."""


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Images in [-1, 1], float32, shape (N, H, W); labels int (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[1:3])


class MalformedDataError(LinconError):
    """A data file exists but its contents are not what its format promises."""


def _read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Reads an unsigned-byte IDX file (optionally gzip-compressed) into a uint8 array.

    Args:
        path: the ``*-ubyte`` or ``*-ubyte.gz`` file.
        ndim: the expected number of dimensions (3 for images, 1 for labels).

    Raises:
        MalformedDataError: unreadable gzip, bad magic, wrong number of
            dimensions, or a payload shorter/longer than the header says.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a cut gzip stream raises EOFError
        raise MalformedDataError(f"{path} cannot be read ({exc}); delete it and reinstall the data.") from None
    if len(data) < 4 or int.from_bytes(data[0:2], "big") != 0 or data[2] != 0x08:
        raise MalformedDataError(
            f"{path} is not an unsigned-byte IDX file (bad magic number); delete it and reinstall the data."
        )
    dims = data[3]
    if ndim is not None and dims != ndim:
        raise MalformedDataError(f"{path} has {dims} dimensions, expected {ndim}; is it the right file?")
    offset = 4 + 4 * dims
    if len(data) < offset:
        raise MalformedDataError(f"{path} is truncated (header cut short); delete it and reinstall the data.")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - offset != expected:
        raise MalformedDataError(
            f"{path} holds {len(data) - offset} bytes of data but its header {tuple(shape)} says {expected}; "
            "the file is truncated or corrupt: delete it and reinstall the data."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _scale(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def _fashion_mnist() -> ImageData | None:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for directory in FASHION_MNIST_DIRS:
        paths = [_find_idx(directory, s) for s in stems]
        if all(paths):
            xtr, ytr, xte, yte = (_read_idx(p, ndim) for p, ndim in zip(paths, (3, 1, 3, 1), strict=False))
            for images, labels, (image_path, label_path) in ((xtr, ytr, paths[:2]), (xte, yte, paths[2:])):
                if len(images) != len(labels):
                    raise MalformedDataError(
                        f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels; "
                        "the files do not belong together: reinstall the data."
                    )
            return ImageData("fashion_mnist", _scale(xtr), ytr.astype(np.int64), _scale(xte), yte.astype(np.int64))
    return None


def _mnist() -> ImageData | None:
    for path in MNIST_FILES:
        if path.is_file():
            try:
                with np.load(path) as f:
                    arrays = {k: np.asarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
            except (OSError, ValueError, KeyError, EOFError) as exc:
                raise MalformedDataError(f"{path} is not a readable mnist.npz ({exc}); delete it.") from None
            for split in ("train", "test"):
                x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
                if x.ndim != 3 or len(x) != len(y):
                    raise MalformedDataError(
                        f"{path}: x_{split} has shape {x.shape} and y_{split} {y.shape}; expected (N, H, W) "
                        "images with N labels: delete the file."
                    )
            return ImageData(
                "mnist",
                _scale(arrays["x_train"]),
                arrays["y_train"].astype(np.int64),
                _scale(arrays["x_test"]),
                arrays["y_test"].astype(np.int64),
            )
    return None


def _digits() -> ImageData:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetNotFoundError(
            "the digits data set needs scikit-learn: pip install scikit-learn (or `pip install keras-lincon[data]`)."
        ) from None
    digits = load_digits()
    images = (digits.images / 16.0 * 2.0 - 1.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], digits.target[order].astype(np.int64)
    split = 1500
    return ImageData("digits", images[:split], labels[:split], images[split:], labels[split:])


def load(name: str = "auto", max_train: int | None = None, max_test: int | None = None) -> ImageData:
    """Loads an image data set from local files, scaled to [-1, 1].

    Args:
        name: ``"fashion_mnist"``, ``"mnist"``, ``"digits"``, or ``"auto"``
            (Fashion-MNIST when present, else digits).
        max_train, max_test: keep at most this many images (first ones).

    Returns:
        :class:`ImageData` with float32 images (N, H, W) in [-1, 1].

    Raises:
        DatasetNotFoundError: the files are not on this machine; the message
            lists the places searched and how to get the data.
        MalformedDataError: a file is there but corrupt, truncated, or its
            image and label counts differ.
    """
    if name not in NAMES + ("auto",):
        raise LinconError(f"unknown data set {name!r}; choose one of {NAMES + ('auto',)}.")
    for label, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise LinconError(f"{label} must be a positive integer or None; got {value!r}.")
    if name == "auto":
        data = _fashion_mnist() or _digits()
    elif name == "fashion_mnist":
        data = _fashion_mnist()
        if data is None:
            places = ", ".join(str(p) for p in FASHION_MNIST_DIRS)
            raise DatasetNotFoundError(
                f"Fashion-MNIST not found in {places}. Install the Debian package "
                "`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist) or "
                "put the four *-ubyte.gz files in ~/.keras/datasets/fashion-mnist/."
            )
    elif name == "mnist":
        data = _mnist()
        if data is None:
            raise DatasetNotFoundError(
                f"MNIST not found at {', '.join(str(p) for p in MNIST_FILES)}. Copy a "
                "cached mnist.npz there (keras.datasets.mnist.load_data() writes it on "
                "a machine with internet), or use 'fashion_mnist' or 'digits'."
            )
    else:
        data = _digits()
    if max_train is not None or max_test is not None:
        data = dataclasses.replace(
            data,
            x_train=data.x_train[:max_train],
            y_train=data.y_train[:max_train],
            x_test=data.x_test[:max_test],
            y_test=data.y_test[:max_test],
        )
    return data


def checkerboard_grid(image_shape) -> tuple[int, int]:
    """The paper's block grid for an image size: 4x4 for 28x28, 2x2 for 8x8."""
    h, w = image_shape
    return (4, 4) if (h % 4 == 0 and w % 4 == 0 and h >= 16) else (2, 2)


def checkerboard_problem(name: str = "auto", max_train: int | None = None, max_test: int | None = None):
    """The paper's toy problem on real images: data, its checkerboard ``A`` and flat images.

    Returns:
        ``(data, A, x_train, x_test)``: the :class:`ImageData`, ``A`` (blocks, n)
        for its image size, and the images flattened to (num, n).
    """
    data = load(name, max_train=max_train, max_test=max_test)
    A = checkerboard(data.image_shape, checkerboard_grid(data.image_shape))
    n = A.shape[1]
    return data, A, data.x_train.reshape(len(data.x_train), n), data.x_test.reshape(len(data.x_test), n)


if os.environ.get("KERAS_LINCON_DATA_DIR"):  # extra search place, e.g. for tests
    FASHION_MNIST_DIRS = (Path(os.environ["KERAS_LINCON_DATA_DIR"]),) + FASHION_MNIST_DIRS
