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

import builtins
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from olafhe.core.errors import ShapeError, UnsupportedLayerError
from olafhe.core.graph.ir import Graph, Node

SUPPORTED = (
    "Conv2d, BatchNorm1d/2d, Linear, ReLU, GELU, SiLU, AvgPool2d, AdaptiveAvgPool2d (exact), Flatten, "
    "Identity, Dropout, add, relu/gelu/silu, flatten/view/reshape to (B, -1), x[:, :, ::s, ::s], "
    "channel-only F.pad, avg_pool2d"
)

_BATCH = 2  # two images, so the batch dimension is distinguishable from a size-1 feature dimension


@dataclass
class _Ctx:
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
        node = Node(self.unique(name), op, tuple(inputs), _shape(self, fxnode), params)
        self.nodes.append(node)
        self.out[fxnode] = node.name
        return node.name


# ------------------------------------------------------------------------------------------------ helpers
def _describe(ctx: _Ctx, node: fx.Node) -> str:
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


def _unsupported(ctx: _Ctx, node: fx.Node, reason: str = "") -> UnsupportedLayerError:
    detail = f"{reason}; " if reason else ""
    return UnsupportedLayerError(
        f"unsupported layer {_layer_name(node)!r} ({_describe(ctx, node)}): {detail}olafhe supports {SUPPORTED}"
    )


def _shape(ctx: _Ctx, node: fx.Node) -> tuple[int, ...]:
    value = ctx.values[node]
    if value.dim() == 0 or value.shape[0] != _BATCH:
        raise _unsupported(ctx, node, f"it changes the batch dimension (output shape {tuple(value.shape)})")
    return tuple(int(s) for s in value.shape[1:])


def _is_tensor(ctx: _Ctx, arg: Any) -> bool:
    return isinstance(arg, fx.Node) and isinstance(ctx.values.get(arg), torch.Tensor)


def _const(ctx: _Ctx, node: fx.Node, arg: Any) -> Any:
    """Resolve an argument that must be a constant (ints, tuples, shape arithmetic) to its value."""
    if isinstance(arg, fx.Node):
        if _is_tensor(ctx, arg):
            raise _unsupported(ctx, node, f"a tensor ({arg.name}) is used where a constant is expected")
        return ctx.values[arg]
    if isinstance(arg, (tuple, list)):
        return type(arg)(_const(ctx, node, a) for a in arg)
    return arg


