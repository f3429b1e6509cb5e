"""Built-in degree optimizers: dynamic programming, greedy, uniform, published (the baseline as published)."""

from __future__ import annotations

from olafhe.core.contract.hookspecs import hookimpl


@hookimpl
def olafhe_optimizers() -> list[type]:
    from olafhe.optimizers.dp import DPOptimizer
    from olafhe.optimizers.greedy import GreedyOptimizer
    from olafhe.optimizers.published import PublishedOptimizer
    from olafhe.optimizers.uniform import UniformOptimizer

    return [DPOptimizer, GreedyOptimizer, UniformOptimizer, PublishedOptimizer]
