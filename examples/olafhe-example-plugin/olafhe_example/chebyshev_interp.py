"""``chebyshev-interp``: interpolate the activation at Chebyshev nodes of the calibration range.

Interpolation is the simplest near-minimax fit: no weights, no solver, error within a small factor of
the best uniform approximation. It ignores where the inputs concentrate, which is exactly what the
built-in ``wls`` exploits -- a useful reference point in ``olafhe bench``.

The contract an approximator must keep (see ``olafhe.core.contract.interfaces.Approximator``):

* hyper-parameters come in through ``__init__`` (from ``approximation.approximator_params``);
* ``fit(stats, degree)`` returns an :class:`~olafhe.core.poly.approximation.Approximation` whose coefficients
  are Chebyshev coefficients in ``t = (2x - a - b) / (b - a)`` on its ``interval`` ``[a, b]``;
* its ``weighted_mse`` (expected squared error under the layer's input histogram) is what the
  optimizers budget, so it must be measured, not left NaN.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev as C

from olafhe.core.calibration.stats import ActivationStats
from olafhe.core.contract.interfaces import Approximator
from olafhe.core.errors import ApproximationError
from olafhe.core.poly.approximation import Approximation, resolve_activation

ERROR_GRID_POINTS = 10_001
DEFAULT_MARGIN = 0.2  # of the calibration width, on each side (also the plugin's config default)


class ChebyshevInterpApproximator(Approximator):
    """Chebyshev interpolation on ``[min - margin*w, max + margin*w]`` (``w`` = calibration width)."""

    name = "chebyshev-interp"
    description = "interpolation at Chebyshev nodes on the calibration range plus a margin (example plugin)"

    def __init__(self, activation: str = "relu", margin: float = DEFAULT_MARGIN, **params: Any) -> None:
        if params:
            raise ApproximationError(f"{self.name}: unknown parameter(s) {sorted(params)}; known: ['margin']")
        if not float(margin) >= 0:
            raise ApproximationError(f"{self.name}: margin must be >= 0, got {margin!r}")
        super().__init__(activation, margin=float(margin))
        self.margin = float(margin)
        self.function = resolve_activation(activation)

    def default_degrees(self) -> list[int]:
        return [3, 5, 7, 11, 15, 23, 31]

    def fit(self, stats: ActivationStats, degree: int) -> Approximation:
        if int(degree) != degree or degree < 1:
            raise ApproximationError(f"{self.name}: degree must be a positive integer, got {degree!r}")
        width = max(stats.max - stats.min, 1e-6)
        a, b = stats.min - self.margin * width, stats.max + self.margin * width

        def in_unit(t: np.ndarray) -> np.ndarray:  # the activation as a function of t in [-1, 1]
            return self.function(a + (t + 1.0) * (b - a) / 2.0)

        approx = Approximation(
            activation=self.activation if isinstance(self.activation, str) else "custom",
            method=self.name,
            interval=(a, b),
            stages=(C.chebinterpolate(in_unit, int(degree)),),
            layer=stats.name,
            params={"margin": self.margin},
        )
        return dataclasses.replace(approx, **self.errors(approx, stats))

    def errors(self, approx: Approximation, stats: ActivationStats) -> dict[str, float]:
        """Weighted MSE under the histogram, max error on a dense grid, calibration mass outside."""
        centers, mass = stats.density()
        diff = approx(centers) - self.function(centers)
        grid = np.linspace(*approx.interval, ERROR_GRID_POINTS)
        a, b = approx.interval
        return {
            "weighted_mse": float(np.dot(mass, diff * diff)),
            "max_error": float(np.max(np.abs(approx(grid) - self.function(grid)))),
            "outside_fraction": float(mass[(centers < a) | (centers > b)].sum()),
        }
