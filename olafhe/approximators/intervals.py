"""Choosing the approximation interval of a layer from its calibration statistics.

A polynomial is only trustworthy on the interval it was fitted on; beyond it, a high-degree polynomial
grows like ``|t|^d``. ARCHITECTURE's measurements show that test inputs do leave the calibration range,
so the interval is the calibration range *widened by a margin*, and the margin is a per-layer choice
(approximators offer one candidate per margin, the optimizer picks).

Policies (the ``interval`` parameter of the plain approximators):

* ``"minmax"`` (default): ``[min - m*w, max + m*w]`` with ``w = max - min``;
* ``"quantile"``: the same around ``[quantile(q), quantile(1 - q)]`` (ignores the most extreme
  ``q`` of the mass on each side, then widens);
* an explicit ``[a, b]``: used as given.

The composite sign construction needs a symmetric interval: :func:`symmetric_bound`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from olafhe.core.calibration.stats import ActivationStats
from olafhe.core.errors import ApproximationError

INTERVAL_MODES = ("minmax", "quantile")

IntervalSpec = str | Sequence[float]


def validate_interval(interval: object) -> tuple[float, float]:
    """Return ``(a, b)`` from a two-element sequence with finite ``a < b``; raise otherwise."""
    try:
        a, b = (float(v) for v in interval)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ApproximationError(
            f"interval must be 'minmax', 'quantile' or a pair [a, b] of numbers, got {interval!r}"
        ) from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ApproximationError(f"interval [{a}, {b}] has a non-finite end")
    if not b > a:
        kind = "empty" if a == b else "reversed"
        raise ApproximationError(f"interval [{a}, {b}] is {kind}: need a < b")
    return a, b


def validate_margin(margin: object, key: str = "margin") -> float:
    """A margin is a finite, non-negative fraction (of the width, or of the bound)."""
    try:
        value = float(margin)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ApproximationError(f"{key} must be a number, got {margin!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ApproximationError(f"{key} must be finite and >= 0, got {margin!r}")
    return value


def data_interval(
    stats: ActivationStats, margin: float = 0.2, mode: str = "minmax", q: float = 1e-4
) -> tuple[float, float]:
    """The calibration range of ``stats`` (by ``mode``) widened by ``margin`` times its width."""
    margin = validate_margin(margin)
    if mode == "minmax":
        lo, hi = float(stats.min), float(stats.max)
    elif mode == "quantile":
        if not (isinstance(q, (int, float)) and 0 < q < 0.5):
            raise ApproximationError(f"quantile level q must be in (0, 0.5), got {q!r}")
        lo, hi = stats.quantile(q), stats.quantile(1.0 - q)
    else:
        raise ApproximationError(
            f"unknown interval policy {mode!r}; known: {list(INTERVAL_MODES)} or an explicit [a, b]"
        )
    width = hi - lo
    if not width > 0:
        raise ApproximationError(
            f"layer {stats.name!r}: calibration range [{lo}, {hi}] ({mode}) is empty; "
            "pass an explicit interval=[a, b]"
        )
    return lo - margin * width, hi + margin * width


def resolve_interval(
    stats: ActivationStats, spec: IntervalSpec, margin: float, q: float
) -> tuple[float, float]:
    """Apply an interval policy (a mode name or an explicit pair) to one layer."""
    if isinstance(spec, str):
        return data_interval(stats, margin, spec, q)
    return validate_interval(spec)


def symmetric_bound(stats: ActivationStats, margin: float = 0.2) -> float:
    """``B = max(|min|, |max|) * (1 + margin)``: the half-width of the symmetric interval ``[-B, B]``."""
    margin = validate_margin(margin)
    bound = max(abs(float(stats.min)), abs(float(stats.max))) * (1.0 + margin)
    if not bound > 0:
        raise ApproximationError(
            f"layer {stats.name!r}: all calibration inputs are 0, no symmetric interval [-B, B] to fit on"
        )
    return bound
