"""TEMPORARY skeleton: being implemented."""

from ..core.interfaces import DegreeOptimizer


class DPOptimizer(DegreeOptimizer):  # type: ignore[misc]
    name = "dp"
