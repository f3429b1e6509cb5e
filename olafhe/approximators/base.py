"""What the one-polynomial approximators (``wls``, ``minimax``) share: parameters, interval policy,
candidate generation, and turning coefficients into a measured :class:`Approximation`.

A subclass declares its extra parameters in ``defaults`` and implements :meth:`_coefficients`.
"""

from __future__ import annotations

import math
import numbers
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from olafhe.approximators.intervals import INTERVAL_MODES, resolve_interval, validate_interval, validate_margin
from olafhe.approximators.metrics import activation_kinks, with_errors
from olafhe.core.calibration.stats import ActivationStats
from olafhe.core.contract.interfaces import Approximator
from olafhe.core.errors import ApproximationError
from olafhe.core.poly.approximation import Approximation, resolve_activation

COMMON_DEFAULTS: dict[str, Any] = {
    "interval": "minmax",      # "minmax", "quantile" or an explicit [a, b]
    "margin": 0.2,             # widening, as a fraction of the range's width, used by fit()
    "margins": (0.1, 0.25, 0.5),  # one candidate per margin in candidates()
    "q": 1e-4,                 # quantile level of the "quantile" policy
}


def check_degree(degree: object, max_degree: int, method: str) -> int:
    """A degree is an integer in ``1..max_degree`` (bools and non-integral floats are refused)."""
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral):
        if isinstance(degree, float) and degree.is_integer():
            degree = int(degree)
        else:
            raise ApproximationError(f"{method}: degree must be an integer, got {degree!r}")
    degree = int(degree)
    if not 1 <= degree <= max_degree:
        raise ApproximationError(f"{method}: degree must be in 1..{max_degree}, got {degree}")
    return degree


def check_stats(stats: object, method: str) -> ActivationStats:
    """Refuse anything but valid, finite statistics (arrays are mutable, so re-validate)."""
    if not isinstance(stats, ActivationStats):
        raise ApproximationError(f"{method}: expected ActivationStats, got {type(stats).__name__}")
    stats.validate()
    return stats


def activation_name(activation: object) -> str:
    return activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")


class IntervalApproximator(Approximator):
    """Base of approximators that fit one Chebyshev series on an interval chosen from the statistics."""

    defaults: ClassVar[dict[str, Any]] = {}
    max_degree: ClassVar[int] = 127

    def __init__(self, activation: Any = "relu", **params: Any) -> None:
        known = {**COMMON_DEFAULTS, **self.defaults}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ApproximationError(f"{self.name}: unknown parameter(s) {unknown}; known: {sorted(known)}")
        super().__init__(activation, **{**known, **params})
        self.target = resolve_activation(activation)
        self.kinks = activation_kinks(activation)
        self._check_common_params()
        self._check_params()

    # ------------------------------------------------------------------ parameters
    def _check_common_params(self) -> None:
        p = self.params
        spec = p["interval"]
        if isinstance(spec, str):
            if spec not in INTERVAL_MODES:
                raise ApproximationError(
                    f"{self.name}: unknown interval policy {spec!r}; known: {list(INTERVAL_MODES)} or [a, b]"
                )
        else:
            p["interval"] = validate_interval(spec)
        p["margin"] = validate_margin(p["margin"])
        margins = p["margins"]
        if isinstance(margins, (int, float)):
            margins = (margins,)
        p["margins"] = tuple(validate_margin(m, "margins") for m in margins)
        if not p["margins"]:
            raise ApproximationError(f"{self.name}: margins must list at least one margin")
        q = p["q"]
        if not (isinstance(q, (int, float)) and 0 < q < 0.5):
            raise ApproximationError(f"{self.name}: quantile level q must be in (0, 0.5), got {q!r}")

    def _check_params(self) -> None:
        """Validate subclass parameters (override)."""

    @staticmethod
    def _positive(value: object, key: str, allow_zero: bool = False) -> float:
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ApproximationError(f"{key} must be a number, got {value!r}") from None
        if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            raise ApproximationError(f"{key} must be finite and {'>=' if allow_zero else '>'} 0, got {value!r}")
        return v

    # ------------------------------------------------------------------ the Approximator API
    def fit(self, stats: ActivationStats, degree: int) -> Approximation:
        """Fit at ``degree`` on the interval given by the ``interval`` policy and ``margin``."""
        return self._fit_many(stats, [degree], [self.params["margin"]])[0]

    def candidates(self, stats: ActivationStats, degrees: Sequence[int]) -> list[Approximation]:
        """Per degree, one candidate per margin in ``margins`` (one only for an explicit interval)."""
        explicit = not isinstance(self.params["interval"], str)
        margins = [self.params["margin"]] if explicit else list(self.params["margins"])
        return self._fit_many(stats, list(degrees), margins)

    def default_degrees(self) -> list[int]:
        return [3, 5, 7, 9, 11, 13, 15, 19, 23, 27, 31, 39, 47, 55, 63]

    # ------------------------------------------------------------------ shared work
    def _fit_many(self, stats: ActivationStats, degrees: list[int], margins: list[float]) -> list[Approximation]:
        """Fits for every (degree, margin), ordered by degree then margin; one :meth:`_prepare` per
        interval lets a subclass share work (a factorization) across degrees."""
        stats = check_stats(stats, self.name)
        degrees = [check_degree(d, self.max_degree, self.name) for d in degrees]
        if not degrees:
            return []
        # these factorizations are small (thousands x <= 128): threaded BLAS only adds overhead, and on a
        # loaded 2-core machine it makes them dozens of times slower
        with threadpool_limits(1):
            return self._fit_many_serial(stats, degrees, margins)

    def _fit_many_serial(self, stats: ActivationStats, degrees: list[int], margins: list[float]) -> list[Approximation]:
        spec = self.params["interval"]
        fitted: dict[tuple[int, float], Approximation] = {}
        for margin in margins:
            interval = resolve_interval(stats, spec, margin, self.params["q"])
            context = self._prepare(stats, interval, max(degrees))
            for degree in sorted(set(degrees)):
                coefficients, info = self._coefficients(context, degree)
                fitted[degree, margin] = self._build(stats, degree, interval, margin, coefficients, info)
        return [fitted[d, m] for d in degrees for m in margins]

    def _build(
        self,
        stats: ActivationStats,
        degree: int,
        interval: tuple[float, float],
        margin: float,
        coefficients: np.ndarray,
        info: dict[str, Any],
    ) -> Approximation:
        if not np.all(np.isfinite(coefficients)):
            raise ApproximationError(
                f"{self.name}: fit of layer {stats.name!r} at degree {degree} produced non-finite coefficients"
            )
        spec = self.params["interval"]
        params: dict[str, Any] = {"interval_policy": spec if isinstance(spec, str) else "explicit"}
        if isinstance(spec, str):
            params["margin"] = margin
            if spec == "quantile":
                params["q"] = self.params["q"]
        params.update(info)
        approximation = Approximation(
            activation=activation_name(self.activation),
            method=self.name,
            interval=interval,
            stages=(coefficients,),
            form="plain",
            layer=stats.name,
            params=params,
        )
        return with_errors(approximation, stats, self.target, self.kinks)

    @abstractmethod
    def _prepare(self, stats: ActivationStats, interval: tuple[float, float], max_degree: int) -> Any:
        """Work shared by all degrees on one interval (e.g. a factorization); passed to
        :meth:`_coefficients`."""

    @abstractmethod
    def _coefficients(self, context: Any, degree: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Chebyshev coefficients in ``t`` of the degree-``degree`` fit, and a dict of method-specific
        facts to record in ``Approximation.params``."""
