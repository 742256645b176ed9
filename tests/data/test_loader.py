"""Tests for minirn/data/loader.py: batching, seeded shuffling, augmentation, devices."""
import numpy as np
import pytest

from minirn import backend
from minirn.data import DataLoader, load_dataset, random_crop_flip
from tests.conftest import to_numpy


def numbered(n, shape=(1, 2, 2)):
    """Images whose every pixel holds the image's index, and labels 0..n-1: a batch shows which rows it took."""
    x = np.broadcast_to(np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1), (n, *shape)).copy()
    return x, np.arange(n, dtype=np.int64)


def epoch_labels(loader):
    """The labels of one pass over ``loader``, batch by batch (host NumPy)."""
    return [to_numpy(y) for _, y in loader]


def crops_and_flips(image, padding=4):
    """Every (C, H, W) result random_crop_flip may produce from ``image``: 2 * (2p+1)^2 candidates."""
    _, h, w = image.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))  # (C, 2p+1, 2p+1, H, W)
    crops = np.moveaxis(windows, 0, 2).reshape(-1, *image.shape)
    return np.concatenate([crops, crops[..., ::-1]])


# ----------------------------------------------------------------------------
# batching
# ----------------------------------------------------------------------------
def test_batches_on_device_in_order(device):
    x, y = numbered(10)
    loader = DataLoader(x, y, batch_size=4, device=device)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    for xb, yb in batches:
        assert backend.device_of(xb) == device and backend.device_of(yb) == device
        assert backend.dtype_name(xb.dtype) == "float32" and backend.dtype_name(yb.dtype) == "int64"
    assert [tuple(xb.shape) for xb, _ in batches] == [(4, 1, 2, 2), (4, 1, 2, 2), (2, 1, 2, 2)]
    np.testing.assert_array_equal(np.concatenate([to_numpy(yb) for _, yb in batches]), y)
    np.testing.assert_array_equal(np.concatenate([to_numpy(xb) for xb, _ in batches]), x)


def test_accepts_device_arrays_and_casts(device):
    x, y = numbered(6)
    loader = DataLoader(backend.to_device(x.astype(np.float64), device), backend.to_device(y.astype(np.int32), device),
                        batch_size=6, device=device)
    xb, yb = next(iter(loader))
    assert backend.dtype_name(xb.dtype) == "float32" and backend.dtype_name(yb.dtype) == "int64"
    np.testing.assert_array_equal(to_numpy(xb), x)


@pytest.mark.parametrize("n, batch_size, drop_last, sizes", [
    (10, 4, False, [4, 4, 2]),
    (10, 4, True, [4, 4]),
    (8, 4, True, [4, 4]),
    (3, 4, False, [3]),
    (3, 4, True, []),
])
def test_len_and_drop_last(n, batch_size, drop_last, sizes):
    x, y = numbered(n)
    for shuffle in (False, True):
        loader = DataLoader(x, y, batch_size=batch_size, drop_last=drop_last, shuffle=shuffle, seed=0)
        assert len(loader) == len(sizes)
        assert [len(labels) for labels in epoch_labels(loader)] == sizes


# ----------------------------------------------------------------------------
# seeded shuffling
# ----------------------------------------------------------------------------
def test_shuffle_keeps_images_with_their_labels(device):
    x, y = numbered(50)
    for xb, yb in DataLoader(x, y, batch_size=16, shuffle=True, seed=3, device=device):
        np.testing.assert_array_equal(to_numpy(xb)[:, 0, 0, 0], to_numpy(yb))


def test_shuffle_is_a_permutation_reproducible_by_seed_and_new_each_epoch():
    x, y = numbered(100)
    first, second = (DataLoader(x, y, batch_size=32, shuffle=True, seed=7) for _ in range(2))
    epochs = [np.concatenate(epoch_labels(first)) for _ in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), y)
        assert not np.array_equal(order, y)
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    for order in epochs:  # a second loader with the same seed replays the same epochs
        np.testing.assert_array_equal(np.concatenate(epoch_labels(second)), order)
    other_seed = np.concatenate(epoch_labels(DataLoader(x, y, batch_size=32, shuffle=True, seed=8)))
    assert not np.array_equal(other_seed, epochs[0])


def test_set_epoch_reproduces_a_resumed_run():
    x, y = numbered(64)
    run = DataLoader(x, y, batch_size=16, shuffle=True, seed=1, augment="cifar")
    history = [[to_numpy(xb) for xb, _ in run] for _ in range(4)]
    resumed = DataLoader(x, y, batch_size=16, shuffle=True, seed=1, augment="cifar")
    resumed.set_epoch(2)
    for expected in history[2:]:
        for got, want in zip([to_numpy(xb) for xb, _ in resumed], expected, strict=True):
            np.testing.assert_array_equal(got, want)
    resumed.set_epoch(0)
    np.testing.assert_array_equal(to_numpy(next(iter(resumed))[0]), history[0][0])


