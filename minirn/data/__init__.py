"""Data: datasets as host NumPy arrays, verified downloads, and a device-aware DataLoader.

>>> from minirn.data import load_dataset, DataLoader
>>> data = load_dataset("mnist-5k")            # offline: 4,000 train / 1,000 test digits
>>> loader = DataLoader(data.x_train, data.y_train, batch_size=128, shuffle=True, seed=0)
>>> x, y = next(iter(loader))                  # x: (128, 1, 28, 28) float32, y: (128,) int64
"""
from minirn.data.datasets import (
    DATASET_NAMES,
    Dataset,
    load_dataset,
    parse_cifar10_binary,
    parse_cifar10_records,
    parse_idx_images,
    parse_idx_labels,
    stratified_split,
    validation_split,
)
from minirn.data.download import (
    REMOTE_FILES,
    ChecksumError,
    DatasetNotFoundError,
    DownloadError,
    data_root,
    download_file,
)
from minirn.data.loader import DataLoader, random_crop_flip

__all__ = [
    "DATASET_NAMES", "REMOTE_FILES", "ChecksumError", "DataLoader", "Dataset", "DatasetNotFoundError",
    "DownloadError", "data_root", "download_file", "load_dataset", "parse_cifar10_binary",
    "parse_cifar10_records", "parse_idx_images", "parse_idx_labels", "random_crop_flip", "stratified_split", "validation_split",
]
