"""All olafhe hook specifications, in one place (pluggy).

A plugin is any object or module with functions named like these specs and marked with
``@olafhe.core.contract.hookspecs.hookimpl``. Built-in implementations register through the same hooks as
third-party packages; third-party packages expose their plugin module in the entry-point group
``olafhe`` (``[project.entry-points.olafhe] myname = "mypkg.plugin"``).
"""

from __future__ import annotations

import pluggy

PROJECT = "olafhe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def olafhe_backends() -> list[type]:
    """Return :class:`~olafhe.core.contract.backend.Backend` subclasses; each has a unique ``name``."""


@hookspec
def olafhe_approximators() -> list[type]:
    """Return :class:`~olafhe.core.contract.interfaces.Approximator` subclasses; each has a unique ``name``."""


@hookspec
def olafhe_optimizers() -> list[type]:
    """Return :class:`~olafhe.core.contract.interfaces.DegreeOptimizer` subclasses; each has a unique ``name``."""
