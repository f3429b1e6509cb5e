"""The torch.fx importer's node handlers: one per supported module, function and tensor method, and
the dispatch tables :data:`FUNCTIONS` and :data:`METHODS` (modules dispatch in :func:`call_module`).

Batch-norms that only follow a conv/linear are folded into its weights; reshapes are accepted only as
flattens to (B, -1); average pools only without padding and partial windows.
"""

from __future__ import annotations

import builtins
import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from olafhe.core.graph.fx_context import (
    ImportContext,
    bind,
    constant,
    is_tensor,
    node_shape,
    pair,
    scoped,
    tensor_input,
    to_numpy,
    unsupported,
)


# ------------------------------------------------------------------------------------------------ folding, flatten
def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``scale, shift`` of an eval-mode batch-norm, in float64."""
    mean, var = to_numpy(bn.running_mean), to_numpy(bn.running_var)
    gamma = to_numpy(bn.weight) if bn.weight is not None else np.ones_like(mean)
    beta = to_numpy(bn.bias) if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def _foldable_bn(ctx: ImportContext, node: fx.Node) -> tuple[fx.Node, nn.modules.batchnorm._BatchNorm] | None:
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


def _fold(ctx: ImportContext, node: fx.Node, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _flatten_like(ctx: ImportContext, node: fx.Node, src: Any) -> str:
    """A reshape that keeps the batch and flattens the rest is ``flatten``; anything else is not."""
    name = tensor_input(ctx, node, src)
    in_shape = tuple(ctx.values[src].shape[1:])
    out_shape = node_shape(ctx, node)
    if out_shape == in_shape and len(in_shape) == 1:
        ctx.out[node] = name
        return name
    if out_shape != (math.prod(in_shape),):
        raise unsupported(ctx, node, f"reshape {in_shape} -> {out_shape} is not a flatten to (B, -1)")
    label = str(node.target) if node.op == "call_module" else scoped(node, "flatten")
    return ctx.emit(node, label, "flatten", [name])


# ------------------------------------------------------------------------------------------------ modules
def _conv(ctx: ImportContext, node: fx.Node, m: nn.Conv2d) -> str:
    src = tensor_input(ctx, node, node.args[0])
    if m.padding_mode != "zeros" or any(d != 1 for d in m.dilation):
        raise unsupported(ctx, node, f"padding_mode={m.padding_mode!r}, dilation={m.dilation} (need zeros, 1)")
    padding = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif all(s == 1 for s in m.stride) and all(k % 2 == 1 for k in m.kernel_size):
            padding = tuple(k // 2 for k in m.kernel_size)
        else:
            raise unsupported(ctx, node, "padding='same' needs stride 1 and odd kernels")
    weight = to_numpy(m.weight)
    bias = to_numpy(m.bias) if m.bias is not None else np.zeros(weight.shape[0])
    weight, bias = _fold(ctx, node, weight, bias)
    return ctx.emit(node, str(node.target), "conv2d", [src], weight=weight, bias=bias,
                    stride=pair(m.stride), padding=pair(padding), groups=int(m.groups))


def _linear(ctx: ImportContext, node: fx.Node, m: nn.Linear) -> str:
    src = tensor_input(ctx, node, node.args[0])
    if ctx.values[node.args[0]].dim() != 2:
        raise unsupported(ctx, node, "Linear needs a flattened (B, features) input; flatten first")
    weight = to_numpy(m.weight)
    bias = to_numpy(m.bias) if m.bias is not None else np.zeros(weight.shape[0])
    weight, bias = _fold(ctx, node, weight, bias)
    return ctx.emit(node, str(node.target), "dense", [src], weight=weight, bias=bias)


def _batchnorm(ctx: ImportContext, node: fx.Node, m: nn.modules.batchnorm._BatchNorm) -> str:
    src = tensor_input(ctx, node, node.args[0])
    if node in ctx.folded:
        ctx.out[node] = src
        return src
    if m.running_mean is None or m.running_var is None:
        raise unsupported(ctx, node, "batch-norm without running statistics cannot run at inference")
    scale, shift = _bn_scale_shift(m)
    return ctx.emit(node, str(node.target), "affine", [src], scale=scale, shift=shift)


def _activation(ctx: ImportContext, node: fx.Node, kind: str, name: str, src: Any) -> str:
    return ctx.emit(node, name, "activation", [tensor_input(ctx, node, src)], kind=kind)


def _avgpool(ctx: ImportContext, node: fx.Node, src: Any, kernel: Any, stride: Any, padding: Any,
             divisor_override: Any, name: str) -> str:
    inp = tensor_input(ctx, node, src)
    if ctx.values[src].dim() != 4:
        raise unsupported(ctx, node, "average pooling needs a (B, C, H, W) input")
    kh, kw = pair(kernel)
    sh, sw = pair(stride if stride not in (None, (), []) else kernel)
    if pair(padding) != (0, 0) or divisor_override is not None:
        raise unsupported(ctx, node, "average pooling with padding or a divisor override")
    c, h, w = ctx.values[src].shape[1:]
    expected = (int(c), (h - kh) // sh + 1, (w - kw) // sw + 1)
    if node_shape(ctx, node) != expected:
        raise unsupported(ctx, node, "average pooling with ceil_mode and partial windows")
    return ctx.emit(node, name, "avgpool2d", [inp], kernel=(kh, kw), stride=(sh, sw))


def _adaptive(ctx: ImportContext, node: fx.Node, src: Any, output_size: Any, name: str) -> str:
    if not is_tensor(ctx, src) or ctx.values[src].dim() != 4:
        raise unsupported(ctx, node, "adaptive average pooling needs a (B, C, H, W) input")
    _, h, w = (int(s) for s in ctx.values[src].shape[1:])
    oh, ow = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    oh, ow = oh or h, ow or w
    if h % oh or w % ow:
        raise unsupported(ctx, node, f"adaptive pooling {h}x{w} -> {oh}x{ow} is not an exact average pool")
    if (oh, ow) == (h, w):
        ctx.out[node] = tensor_input(ctx, node, src)
        return ctx.out[node]
    return _avgpool(ctx, node, src, (h // oh, w // ow), (h // oh, w // ow), 0, None, name)


_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def call_module(ctx: ImportContext, node: fx.Node) -> str:
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
            raise unsupported(ctx, node, f"GELU(approximate={m.approximate!r}); use the exact GELU")
        return _activation(ctx, node, "gelu", path, node.args[0])
    if isinstance(m, nn.AvgPool2d):
        return _avgpool(ctx, node, node.args[0], m.kernel_size, m.stride, m.padding, m.divisor_override, path)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _adaptive(ctx, node, node.args[0], m.output_size, path)
    if isinstance(m, nn.Flatten):
        return _flatten_like(ctx, node, node.args[0])
    if isinstance(m, _IDENTITY_MODULES):
        ctx.out[node] = tensor_input(ctx, node, node.args[0])
        return ctx.out[node]
    raise unsupported(ctx, node)


# ------------------------------------------------------------------------------------------------ functions
def _add(ctx: ImportContext, node: fx.Node) -> str:
    a = node.args[0]
    b = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
    alpha = constant(ctx, node, node.args[2] if len(node.args) > 2 else node.kwargs.get("alpha", 1))
    if alpha != 1:
        raise unsupported(ctx, node, "add with alpha != 1")
    if not (is_tensor(ctx, a) and is_tensor(ctx, b)):
        raise unsupported(ctx, node, "addition of a constant (only tensor + tensor residuals)")
    if ctx.values[a].shape != ctx.values[b].shape:
        raise unsupported(ctx, node, f"broadcasting add {tuple(ctx.values[a].shape)} + {tuple(ctx.values[b].shape)}")
    return ctx.emit(node, scoped(node, "add"), "add", [tensor_input(ctx, node, a), tensor_input(ctx, node, b)])


def _getitem(ctx: ImportContext, node: fx.Node) -> str:
    src, index = node.args
    index = constant(ctx, node, index)
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
        raise unsupported(ctx, node, f"indexing {index!r} (only x[:, :, ::s, ::s] is supported)")
    return ctx.emit(node, scoped(node, "subsample"), "subsample", [tensor_input(ctx, node, src)],
                    stride=(steps[0], steps[1]))


def _pad(ctx: ImportContext, node: fx.Node) -> str:
    a = bind(ctx, node, ("pad", "mode", "value"), {"mode": "constant", "value": None})
    pad = tuple(int(p) for p in a["pad"])
    if len(pad) == 8 and pad[6:] == (0, 0):
        pad = pad[:6]
    if a["mode"] != "constant" or a["value"] not in (None, 0, 0.0) or len(pad) != 6 or any(pad[:4]):
        raise unsupported(ctx, node, f"F.pad{pad} mode={a['mode']!r} value={a['value']!r} "
                                      "(only zero padding of channels is supported)")
    if ctx.values[node.args[0]].dim() != 4 or min(pad[4:]) < 0:
        raise unsupported(ctx, node, "channel padding needs an (B, C, H, W) input and non-negative amounts")
    return ctx.emit(node, scoped(node, "pad_channels"), "pad_channels", [tensor_input(ctx, node, node.args[0])],
                    before=pad[4], after=pad[5])


def _fn_avgpool(ctx: ImportContext, node: fx.Node) -> str:
    a = bind(ctx, node, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                          "divisor_override"), {"stride": None, "padding": 0, "divisor_override": None})
    return _avgpool(ctx, node, node.args[0], a["kernel_size"], a["stride"], a["padding"],
                    a["divisor_override"], scoped(node, "avgpool2d"))


def _fn_adaptive(ctx: ImportContext, node: fx.Node) -> str:
    a = bind(ctx, node, ("output_size",), {})
    return _adaptive(ctx, node, node.args[0], a["output_size"], scoped(node, "avgpool2d"))


def _fn_activation(kind: str) -> Callable[[ImportContext, fx.Node], str]:
    def handler(ctx: ImportContext, node: fx.Node) -> str:
        if kind == "gelu":
            a = bind(ctx, node, ("approximate",), {"approximate": "none"})
            if a["approximate"] != "none":
                raise unsupported(ctx, node, "tanh-approximated GELU; use the exact GELU")
        return _activation(ctx, node, kind, scoped(node, kind), node.args[0])

    return handler


def _fn_dropout(ctx: ImportContext, node: fx.Node) -> str:
    a = bind(ctx, node, ("p", "training", "inplace"), {"training": True})
    if a["training"]:
        raise unsupported(ctx, node, "dropout with training=True")
    ctx.out[node] = tensor_input(ctx, node, node.args[0])
    return ctx.out[node]


FUNCTIONS: dict[Any, Callable[[ImportContext, fx.Node], str]] = {
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

METHODS: dict[str, Callable[[ImportContext, fx.Node], str]] = {
    "view": lambda ctx, node: _flatten_like(ctx, node, node.args[0]),
    "reshape": lambda ctx, node: _flatten_like(ctx, node, node.args[0]),
    "flatten": lambda ctx, node: _flatten_like(ctx, node, node.args[0]),
    "add": _add,
    "relu": _fn_activation("relu"),
}

# Non-tensor nodes that are pure shape arithmetic are constants for a fixed input shape.
_SHAPE_METHODS = ("size", "dim")
_SHAPE_ATTRS = ("shape", "ndim")


def is_shape_constant(ctx: ImportContext, node: fx.Node) -> bool:
    """True for ``x.size()``, ``x.shape``, ``x.dim()`` and any function of such constants only."""
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target is builtins.getattr:
        return node.args[1] in _SHAPE_ATTRS
    if node.op == "call_function":
        return not any(is_tensor(ctx, a) for a in node.all_input_nodes)
    return False
