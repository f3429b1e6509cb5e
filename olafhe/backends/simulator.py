"""TEMPORARY skeleton: being implemented."""

from ..core.backend import Backend


class SimulatorBackend(Backend):  # type: ignore[misc]
    name = "simulator"
