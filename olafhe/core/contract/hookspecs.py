"""All olafhe hook specifications, in one place (pluggy).

A plugin is any object or module with functions named like these specs and marked with
``@olafhe.core.contract.hookspecs.hookimpl``; an implementation may take fewer arguments than its spec.
Built-in implementations register through the same hooks as third-party packages; third-party packages
expose their plugin module in the entry-point group ``olafhe``
(``[project.entry-points.olafhe] myname = "mypkg.plugin"``).

olafhe calls every hook through pluggy's hook callers: the three class hooks are asked plugin by plugin
(so ``olafhe plugins`` can say which distribution registered each class) and their lists flattened; the
two config hooks are called once, with keyword arguments.
"""

from __future__ import annotations

import pluggy

from olafhe.core.config import Config

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


@hookspec
def olafhe_config_defaults(config: Config) -> dict | None:
    """Return this plugin's config defaults as a partial config document, or None.

    The document has the TOML's tables and keys, e.g. ``{"approximation": {"approximator_params":
    {"margin": 0.2}}}``; olafhe lays the user's file and ``--set`` values over it, so the user always
    wins. ``config`` is the config as the user wrote it (read it, do not change it): give defaults for
    free-form tables only when your plugin is the one selected there (``approximation.approximator``,
    ``optimizer.name``, ``backend.name``). Two plugins giving one key different defaults is an error.
    """


@hookspec
def olafhe_validate_config(config: Config) -> None:
    """Check ``config`` (defaults applied) and raise :class:`~olafhe.core.errors.ConfigError` when unusable.

    The message is one line naming the dotted key, the value and what is allowed; the CLI prints it
    as ``olafhe: error: ...`` before it loads any data. Return None when the config is fine.
    """
