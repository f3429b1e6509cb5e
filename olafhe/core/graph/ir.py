"""The model graph: what the encrypted engine and the simulator evaluate.

A :class:`Graph` is a topologically ordered list of :class:`Node` s on single-image tensors
(shapes exclude the batch dimension). Batch-norm is already folded into the preceding convolution or
dense layer by the importer (:mod:`olafhe.core.graph.fx_import`). Node kinds:

=============== ============================================== ==========================================
op              params                                          meaning
=============== ============================================== ==========================================
``input``       --                                              the image, shape (C, H, W)
``conv2d``      weight (Co,Ci,kh,kw), bias (Co,), stride,       2-D convolution (+ folded BN), linear
                padding, groups
``dense``       weight (out, in), bias (out,)                   fully connected, linear
``affine``      scale (C,), shift (C,)                          per-channel affine (a lone BN), linear
``avgpool2d``   kernel (kh, kw), stride (sh, sw)                average pooling (no padding), linear
``subsample``   stride (sh, sw)                                 ``x[:, ::sh, ::sw]``, linear
``pad_channels`` before, after                                  zero channels before/after, linear
``flatten``     --                                              (C, H, W) -> (C*H*W,), linear
``add``         --                                              residual addition of two inputs
``activation``  kind ("relu", "gelu", "silu")                   the non-linear layers we approximate
=============== ============================================== ==========================================

Every linear node also has a sparse-matrix form (:func:`linear_operator`) on flattened row-major
tensors, which the encrypted engine turns into slot-vector diagonals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from olafhe.core.errors import ShapeError

LINEAR_OPS = ("conv2d", "dense", "affine", "avgpool2d", "subsample", "pad_channels", "flatten")
OPS = ("input", "add", "activation", *LINEAR_OPS)

TorchFn = Callable[[torch.Tensor], torch.Tensor]

_EXACT: dict[str, TorchFn] = {"relu": torch.relu, "gelu": F.gelu, "silu": F.silu}


@dataclass
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    params: dict = field(default_factory=dict)

    @property
    def is_linear(self) -> bool:
        return self.op in LINEAR_OPS


@dataclass
class Graph:
    name: str
    nodes: list[Node]
    output: str

    def __post_init__(self) -> None:
        self._by_name = {n.name: n for n in self.nodes}
        if len(self._by_name) != len(self.nodes):
            raise ValueError("graph node names must be unique")
        seen: set[str] = set()
        for node in self.nodes:
            if node.op not in OPS:
                raise ValueError(f"node {node.name!r} has unknown op {node.op!r}")
            for inp in node.inputs:
                if inp not in seen:
                    raise ValueError(f"node {node.name!r} uses {inp!r} before it is defined")
            seen.add(node.name)

    # ----------------------------------------------------------------- structure
    def __getitem__(self, name: str) -> Node:
        return self._by_name[name]

    @property
    def input(self) -> Node:
        return self.nodes[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.nodes[0].shape

    def activations(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "activation"]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    # ----------------------------------------------------------------- plaintext evaluation
    def forward(
        self,
        x: torch.Tensor,
        activations: dict[str, TorchFn] | None = None,
        hook: Callable[[str, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Evaluate a batch ``x`` of shape (B, *input_shape).

        ``activations`` replaces activation layers by name (e.g. with polynomial approximations);
        ``hook(name, input)`` sees every activation's input (calibration).
        """
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ShapeError(
                f"graph {self.name!r} expects input shape (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        values: dict[str, torch.Tensor] = {}
        remaining = {n.name: len(self.consumers(n.name)) for n in self.nodes}
        for node in self.nodes:
            args = [values[i] for i in node.inputs]
            if node.op == "input":
                out = x
            elif node.op == "activation":
                if hook is not None:
                    hook(node.name, args[0])
                fn = (activations or {}).get(node.name) or _EXACT[node.params.get("kind", "relu")]
                out = fn(args[0])
            else:
                out = apply_torch(node, args)
            values[node.name] = out
            for i in node.inputs:  # free intermediate tensors early: batches of CIFAR are large
                remaining[i] -= 1
                if remaining[i] == 0 and i != self.output:
                    del values[i]
        return values[self.output]

    def forward_batches(
        self,
        x: torch.Tensor,
        batch_size: int,
        activations: dict[str, TorchFn] | None = None,
        progress: str | None = None,
    ) -> np.ndarray:
        """:meth:`forward` on ``x`` in batches of ``batch_size`` without autograd, as one numpy array.

        ``activations`` as in :meth:`forward`; ``progress`` labels a tqdm bar over the batches (None: no
        bar). The result keeps :meth:`forward`'s dtype; an empty ``x`` gives an empty float64 array.
        """
        starts: Iterable[int] = range(0, len(x), batch_size)
        if progress is not None:
            from tqdm import tqdm

            starts = tqdm(starts, desc=progress, unit="batch")
        out = []
        with torch.no_grad():
            for start in starts:
                out.append(self.forward(x[start:start + batch_size], activations).numpy())
        return np.concatenate(out) if out else np.zeros((0,))


def _t(arr: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(arr, dtype=like.dtype, device=like.device)


def apply_torch(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    """Evaluate one non-activation node on a batch with torch (plaintext)."""
    p = node.params
    x = args[0]
    if node.op == "conv2d":
        return F.conv2d(x, _t(p["weight"], x), _t(p["bias"], x), stride=tuple(p["stride"]),
                        padding=tuple(p["padding"]), groups=int(p.get("groups", 1)))
    if node.op == "dense":
        return F.linear(x, _t(p["weight"], x), _t(p["bias"], x))
    if node.op == "affine":
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * _t(p["scale"], x).reshape(shape) + _t(p["shift"], x).reshape(shape)
    if node.op == "avgpool2d":
        return F.avg_pool2d(x, tuple(p["kernel"]), tuple(p["stride"]))
    if node.op == "subsample":
        sh, sw = p["stride"]
        return x[:, :, ::sh, ::sw]
    if node.op == "pad_channels":
        return F.pad(x, (0, 0, 0, 0, int(p["before"]), int(p["after"])))
    if node.op == "flatten":
        return x.reshape(x.shape[0], -1)
    if node.op == "add":
        return args[0] + args[1]
    raise ValueError(f"cannot evaluate op {node.op!r}")  # pragma: no cover


# ------------------------------------------------------------------------------------------------
# Sparse-matrix form of linear nodes (for the encrypted engine's diagonal method).
# ------------------------------------------------------------------------------------------------


def linear_operator(node: Node, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
    """Matrix ``M`` and bias ``b`` with ``flatten(node(x)) = M @ flatten(x) + b`` (row-major)."""
    p = node.params
    n_in = int(np.prod(in_shape))
    n_out = int(np.prod(node.shape))
    if node.op == "conv2d":
        return _conv_operator(p, in_shape, node.shape)
    if node.op == "dense":
        w = np.asarray(p["weight"], dtype=np.float64)
        return sp.csr_matrix(w), np.asarray(p["bias"], dtype=np.float64)
    if node.op == "affine":
        c = in_shape[0]
        hw = n_in // c
        scale = np.repeat(np.asarray(p["scale"], dtype=np.float64), hw)
        shift = np.repeat(np.asarray(p["shift"], dtype=np.float64), hw)
        return sp.diags(scale).tocsr(), shift
    if node.op == "flatten":
        return sp.identity(n_in, format="csr"), np.zeros(n_out)
    if node.op in ("avgpool2d", "subsample", "pad_channels"):
        rows, cols, vals = _index_operator(node, in_shape)
        return sp.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in)), np.zeros(n_out)
    raise ValueError(f"node {node.name!r} ({node.op}) is not linear")


def _index_operator(node: Node, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = node.params
    c, h, w = in_shape
    co, ho, wo = node.shape
    oc, oy, ox = np.meshgrid(np.arange(co), np.arange(ho), np.arange(wo), indexing="ij")
    out_idx = ((oc * ho + oy) * wo + ox).ravel()
    if node.op == "subsample":
        sh, sw = p["stride"]
        in_idx = ((oc * h + oy * sh) * w + ox * sw).ravel()
        return out_idx, in_idx, np.ones(out_idx.size)
    if node.op == "pad_channels":
        before = int(p["before"])
        src = oc - before
        keep = ((src >= 0) & (src < c)).ravel()
        in_idx = ((src * h + oy) * w + ox).ravel()
        return out_idx[keep], in_idx[keep], np.ones(int(keep.sum()))
    kh, kw = p["kernel"]
    sh, sw = p["stride"]
    rows, cols = [], []
    for dy in range(kh):
        for dx in range(kw):
            rows.append(out_idx)
            cols.append(((oc * h + oy * sh + dy) * w + ox * sw + dx).ravel())
    return np.concatenate(rows), np.concatenate(cols), np.full(len(rows) * out_idx.size, 1.0 / (kh * kw))


def _conv_operator(p: dict, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
    weight = np.asarray(p["weight"], dtype=np.float64)
    bias = np.asarray(p["bias"], dtype=np.float64)
    groups = int(p.get("groups", 1))
    ci, h, w = in_shape
    co, ho, wo = out_shape
    _, ci_g, kh, kw = weight.shape
    co_g = co // groups
    sh, sw = p["stride"]
    ph, pw = p["padding"]
    oy, ox = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    oy, ox = oy.ravel(), ox.ravel()
    rows, cols, vals = [], [], []
    o_idx = np.arange(co)
    in_ch = (o_idx // co_g)[:, None] * ci_g + np.arange(ci_g)[None, :]          # (co, ci_g)
    for dy in range(kh):
        for dx in range(kw):
            iy = oy * sh + dy - ph
            ix = ox * sw + dx - pw
            ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            pix_out = (oy * wo + ox)[ok]
            pix_in = (iy * w + ix)[ok]
            wk = weight[:, :, dy, dx]                                              # (co, ci_g)
            nz = wk != 0.0
            if not nz.any() or pix_out.size == 0:
                continue
            o_sel, j_sel = np.nonzero(nz)
            rows.append((o_sel[:, None] * ho * wo + pix_out[None, :]).ravel())
            cols.append((in_ch[o_sel, j_sel][:, None] * h * w + pix_in[None, :]).ravel())
            vals.append(np.repeat(wk[o_sel, j_sel], pix_out.size))
    n_out, n_in = co * ho * wo, ci * h * w
    if not rows:
        return sp.csr_matrix((n_out, n_in)), np.repeat(bias, ho * wo)
    m = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_out, n_in)
    )
    return m, np.repeat(bias, ho * wo)
