"""TEMPORARY skeleton: being implemented."""

from ..core.interfaces import DegreeOptimizer


class UniformOptimizer(DegreeOptimizer):  # type: ignore[misc]
    name = "uniform"
