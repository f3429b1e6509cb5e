"""Built-in CKKS backends, registered through the same hook as third-party ones."""

from __future__ import annotations

from olafhe.core.contract.hookspecs import hookimpl


@hookimpl
def olafhe_backends() -> list[type]:
    from olafhe.backends.openfhe.backend import OpenFHEBackend
    from olafhe.backends.simulator import SimulatorBackend
    from olafhe.backends.tenseal.backend import TenSEALBackend

    return [SimulatorBackend, OpenFHEBackend, TenSEALBackend]
