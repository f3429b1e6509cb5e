"""The value object for one fitted activation approximation, shared by approximators, optimizers,
the simulator and the encrypted engine.

Conventions (all backends and the simulator follow them):

* The input ``x`` is mapped to ``t = (2x - (a + b)) / (b - a)`` in ``[-1, 1]``; the engine folds this
  affine map into the preceding linear layer, so the backend only ever evaluates polynomials on
  ``[-1, 1]``.
* Coefficients are in the Chebyshev basis with numpy's convention ``p(t) = sum_k c_k T_k(t)``
  (OpenFHE's series halves ``c_0``; its backend converts).
* ``form == "plain"``: one stage, ``f(x) ~= p(t)`` in the activation's own output units.
* ``form == "relu-sign"``: the composite sign construction of prior work on a symmetric interval
  ``[-B, B]``: ``s = p_k(...p_1(t))`` approximates ``sign(t)`` and ``ReLU(x) ~= B * t * (1 + s) / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import chebyshev as C

from olafhe.core.errors import ApproximationError
from olafhe.core.poly.chebyshev import chebyshev_depth

FORMS = ("plain", "relu-sign")


def chebyshev_nonscalar_mults(degree: int) -> int:
    """Approximate number of ciphertext-ciphertext products of Paterson–Stockmeyer in Chebyshev basis.

    Baby steps ``T_1..T_k`` (k ~ sqrt(d/2), rounded to a power of two) cost about ``k`` products,
    giant steps ``T_k, T_2k, T_4k, ...`` cost ``log2(d/k)``, and combining the ``d/k`` blocks costs
    about ``d/k`` more. This matches the counts OpenFHE's ``EvalChebyshevSeriesPS`` performs to within
    a few products; degree < 5 uses the linear method (``d - 1`` products).
    """
    if degree <= 1:
        return 0
    if degree < 5:
        return degree - 1
    k = 1 << max(1, round(math.log2(math.sqrt(degree / 2))))
    m = max(0, math.ceil(math.log2((degree + 1) / k)))
    blocks = math.ceil((degree + 1) / k)
    return (k - 1) + m + max(0, blocks - 1)


@dataclass(frozen=True)
class Approximation:
    """A polynomial approximation of an activation on an interval, with its costs and errors."""

    activation: str
    method: str
    interval: tuple[float, float]
    stages: tuple[np.ndarray, ...]
    form: str = "plain"
    weighted_mse: float = float("nan")
    max_error: float = float("nan")
    outside_fraction: float = 0.0
    layer: str = ""
    params: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        a, b = (float(v) for v in self.interval)
        if not (math.isfinite(a) and math.isfinite(b)) or not b > a:
            raise ApproximationError(f"interval must satisfy a < b (finite), got [{a}, {b}]")
        if self.form not in FORMS:
            raise ApproximationError(f"unknown approximation form {self.form!r}; known: {FORMS}")
        if not self.stages:
            raise ApproximationError("an approximation needs at least one stage")
        stages = tuple(np.asarray(s, dtype=np.float64).ravel() for s in self.stages)
        for s in stages:
            if s.size == 0 or not np.all(np.isfinite(s)):
                raise ApproximationError("stage coefficients must be a non-empty finite array")
        if self.form == "plain" and len(stages) != 1:
            raise ApproximationError("a 'plain' approximation has exactly one stage")
        if self.form == "relu-sign" and not math.isclose(a, -b, rel_tol=1e-12, abs_tol=1e-12):
            raise ApproximationError(f"'relu-sign' needs a symmetric interval [-B, B], got [{a}, {b}]")
        object.__setattr__(self, "interval", (a, b))
        object.__setattr__(self, "stages", stages)

    # ----------------------------------------------------------------- structure
    @property
    def stage_degrees(self) -> tuple[int, ...]:
        return tuple(len(s) - 1 for s in self.stages)

    @property
    def degree(self) -> int:
        """Total degree as reported in plans: the stage degree, or the sum over stages (+1 for x·s)."""
        if self.form == "plain":
            return self.stage_degrees[0]
        return sum(self.stage_degrees) + 1

    @property
    def depth(self) -> int:
        """Multiplicative depth as the backends evaluate it (PS per stage, +1 for the final product)."""
        depth = sum(chebyshev_depth(d) for d in self.stage_degrees)
        return depth + (1 if self.form == "relu-sign" else 0)

    @property
    def nonscalar_mults(self) -> int:
        n = sum(chebyshev_nonscalar_mults(d) for d in self.stage_degrees)
        return n + (1 if self.form == "relu-sign" else 0)

    # ----------------------------------------------------------------- evaluation
    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Map inputs from the activation's units to ``t`` on [-1, 1] (the interval scaling)."""
        a, b = self.interval
        return (2.0 * np.asarray(x, dtype=np.float64) - (a + b)) / (b - a)

    def evaluate_unit(self, t: np.ndarray) -> np.ndarray:
        """Exact float64 evaluation as a function of the normalized input ``t``."""
        t = np.asarray(t, dtype=np.float64)
        if self.form == "plain":
            return C.chebval(t, self.stages[0])
        s = t
        for coeffs in self.stages:
            s = C.chebval(s, coeffs)
        half_b = 0.5 * self.interval[1]
        return half_b * t * (1.0 + s)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Exact float64 evaluation in the activation's units (what the simulator uses)."""
        return self.evaluate_unit(self.to_unit(x))

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        doc = {
            "activation": self.activation,
            "method": self.method,
            "interval": [self.interval[0], self.interval[1]],
            "basis": "chebyshev",
            "form": self.form,
            "degree": self.degree,
            "depth": self.depth,
            "nonscalar_mults": self.nonscalar_mults,
            "weighted_mse": _finite_or_none(self.weighted_mse),
            "max_error": _finite_or_none(self.max_error),
            "outside_fraction": float(self.outside_fraction),
            "params": _jsonable(self.params),
        }
        if self.form == "plain":
            doc["coefficients"] = [float(c) for c in self.stages[0]]
        else:
            doc["coefficients"] = []
            doc["stages"] = [
                {"degree": len(s) - 1, "coefficients": [float(c) for c in s]} for s in self.stages
            ]
        return doc

    @classmethod
    def from_dict(cls, doc: dict, layer: str = "") -> Approximation:
        form = doc.get("form", "plain")
        if form == "plain":
            stages = (np.asarray(doc["coefficients"], dtype=np.float64),)
        else:
            stages = tuple(np.asarray(s["coefficients"], dtype=np.float64) for s in doc["stages"])
        return cls(
            activation=str(doc.get("activation", "relu")),
            method=str(doc.get("method", "unknown")),
            interval=(float(doc["interval"][0]), float(doc["interval"][1])),
            stages=stages,
            form=form,
            weighted_mse=_float_or_nan(doc.get("weighted_mse")),
            max_error=_float_or_nan(doc.get("max_error")),
            outside_fraction=float(doc.get("outside_fraction", 0.0)),
            layer=layer,
            params=dict(doc.get("params", {})),
        )


def _finite_or_none(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _float_or_nan(v: object) -> float:
    return float("nan") if v is None else float(v)  # type: ignore[arg-type]


def _jsonable(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [x.item() if isinstance(x, (np.floating, np.integer)) else x for x in v]
        else:
            out[k] = repr(v)
    return out


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
}


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)


def resolve_activation(activation: str | Callable[[np.ndarray], np.ndarray]) -> Callable:
    """Return the numpy function for an activation name (or the callable itself)."""
    if callable(activation):
        return activation
    try:
        return ACTIVATIONS[activation]
    except KeyError:
        raise ApproximationError(
            f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)} (or pass a callable)"
        ) from None

