"""Import a torch model into an olafhe :class:`~olafhe.core.graph.ir.Graph` via torch.fx.

The model is traced with ``torch.fx.symbolic_trace`` and run once on a seeded random batch of two
images, recording every node's value. The recorded values give each tensor's shape (the batch
dimension is dropped) and resolve shape arithmetic such as ``out.size()[3]`` to constants. Each fx
node is then mapped to a graph node by what it computes, not by where it sits in a particular
architecture, so any model built from the supported operations imports:

* modules: ``Conv2d`` (zero padding, any groups), ``BatchNorm1d/2d`` (eval statistics; folded into the
  preceding conv/linear when that layer feeds only the batch-norm, else an ``affine`` node), ``Linear``,
  ``ReLU``/``GELU``/``SiLU``, ``AvgPool2d`` (no padding), ``AdaptiveAvgPool2d`` (when it is an exact
  average pool), ``Flatten``, ``Identity`` and ``Dropout`` (identities at inference);
* functions: ``+``/``torch.add``, ``F.relu``/``torch.relu``/``F.gelu``/``F.silu``, ``torch.flatten``,
  ``x[:, :, ::s, ::s]`` (``subsample``), ``F.pad`` on channels only (``pad_channels``),
  ``F.avg_pool2d``, ``F.adaptive_avg_pool2d``;
* tensor methods: ``view``/``reshape``/``flatten`` to (B, -1), ``size``/``dim`` (constants).

Node names: call_module nodes use the module path (``layer1.0.relu1``); function and method nodes use
the enclosing module's path plus the graph op (``layer2.0.shortcut.subsample``, ``layer1.0.add``). A
repeated name gets a ``_1``, ``_2`` ... suffix in graph order, so names are unique and stable.
Anything else raises :class:`UnsupportedLayerError` naming the fx node and its target.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn

from olafhe.core.errors import ShapeError, UnsupportedLayerError
from olafhe.core.graph.fx_context import BATCH, ImportContext, is_tensor, tensor_input, unsupported
from olafhe.core.graph.fx_handlers import FUNCTIONS, METHODS, call_module, is_shape_constant
from olafhe.core.graph.ir import Graph, Node


class _Recorder(fx.Interpreter):
    """Runs the traced module once and keeps every node's value."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        self.values[n] = value
        return value


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[fx.GraphModule, dict[fx.Node, Any]]:
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # tracing failures come in many types (TraceError, TypeError, ...)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UnsupportedLayerError(
            f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: {first}); "
            "data-dependent control flow is not supported"
        ) from exc
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((BATCH, *input_shape), generator=gen).to(dtype)
    recorder = _Recorder(gm)
    try:
        with torch.no_grad():
            recorder.run(x)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ShapeError(
            f"model {type(model).__name__} fails on input shape (B, {', '.join(map(str, input_shape))}): "
            f"{type(exc).__name__}: {first}"
        ) from exc
    return gm, recorder.values


def import_model(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32), name: str = "model") -> Graph:
    """Trace ``model`` (evaluated with inference semantics) into a validated :class:`Graph`.

    Batch-norm uses its running statistics regardless of the model's mode; the model's train/eval
    flags are restored afterwards. Parameters are copied as float64 numpy arrays.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or any(s <= 0 for s in input_shape):
        raise ShapeError(f"input_shape must be positive sizes without the batch, e.g. (3, 32, 32), got {input_shape}")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        gm, values = _trace(model, input_shape)
        return _build(gm, values, input_shape, name)
    finally:
        for m, training in modes.items():
            m.training = training


def _build(gm: fx.GraphModule, values: dict[fx.Node, Any], input_shape: tuple[int, ...], name: str) -> Graph:
    ctx = ImportContext(gm, values)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedLayerError(f"model {name!r} takes {len(placeholders)} inputs; olafhe needs exactly one")
    output = ""
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            ctx.used.add("input")
            ctx.nodes.append(Node("input", "input", (), input_shape))
            ctx.out[node] = "input"
        elif node.op == "output":
            result = node.args[0]
            if not is_tensor(ctx, result):
                raise UnsupportedLayerError(f"model {name!r} must return a single tensor, got {result!r}")
            output = tensor_input(ctx, node, result)
        elif not isinstance(values.get(node), torch.Tensor):
            if not is_shape_constant(ctx, node):
                reason = "" if node.op == "call_module" else "a non-tensor value computed from tensor data"
                raise unsupported(ctx, node, reason)
        elif node.op == "call_module":
            call_module(ctx, node)
        elif node.op == "call_function" and node.target in FUNCTIONS:
            FUNCTIONS[node.target](ctx, node)
        elif node.op == "call_method" and node.target in METHODS:
            METHODS[str(node.target)](ctx, node)
        else:
            raise unsupported(ctx, node)
    nodes = _prune(ctx.nodes, output)
    try:
        return Graph(name=name, nodes=nodes, output=output)
    except ValueError as exc:  # pragma: no cover - the importer emits nodes in topological order
        raise UnsupportedLayerError(f"imported graph of {name!r} is invalid: {exc}") from exc


def _prune(nodes: list[Node], output: str) -> list[Node]:
    """Drop nodes that do not contribute to the output (dead code in the traced forward)."""
    live = {output}
    for node in reversed(nodes):
        if node.name in live:
            live.update(node.inputs)
    return [n for n in nodes if n.name in live or n.op == "input"]
