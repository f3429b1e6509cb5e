"""Example olafhe plugin package: one approximator and one degree optimizer, registered by entry point."""

from .chebyshev_interp import ChebyshevInterpApproximator
from .max_degree import MaxDegreeOptimizer

__all__ = ["ChebyshevInterpApproximator", "MaxDegreeOptimizer"]
