"""Depth-optimal evaluation of a Chebyshev series on any CKKS backend (shared by TenSEAL and OpenFHE).

:class:`ChebyshevProgram` evaluates ``sum_k c_k T_k(x)`` in exactly ``ceil(log2(d + 1))`` levels -- the
least any polynomial of degree ``d`` can take -- through a small :class:`ChebyshevOps` adapter to a
backend's ciphertexts. Libraries' own Paterson--Stockmeyer routines often take one level more (OpenFHE
1.6.1's ``EvalChebyshevSeries``: degree 7 -> 4, 15 -> 5, 31 -> 6), and a level is worth a lot: it
decides how many activations fit between bootstraps and how many levels a bootstrap must restore.
The same recursion run on level numbers (:func:`chebyshev_schedule`) gives the depth and the product
counts the planner and the tests use.

The project's two depth rules are defined here and nowhere else: :func:`chebyshev_depth` (depth-optimal,
what :class:`ChebyshevProgram` and the simulator consume) and :func:`openfhe_chebyshev_depth` (OpenFHE's
native ``EvalChebyshevSeries``, a measured table).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np

from olafhe.core.errors import ApproximationError, OutOfLevelsError, ShapeError

__all__ = [
    "MAX_CHEBYSHEV_DEGREE", "ChebyshevOps", "ChebyshevProgram", "chebyshev_baby_steps", "chebyshev_depth",
    "chebyshev_schedule", "openfhe_chebyshev_depth",
]

V = TypeVar("V")


class ChebyshevOps(Protocol[V]):
    """The arithmetic the Chebyshev recursion needs; values ``V`` carry a level.

    ``scalar_to(a, c, level)`` returns ``c * a`` at ``level`` (< level of ``a``), or above it when the
    backend's ``add`` drops the extra limbs itself (OpenFHE's FLEXIBLEAUTO); ``add``, ``sub`` and
    ``multiply`` align operands to the lower level.
    """

    negligible: float

    def level(self, a: V) -> int: ...

    def multiply(self, a: V, b: V) -> V: ...

    def add(self, a: V, b: V) -> V: ...

    def sub(self, a: V, b: V) -> V: ...

    def add_scalar(self, a: V, c: float) -> V: ...

    def scalar_to(self, a: V, c: float, level: int) -> V: ...

    def constant(self, c: float, level: int) -> V: ...


def _ceil_log2(k: int) -> int:
    return (k - 1).bit_length() if k > 1 else 0


def chebyshev_depth(degree: int) -> int:
    """Depth-optimal levels of a degree-``degree`` Chebyshev series: ``ceil(log2(degree + 1))``.

    The least any polynomial of that degree can take, and what :class:`ChebyshevProgram` consumes (its
    schedule, :func:`chebyshev_schedule`, is checked against this for every degree up to 256). A degree-1
    series with a non-integer coefficient still consumes one level for the scalar product; degree 0 none.
    """
    if degree < 0:
        raise ApproximationError(f"degree must be >= 0, got {degree}")
    return _ceil_log2(degree + 1)


# First degree at which OpenFHE's EvalChebyshevSeries needs each number of levels (openfhe 1.6.1.0.22.4,
# FLEXIBLEAUTO, measured for every degree 1..255 by the openfhe backend's `measure_chebyshev_depths`;
# independent of the ring dimension, the input's level and its pending rescale).
_OPENFHE_DEPTH_STARTS = ((1, 1), (2, 2), (3, 3), (6, 4), (14, 5), (28, 6), (60, 7), (120, 8), (248, 9))
MAX_CHEBYSHEV_DEGREE = 255
"""The largest degree whose OpenFHE depth was measured."""


def openfhe_chebyshev_depth(degree: int) -> int:
    """Levels one native OpenFHE ``EvalChebyshevSeries`` of ``degree`` consumes (measured table, 0 -> 0).

    One level more than :func:`chebyshev_depth` from degree 6 on (7 -> 4, 15 -> 5, 31 -> 6).
    """
    if degree < 0:
        raise ApproximationError(f"degree must be >= 0, got {degree}")
    if degree > MAX_CHEBYSHEV_DEGREE:
        raise ApproximationError(
            f"Chebyshev degree {degree} is above {MAX_CHEBYSHEV_DEGREE}, the largest whose OpenFHE depth "
            f"was measured; compose lower-degree polynomials instead"
        )
    depth = 0
    for start, levels in _OPENFHE_DEPTH_STARTS:
        if degree >= start:
            depth = levels
    return depth


class ChebyshevProgram(Generic[V]):
    """Evaluates ``sum_k c_k T_k(x)`` with depth exactly ``ceil(log2(d + 1))`` on any :class:`ChebyshevOps`.

    Powers: ``T_k`` at depth ``ceil(log2 k)`` (``T_2k = 2 T_k^2 - 1``; odd ``k = m + n`` with ``m``
    the largest power of two below ``k``: ``2 T_m T_n - T_{m-n}``). A polynomial of degree ``e`` that
    must end ``B`` levels below the input is a linear combination of ``T_1..T_e`` when
    ``e <= min(2**(B-1), baby)`` (every ``T_k`` then sits above the output level, so its constant
    product lands on it exactly); otherwise it is split by Chebyshev division ``p = T_m q + r`` with
    ``m`` the largest power of two ``<= e`` (``q_0 = c_m``, ``q_j = 2 c_{m+j}``,
    ``r_k = c_k - c_{2m-k}``): ``T_m`` has depth ``log2 m <= B - 1``, ``q`` (degree ``< m``) is
    evaluated one level higher and ``r`` (degree ``< m``) on the output level, so by induction the
    whole series needs ``ceil(log2(d + 1))`` levels for any ``baby`` (a power of two). ``baby`` trades
    power products against splits; :func:`chebyshev_baby_steps` picks it per degree.

    ``doubled``: the ciphertext holds ``u = 2x`` (a bootstrap that added its conjugate). The powers are then
    the Dickson polynomials ``D_k(u) = 2 T_k(x)`` (``D_2k = D_k^2 - 2``, ``D_m+n = D_m D_n - D_m-n``), whose
    recurrences need no halving and so no extra level; every use of a power carries the factor 1/2.
    """

    def __init__(self, ops: ChebyshevOps[V], x: V, baby: int | None = None, doubled: bool = False) -> None:
        self.ops = ops
        self.start = ops.level(x)
        self.powers: dict[int, V] = {1: x}
        self.baby = baby  # largest T_k used in a linear combination (None: no limit but the budget)
        self.unit = 0.5 if doubled else 1.0  # T_k = unit * power(k)

    def power(self, k: int) -> V:
        """``T_k(x) / unit`` at level ``start - ceil(log2 k)``."""
        if k not in self.powers:
            ops = self.ops
            if k % 2 == 0:
                half = self.power(k // 2)
                sq = ops.multiply(half, half)
                self.powers[k] = ops.add_scalar(sq, -2.0) if self.unit != 1.0 else ops.add_scalar(ops.add(sq, sq), -1.0)
            else:
                m = 1 << (_ceil_log2(k) - 1)
                prod = ops.multiply(self.power(m), self.power(k - m))
                twice = prod if self.unit != 1.0 else ops.add(prod, prod)
                self.powers[k] = ops.sub(twice, self.power(2 * m - k))
        return self.powers[k]

    def evaluate(self, coefficients: np.ndarray) -> V:
        coeffs = np.asarray(coefficients, dtype=np.float64).ravel()
        if coeffs.size == 0:
            raise ShapeError("chebyshev: empty coefficient vector")
        if not np.all(np.isfinite(coeffs)):
            raise ShapeError("chebyshev: coefficients must be finite")
        depth = chebyshev_depth(coeffs.size - 1)
        if self.start - depth < 0:
            raise OutOfLevelsError(
                f"chebyshev of degree {coeffs.size - 1} needs {depth} level(s) but the ciphertext has "
                f"{self.start} left; the program needs a bootstrap earlier or more levels (ckks.levels)"
            )
        target = self.start - depth
        result = self._series(coeffs, target)
        if isinstance(result, float):
            return self.ops.constant(result, target)
        return result

    def _series(self, c: np.ndarray, target: int) -> V | float:
        ops = self.ops
        significant = np.nonzero(np.abs(c) > ops.negligible)[0]
        e = int(significant[-1]) if significant.size else 0
        if e == 0:
            return float(c[0])
        budget = self.start - target
        limit = 1 << (budget - 1)
        if e <= (limit if self.baby is None else min(limit, self.baby)):
            acc: V | None = None
            for k in range(1, e + 1):
                if abs(c[k]) > ops.negligible:
                    term = ops.scalar_to(self.power(k), float(c[k]) * self.unit, target)
                    acc = term if acc is None else ops.add(acc, term)
            assert acc is not None  # c[e] is significant
            return ops.add_scalar(acc, float(c[0])) if c[0] != 0.0 else acc
        m = 1 << (_ceil_log2(e + 1) - 1)  # largest power of two <= e
        q = np.empty(e - m + 1)
        q[0] = c[m]
        q[1:] = 2.0 * c[m + 1 : e + 1]
        r = c[:m].copy()
        for j in range(1, e - m + 1):
            r[m - j] -= c[m + j]
        q_val = self._series(q * self.unit, target + 1)
        if isinstance(q_val, float):
            head = ops.scalar_to(self.power(m), q_val, target)
        else:
            head = ops.multiply(self.power(m), q_val)
        r_val = self._series(r, target)
        if isinstance(r_val, float):
            return ops.add_scalar(head, r_val) if r_val != 0.0 else head
        return ops.add(head, r_val)


@dataclass
class _LevelOps:
    """:class:`ChebyshevOps` on level numbers only: checks the schedule and counts its products."""

    negligible: float = 0.0
    products: int = 0
    scalar_products: int = 0
    lowest: int = 1 << 30

    def level(self, a: int) -> int:
        return a

    def _at(self, level: int) -> int:
        if level < 0:
            raise OutOfLevelsError(f"schedule error: an operation lands on level {level}")
        self.lowest = min(self.lowest, level)
        return level

    def multiply(self, a: int, b: int) -> int:
        self.products += 1
        return self._at(min(a, b) - 1)

    def add(self, a: int, b: int) -> int:
        return min(a, b)

    def sub(self, a: int, b: int) -> int:
        return min(a, b)

    def add_scalar(self, a: int, c: float) -> int:
        return a

    def scalar_to(self, a: int, c: float, level: int) -> int:
        if level >= a:
            raise AssertionError(f"schedule error: constant product from level {a} to {level}")
        self.scalar_products += 1
        return self._at(level)

    def constant(self, c: float, level: int) -> int:
        return self._at(level)


# A scalar (constant) product costs a fraction of a ciphertext product (no relinearization).
_SCALAR_PRODUCT_WEIGHT = 0.15


def _schedule(degree: int, baby: int | None, start: int | None = None) -> tuple[int, int, int]:
    begin = chebyshev_depth(degree) if start is None else start
    ops = _LevelOps(lowest=begin)
    # generic coefficients: no zero appears in the Chebyshev divisions, so every term is evaluated
    generic = 2.0 + np.cos(1.2345 * np.arange(degree + 1) + 0.5)
    out = ChebyshevProgram(ops, begin, baby).evaluate(generic)
    return begin - min(out, ops.lowest), ops.products, ops.scalar_products


@functools.lru_cache(maxsize=512)
def chebyshev_baby_steps(degree: int) -> int:
    """The baby-step bound (a power of two) with the least weighted product count for ``degree``."""
    best, best_cost = 1, math.inf
    for b in range(max(1, chebyshev_depth(degree))):
        _, products, scalars = _schedule(degree, 1 << b)
        cost = products + _SCALAR_PRODUCT_WEIGHT * scalars
        if cost < best_cost:
            best, best_cost = 1 << b, cost
    return best


def chebyshev_schedule(degree: int, start: int | None = None) -> tuple[int, int, int]:
    """(depth, ciphertext products, constant products) of :class:`ChebyshevProgram` for ``degree``.

    Runs the real recursion (with the baby-step bound :func:`chebyshev_baby_steps` picks) on level
    numbers with generic coefficients (an upper bound on the work: real fits may skip zero terms),
    starting at ``start`` (default: exactly the designed depth, so a schedule needing more raises) and
    reporting the lowest level any operation reached.
    """
    return _schedule(degree, chebyshev_baby_steps(degree), start)
