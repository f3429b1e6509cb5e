"""Built-in degree optimizers: dynamic programming, greedy, uniform."""

from __future__ import annotations

from ..core.hookspecs import hookimpl


@hookimpl
def olafhe_optimizers() -> list[type]:
    from .dp import DPOptimizer
    from .greedy import GreedyOptimizer
    from .uniform import UniformOptimizer

    return [DPOptimizer, GreedyOptimizer, UniformOptimizer]
