"""The server's own check that it holds no secret key (``GET /audit``; tests assert on it).

Two views: every object reachable from the server's state (through attributes, slots and containers)
is tested against the secret-key types of the loaded libraries (OpenFHE ``PrivateKey``/``KeyPair``,
SEAL ``SecretKey``/``Decryptor``/``KeyGenerator``) and olafhe's :class:`Client`; and the garbage
collector's objects are searched for any live :class:`Client` in the process. Library objects are
not tracked by Python's collector, hence the walk from the state.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import numpy as np

from olafhe.core.contract.backend import Client

_SECRET_TYPE_NAMES = {"openfhe": ("PrivateKey", "KeyPair"),
                      "tenseal.sealapi": ("SecretKey", "Decryptor", "KeyGenerator")}
_LEAVES = (str, bytes, bytearray, int, float, bool, complex, type(None), np.ndarray, type)


def secret_types() -> tuple[type, ...]:
    """Secret-key types of the libraries this process has imported, and olafhe's Client."""
    found: list[type] = [Client]
    for module_name, names in _SECRET_TYPE_NAMES.items():
        module = sys.modules.get(module_name)
        found += [getattr(module, n) for n in names if module is not None and hasattr(module, n)]
    return tuple(found)


def _children(path: str, obj: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        out += [(f"{path}[{k!r}]", v) for k, v in obj.items()] + [(f"{path}.key", k) for k in obj]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        out += [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        out += [(f"{path}.{k}", v) for k, v in attrs.items()]
    for klass in type(obj).__mro__:
        for name in getattr(klass, "__slots__", ()):
            if isinstance(name, str) and hasattr(obj, name):
                out.append((f"{path}.{name}", getattr(obj, name)))
    return out


def walk_secrets(root: Any, limit: int = 1_000_000) -> dict:
    """Paths from ``root`` to secret-key objects, the number of objects walked and the library types met."""
    kinds = secret_types()
    found: list[str] = []
    met: set[str] = set()
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("state", root)]
    while stack and len(seen) < limit:
        path, obj = stack.pop()
        if isinstance(obj, _LEAVES) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, kinds):
            found.append(f"{path}: {type(obj).__name__}")
            continue
        if type(obj).__module__.split(".")[0] in ("openfhe", "_sealapi_cpp", "tenseal"):
            met.add(type(obj).__name__)
        stack.extend(_children(path, obj))
    return {"secret_key_objects": found, "walked": len(seen), "library_types": sorted(met)}


def live_clients() -> int:
    """Client objects alive anywhere in this process (Python-level, found through the collector)."""
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), Client))  # type(): no __class__ proxies


def audit(root: Any, files: dict[str, list[str]]) -> dict:
    """The audit report: the walk from ``root``, live clients, and the key files on disk."""
    report = walk_secrets(root)
    report.update(live_clients=live_clients(), key_files=files)
    return report
