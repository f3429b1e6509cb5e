"""The state and argument helpers shared by the torch.fx importer's node handlers.

:class:`ImportContext` holds the traced module, every node's recorded value and the graph nodes emitted
so far; the helpers resolve fx arguments (tensor inputs, constants, keyword binding) and build the
:class:`UnsupportedLayerError` that names an fx node, its target and what olafhe supports.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from olafhe.core.errors import UnsupportedLayerError
from olafhe.core.graph.ir import Node

SUPPORTED = (
    "Conv2d, BatchNorm1d/2d, Linear, ReLU, GELU, SiLU, AvgPool2d, AdaptiveAvgPool2d (exact), Flatten, "
    "Identity, Dropout, add, relu/gelu/silu, flatten/view/reshape to (B, -1), x[:, :, ::s, ::s], "
    "channel-only F.pad, avg_pool2d"
)

BATCH = 2  # two images, so the batch dimension is distinguishable from a size-1 feature dimension


@dataclass
class ImportContext:
    """One import in progress: the traced module, recorded values and the graph nodes emitted so far."""

    gm: fx.GraphModule
    values: dict[fx.Node, Any]
    nodes: list[Node] = field(default_factory=list)
    out: dict[fx.Node, str] = field(default_factory=dict)      # fx node -> graph node name
    folded: set[fx.Node] = field(default_factory=set)          # batch-norms folded into their producer
    used: set[str] = field(default_factory=set)

    def unique(self, name: str) -> str:
        candidate, k = name, 0
        while candidate in self.used:
            k += 1
            candidate = f"{name}_{k}"
        self.used.add(candidate)
        return candidate

    def emit(self, fxnode: fx.Node, name: str, op: str, inputs: list[str], **params: Any) -> str:
        node = Node(self.unique(name), op, tuple(inputs), node_shape(self, fxnode), params)
        self.nodes.append(node)
        self.out[fxnode] = node.name
        return node.name


def _describe(ctx: ImportContext, node: fx.Node) -> str:
    """Human-readable target of an fx node, e.g. ``torch.nn.MaxPool2d`` or ``torch.sin``."""
    if node.op == "call_module":
        cls = type(ctx.gm.get_submodule(str(node.target)))
        if getattr(nn, cls.__name__, None) is cls:
            return f"torch.nn.{cls.__name__}"
        return f"{cls.__module__}.{cls.__qualname__}"
    if node.op == "call_function":
        fn = node.target
        name = getattr(fn, "__name__", repr(fn))
        for prefix, namespace in (("torch", torch), ("torch.nn.functional", F), ("operator", operator)):
            if getattr(namespace, name, None) is fn:
                return f"{prefix}.{name}"
        return f"{getattr(fn, '__module__', None) or '?'}.{getattr(fn, '__qualname__', name)}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return f"{node.op} {node.target}"


def _layer_name(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    return node.name


def unsupported(ctx: ImportContext, node: fx.Node, reason: str = "") -> UnsupportedLayerError:
    detail = f"{reason}; " if reason else ""
    return UnsupportedLayerError(
        f"unsupported layer {_layer_name(node)!r} ({_describe(ctx, node)}): {detail}olafhe supports {SUPPORTED}"
    )


def node_shape(ctx: ImportContext, node: fx.Node) -> tuple[int, ...]:
    value = ctx.values[node]
    if value.dim() == 0 or value.shape[0] != BATCH:
        raise unsupported(ctx, node, f"it changes the batch dimension (output shape {tuple(value.shape)})")
    return tuple(int(s) for s in value.shape[1:])


def is_tensor(ctx: ImportContext, arg: Any) -> bool:
    return isinstance(arg, fx.Node) and isinstance(ctx.values.get(arg), torch.Tensor)


def constant(ctx: ImportContext, node: fx.Node, arg: Any) -> Any:
    """Resolve an argument that must be a constant (ints, tuples, shape arithmetic) to its value."""
    if isinstance(arg, fx.Node):
        if is_tensor(ctx, arg):
            raise unsupported(ctx, node, f"a tensor ({arg.name}) is used where a constant is expected")
        return ctx.values[arg]
    if isinstance(arg, (tuple, list)):
        return type(arg)(constant(ctx, node, a) for a in arg)
    return arg


def bind(ctx: ImportContext, node: fx.Node, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    """Map positional and keyword arguments (after the tensor input) to names, resolving constants."""
    if len(node.args) - 1 > len(names):
        raise unsupported(ctx, node, "too many arguments")
    bound = dict(defaults)
    bound.update(zip(names, node.args[1:], strict=False))
    bound.update(node.kwargs)
    return {k: constant(ctx, node, v) for k, v in bound.items() if k != "input"}


def tensor_input(ctx: ImportContext, node: fx.Node, arg: Any) -> str:
    if not is_tensor(ctx, arg) or arg not in ctx.out:
        raise unsupported(ctx, node, f"expected a tensor input, got {arg!r}")
    return ctx.out[arg]


def pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return int(value[0]), int(value[0])
        return int(value[0]), int(value[1])
    return int(value), int(value)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


def scoped(node: fx.Node, op: str) -> str:
    """Name of a function/method node: the enclosing module's path plus the op."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        if path:
            return f"{path}.{op}"
    return op
