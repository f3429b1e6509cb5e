"""TEMPORARY skeleton: being implemented."""

from ..core.backend import Backend


class TenSEALBackend(Backend):  # type: ignore[misc]
    name = "tenseal"
