"""The module named by the ``olafhe`` entry point: olafhe calls these hooks to collect the classes.

Imports happen inside the hooks so that listing plugins stays cheap.
"""

from __future__ import annotations

from olafhe.core.contract.hookspecs import hookimpl


@hookimpl
def olafhe_approximators() -> list[type]:
    from .chebyshev_interp import ChebyshevInterpApproximator

    return [ChebyshevInterpApproximator]


@hookimpl
def olafhe_optimizers() -> list[type]:
    from .max_degree import MaxDegreeOptimizer

    return [MaxDegreeOptimizer]
