"""TEMPORARY skeleton: being implemented."""

from ..core.interfaces import Approximator


class CompositeMinimaxApproximator(Approximator):  # type: ignore[misc]
    name = "composite-minimax"
