"""The plugin manager: collects backends, approximators and optimizers from built-ins and entry points.

Names from configs (``backend = "openfhe"``) resolve here; an unknown name raises
:class:`~olafhe.core.errors.PluginError` listing the known ones. The registry also gives plugins their
say in loading a config: pass it as ``hooks`` to :func:`~olafhe.core.config.load_config` (the CLI does)
and the ``olafhe_config_defaults`` / ``olafhe_validate_config`` hooks run there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import pluggy

from olafhe.core.config import Config
from olafhe.core.contract import hookspecs
from olafhe.core.errors import PluginError

ENTRY_POINT_GROUP = "olafhe"
KINDS = {"backends": "olafhe_backends", "approximators": "olafhe_approximators", "optimizers": "olafhe_optimizers"}
BUILTIN_MODULES = ("olafhe.backends", "olafhe.approximators", "olafhe.optimizers")


@dataclass(frozen=True)
class Registration:
    name: str
    cls: type
    source: str  # "builtin" or the distribution that registered it


class PluginRegistry:
    """A pluggy manager plus name -> class lookup for each plugin kind."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for modname in BUILTIN_MODULES:
            self.pm.register(importlib.import_module(modname), name=modname)
        if load_entry_points:
            try:
                self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
            except Exception as exc:  # a broken third-party plugin must not hide the others
                raise PluginError(
                    f"failed to load a plugin from entry-point group {ENTRY_POINT_GROUP!r}: {exc}"
                ) from exc
        self._cache: dict[str, dict[str, Registration]] | None = None

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object or module at run time (same hooks as entry points)."""
        self.pm.register(plugin, name=name)
        self._cache = None

    # ----------------------------------------------------------------- config hooks (ConfigHooks)
    def config_defaults(self, config: Config) -> list[dict]:
        """Every plugin's ``olafhe_config_defaults`` document (None answers left out)."""
        defaults = self.pm.hook.olafhe_config_defaults(config=config)
        for doc in defaults:
            if not isinstance(doc, dict):
                raise PluginError(f"olafhe_config_defaults must return a table of config defaults, got {doc!r}")
        return defaults

    def validate_config(self, config: Config) -> None:
        """Run every plugin's ``olafhe_validate_config`` (the first to raise stops the load)."""
        self.pm.hook.olafhe_validate_config(config=config)

    # ----------------------------------------------------------------- classes by kind and name
    def _source_of(self, plugin: Any) -> str:
        name = self.pm.get_name(plugin) or ""
        if name in BUILTIN_MODULES:
            return "builtin"
        for plug, dist in self.pm.list_plugin_distinfo():
            if plug is plugin:
                return getattr(dist, "project_name", None) or dist.metadata["name"]
        return name or "runtime"

    def _provided(self, hookname: str) -> list[tuple[type, str]]:
        """``(class, source)`` for every class a plugin returns from ``hookname``, in registration order.

        One hook call cannot say which plugin returned what, so each plugin is asked through a hook
        caller restricted to it (pluggy's ``subset_hook_caller``) and the lists are flattened.
        """
        plugins = [plugin for _, plugin in self.pm.list_name_plugin() if plugin is not None]
        found: list[tuple[type, str]] = []
        for plugin in plugins:
            caller = self.pm.subset_hook_caller(hookname, remove_plugins=[p for p in plugins if p is not plugin])
            source = self._source_of(plugin)
            found += [(cls, source) for classes in caller() for cls in classes or []]
        return found

    def _collect(self) -> dict[str, dict[str, Registration]]:
        if self._cache is not None:
            return self._cache
        result: dict[str, dict[str, Registration]] = {}
        for kind, hookname in KINDS.items():
            table: dict[str, Registration] = {}
            for cls, source in self._provided(hookname):
                name = getattr(cls, "name", "")
                if not isinstance(name, str) or not name:
                    raise PluginError(f"{kind} plugin {cls!r} from {source} has no name")
                if name in table and table[name].cls is not cls:
                    raise PluginError(
                        f"{kind} name {name!r} is registered twice ({table[name].source} and {source})"
                    )
                table[name] = Registration(name, cls, source)
            result[kind] = dict(sorted(table.items()))
        self._cache = result
        return result

    def names(self, kind: str) -> list[str]:
        return list(self._collect()[self._kind(kind)])

    def sources(self) -> dict[str, dict[str, str]]:
        return {kind: {n: r.source for n, r in regs.items()} for kind, regs in self._collect().items()}

    def get(self, kind: str, name: str) -> type:
        regs = self._collect()[self._kind(kind)]
        if name not in regs:
            singular = self._kind(kind)[:-1]
            raise PluginError(f"unknown {singular} {name!r}; known: {', '.join(regs) or 'none'}")
        return regs[name].cls

    @staticmethod
    def _kind(kind: str) -> str:
        key = kind if kind.endswith("s") else kind + "s"
        if key not in KINDS:
            raise PluginError(f"unknown plugin kind {kind!r}; known: {list(KINDS)}")
        return key


_default: PluginRegistry | None = None


def registry() -> PluginRegistry:
    """The process-wide registry (built lazily; entry points loaded once)."""
    global _default
    if _default is None:
        _default = PluginRegistry()
    return _default


def reset_registry() -> None:
    """Forget the process-wide registry (tests that install plugins call this)."""
    global _default
    _default = None
