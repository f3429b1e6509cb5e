"""CIFAR-10 loading, preprocessing and class-balanced subsets.

Two on-disk sources are understood, tried in this order for each split:

* ``{dir}/cifar10/{split}.npz`` with ``x`` uint8 (N, 32, 32, 3) RGB and ``y`` integer labels
  (the project's shared data directory ships ``test.npz`` and ``train_subset.npz``);
* the folder torchvision downloads, ``{dir}/cifar-10-batches-py`` or
  ``{dir}/cifar10/cifar-10-batches-py`` (pickled ``test_batch`` and ``data_batch_1`` .. ``_5``).

``train_subset`` from the torchvision folder is the fixed class-balanced 5,000-image subset of the full
training set given by :func:`balanced_subset` (seed 0), so calibration works with either source.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from olafhe.core.config import resolve_data_dir
from olafhe.core.errors import ConfigError, DataError, ShapeError

SPLITS = ("test", "train_subset", "train")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
TRAIN_SUBSET_SIZE = 5000

_BATCHES = {"test": ("test_batch",), "train": tuple(f"data_batch_{i}" for i in range(1, 6))}


def load_cifar10(split: str, data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load one split as ``(x, y)``: x uint8 (N, 32, 32, 3) NHWC RGB, y int64 (N,).

    ``data_dir`` defaults to :func:`~olafhe.core.config.resolve_data_dir`.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown CIFAR-10 split {split!r}; known splits: {', '.join(SPLITS)}")
    root = Path(data_dir) if data_dir is not None else resolve_data_dir()
    npz = root / "cifar10" / f"{split}.npz"
    if npz.is_file():
        return _load_npz(npz)
    folder = _torchvision_folder(root)
    if folder is not None:
        if split == "train_subset":
            x, y = _load_batches(folder, _BATCHES["train"])
            idx = balanced_subset(y, min(TRAIN_SUBSET_SIZE, len(y)), seed=0)
            return x[idx], y[idx]
        return _load_batches(folder, _BATCHES[split])
    raise DataError(
        f"CIFAR-10 {split} split not found in {root}: put {split}.npz (keys x uint8 (N,32,32,3), y) in "
        f"{root / 'cifar10'}, or the torchvision folder cifar-10-batches-py in {root}"
    )


def _torchvision_folder(root: Path) -> Path | None:
    for candidate in (root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"):
        if candidate.is_dir():
            return candidate
    return None


def _check_arrays(x: np.ndarray, y: np.ndarray, source: Path) -> tuple[np.ndarray, np.ndarray]:
    if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ShapeError(f"{source}: images must be uint8 (N, 32, 32, 3), got {x.dtype} {tuple(x.shape)}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ShapeError(f"{source}: labels must be integers of shape ({len(x)},), got {y.dtype} {y.shape}")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DataError(f"{source}: labels must lie in 0..{NUM_CLASSES - 1}, got {y.min()}..{y.max()}")
    return x, y


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as doc:
            missing = [k for k in ("x", "y") if k not in doc.files]
            if missing:
                raise DataError(f"{path} lacks key(s) {', '.join(missing)}: expected x (images) and y (labels)")
            x, y = doc["x"], doc["y"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable npz file: {type(exc).__name__}: {exc}") from exc
    return _check_arrays(x, y, path)


def _load_batches(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"CIFAR-10 batch {name} not found at {path}: put the torchvision python-pickle files there"
            )
        try:
            with path.open("rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            data = np.asarray(batch[b"data"])
            labels = np.asarray(batch[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{path} is not a CIFAR-10 python batch: {type(exc).__name__}: {exc}") from exc
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ShapeError(f"{path}: data must be uint8 (N, 3072), got {data.dtype} {data.shape}")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(labels)
    x = np.ascontiguousarray(np.concatenate(xs))
    return _check_arrays(x, np.concatenate(ys), folder)


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """Convert uint8 NHWC images to a normalized float32 NCHW tensor.

    Bit-for-bit the torchvision ``ToTensor()`` + ``Normalize(MEAN, STD)`` pipeline: divide by 255 in
    float32, then subtract the mean and divide by the std (float32), so checkpoint accuracies reproduce.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ShapeError(f"to_tensor expects uint8 images (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).to(torch.float32).div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (t - mean) / std


def balanced_subset(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a fixed, class-balanced, seeded subset of ``n`` labels.

    Each class present gets ``n // k`` images (``k`` classes); the remainder goes one each to the
    lowest-numbered classes. A class with too few images gives its share to the others. The same
    ``(y, n, seed)`` always gives the same indices, so ``--limit N`` results are comparable across runs.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ShapeError(f"balanced_subset expects 1-D labels, got shape {y.shape}")
    if not 1 <= n <= len(y):
        raise ConfigError(f"subset size must be between 1 and {len(y)} (the number of images), got {n}")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    k = len(classes)
    quota = np.array([n // k + (1 if i < n % k else 0) for i in range(k)])
    avail = np.array([len(p) for p in pools])
    take = np.minimum(quota, avail)
    short = n - int(take.sum())
    while short > 0:  # hand missing images round-robin to classes that still have spare ones
        for i in range(k):
            if short and take[i] < avail[i]:
                take[i] += 1
                short -= 1
    return np.sort(np.concatenate([p[:t] for p, t in zip(pools, take, strict=True)])).astype(np.int64)