def _bind(ctx: _Ctx, node: fx.Node, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    """Map positional and keyword arguments (after the tensor input) to names, resolving constants."""
    if len(node.args) - 1 > len(names):
        raise _unsupported(ctx, node, "too many arguments")
    bound = dict(defaults)
    bound.update(zip(names, node.args[1:], strict=False))
    bound.update(node.kwargs)
    return {k: _const(ctx, node, v) for k, v in bound.items() if k != "input"}


def _tensor_arg(ctx: _Ctx, node: fx.Node, arg: Any) -> str:
    if not _is_tensor(ctx, arg) or arg not in ctx.out:
        raise _unsupported(ctx, node, f"expected a tensor input, got {arg!r}")
    return ctx.out[arg]


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return int(value[0]), int(value[0])
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``scale, shift`` of an eval-mode batch-norm, in float64."""
    mean, var = _np(bn.running_mean), _np(bn.running_var)
    gamma = _np(bn.weight) if bn.weight is not None else np.ones_like(mean)
    beta = _np(bn.bias) if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def _foldable_bn(ctx: _Ctx, node: fx.Node) -> tuple[fx.Node, nn.modules.batchnorm._BatchNorm] | None:
    """The batch-norm that is the only consumer of ``node`` (a conv/linear), if any."""
    if len(node.users) != 1:
        return None
    (user,) = node.users
    if user.op != "call_module" or user.args[:1] != (node,):
        return None
    bn = ctx.gm.get_submodule(str(user.target))
    if isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) and bn.running_mean is not None:
        return user, bn
    return None


def _fold(ctx: _Ctx, node: fx.Node, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found = _foldable_bn(ctx, node)
    if found is None:
        return weight, bias
    bn_node, bn = found
    scale, shift = _bn_scale_shift(bn)
    if len(scale) != weight.shape[0]:
        return weight, bias
    ctx.folded.add(bn_node)
    weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return weight, bias * scale + shift


def _flatten_like(ctx: _Ctx, node: fx.Node, src: Any) -> str:
    """A reshape that keeps the batch and flattens the rest is ``flatten``; anything else is not."""
    name = _tensor_arg(ctx, node, src)
    in_shape = tuple(ctx.values[src].shape[1:])
    out_shape = _shape(ctx, node)
    if out_shape == in_shape and len(in_shape) == 1:
        ctx.out[node] = name
        return name
    if out_shape != (math.prod(in_shape),):
        raise _unsupported(ctx, node, f"reshape {in_shape} -> {out_shape} is not a flatten to (B, -1)")
    label = str(node.target) if node.op == "call_module" else _scoped(node, "flatten")
    return ctx.emit(node, label, "flatten", [name])


def _scoped(node: fx.Node, op: str) -> str:
    """Name of a function/method node: the enclosing module's path plus the op."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        if path:
            return f"{path}.{op}"
    return op


# ------------------------------------------------------------------------------------------------ modules
def _conv(ctx: _Ctx, node: fx.Node, m: nn.Conv2d) -> str:
    src = _tensor_arg(ctx, node, node.args[0])
    if m.padding_mode != "zeros" or any(d != 1 for d in m.dilation):
        raise _unsupported(ctx, node, f"padding_mode={m.padding_mode!r}, dilation={m.dilation} (need zeros, 1)")
    padding = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif all(s == 1 for s in m.stride) and all(k % 2 == 1 for k in m.kernel_size):
            padding = tuple(k // 2 for k in m.kernel_size)
        else:
            raise _unsupported(ctx, node, "padding='same' needs stride 1 and odd kernels")
    weight = _np(m.weight)
    bias = _np(m.bias) if m.bias is not None else np.zeros(weight.shape[0])
    weight, bias = _fold(ctx, node, weight, bias)
    return ctx.emit(node, str(node.target), "conv2d", [src], weight=weight, bias=bias,
                    stride=_pair(m.stride), padding=_pair(padding), groups=int(m.groups))


def _linear(ctx: _Ctx, node: fx.Node, m: nn.Linear) -> str:
    src = _tensor_arg(ctx, node, node.args[0])
    if ctx.values[node.args[0]].dim() != 2:
        raise _unsupported(ctx, node, "Linear needs a flattened (B, features) input; flatten first")
    weight = _np(m.weight)
    bias = _np(m.bias) if m.bias is not None else np.zeros(weight.shape[0])
    weight, bias = _fold(ctx, node, weight, bias)
    return ctx.emit(node, str(node.target), "dense", [src], weight=weight, bias=bias)


def _batchnorm(ctx: _Ctx, node: fx.Node, m: nn.modules.batchnorm._BatchNorm) -> str:
    src = _tensor_arg(ctx, node, node.args[0])
    if node in ctx.folded:
        ctx.out[node] = src
        return src
    if m.running_mean is None or m.running_var is None:
        raise _unsupported(ctx, node, "batch-norm without running statistics cannot run at inference")
    scale, shift = _bn_scale_shift(m)
    return ctx.emit(node, str(node.target), "affine", [src], scale=scale, shift=shift)


def _activation(ctx: _Ctx, node: fx.Node, kind: str, name: str, src: Any) -> str:
    return ctx.emit(node, name, "activation", [_tensor_arg(ctx, node, src)], kind=kind)


def _avgpool(ctx: _Ctx, node: fx.Node, src: Any, kernel: Any, stride: Any, padding: Any,
             divisor_override: Any, name: str) -> str:
    inp = _tensor_arg(ctx, node, src)
    if ctx.values[src].dim() != 4:
        raise _unsupported(ctx, node, "average pooling needs a (B, C, H, W) input")
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride if stride not in (None, (), []) else kernel)
    if _pair(padding) != (0, 0) or divisor_override is not None:
        raise _unsupported(ctx, node, "average pooling with padding or a divisor override")
    c, h, w = ctx.values[src].shape[1:]
    expected = (int(c), (h - kh) // sh + 1, (w - kw) // sw + 1)
    if _shape(ctx, node) != expected:
        raise _unsupported(ctx, node, "average pooling with ceil_mode and partial windows")
    return ctx.emit(node, name, "avgpool2d", [inp], kernel=(kh, kw), stride=(sh, sw))


def _adaptive(ctx: _Ctx, node: fx.Node, src: Any, output_size: Any, name: str) -> str:
    if not _is_tensor(ctx, src) or ctx.values[src].dim() != 4:
        raise _unsupported(ctx, node, "adaptive average pooling needs a (B, C, H, W) input")
    _, h, w = (int(s) for s in ctx.values[src].shape[1:])
    oh, ow = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    oh, ow = oh or h, ow or w
    if h % oh or w % ow:
        raise _unsupported(ctx, node, f"adaptive pooling {h}x{w} -> {oh}x{ow} is not an exact average pool")
    if (oh, ow) == (h, w):
        ctx.out[node] = _tensor_arg(ctx, node, src)
        return ctx.out[node]
    return _avgpool(ctx, node, src, (h // oh, w // ow), (h // oh, w // ow), 0, None, name)


_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def _call_module(ctx: _Ctx, node: fx.Node) -> str:
    m = ctx.gm.get_submodule(str(node.target))
    path = str(node.target)
    if isinstance(m, nn.Conv2d):
        return _conv(ctx, node, m)
    if isinstance(m, nn.Linear):
        return _linear(ctx, node, m)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _batchnorm(ctx, node, m)
    if isinstance(m, nn.ReLU):
        return _activation(ctx, node, "relu", path, node.args[0])
    if isinstance(m, nn.SiLU):
        return _activation(ctx, node, "silu", path, node.args[0])
    if isinstance(m, nn.GELU):
        if m.approximate != "none":
            raise _unsupported(ctx, node, f"GELU(approximate={m.approximate!r}); use the exact GELU")
        return _activation(ctx, node, "gelu", path, node.args[0])
    if isinstance(m, nn.AvgPool2d):
        return _avgpool(ctx, node, node.args[0], m.kernel_size, m.stride, m.padding, m.divisor_override, path)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _adaptive(ctx, node, node.args[0], m.output_size, path)
    if isinstance(m, nn.Flatten):
        return _flatten_like(ctx, node, node.args[0])
    if isinstance(m, _IDENTITY_MODULES):
        ctx.out[node] = _tensor_arg(ctx, node, node.args[0])
        return ctx.out[node]
    raise _unsupported(ctx, node)


# ------------------------------------------------------------------------------------------------ functions
def _add(ctx: _Ctx, node: fx.Node) -> str:
    a = node.args[0]
    b = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
    alpha = _const(ctx, node, node.args[2] if len(node.args) > 2 else node.kwargs.get("alpha", 1))
    if alpha != 1:
        raise _unsupported(ctx, node, "add with alpha != 1")
    if not (_is_tensor(ctx, a) and _is_tensor(ctx, b)):
        raise _unsupported(ctx, node, "addition of a constant (only tensor + tensor residuals)")
    if ctx.values[a].shape != ctx.values[b].shape:
        raise _unsupported(ctx, node, f"broadcasting add {tuple(ctx.values[a].shape)} + {tuple(ctx.values[b].shape)}")
    return ctx.emit(node, _scoped(node, "add"), "add", [_tensor_arg(ctx, node, a), _tensor_arg(ctx, node, b)])


def _getitem(ctx: _Ctx, node: fx.Node) -> str:
    src, index = node.args
    index = _const(ctx, node, index)
    index = index if isinstance(index, tuple) else (index,)
    full = slice(None, None, None)
    if len(index) == 3 and index[0] is Ellipsis and ctx.values[src].dim() == 4:
        index = (full, full, *index[1:])
    ok = len(index) == 4 and index[0] == full and index[1] == full
    steps = []
    for s in index[2:] if ok else ():
        ok = ok and isinstance(s, slice) and s.start in (None, 0) and s.stop is None and (s.step or 1) >= 1
        steps.append(int(s.step or 1) if isinstance(s, slice) else 0)
    if not ok:
        raise _unsupported(ctx, node, f"indexing {index!r} (only x[:, :, ::s, ::s] is supported)")
    return ctx.emit(node, _scoped(node, "subsample"), "subsample", [_tensor_arg(ctx, node, src)],
                    stride=(steps[0], steps[1]))


def _pad(ctx: _Ctx, node: fx.Node) -> str:
    a = _bind(ctx, node, ("pad", "mode", "value"), {"mode": "constant", "value": None})
    pad = tuple(int(p) for p in a["pad"])
    if len(pad) == 8 and pad[6:] == (0, 0):
        pad = pad[:6]
    if a["mode"] != "constant" or a["value"] not in (None, 0, 0.0) or len(pad) != 6 or any(pad[:4]):
        raise _unsupported(ctx, node, f"F.pad{pad} mode={a['mode']!r} value={a['value']!r} "
                                      "(only zero padding of channels is supported)")
    if ctx.values[node.args[0]].dim() != 4 or min(pad[4:]) < 0:
        raise _unsupported(ctx, node, "channel padding needs an (B, C, H, W) input and non-negative amounts")
    return ctx.emit(node, _scoped(node, "pad_channels"), "pad_channels", [_tensor_arg(ctx, node, node.args[0])],
                    before=pad[4], after=pad[5])


def _fn_avgpool(ctx: _Ctx, node: fx.Node) -> str:
    a = _bind(ctx, node, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                          "divisor_override"), {"stride": None, "padding": 0, "divisor_override": None})
    return _avgpool(ctx, node, node.args[0], a["kernel_size"], a["stride"], a["padding"],
                    a["divisor_override"], _scoped(node, "avgpool2d"))


def _fn_adaptive(ctx: _Ctx, node: fx.Node) -> str:
    a = _bind(ctx, node, ("output_size",), {})
    return _adaptive(ctx, node, node.args[0], a["output_size"], _scoped(node, "avgpool2d"))


def _fn_activation(kind: str) -> Callable[[_Ctx, fx.Node], str]:
    def handler(ctx: _Ctx, node: fx.Node) -> str:
        if kind == "gelu":
            a = _bind(ctx, node, ("approximate",), {"approximate": "none"})
            if a["approximate"] != "none":
                raise _unsupported(ctx, node, "tanh-approximated GELU; use the exact GELU")
        return _activation(ctx, node, kind, _scoped(node, kind), node.args[0])

    return handler


def _fn_dropout(ctx: _Ctx, node: fx.Node) -> str:
    a = _bind(ctx, node, ("p", "training", "inplace"), {"training": True})
    if a["training"]:
        raise _unsupported(ctx, node, "dropout with training=True")
    ctx.out[node] = _tensor_arg(ctx, node, node.args[0])
    return ctx.out[node]


_FUNCTIONS: dict[Any, Callable[[_Ctx, fx.Node], str]] = {
    operator.add: _add,
    torch.add: _add,
    operator.getitem: _getitem,
    F.pad: _pad,
    F.avg_pool2d: _fn_avgpool,
    F.adaptive_avg_pool2d: _fn_adaptive,
    F.relu: _fn_activation("relu"),
    torch.relu: _fn_activation("relu"),
    F.gelu: _fn_activation("gelu"),
    F.silu: _fn_activation("silu"),
    torch.flatten: lambda ctx, node: _flatten_like(ctx, node, node.args[0]),
    F.dropout: _fn_dropout,
}

_METHODS: dict[str, Callable[[_Ctx, fx.Node], str]] = {
    "view": lambda ctx, node: _flatten_like(ctx, node, node.args[0]),
    "reshape": lambda ctx, node: _flatten_like(ctx, node, node.args[0]),
    "flatten": lambda ctx, node: _flatten_like(ctx, node, node.args[0]),
    "add": _add,
    "relu": _fn_activation("relu"),
}

# Non-tensor nodes that are pure shape arithmetic are constants for a fixed input shape.
_SHAPE_METHODS = ("size", "dim")
_SHAPE_ATTRS = ("shape", "ndim")


def _is_shape_constant(ctx: _Ctx, node: fx.Node) -> bool:
    """True for ``x.size()``, ``x.shape``, ``x.dim()`` and any function of such constants only."""
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target is builtins.getattr:
        return node.args[1] in _SHAPE_ATTRS
    if node.op == "call_function":
        return not any(_is_tensor(ctx, a) for a in node.all_input_nodes)
    return False


# ------------------------------------------------------------------------------------------------ driver
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
    x = torch.randn((_BATCH, *input_shape), generator=gen).to(dtype)
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
    ctx = _Ctx(gm, values)
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
            if not _is_tensor(ctx, result):
                raise UnsupportedLayerError(f"model {name!r} must return a single tensor, got {result!r}")
            output = _tensor_arg(ctx, node, result)
        elif not isinstance(values.get(node), torch.Tensor):
            if not _is_shape_constant(ctx, node):
                reason = "" if node.op == "call_module" else "a non-tensor value computed from tensor data"
                raise _unsupported(ctx, node, reason)
        elif node.op == "call_module":
            _call_module(ctx, node)
        elif node.op == "call_function" and node.target in _FUNCTIONS:
            _FUNCTIONS[node.target](ctx, node)
        elif node.op == "call_method" and node.target in _METHODS:
            _METHODS[str(node.target)](ctx, node)
        else:
            raise _unsupported(ctx, node)
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
