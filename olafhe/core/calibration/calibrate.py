"""Calibration: the distribution of every activation layer's inputs over a set of images.

The inputs of all activation layers over 5,000 CIFAR images do not fit in memory (ResNet-20's first
layers alone produce 16K values per image each), so statistics are streamed over batches in two
passes of the plaintext graph:

1. count, min, max, mean and standard deviation, accumulated in float64 (per-batch sums and sums of
   squares, merged across batches with Chan's parallel formula, which stays accurate for large counts);
2. a histogram of ``FINE * bins`` equal bins on ``[min, max]`` per layer. The stored histogram
   (``bins`` bins) is this fine histogram summed in groups of ``FINE``, so both agree exactly.

Quantiles come from the fine histogram, not from a random subsample: every value is counted and the
result is deterministic. The value returned for probability q lies in the same fine bin as the order
statistic of rank floor(q (N - 1)), so it is within one fine bin, ``(max - min) / (FINE * bins)``
(about 0.0015 % of the range at the default 2,048 bins), of that order statistic; numpy's 'linear'
quantile can differ by more where neighbouring order statistics are far apart (the sparse far tail).
A subsample of a few hundred thousand values would estimate the 0.0001 / 0.9999 tails much worse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from olafhe.core.calibration.stats import DEFAULT_QUANTILES, ActivationStats, CalibrationResult
from olafhe.core.errors import ConfigError, ShapeError
from olafhe.core.graph.ir import Graph

FINE = 32
"""Fine histogram bins per stored bin, used for quantiles."""


@dataclass
class _Moments:
    """Running count/min/max/mean/M2 in float64 (Chan et al. pairwise update)."""

    count: int = 0
    min: float = float("inf")
    max: float = float("-inf")
    mean: float = 0.0
    m2: float = 0.0

    def update(self, x: torch.Tensor) -> None:
        """Merge a flat batch of values (any float dtype; sums are taken in float64)."""
        n = x.numel()
        if n == 0:
            return
        lo, hi = torch.aminmax(x)
        xd = x.to(torch.float64)
        total_b = float(xd.sum())
        mean = total_b / n
        m2 = max(float(xd.dot(xd)) - total_b * mean, 0.0)
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, float(lo))
        self.max = max(self.max, float(hi))

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count else 0.0


def _batches(images: torch.Tensor, batch_size: int) -> list[slice]:
    n = len(images)
    if n == 0:
        raise ShapeError("calibration needs at least one image, got an empty array")
    return [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def _as_input(images: np.ndarray | torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The images as a float (N, *shape) tensor; raw images (e.g. uint8 NHWC) are the caller's to convert."""
    if isinstance(images, np.ndarray) and np.issubdtype(images.dtype, np.floating):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ShapeError(
            f"calibration images must be a normalized float (N, {', '.join(map(str, shape))}) tensor or array, "
            f"got {type(images).__name__} {getattr(images, 'dtype', '')} (convert raw images first)"
        )
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise ShapeError(f"calibration images must be (N, {', '.join(map(str, shape))}), got {tuple(images.shape)}")
    return images


def _quantiles(fine: np.ndarray, lo: float, hi: float, count: int) -> dict[float, float]:
    """Quantiles (numpy's 'linear' rank convention) from a fine histogram on [lo, hi].

    Values inside a bin are taken as evenly spread, so the error is at most one fine bin width.
    """
    width = (hi - lo) / len(fine)
    cum = np.cumsum(fine)
    out = {}
    for q in DEFAULT_QUANTILES:
        rank = q * (count - 1)
        b = min(int(np.searchsorted(cum, rank, side="right")), len(fine) - 1)
        before = float(cum[b - 1]) if b > 0 else 0.0
        frac = (rank - before + 0.5) / max(float(fine[b]), 1.0)
        out[q] = float(np.clip(lo + (b + min(frac, 1.0)) * width, lo, hi))
    return out


def calibrate(
    graph: Graph,
    images: np.ndarray | torch.Tensor,
    bins: int = 2048,
    batch_size: int = 500,
    progress: bool = True,
    model_name: str = "",
    source: str = "",
) -> CalibrationResult:
    """Record input statistics of every activation layer of ``graph`` over ``images``.

    ``images``: the graph's inputs, normalized, as a float (N, C, H, W) tensor or array (raw CIFAR
    images go through :func:`olafhe.data.cifar.to_tensor` first). Layers are returned in graph order,
    named after the activation nodes.
    """
    if bins < 1 or batch_size < 1:
        raise ConfigError(f"calibration needs bins >= 1 and batch_size >= 1, got bins={bins}, batch_size={batch_size}")
    start = time.perf_counter()
    images = _as_input(images, tuple(graph.input_shape))
    slices = _batches(images, batch_size)
    names = [n.name for n in graph.activations()]
    bar = tqdm(total=2 * len(slices), desc=f"calibrating {model_name or graph.name}", unit="batch",
               disable=not progress, leave=False)
    try:
        moments = _first_pass(graph, images, slices, names, bar)
        ranges = {name: _histogram_range(moments[name]) for name in names}
        fine = _second_pass(graph, images, slices, ranges, FINE * bins, bar)
    finally:
        bar.close()
    layers = [_layer_stats(name, moments[name], fine[name].numpy(), ranges[name], bins) for name in names]
    return CalibrationResult(
        model=model_name or graph.name,
        images=len(images),
        source=source,
        layers=layers,
        seconds=time.perf_counter() - start,
    )


def _first_pass(graph: Graph, images: torch.Tensor, slices: list[slice], names: list[str],
                bar: tqdm) -> dict[str, _Moments]:
    """Count, min, max, mean and M2 of every activation's inputs."""
    moments = {name: _Moments() for name in names}

    def hook(name: str, x: torch.Tensor) -> None:
        moments[name].update(x.detach().reshape(-1).to(torch.float64))

    with torch.no_grad():
        for s in slices:
            graph.forward(images[s], hook=hook)
            bar.update()
    return moments


def _histogram_range(m: _Moments) -> tuple[float, float]:
    """[min, max], widened by a hair when all values are equal (a histogram needs a positive width)."""
    lo, hi = m.min, m.max
    return lo, hi if hi > lo else lo + max(1e-12, abs(lo) * 1e-12)


def _second_pass(graph: Graph, images: torch.Tensor, slices: list[slice], ranges: dict[str, tuple[float, float]],
                 n_fine: int, bar: tqdm) -> dict[str, torch.Tensor]:
    """Fine histogram of ``n_fine`` equal bins on each activation's range."""
    fine = {name: torch.zeros(n_fine, dtype=torch.float64) for name in ranges}

    def hook(name: str, x: torch.Tensor) -> None:
        lo, hi = ranges[name]
        # clamp guards against a value outside pass 1's range (histc would silently drop it)
        v = x.detach().reshape(-1).to(torch.float64).clamp_(lo, hi)
        fine[name] += torch.histc(v, bins=n_fine, min=lo, max=hi)

    with torch.no_grad():
        for s in slices:
            graph.forward(images[s], hook=hook)
            bar.update()
    return fine


def _layer_stats(name: str, m: _Moments, counts: np.ndarray, value_range: tuple[float, float],
                 bins: int) -> ActivationStats:
    lo, hi = value_range
    return ActivationStats(
        name=name,
        count=m.count,
        min=m.min,
        max=m.max,
        mean=m.mean,
        std=m.std,
        quantiles=_quantiles(counts, lo, hi, m.count),
        hist_edges=np.linspace(lo, hi, bins + 1),
        hist_counts=counts.reshape(bins, FINE).sum(axis=1),
    )
