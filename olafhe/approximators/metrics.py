"""Error measures shared by all approximators, evaluated in the activation's own units.

* weighted MSE: ``sum_j m_j (p(c_j) - f(c_j))^2`` over the calibration histogram (mass ``m_j`` at bin
  center ``c_j``), i.e. the expected squared error under the measured input distribution — the
  quantity the layerwise optimizer budgets;
* max error: ``max |p(x) - f(x)|`` over the approximation interval on a dense grid (20,001 Chebyshev
  points, plus clusters around the activation's kinks, where a ReLU approximation's error peaks and where the
  composite construction's dead zone lies) — what bounds the damage of inputs in the tails;
* outside fraction: the calibration mass outside the interval (assuming mass is uniform within a bin),
  where the polynomial is not controlled at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from scipy.fft import dct

from olafhe.core.calibration.stats import ActivationStats
from olafhe.core.poly.approximation import Approximation

Function = Callable[[np.ndarray], np.ndarray]

GRID_POINTS = 20_001
KINK_POINTS = 400

# Points where an activation is not smooth; error peaks there and the dense grid must contain them.
KINKS: dict[str, tuple[float, ...]] = {"relu": (0.0,)}


def activation_kinks(activation: object) -> tuple[float, ...]:
    """Known non-smooth points of a named activation (none for callables)."""
    return KINKS.get(activation, ()) if isinstance(activation, str) else ()


def _chebyshev_nodes(points: int) -> np.ndarray:
    """``cos(pi j / (points - 1))``, j = 0..points-1 (descending from 1 to -1)."""
    return np.cos(np.pi * np.arange(points) / (points - 1))


def _kink_points(interval: tuple[float, float], kinks: tuple[float, ...]) -> np.ndarray:
    a, b = interval
    offsets = (b - a) * np.geomspace(1e-8, 0.05, KINK_POINTS // 2)
    parts = [np.r_[k, k - offsets, k + offsets] for k in kinks if a < k < b]
    return np.clip(np.concatenate(parts), a, b) if parts else np.zeros(0)


def error_grid(
    interval: tuple[float, float], kinks: tuple[float, ...] = (), points: int = GRID_POINTS
) -> np.ndarray:
    """Dense grid on ``[a, b]`` (unsorted): ``points`` Chebyshev points of the second kind (spacing at
    most ``pi / points`` in ``t``) plus geometric clusters around the kinks inside the interval."""
    a, b = interval
    x = 0.5 * (b - a) * _chebyshev_nodes(points) + 0.5 * (a + b)
    return np.r_[x, _kink_points(interval, kinks)]


def chebyshev_on_nodes(coefficients: np.ndarray, points: int) -> np.ndarray:
    """A Chebyshev series at the nodes of :func:`error_grid`, by one DCT-I (O(n log n), any degree):
    ``sum_k c_k cos(k theta_j)`` with ``theta_j = pi j / (points - 1)``."""
    c = np.asarray(coefficients, dtype=np.float64)
    padded = np.zeros(points)
    padded[: c.size] = c
    return 0.5 * (dct(padded, type=1) + c[0])


def weighted_mse(approx: Function, target: Function, stats: ActivationStats) -> float:
    """Expected squared error under the calibration histogram of ``stats``."""
    centers, mass = stats.density()
    diff = approx(centers) - target(centers)
    return float(np.dot(mass, diff * diff))


def max_error(
    approx: Function,
    target: Function,
    interval: tuple[float, float],
    kinks: tuple[float, ...] = (),
    points: int = GRID_POINTS,
) -> float:
    """Largest absolute error on the dense grid of :func:`error_grid`. A one-stage
    :class:`Approximation` on the same interval is evaluated at the Chebyshev nodes by a DCT."""
    x = error_grid(interval, kinks, points)
    fast = (
        isinstance(approx, Approximation)
        and approx.form == "plain"
        and approx.interval == tuple(interval)
        and approx.stage_degrees[0] < points - 1
    )
    if fast:
        values = np.r_[chebyshev_on_nodes(approx.stages[0], points), approx(x[points:])]
    else:
        values = approx(x)
    return float(np.max(np.abs(values - target(x))))


def outside_fraction(stats: ActivationStats, interval: tuple[float, float]) -> float:
    """Fraction of calibration mass outside ``interval`` (partial bins by overlap length)."""
    a, b = interval
    edges = np.asarray(stats.hist_edges, dtype=np.float64)
    _, mass = stats.density()
    lo, hi = edges[:-1], edges[1:]
    width = hi - lo
    overlap = np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None)
    centers_inside = ((lo + hi) / 2 >= a) & ((lo + hi) / 2 <= b)
    inside = np.where(width > 0, overlap / np.where(width > 0, width, 1.0), centers_inside)
    return float(np.clip(np.dot(mass, 1.0 - inside), 0.0, 1.0))  # not 1 - inside mass: exactly 0 when all inside


def with_errors(
    approximation: Approximation, stats: ActivationStats, target: Function, kinks: tuple[float, ...] = ()
) -> Approximation:
    """Return ``approximation`` with its three error fields measured against ``target``."""
    return dataclasses.replace(
        approximation,
        weighted_mse=weighted_mse(approximation, target, stats),
        max_error=max_error(approximation, target, approximation.interval, kinks),
        outside_fraction=outside_fraction(stats, approximation.interval),
    )
