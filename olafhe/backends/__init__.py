"""Built-in CKKS backends, registered through the same hook as third-party ones."""

from __future__ import annotations

from ..core.hookspecs import hookimpl


@hookimpl
def olafhe_backends() -> list[type]:
    from .openfhe_backend import OpenFHEBackend
    from .simulator import SimulatorBackend
    from .tenseal_backend import TenSEALBackend

    return [SimulatorBackend, OpenFHEBackend, TenSEALBackend]
