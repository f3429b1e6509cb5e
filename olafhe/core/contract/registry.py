"""The plugin manager: collects backends, approximators and optimizers from built-ins and entry points.

Names from configs (``backend = "openfhe"``) resolve here; an unknown name raises
:class:`~olafhe.core.errors.PluginError` listing the known ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pluggy

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
        import importlib

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

    def _source_of(self, plugin: Any) -> str:
        name = self.pm.get_name(plugin) or ""
        if name in BUILTIN_MODULES:
            return "builtin"
        for plug, dist in self.pm.list_plugin_distinfo():
            if plug is plugin:
                return getattr(dist, "project_name", None) or dist.metadata["name"]
        return name or "runtime"

    def _collect(self) -> dict[str, dict[str, Registration]]:
        if self._cache is not None:
            return self._cache
        result: dict[str, dict[str, Registration]] = {}
        for kind, hookname in KINDS.items():
            table: dict[str, Registration] = {}
            caller = getattr(self.pm.hook, hookname)
            for impl in caller.get_hookimpls():
                classes = impl.function() or []
                source = self._source_of(impl.plugin)
                for cls in classes:
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
