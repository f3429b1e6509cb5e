"""The module named by the ``olafhe`` entry point: olafhe calls these hooks to collect the classes.

Besides its two classes, the plugin gives ``chebyshev-interp`` a config default (``margin``) and a check
on it, so a bad value is refused when the config is loaded, with a one-line message, before any data.
Imports of the classes happen inside the hooks so that listing plugins stays cheap.
"""

from __future__ import annotations

from olafhe.core.config import Config
from olafhe.core.contract.hookspecs import hookimpl
from olafhe.core.errors import ConfigError

APPROXIMATOR = "chebyshev-interp"


@hookimpl
def olafhe_approximators() -> list[type]:
    from .chebyshev_interp import ChebyshevInterpApproximator

    return [ChebyshevInterpApproximator]


@hookimpl
def olafhe_optimizers() -> list[type]:
    from .max_degree import MaxDegreeOptimizer

    return [MaxDegreeOptimizer]


@hookimpl
def olafhe_config_defaults(config: Config) -> dict | None:
    """``approximator_params.margin`` when the config selects ``chebyshev-interp`` (the user's value wins)."""
    if config.approximation.approximator != APPROXIMATOR:
        return None  # the params table belongs to another approximator
    from .chebyshev_interp import DEFAULT_MARGIN

    return {"approximation": {"approximator_params": {"margin": DEFAULT_MARGIN}}}


@hookimpl
def olafhe_validate_config(config: Config) -> None:
    """``chebyshev-interp`` needs a margin that is a number >= 0."""
    if config.approximation.approximator != APPROXIMATOR:
        return
    margin = config.approximation.approximator_params.get("margin")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ConfigError(f"approximation.approximator_params.margin must be a number >= 0 for {APPROXIMATOR}, "
                          f"got {margin!r}")
