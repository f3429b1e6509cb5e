"""Where data, checkpoints and cached artefacts live.

The data directory is read-only input (CIFAR-10 arrays, pre-trained checkpoints); the cache directory
holds what the project derives itself (the small CNN's trained weights, calibration files). Both are
resolved in one place so every command and test agrees on them.
"""

from __future__ import annotations

import os
from pathlib import Path

from olafhe.core.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (the folder that holds the ``olafhe`` package)."""

DATA_ENV = "OLAFHE_DATA"
CACHE_ENV = "OLAFHE_CACHE"

EXPECTED_LAYOUT = (
    "cifar10/test.npz and cifar10/train_subset.npz (or a torchvision cifar-10-batches-py folder) "
    "and checkpoints/*.th"
)


def _existing_dir(path: Path, origin: str) -> Path:
    if not path.is_dir():
        raise DataError(
            f"data directory {path} (from {origin}) does not exist: point it at a folder with {EXPECTED_LAYOUT}"
        )
    return path


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """Return the data directory.

    Order: ``explicit`` (e.g. the config's ``data.dir``), else ``$OLAFHE_DATA``, else
    ``<repo>/../shared/data`` when it exists. A named directory that does not exist is an error rather
    than a silent fall-through, so a typo never picks up other data.
    """
    if explicit:
        return _existing_dir(Path(explicit).expanduser(), "data.dir")
    env = os.environ.get(DATA_ENV, "")
    if env:
        return _existing_dir(Path(env).expanduser(), f"${DATA_ENV}")
    default = REPO_ROOT.parent / "shared" / "data"
    if default.is_dir():
        return default
    raise DataError(
        f"no data directory: set {DATA_ENV} or data.dir to a folder with {EXPECTED_LAYOUT} "
        f"(the default {default} does not exist)"
    )


def cache_dir() -> Path:
    """Return (and create) the cache directory: ``$OLAFHE_CACHE``, else ``<repo>/.cache``."""
    env = os.environ.get(CACHE_ENV, "")
    path = Path(env).expanduser() if env else REPO_ROOT / ".cache"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create cache directory {path}: {exc.strerror}; set {CACHE_ENV}") from exc
    return path


def require_file(path: str | Path, what: str, put: str | None = None) -> Path:
    """Return ``path`` if it is a file, else raise :class:`DataError` saying what to put there.

    ``what`` names the thing (``"CIFAR-10 test set"``); ``put`` describes the file to place at
    ``path`` (defaults to ``what``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found at {path}: put {put or what} there")
    return path
