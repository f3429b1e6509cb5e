"""Discrete Remez exchange: best uniform approximation on a finite grid by a Haar system.

The continuous minimax problem ``min_c max_{x in [a, b]} |sum_j c_j phi_j(x) - f(x)|`` is replaced by the
same problem on a dense, sorted grid (Chebyshev-distributed points plus whatever the caller adds near
kinks or interval ends). With a grid of a few thousand points, the discrete optimum is within a fraction
of a percent of the continuous one, and the discrete problem has two advantages: extrema are found by a
scan instead of a root-finder (robust for non-smooth targets such as ReLU), and every step is a dense
linear-algebra call.

One iteration (the multi-point exchange of Remez's second algorithm):

1. on the current reference ``x_0 < ... < x_n`` (``n + 1`` points for ``n`` basis functions) solve the
   square system ``sum_j c_j phi_j(x_i) + (-1)^i h = f(x_i)``: the polynomial that levels the error;
2. evaluate the error on the whole grid; take the largest ``|error|`` in every run of constant sign
   (these alternate in sign by construction); prune that list to ``n + 1`` points, always keeping the
   global maximum (so the levelled error ``|h|`` increases monotonically, de la Vallée Poussin);
3. stop when the smallest and largest ``|error|`` on the new reference agree within ``tol``.

Convergence: for a Haar system (Chebyshev basis on an interval; odd Chebyshev polynomials on an interval
of positive numbers) the levelled error rises monotonically to the optimum. For smooth targets it
converges in a handful of iterations; for ReLU (a kink, so the error has a cusp at the kink) in 5–15.
When it does not meet ``tol`` within ``max_iter`` iterations, :class:`RemezError` reports the ratio
it reached, so callers can retry with a finer grid or fall back to another method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from olafhe.core.errors import ApproximationError


class RemezError(ApproximationError):
    """The exchange did not reach the requested equioscillation within its iteration budget."""

    def __init__(self, message: str, ratio: float) -> None:
        super().__init__(message)
        self.ratio = ratio


@dataclass(frozen=True)
class RemezResult:
    """Outcome of :func:`remez`.

    ``coefficients`` weight the basis columns; ``reference`` are grid indices of the ``n + 1``
    alternation points and ``reference_errors`` the signed errors there; ``max_error`` is the largest
    ``|error|`` over the grid; ``ratio = min |reference_errors| / max_error`` (1.0 = perfect
    equioscillation).
    """

    coefficients: np.ndarray
    reference: np.ndarray
    reference_errors: np.ndarray
    max_error: float
    ratio: float
    iterations: int


def remez(
    basis: np.ndarray,
    target: np.ndarray,
    *,
    tol: float = 0.01,
    max_iter: int = 80,
) -> RemezResult:
    """Best uniform approximation of ``target`` by the columns of ``basis`` on a sorted grid.

    ``basis`` has shape ``(grid size, n)`` (column ``j`` is ``phi_j`` at the grid points, which must be
    sorted ascending) and ``target`` shape ``(grid size,)``. Returns when the ``n + 1`` alternation
    errors agree within ``tol`` (relative); raises :class:`RemezError` otherwise.
    """
    basis, target = _checked(basis, target)
    m, n = basis.shape
    scale = max(float(np.max(np.abs(target))), 1e-300)
    # Start from the least-squares solution: its error already alternates roughly like the optimum's,
    # which saves most of the iterations a start from Chebyshev extrema would take on a kinked target.
    coeffs = np.linalg.lstsq(basis, target, rcond=None)[0]
    error = basis @ coeffs - target
    if np.max(np.abs(error)) <= 1e-13 * scale:  # the target lies in the span: nothing to level
        return RemezResult(coeffs, np.arange(0), np.zeros(0), float(np.max(np.abs(error))), 1.0, 0)
    reference = _alternating_extrema(error, n + 1)
    if reference.size < n + 1:
        reference = np.unique(np.round(np.linspace(0, m - 1, n + 1)).astype(int))

    signs = np.where(np.arange(n + 1) % 2 == 0, 1.0, -1.0)
    ratio = 0.0
    for iteration in range(1, max_iter + 1):
        system = np.column_stack([basis[reference], signs])
        try:
            solution = np.linalg.solve(system, target[reference])
        except np.linalg.LinAlgError:
            solution = np.linalg.lstsq(system, target[reference], rcond=None)[0]
        coeffs = solution[:n]
        error = basis @ coeffs - target
        max_error = float(np.max(np.abs(error)))
        if max_error <= 1e-13 * scale:
            return RemezResult(coeffs, reference, error[reference], max_error, 1.0, iteration)
        new_reference = _alternating_extrema(error, n + 1)
        if new_reference.size < n + 1:
            raise RemezError(
                f"remez: error has only {new_reference.size} alternating extrema, need {n + 1} "
                "(grid too coarse for this degree, or the basis is not a Haar system on the grid)",
                ratio,
            )
        ref_errors = np.abs(error[new_reference])
        ratio = float(ref_errors.min() / max_error)
        reference = new_reference
        if ratio >= 1.0 - tol:
            return RemezResult(coeffs, reference, error[reference], max_error, ratio, iteration)
    raise RemezError(
        f"remez did not converge in {max_iter} iterations: alternation errors agree only to "
        f"min/max = {ratio:.4f} (need >= {1.0 - tol:.4f})",
        ratio,
    )


def _checked(basis: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``basis`` and ``target`` as float64, after checking their shapes and values."""
    basis = np.asarray(basis, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    m, n = basis.shape
    if target.shape != (m,):
        raise ApproximationError(f"remez: target has shape {target.shape}, expected ({m},)")
    if m < n + 1:
        raise ApproximationError(f"remez: a grid of {m} points cannot hold {n + 1} alternation points")
    if not (np.all(np.isfinite(basis)) and np.all(np.isfinite(target))):
        raise ApproximationError("remez: basis or target has non-finite values")
    return basis, target


def _alternating_extrema(error: np.ndarray, count: int) -> np.ndarray:
    """Grid indices of ``count`` alternating-sign extrema of ``error`` that include its global maximum.

    One candidate per run of constant sign (its largest ``|error|``), so candidates alternate. While
    there are too many: if exactly one must go, drop the smaller end point; otherwise drop the smallest
    candidate together with the smaller of its two neighbours (which would otherwise be adjacent and of
    equal sign), or the smallest alone if it is an end point. The global maximum is never the smallest,
    so it survives.
    """
    sign = error >= 0
    starts = np.flatnonzero(np.r_[True, sign[1:] != sign[:-1]])
    ends = np.r_[starts[1:], error.size]
    magnitude = np.abs(error)
    peaks = [int(s + np.argmax(magnitude[s:e])) for s, e in zip(starts, ends, strict=True)]
    values = [float(magnitude[i]) for i in peaks]
    while len(peaks) > count:
        if len(peaks) - count == 1:
            drop = [0] if values[0] < values[-1] else [len(peaks) - 1]
        else:
            k = int(np.argmin(values))
            if k in (0, len(peaks) - 1):
                drop = [k]
            else:
                drop = [k, k - 1 if values[k - 1] < values[k + 1] else k + 1]
        for j in sorted(drop, reverse=True):
            del peaks[j]
            del values[j]
    return np.asarray(peaks, dtype=int)
