"""Tests of minirn.data.validation_split: validation images held out of the training split, never the test split."""
import numpy as np
import pytest

from minirn.data import Dataset, validation_split

#: Unbalanced classes (100, 60 and 40 images), so that "stratified" means something.
CLASS_SIZES = (100, 60, 40)
N = sum(CLASS_SIZES)


def identified_dataset(with_test=True):
    """Training image i is filled with the value i and labelled by its class; test images carry ids 1000+.

    The ids make every image traceable into the splits: ``x[:, 0, 0, 0]`` is the image's id.
    """
    labels = np.repeat(np.arange(len(CLASS_SIZES)), CLASS_SIZES).astype(np.int64)
    labels = labels[np.random.default_rng(0).permutation(N)]  # classes interleaved, as in a real split
    ids = np.arange(N, dtype=np.float32)
    x = np.broadcast_to(ids[:, None, None, None], (N, 1, 3, 3)).copy()
    if with_test:
        x_test = np.broadcast_to((1000 + np.arange(30, dtype=np.float32))[:, None, None, None], (30, 1, 3, 3)).copy()
        y_test = np.arange(30, dtype=np.int64) % len(CLASS_SIZES)
    else:
        x_test = y_test = None
    return Dataset(x, labels, x_test, y_test, "ids", len(CLASS_SIZES), (1, 3, 3), ("a", "b", "c"), "tests")


def ids(images):
    return images[:, 0, 0, 0].astype(np.int64)


@pytest.mark.parametrize("size", [20, 50, 100, 150])
def test_validation_is_disjoint_from_the_rest_and_from_the_test_split(size):
    data = identified_dataset()
    x_train, y_train, x_val, y_val = validation_split(data, size, seed=3)
    train_ids, val_ids = ids(x_train), ids(x_val)
    assert len(train_ids) + len(val_ids) == N
    # every training image lands in exactly one part, none twice, and no test image (id >= 1000) anywhere
    assert sorted(np.concatenate([train_ids, val_ids]).tolist()) == list(range(N))
    assert not set(train_ids) & set(val_ids)
    # each image keeps its own label
    np.testing.assert_array_equal(y_train, data.y_train[train_ids])
    np.testing.assert_array_equal(y_val, data.y_train[val_ids])
    assert x_val.dtype == data.x_train.dtype and x_val.shape[1:] == data.x_train.shape[1:]


@pytest.mark.parametrize("size", [20, 33, 50, 77, 100, 150])
def test_validation_keeps_each_class_share(size):
    data = identified_dataset()
    _, y_train, _, y_val = validation_split(data, size)
    for label, n_class in enumerate(CLASS_SIZES):
        expected = size * n_class / N  # the class's share of the validation images
        assert abs(np.sum(y_val == label) - expected) <= 1, label
        assert np.sum(y_val == label) + np.sum(y_train == label) == n_class


def test_the_test_split_is_not_needed():
    """The split reads the training images only: a Dataset without a test split works the same."""
    with_test = validation_split(identified_dataset(with_test=True), 50, seed=1)
    without = validation_split(identified_dataset(with_test=False), 50, seed=1)
    for a, b in zip(with_test, without):
        np.testing.assert_array_equal(a, b)


def test_validation_split_is_seeded():
    data = identified_dataset()
    first, again = validation_split(data, 50, seed=7), validation_split(data, 50, seed=7)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    other = validation_split(data, 50, seed=8)
    assert set(ids(other[2])) != set(ids(first[2]))  # another seed holds out other images
    # the default seed is fixed: two calls without one agree
    np.testing.assert_array_equal(validation_split(data, 50)[2], validation_split(data, 50)[2])


@pytest.mark.parametrize("size", [0, -5, N, N + 1, 2.5, 50.0, True, "50", None])
def test_validation_size_must_be_an_integer_between_one_and_n_minus_one(size):
    with pytest.raises(ValueError, match="validation size must be an integer between 1 and 199"):
        validation_split(identified_dataset(), size)


@pytest.mark.parametrize("size", [20, 50, 100, 150])
def test_validation_holds_out_exactly_size_images_when_the_shares_round_evenly(size):
    """Here size * n_class / N is a whole number for every class, so per-class rounding loses nothing."""
    assert all(size * n % N == 0 for n in CLASS_SIZES)
    assert len(validation_split(identified_dataset(), size)[3]) == size


@pytest.mark.parametrize("size", [1, 3, 17])
def test_validation_holds_out_exactly_size_images(size):
    x_train, _, x_val, _ = validation_split(identified_dataset(), size)
    assert len(x_val) == size and len(x_train) == N - size
