"""``composite-minimax``: the prior-work ReLU (Lee et al., "Minimax approximation of sign function by
composite polynomial for homomorphic comparison"; used at precision 13 by MPCNN).

On a symmetric interval ``[-B, B]`` with ``t = x / B``::

    ReLU(x) ~= x (1 + s(t)) / 2,    s = p_k o ... o p_1 ~= sign,

each ``p_i`` an odd polynomial (stored as Chebyshev coefficients in its input variable). Stage 1 is the
minimax approximation of ``sign`` on ``[-1, -eps] U [eps, 1]``; with error ``delta_1`` it maps that set
into ``+-[1 - delta_1, 1 + delta_1]``, and stage 2 is the minimax approximation of ``sign`` there, and so
on. Each non-final stage is divided by ``1 + delta_i`` so that every stage's input stays in [-1, 1]
(what CKKS Chebyshev evaluation requires); the next stage then works on ``[eta, 1]`` with
``eta = (1 - delta_i) / (1 + delta_i)``. That is a change of variable, so the composite is identical to
Lee et al.'s. By oddness each stage is computed on the positive half only: Remez
(:mod:`olafhe.approximators.remez`) with the odd Chebyshev polynomials ``T_1, T_3, ...`` (a Haar system
on ``[eta, 1]``, ``eta > 0``) approximating 1.

Precision. ``|s(t) - sign(t)| <= 2^-alpha`` for ``eps <= |t| <= 1``. The dead zone ``eps`` cannot be
``2^-alpha`` for the published degrees: by Bernstein's inequality a degree-D polynomial with
``|s| <= 1 + delta`` on [-1, 1] (true of this construction) has ``s(eps) <= D (1 + delta) asin(eps)``,
so an error ``delta`` on ``[eps, 1]`` needs ``delta >= (1 - D asin eps) / (1 + D asin eps)``: about 0.148
for (15, 15, 27) (D = 6075) at ``eps = 2^-13``; we measure 0.446 there.
So, by default, ``eps`` is the *smallest* dead zone for which the stage degrees reach ``2^-alpha``
(found by bisection on ``log2 eps`` and cached); for ``alpha = 13`` and (15, 15, 27) it is about
``2^-9.04``, and the resulting ReLU error over ``[-B, B]`` is about ``B * 2^-13.08``: outside the dead
zone ``|x| |s - sign| / 2 <= B 2^-14``, inside it ``|x| (1 - s) / 2`` peaks near ``B / (8 s'(0))``.
An explicit ``epsilon`` skips the search; the precision reached is then reported, not enforced.

Stage degrees: ``alpha = 13 -> (15, 15, 27)`` (MPCNN). Other precisions need explicit ``degrees``: we do
not reproduce the other published tables from memory; :func:`composite_sign` reports what any
``degrees`` achieve, so a table can be checked before use.

Interval: ``B = max(|min|, |max|) * (1 + margin)``, default ``margin = 0.2``. The ReLU error grows only
linearly in ``B`` (``~B * 2^-13``), while an input beyond ``B`` drives the degree-6075 composition out of
its stable range at once, so a generous margin is nearly free.

``fit(stats, degree)`` ignores ``degree`` (it must still be a positive integer): the construction is fixed
by ``alpha``/``degrees``; ``candidates`` returns one candidate per margin in ``margins`` (default: just
``margin``), whatever degrees are asked; ``default_degrees()`` is ``[sum(degrees) + 1]``, the total
degree :class:`~olafhe.core.poly.approximation.Approximation` reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
from numpy.polynomial import chebyshev as C

from olafhe.approximators.base import check_degree, check_stats
from olafhe.approximators.intervals import symmetric_bound, validate_margin
from olafhe.approximators.metrics import with_errors
from olafhe.approximators.remez import remez
from olafhe.core.calibration.stats import ActivationStats
from olafhe.core.contract.interfaces import Approximator
from olafhe.core.errors import ApproximationError
from olafhe.core.poly.approximation import Approximation

SIGN_DEGREES: dict[int, tuple[int, ...]] = {13: (15, 15, 27)}

STAGE_GRID = 2000          # per family (geometric, Chebyshev) of the Remez grid on [eta, 1]
STAGE_GRID_PER_DEGREE = 40
CHECK_POINTS = 20_000      # per family of the dense grid that measures each stage's true error
VERIFY_POINTS = 100_000    # per family of the grid that verifies the whole composite
SEARCH_STEPS = 16          # bisection steps on log2(eps) in [1, 40]


@dataclass(frozen=True)
class SignComposite:
    """An odd composite polynomial approximating ``sign`` on ``[-1, -epsilon] U [epsilon, 1]``.

    ``stages`` are Chebyshev coefficients (non-final stages already divided by ``1 + delta_i``);
    ``stage_errors`` the ``delta_i``; ``sign_error`` the composite's error measured on a dense grid.
    """

    epsilon: float
    degrees: tuple[int, ...]
    stages: tuple[np.ndarray, ...]
    stage_errors: tuple[float, ...]
    sign_error: float

    def __call__(self, t: np.ndarray) -> np.ndarray:
        s = np.asarray(t, dtype=np.float64)
        for coefficients in self.stages:
            s = C.chebval(s, coefficients)
        return s

    @property
    def precision_bits(self) -> float:
        return -math.log2(self.sign_error) if self.sign_error > 0 else math.inf


def _positive_grid(eta: float, points: int) -> np.ndarray:
    """Sorted grid on ``[eta, 1]``: geometric (resolves the steep rise just above a tiny ``eta``) plus
    Chebyshev-distributed points."""
    cheb = 0.5 * (1 + eta) + 0.5 * (1 - eta) * np.cos(np.linspace(np.pi, 0.0, points))
    return np.unique(np.clip(np.r_[np.geomspace(eta, 1.0, points), cheb], eta, 1.0))


def sign_stage(eta: float, degree: int) -> tuple[np.ndarray, float]:
    """Odd minimax polynomial of ``sign`` on ``[-1, -eta] U [eta, 1]``: Chebyshev coefficients and its
    error, measured on a grid ten times denser than the Remez grid."""
    grid = _positive_grid(eta, max(STAGE_GRID, STAGE_GRID_PER_DEGREE * degree))
    odd = C.chebvander(grid, degree)[:, 1::2]
    result = remez(odd, np.ones_like(grid), tol=1e-3, max_iter=100)
    coefficients = np.zeros(degree + 1)
    coefficients[1::2] = result.coefficients
    check = _positive_grid(eta, CHECK_POINTS)
    delta = max(result.max_error, float(np.max(np.abs(C.chebval(check, coefficients) - 1.0))))
    return coefficients, delta


def _design(epsilon: float, degrees: tuple[int, ...]) -> tuple[tuple[np.ndarray, ...], tuple[float, ...]]:
    stages, errors = [], []
    eta = epsilon
    for i, degree in enumerate(degrees):
        coefficients, delta = sign_stage(eta, degree)
        if i < len(degrees) - 1:
            if delta >= 1.0:
                raise ApproximationError(
                    f"composite-minimax: stage {i + 1} (degree {degree}) on [{eta:.3g}, 1] has error "
                    f"{delta:.3g} >= 1; the next stage has nothing to refine (raise epsilon or the degree)"
                )
            coefficients = coefficients / (1.0 + delta)
            eta = (1.0 - delta) / (1.0 + delta)
        stages.append(coefficients)
        errors.append(delta)
    return tuple(stages), tuple(errors)


def verify_sign_error(stages: Sequence[np.ndarray], epsilon: float, points: int = VERIFY_POINTS) -> float:
    """``max |s(t) - 1|`` over ``[epsilon, 1]`` on a dense grid (the negative side follows by oddness)."""
    t = np.r_[np.geomspace(epsilon, 1.0, points), np.linspace(epsilon, 1.0, points)]
    s = t
    for coefficients in stages:
        s = C.chebval(s, coefficients)
    return float(np.max(np.abs(s - 1.0)))


def smallest_epsilon(alpha: float, degrees: tuple[int, ...]) -> float:
    """Smallest dead zone ``eps = 2^-l`` (``l`` to ~1e-3) at which ``degrees`` reach ``2^-alpha``."""
    target = 2.0**-alpha

    def feasible(level: float) -> bool:
        try:
            return _design(2.0**-level, degrees)[1][-1] <= target
        except ApproximationError:
            return False

    lo, hi = 1.0, 40.0
    if not feasible(lo):
        raise ApproximationError(
            f"composite-minimax: stage degrees {degrees} cannot reach sign precision 2^-{alpha:g} "
            "even with dead zone eps = 1/2; use more or higher-degree stages"
        )
    if feasible(hi):
        return 2.0**-hi
    for _ in range(SEARCH_STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if feasible(mid) else (lo, mid)
    return 2.0**-lo


@lru_cache(maxsize=32)
def composite_sign(
    alpha: float, degrees: tuple[int, ...], epsilon: float | None = None
) -> SignComposite:
    """The composite sign polynomial for ``degrees`` at precision ``2^-alpha`` (``epsilon`` searched),
    or at an explicit dead zone ``epsilon`` (precision reported). Cached: arrays are read-only."""
    if epsilon is None:
        epsilon = smallest_epsilon(alpha, degrees)
    stages, errors = _design(epsilon, degrees)
    for s in stages:
        s.flags.writeable = False
    return SignComposite(
        epsilon=epsilon,
        degrees=degrees,
        stages=stages,
        stage_errors=errors,
        sign_error=verify_sign_error(stages, epsilon),
    )


def _check_stage_degrees(degrees: object) -> tuple[int, ...]:
    try:
        values = tuple(degrees)  # type: ignore[arg-type]
    except TypeError:
        raise ApproximationError(
            f"composite-minimax: degrees must be a list of odd integers, got {degrees!r}"
        ) from None
    if not values:
        raise ApproximationError("composite-minimax: degrees must list at least one stage")
    out = []
    for d in values:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 or d % 2 == 0 or d > 255:
            raise ApproximationError(
                f"composite-minimax: stage degrees must be odd integers in 1..255 (sign is odd), got {values!r}"
            )
        out.append(int(d))
    return tuple(out)


class CompositeMinimaxApproximator(Approximator):
    """Composite minimax sign-based ReLU of prior work (see the module docstring).

    Parameters: ``alpha`` (precision bits, default 13), ``degrees`` (stage degrees; default from the
    table for ``alpha``), ``epsilon`` (dead zone; default: searched), ``margin`` (default 0.2),
    ``margins`` (default ``(margin,)``).
    """

    name: ClassVar[str] = "composite-minimax"
    description: ClassVar[str] = "prior-work ReLU: x(1 + p_k(...p_1(x/B)))/2 with minimax sign stages"
    defaults: ClassVar[dict[str, Any]] = {
        "alpha": 13, "degrees": None, "epsilon": None, "margin": 0.2, "margins": None,
    }

    def __init__(self, activation: Any = "relu", **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ApproximationError(
                f"{self.name}: unknown parameter(s) {unknown}; known: {sorted(self.defaults)}"
            )
        if activation != "relu":
            raise ApproximationError(
                f"{self.name} approximates ReLU only (as x(1 + sign(x))/2), got activation {activation!r}"
            )
        super().__init__(activation, **{**self.defaults, **params})
        p = self.params
        alpha = p["alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 1 <= alpha <= 40:
            raise ApproximationError(f"{self.name}: alpha must be a number in [1, 40], got {alpha!r}")
        if p["degrees"] is None:
            if alpha not in SIGN_DEGREES:
                raise ApproximationError(
                    f"{self.name}: no built-in stage degrees for alpha={alpha}; known: "
                    f"{sorted(SIGN_DEGREES)}; pass degrees=[...] explicitly"
                )
            p["degrees"] = SIGN_DEGREES[int(alpha)]
        p["degrees"] = _check_stage_degrees(p["degrees"])
        if p["epsilon"] is not None:
            eps = p["epsilon"]
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
                raise ApproximationError(f"{self.name}: epsilon must be in (0, 1), got {eps!r}")
            p["epsilon"] = float(eps)
        p["margin"] = validate_margin(p["margin"])
        margins = (p["margin"],) if p["margins"] is None else p["margins"]
        if isinstance(margins, (int, float)):
            margins = (margins,)
        p["margins"] = tuple(validate_margin(m, "margins") for m in margins)
        if not p["margins"]:
            raise ApproximationError(f"{self.name}: margins must list at least one margin")

    @property
    def sign(self) -> SignComposite:
        """The (cached) composite sign polynomial of this configuration."""
        p = self.params
        return composite_sign(float(p["alpha"]), p["degrees"], p["epsilon"])

    @property
    def total_degree(self) -> int:
        return sum(self.params["degrees"]) + 1

    def fit(self, stats: ActivationStats, degree: int) -> Approximation:
        """The composite ReLU on ``[-B, B]``; ``degree`` is validated but otherwise ignored."""
        check_degree(degree, 10**6, self.name)
        return self._fit(stats, self.params["margin"])

    def candidates(self, stats: ActivationStats, degrees: Sequence[int]) -> list[Approximation]:
        """One candidate per margin; the requested ``degrees`` do not change the construction."""
        return [self._fit(stats, m) for m in self.params["margins"]]

    def default_degrees(self) -> list[int]:
        return [self.total_degree]

    def _fit(self, stats: ActivationStats, margin: float) -> Approximation:
        stats = check_stats(stats, self.name)
        bound = symmetric_bound(stats, margin)
        sign = self.sign
        approximation = Approximation(
            activation="relu",
            method=self.name,
            interval=(-bound, bound),
            stages=tuple(np.array(s) for s in sign.stages),
            form="relu-sign",
            layer=stats.name,
            params={
                "alpha": self.params["alpha"],
                "stage_degrees": list(sign.degrees),
                "epsilon": sign.epsilon,
                "epsilon_log2": math.log2(sign.epsilon),
                "stage_errors": list(sign.stage_errors),
                "sign_error": sign.sign_error,
                "margin": margin,
            },
        )
        return with_errors(approximation, stats, lambda x: np.maximum(x, 0.0), (0.0,))
