"""Built-in approximators: distribution-weighted least squares, Remez minimax, composite minimax ReLU."""

from __future__ import annotations

from olafhe.core.contract.hookspecs import hookimpl


@hookimpl
def olafhe_approximators() -> list[type]:
    from olafhe.approximators.composite import CompositeMinimaxApproximator
    from olafhe.approximators.minimax import MinimaxApproximator
    from olafhe.approximators.wls import WLSApproximator

    return [WLSApproximator, MinimaxApproximator, CompositeMinimaxApproximator]
