"""TEMPORARY skeleton: being implemented."""

from ..core.interfaces import Approximator


class MinimaxApproximator(Approximator):  # type: ignore[misc]
    name = "minimax"
