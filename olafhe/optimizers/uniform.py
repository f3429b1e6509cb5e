"""``uniform``: the same polynomial degree in every layer (the prior-work baseline).

Each layer takes its least-distortion candidate of the chosen degree (with the composite-minimax
approximator there is one candidate per layer). The budget is ignored. Bootstraps, the bootstrap level,
level reductions and the input level are then placed by the same exact level DP the other optimizers
use, so the baseline is compared at its own best placement.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from olafhe.core.contract.interfaces import DegreeOptimizer, OptimizationProblem, Solution
from olafhe.core.errors import ConfigError
from olafhe.optimizers.level_model import prepare
from olafhe.optimizers.placement import place


class UniformOptimizer(DegreeOptimizer):
    """One degree everywhere. Parameter ``degree`` (int): default the largest degree every layer has."""

    name = "uniform"
    description = "the same polynomial degree in every layer (baseline), exact bootstrap placement"

    def __init__(self, degree: int | None = None, **params: Any) -> None:
        super().__init__(degree=degree, **params)
        self.degree = None if degree is None else int(degree)

    @property
    def uses_budget(self) -> bool:
        return False

    def optimize(self, problem: OptimizationProblem, budget: float) -> Solution:
        t0 = time.perf_counter()
        prepare(problem)
        indices, degree = uniform_indices(problem, self.degree, self.name)
        solution = place(problem, indices, {"optimizer": self.name, "degree": degree})
        solution.info["runtime_s"] = time.perf_counter() - t0
        return solution


def uniform_indices(problem: OptimizationProblem, degree: int | None, name: str = "uniform") -> tuple[list[int], int]:
    """Per layer the least-distortion candidate of one common degree (default: the largest every layer
    has), and that degree; ``name`` prefixes the errors."""
    degrees = [[c.approximation.degree for c in layer.candidates] for layer in problem.layers]
    common = set(degrees[0]).intersection(*degrees[1:])
    if degree is None:
        if not common:
            raise ConfigError(f"{name}: no polynomial degree is available in every layer; "
                              "set optimizer_params.degree and fit that degree for every layer")
        degree = max(common)
    elif degree not in common:
        missing = [layer.name for layer, ds in zip(problem.layers, degrees, strict=True) if degree not in ds]
        raise ConfigError(f"{name}: degree {degree} is not among the candidates of layers {missing}; "
                          f"degrees available in every layer: {sorted(common)}")
    indices = []
    for layer, ds in zip(problem.layers, degrees, strict=True):
        options = [k for k, d in enumerate(ds) if d == degree]
        dist = np.array([layer.candidates[k].distortion for k in options], dtype=np.float64)
        indices.append(options[int(np.argmin(np.where(np.isnan(dist), np.inf, dist)))])
    return indices, degree