def test_unseeded_shuffle_still_changes_each_epoch():
    x, y = numbered(100)
    loader = DataLoader(x, y, batch_size=100, shuffle=True)
    first, second = (np.concatenate(epoch_labels(loader)) for _ in range(2))
    np.testing.assert_array_equal(np.sort(first), y)
    assert not np.array_equal(first, second)


def test_no_shuffle_ignores_the_epoch():
    x, y = numbered(10)
    loader = DataLoader(x, y, batch_size=3, seed=5)
    assert all(np.array_equal(np.concatenate(epoch_labels(loader)), y) for _ in range(2))


# ----------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------
def test_random_crop_flip_outputs_come_from_the_padded_image(rng):
    images = rng.random((40, 3, 6, 5), dtype=np.float32) + np.float32(0.5)  # no pixel is 0, so padding shows
    out = random_crop_flip(images, np.random.default_rng(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    flips = 0
    for before, after in zip(images, out):
        matches = np.flatnonzero(np.all(crops_and_flips(before) == after, axis=(1, 2, 3)))
        assert len(matches) >= 1
        flips += matches[0] >= 81
    assert 5 < flips < 35  # a fair coin over 40 images
    assert np.any(out == 0)  # some crops reach into the zero padding


def test_random_crop_flip_covers_every_offset(rng):
    """Across many images every crop offset (2p+1)^2 = 81 and both flips occur (5x5: every crop shows a pixel)."""
    images = rng.random((3000, 1, 5, 5), dtype=np.float32) + np.float32(0.5)
    out = random_crop_flip(images, np.random.default_rng(1))
    seen = set()
    for before, after in zip(images, out):
        seen.add(int(np.flatnonzero(np.all(crops_and_flips(before) == after, axis=(1, 2, 3)))[0]))
    assert len({s % 81 for s in seen}) == 81 and min(seen) < 81 <= max(seen)


def test_cifar_augment_in_loader_is_seeded(device, rng):
    x = rng.random((20, 3, 8, 8), dtype=np.float32) + np.float32(0.5)
    y = np.arange(20)
    run = [[to_numpy(xb) for xb, _ in DataLoader(x, y, batch_size=8, seed=4, augment="cifar", device=device)]
           for _ in range(2)]
    for a, b in zip(*run, strict=True):
        np.testing.assert_array_equal(a, b)
    augmented = np.concatenate(run[0])
    assert augmented.shape == x.shape and not np.array_equal(augmented, x)
    for before, after in zip(x, augmented):  # unshuffled: image i stays at position i
        assert np.any(np.all(crops_and_flips(before) == after, axis=(1, 2, 3)))


def test_callable_augment_receives_batch_and_generator():
    x, y = numbered(6)
    seen = []

    def add_noise(images, generator):
        seen.append((images.shape, isinstance(generator, np.random.Generator)))
        return images + np.float32(100)

    batches = list(DataLoader(x, y, batch_size=4, augment=add_noise))
    assert seen == [((4, 1, 2, 2), True), ((2, 1, 2, 2), True)]
    np.testing.assert_array_equal(to_numpy(batches[1][0]), x[4:] + 100)


# ----------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"batch_size": -3}, "batch_size must be a positive integer"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"batch_size": True}, "batch_size must be a positive integer"),
    ({"seed": -1}, "seed must be None or a non-negative integer"),
    ({"augment": "imagenet"}, "unknown augment 'imagenet'.*cifar"),
    ({"augment": 3}, "augment must be None, a name or a callable"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_bad_arguments(kwargs, message):
    x, y = numbered(4)
    with pytest.raises(ValueError, match=message):
        DataLoader(x, y, **kwargs)


def test_bad_shapes():
    x, y = numbered(4)
    with pytest.raises(ValueError, match="4 images and 3 labels"):
        DataLoader(x, y[:3])
    with pytest.raises(ValueError, match="y must be 1-D"):
        DataLoader(x, y[:, None])
    with pytest.raises(ValueError, match=r"needs images of shape \(N, C, H, W\)"):
        DataLoader(x.reshape(4, -1), y, augment="cifar")
    with pytest.raises(ValueError, match="epoch must be a non-negative integer"):
        DataLoader(x, y).set_epoch(-1)


def test_loads_mnist_5k_batches():
    data = load_dataset("mnist-5k")
    loader = DataLoader(data.x_train, data.y_train, batch_size=128, shuffle=True, seed=0)
    assert len(loader) == 32  # ceil(4000 / 128)
    xb, yb = next(iter(loader))
    assert xb.shape == (128, 1, 28, 28) and yb.shape == (128,)
    assert 0.0 <= float(xb.min()) and float(xb.max()) <= 1.0
