"""TEMPORARY skeleton: being implemented."""

from ..core.interfaces import Approximator


class WLSApproximator(Approximator):  # type: ignore[misc]
    name = "wls"
