"""Imports run downward: the package diagram in docs/architecture.md holds for the code."""

from __future__ import annotations

import ast
from pathlib import Path

import olafhe

ROOT = Path(olafhe.__file__).parent
# bottom to top; a module may import its own layer or lower ones only
CORE = ["errors", "jsonfile", "config", "poly", "graph", "calibration", "contract", "compiler", "planning"]
TOP = ["core", "data", "models", "approximators", "optimizers", "backends", "jobs", "serve", "report",
       "cli_common", "cli_split", "cli"]
PEERS = {"approximators", "optimizers", "backends"}  # plugin packages: independent of each other


def _layer(module: str) -> tuple[int, int] | None:
    parts = module.split(".")
    if parts[0] != "olafhe" or len(parts) < 2:
        return None
    top = parts[1].removesuffix(".py")
    if top not in TOP:
        return None
    inner = CORE.index(parts[2]) if top == "core" and len(parts) > 2 and parts[2] in CORE else -1
    return TOP.index(top), inner


def _imports() -> list[tuple[str, str]]:
    found = []
    for path in ROOT.rglob("*.py"):
        module = "olafhe." + ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("olafhe"):
                found.append((module, node.module))
    return found


def test_imports_run_downward() -> None:
    upward = []
    for src, dst in _imports():
        a, b = _layer(src), _layer(dst)
        if a is None or b is None:
            continue
        src_top, dst_top = TOP[a[0]], TOP[b[0]]
        if src_top in PEERS and dst_top in PEERS and src_top != dst_top:
            upward.append((src, dst))
        elif b[0] > a[0] and not (src_top in PEERS and dst_top in PEERS):
            upward.append((src, dst))
        elif a[0] == b[0] == 0 and b[1] > a[1]:
            upward.append((src, dst))
    assert not upward, f"imports that run upward: {upward}"
