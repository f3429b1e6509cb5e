"""Per-activation input statistics, recorded by calibration and consumed by approximators.

File format (JSON, ``"format": "olafhe-calibration"``, ``"version": 1``)::

    {"format": "olafhe-calibration", "version": 1, "model": str, "images": int, "source": str,
     "layers": [{"name": str, "count": int, "min": float, "max": float, "mean": float, "std": float,
                 "quantiles": {"0.001": float, ...}, "hist_edges": [...], "hist_counts": [...]}, ...]}

Floats are written with ``repr`` precision, so a save/load round trip is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from olafhe.core.errors import ApproximationError, DataError
from olafhe.core.jsonfile import load_json, save_json

FORMAT = "olafhe-calibration"
VERSION = 1


@dataclass(frozen=True)
class ActivationStats:
    """Distribution of one activation layer's *inputs* over the calibration images.

    ``hist_edges`` has ``len(hist_counts) + 1`` increasing entries spanning ``[min, max]``.
    ``quantiles`` maps a probability (as float) to the value below which that fraction of inputs falls.
    """

    name: str
    count: int
    min: float
    max: float
    mean: float
    std: float
    quantiles: dict[float, float]
    hist_edges: np.ndarray
    hist_counts: np.ndarray
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ApproximationError` when the statistics cannot describe a distribution."""
        scalars = {"min": self.min, "max": self.max, "mean": self.mean, "std": self.std}
        for key, value in scalars.items():
            if not math.isfinite(value):
                raise ApproximationError(f"statistics of layer {self.name!r}: {key} is not finite ({value})")
        if self.count <= 0:
            raise ApproximationError(f"statistics of layer {self.name!r}: count must be positive")
        if self.max < self.min:
            raise ApproximationError(f"statistics of layer {self.name!r}: max {self.max} < min {self.min}")
        edges = np.asarray(self.hist_edges, dtype=np.float64)
        counts = np.asarray(self.hist_counts, dtype=np.float64)
        if edges.ndim != 1 or counts.ndim != 1 or len(edges) != len(counts) + 1 or len(counts) == 0:
            raise ApproximationError(
                f"statistics of layer {self.name!r}: histogram needs len(edges) == len(counts) + 1 > 1"
            )
        if not (np.all(np.isfinite(edges)) and np.all(np.isfinite(counts))):
            raise ApproximationError(f"statistics of layer {self.name!r}: histogram has non-finite values")
        if np.any(np.diff(edges) < 0) or np.any(counts < 0):
            raise ApproximationError(f"statistics of layer {self.name!r}: histogram edges or counts invalid")

    # ----------------------------------------------------------------- derived views
    @property
    def bin_centers(self) -> np.ndarray:
        e = np.asarray(self.hist_edges, dtype=np.float64)
        return 0.5 * (e[:-1] + e[1:])

    def density(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (bin centers, probability mass per bin) of the empirical distribution."""
        counts = np.asarray(self.hist_counts, dtype=np.float64)
        total = counts.sum()
        mass = counts / total if total > 0 else np.full_like(counts, 1.0 / len(counts))
        return self.bin_centers, mass

    def quantile(self, q: float) -> float:
        """Quantile ``q`` (exact where recorded, else interpolated from the histogram)."""
        if q in self.quantiles:
            return float(self.quantiles[q])
        centers, mass = self.density()
        cdf = np.cumsum(mass)
        return float(np.interp(q, cdf, centers))

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "count": int(self.count),
            "min": float(self.min),
            "max": float(self.max),
            "mean": float(self.mean),
            "std": float(self.std),
            "quantiles": {repr(float(k)): float(v) for k, v in sorted(self.quantiles.items())},
            "hist_edges": [float(v) for v in np.asarray(self.hist_edges)],
            "hist_counts": [float(v) for v in np.asarray(self.hist_counts)],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ActivationStats:
        try:
            return cls(
                name=str(data["name"]),
                count=int(data["count"]),
                min=float(data["min"]),
                max=float(data["max"]),
                mean=float(data["mean"]),
                std=float(data["std"]),
                quantiles={float(k): float(v) for k, v in data["quantiles"].items()},
                hist_edges=np.asarray(data["hist_edges"], dtype=np.float64),
                hist_counts=np.asarray(data["hist_counts"], dtype=np.float64),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"calibration layer entry is corrupt: {exc!r}") from exc

    @classmethod
    def from_samples(cls, name: str, samples: np.ndarray, bins: int = 2048) -> ActivationStats:
        """Statistics of an in-memory sample (used by tests and small models)."""
        x = np.asarray(samples, dtype=np.float64).ravel()
        if x.size == 0:
            raise ApproximationError(f"no samples for layer {name!r}")
        lo, hi = float(x.min()), float(x.max())
        if hi == lo:
            hi = lo + 1e-12
        counts, edges = np.histogram(x, bins=bins, range=(lo, hi))
        qs = DEFAULT_QUANTILES
        return cls(
            name=name,
            count=int(x.size),
            min=lo,
            max=float(x.max()),
            mean=float(x.mean()),
            std=float(x.std()),
            quantiles=dict(zip(qs, (float(v) for v in np.quantile(x, qs)), strict=True)),
            hist_edges=edges,
            hist_counts=counts.astype(np.float64),
        )


DEFAULT_QUANTILES: tuple[float, ...] = (
    0.0001, 0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999, 0.9999,
)


@dataclass(frozen=True)
class CalibrationResult:
    """Statistics for every activation layer of a model, in graph order."""

    model: str
    images: int
    source: str
    layers: list[ActivationStats]
    seconds: float = 0.0

    def __getitem__(self, name: str) -> ActivationStats:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no calibration statistics for layer {name!r}")

    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def save(self, path: str | Path) -> Path:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "images": self.images,
            "source": self.source,
            "seconds": self.seconds,
            "layers": [layer.to_dict() for layer in self.layers],
        }
        return save_json(path, doc)

    @classmethod
    def load(cls, path: str | Path) -> CalibrationResult:
        doc = load_json(path, FORMAT, VERSION, "calibration file", "create it with `olafhe calibrate`")
        try:
            layers = [ActivationStats.from_dict(d) for d in doc["layers"]]
            return cls(
                model=str(doc["model"]),
                images=int(doc["images"]),
                source=str(doc["source"]),
                layers=layers,
                seconds=float(doc.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"calibration file {path} is corrupt: {exc!r}") from exc
