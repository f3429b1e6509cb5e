"""``max-degree``: the most accurate candidate in every layer, placed by olafhe's level DP.

The contract a degree optimizer must keep (see ``olafhe.core.contract.interfaces.DegreeOptimizer``):
``optimize(problem, budget)`` picks one candidate per layer and where to bootstrap, and returns a
:class:`~olafhe.core.contract.interfaces.Solution` whose levels are valid for the problem. Placement is the hard
part and is shared: :func:`olafhe.optimizers.placement.place` finds the cheapest bootstrap positions,
bootstrap level, level reductions and input level for fixed candidates.

This optimizer ignores the budget (``uses_budget`` is False, so olafhe evaluates it once instead of
tuning a budget): it is an accuracy ceiling for a given approximator and degree list.
"""

from __future__ import annotations

import math

from olafhe.core.contract.interfaces import Candidate, DegreeOptimizer, OptimizationProblem, Solution
from olafhe.optimizers.placement import place


def _key(candidate: Candidate) -> tuple[float, int]:
    """Least distortion first (NaN counts as worst); among equals, the shallower polynomial."""
    d = candidate.distortion
    return (math.inf if math.isnan(d) else d, candidate.depth)


class MaxDegreeOptimizer(DegreeOptimizer):
    """Every layer takes its least-distortion candidate; bootstraps are placed optimally."""

    name = "max-degree"
    description = "least-distortion candidate in every layer, exact bootstrap placement (example plugin)"

    @property
    def uses_budget(self) -> bool:
        return False

    def optimize(self, problem: OptimizationProblem, budget: float) -> Solution:
        indices = [min(range(len(layer.candidates)), key=lambda k, c=layer.candidates: _key(c[k]))
                   for layer in problem.layers]
        return place(problem, indices, {"optimizer": self.name})
