"""How far outside [-1, 1] a fitted approximation may be evaluated before its error grows too large.

A polynomial fitted on an interval diverges outside it (like ``T_n(1 + d) ~ cosh(n sqrt(2d))``), so a
slot that leaves the interval by a little may cost nothing and one that leaves it by more breaks the
layer. Per stage of an :class:`~olafhe.core.poly.approximation.Approximation`, the tolerated excursion
is the largest ``d`` such that, for every normalized input up to ``1 + d`` in magnitude, the layer's
output error stays within ``factor`` times the approximation's ``max_error`` on its interval:

* stage 0 (the layer's normalized input ``t``): the whole approximation against the target activation;
* a later stage of a ``relu-sign`` composite (input ``s``, an estimate of ``sign(t)`` that may exceed 1 by
  design): the remaining stages at the interval's edge ``|t| = 1``, where an error ``e`` of the sign
  estimate costs ``B/2 * e`` of output.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial import chebyshev as C

from olafhe.core.poly.approximation import Approximation, resolve_activation

EXCURSION_GRID = np.concatenate([[0.0], np.geomspace(1e-6, 4.0, 600)])
"""Excursions ``d`` scanned (beyond 1 in magnitude); the largest is reported when none exceeds."""


def reference_error(approx: Approximation, points: int = 4001) -> float:
    """The approximation's ``max_error`` when recorded, else its largest error on a grid of its interval."""
    if math.isfinite(approx.max_error) and approx.max_error > 0:
        return float(approx.max_error)
    t = np.linspace(-1.0, 1.0, points)
    return float(np.max(np.abs(approx.evaluate_unit(t) - _target(approx, t))))


def _target(approx: Approximation, t: np.ndarray) -> np.ndarray:
    a, b = approx.interval
    return resolve_activation(approx.activation)(0.5 * (t * (b - a) + a + b))


def _stage_error(approx: Approximation, stage: int, u: np.ndarray) -> np.ndarray:
    """Output error of ``approx`` when stage ``stage``'s input is ``u`` (see the module docstring)."""
    with np.errstate(over="ignore", invalid="ignore"):  # diverging polynomials: inf/NaN count as too large
        if stage == 0:
            return np.abs(approx.evaluate_unit(u) - _target(approx, u))
        s = u
        for coeffs in approx.stages[stage:]:
            s = C.chebval(s, coeffs)
        return 0.5 * approx.interval[1] * np.abs(s - np.sign(u))


def stage_tolerance(approx: Approximation, stage: int, factor: float = 2.0) -> float:
    """Largest excursion ``d`` beyond ``|u| = 1`` at stage ``stage`` with output error <= ``factor * max_error``."""
    limit = factor * reference_error(approx)
    u = 1.0 + EXCURSION_GRID
    err = np.maximum(_stage_error(approx, stage, u), _stage_error(approx, stage, -u))
    bad = np.flatnonzero(~(err <= limit))   # NaN/inf count as too large
    if bad.size == 0:
        return float(EXCURSION_GRID[-1])
    return float(EXCURSION_GRID[bad[0] - 1]) if bad[0] > 0 else 0.0


def excursion_tolerances(approx: Approximation, factor: float = 2.0) -> tuple[float, ...]:
    """:func:`stage_tolerance` of every stage of ``approx``."""
    return tuple(stage_tolerance(approx, j, factor) for j in range(len(approx.stages)))
