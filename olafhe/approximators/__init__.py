"""Built-in approximators: distribution-weighted least squares, Remez minimax, composite minimax ReLU."""

from __future__ import annotations

from ..core.hookspecs import hookimpl


@hookimpl
def olafhe_approximators() -> list[type]:
    from .composite import CompositeMinimaxApproximator
    from .minimax import MinimaxApproximator
    from .wls import WLSApproximator

    return [WLSApproximator, MinimaxApproximator, CompositeMinimaxApproximator]
