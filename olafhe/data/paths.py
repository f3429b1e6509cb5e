"""Where cached artefacts live, and a helpful error for a missing input file.

The cache directory holds what the project derives itself (the small CNN's trained weights, calibration
files). The data directory (read-only input: CIFAR-10 arrays, pre-trained checkpoints) is a config
rule: :func:`olafhe.core.config.resolve_data_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

from olafhe.core.config import REPO_ROOT
from olafhe.core.errors import DataError

CACHE_ENV = "OLAFHE_CACHE"


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
