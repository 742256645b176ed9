"""Mini-batches from host arrays, shuffled and augmented reproducibly, delivered on a device.

The data stays on the host as NumPy arrays; each batch is gathered, optionally
augmented (host-side NumPy), and only then copied to the device with
:func:`minirn.backend.to_device`.

Reproducibility.  With ``seed`` set, epoch ``e`` draws its permutation and its
augmentation from a generator seeded by ``(seed, e)``, so the order depends
only on the seed and the epoch number, never on how many epochs ran before in
this process.  Each ``iter(loader)`` uses the current epoch and then advances
it; :meth:`DataLoader.set_epoch` sets it explicitly (like PyTorch's
``DistributedSampler.set_epoch``), which is how a run resumed at epoch 7
reproduces epoch 7's batches exactly.  Without a seed, batches are drawn from
minirn's global generator (:func:`minirn.backend.manual_seed`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from minirn import backend

CIFAR_PADDING = 4


def random_crop_flip(images: np.ndarray, generator: np.random.Generator, padding: int = CIFAR_PADDING) -> np.ndarray:
    """The standard CIFAR augmentation, on the host: random crop after zero padding, random horizontal flip.

    images: (N, C, H, W).  Each image is padded with ``padding`` zeros on
    every side, a random (H, W) window of the padded image is kept, and the
    window is mirrored left-right with probability 1/2.  Returns (N, C, H, W).
    """
    n, _, h, w = images.shape
    p = padding
    padded = np.pad(images, ((0, 0), (0, 0), (p, p), (p, p)))
    top = generator.integers(0, 2 * p + 1, size=n)
    left = generator.integers(0, 2 * p + 1, size=n)
    flip = generator.random(n) < 0.5
    out = np.empty_like(images)
    for i in range(n):
        crop = padded[i, :, top[i]:top[i] + h, left[i]:left[i] + w]
        out[i] = crop[:, :, ::-1] if flip[i] else crop
    return out


AUGMENTATIONS: dict[str, Callable] = {"cifar": random_crop_flip}


class DataLoader:
    """Iterate over ``(x_batch, y_batch)`` pairs on ``device``.

    x: (N, C, H, W) images and y: (N,) labels, host NumPy arrays (device
    arrays are copied to the host once).  Each batch is ``x_batch``
    (B, C, H, W) float32 and ``y_batch`` (B,) int64 on ``device``.

    batch_size: images per batch (the last batch may be smaller unless
    ``drop_last``).  shuffle: a new random order each epoch.  seed: makes the
    order and augmentation a function of (seed, epoch); see :meth:`set_epoch`.
    augment: None, ``"cifar"`` (:func:`random_crop_flip`) or a callable
    ``augment(images (B, C, H, W), generator) -> (B, C, H, W)`` run on the
    host for every batch.
    """

    def __init__(self, x, y, batch_size: int = 128, shuffle: bool = False, seed: int | None = None,
                 drop_last: bool = False, augment: str | Callable | None = None, device: str = "cpu"):
        x = backend.to_host(x) if backend.is_array(x) else np.asarray(x)
        y = backend.to_host(y) if backend.is_array(y) else np.asarray(y)
        if x.ndim < 1 or y.ndim != 1:
            raise ValueError(f"x must have a leading batch axis and y must be 1-D; got shapes {x.shape} and {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length; got {len(x)} images and {len(y)} labels")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")
        if isinstance(augment, str):
            if augment not in AUGMENTATIONS:
                raise ValueError(f"unknown augment {augment!r}; expected None, a callable or one of "
                                 f"{', '.join(AUGMENTATIONS)}")
            if x.ndim != 4:
                raise ValueError(f"augment={augment!r} needs images of shape (N, C, H, W), got {x.shape}")
            augment = AUGMENTATIONS[augment]
        elif augment is not None and not callable(augment):
            raise ValueError(f"augment must be None, a name or a callable, got {augment!r}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.augment = augment
        self.device = backend.check_device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order and augmentation depend only on seed and epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """The number of batches per epoch."""
        if self.drop_last:
            return len(self.x) // self.batch_size
        return math.ceil(len(self.x) / self.batch_size)

    def _generator(self) -> np.random.Generator:
        if self.seed is None:
            return backend.rng(None)
        return np.random.default_rng([self.seed, self.epoch])

    def __iter__(self) -> Iterator:
        generator = self._generator()
        self.epoch += 1
        n = len(self.x)
        order = backend.permutation(generator, n) if self.shuffle else np.arange(n)
        return self._batches(order, generator)

    def _batches(self, order: np.ndarray, generator: np.random.Generator) -> Iterator:
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            x_batch, y_batch = self.x[index], self.y[index]
            if self.augment is not None:
                x_batch = self.augment(x_batch, generator)
            yield (backend.to_device(x_batch, self.device, dtype="float32"),
                   backend.to_device(y_batch, self.device, dtype="int64"))
