"""TEMPORARY skeleton: being implemented."""

from ..core.interfaces import DegreeOptimizer


class GreedyOptimizer(DegreeOptimizer):  # type: ignore[misc]
    name = "greedy"
