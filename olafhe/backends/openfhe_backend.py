"""TEMPORARY skeleton: being implemented."""

from ..core.backend import Backend


class OpenFHEBackend(Backend):  # type: ignore[misc]
    name = "openfhe"
