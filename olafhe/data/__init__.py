"""Datasets: CIFAR-10 from npz files or a torchvision folder, and the cache directory."""

from olafhe.data.cifar import MEAN, SPLITS, STD, balanced_subset, load_cifar10, to_tensor
from olafhe.data.paths import cache_dir, require_file

__all__ = [
    "MEAN",
    "SPLITS",
    "STD",
    "balanced_subset",
    "cache_dir",
    "load_cifar10",
    "require_file",
    "to_tensor",
]
