"""Global average pooling folded into the classifier by rotate-and-sum: one level instead of two.

Pooling then a dense layer is one linear map, but as a plain diagonal matrix it reads every spatial
position of every channel (thousands of diagonals), so the compiler used to run them as two steps, two
levels, which the last activation pays for with a lower degree. Summing each channel's positions with
``log2(H) + log2(W)`` rotate-and-add steps (no level) leaves every channel's total at its first position
(its *anchor*); the classifier then reads only the anchors: one level, few diagonals.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from olafhe.core.compiler.layout import Layout
from olafhe.core.graph.ir import Graph


def is_global_pool(graph: Graph, name: str) -> bool:
    """An average pooling whose output is one value per channel."""
    node = graph[name]
    return node.op == "avgpool2d" and len(node.shape) == 3 and tuple(node.shape[1:]) == (1, 1)


def pools_into_dense(graph: Graph, names: list[str]) -> bool:
    """``names`` (a fused chain) is a global pooling, index maps only (flatten), then the node to add."""
    return bool(names) and is_global_pool(graph, names[0]) and all(graph[n].op == "flatten" for n in names[1:])


def _progression(values: np.ndarray) -> int | None:
    """The common step of ``values`` = 0, s, 2s, ... (a power-of-two count), else None."""
    n = values.size
    if n & (n - 1):
        return None
    step = int(values[1]) if n > 1 else 0
    return step if np.array_equal(values, step * np.arange(n)) else None


def presum_steps(layout: Layout, shape: tuple[int, int, int]) -> tuple[int, ...] | None:
    """Rotation amounts whose rotate-and-add sums every channel of ``shape`` (C, H, W) into its anchor slot
    (channel c's position (0, 0)); None when the layout does not place every channel alike on a
    power-of-two grid."""
    if layout.copies != 1:
        return None
    c, h, w = shape
    slots = layout.slots.reshape(c, h, w)
    period = layout.period
    offsets = (slots - slots[:, :1, :1]) % period
    if not (offsets == offsets[:1]).all():
        return None
    step_w, step_h = _progression(offsets[0, 0, :]), _progression(offsets[0, :, 0])
    if step_w is None or step_h is None:
        return None
    if not np.array_equal(offsets[0], (offsets[0, :, :1] + offsets[0, :1, :]) % period):
        return None
    steps = [step_w << i for i in range(w.bit_length() - 1)] + [step_h << i for i in range(h.bit_length() - 1)]
    return tuple(s % period for s in steps)


def anchor_matrix(matrix: sp.csr_matrix, shape: tuple[int, int, int]) -> sp.csr_matrix:
    """``matrix`` (outputs x C*H*W inputs) reading only each channel's anchor column.

    After the rotate-and-add the anchor holds the channel's sum, so the anchor keeps its own weight
    (pooling weighs every position of a channel alike: ``1 / (H * W)`` times the classifier's).
    """
    c, h, w = shape
    coo = matrix.tocoo()
    keep = coo.col % (h * w) == 0
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=matrix.shape)


def pools_uniformly(matrix: sp.csr_matrix, shape: tuple[int, int, int]) -> bool:
    """Every column of a channel carries the same weight (what :func:`anchor_matrix` relies on)."""
    c, h, w = shape
    dense = matrix.toarray().reshape(matrix.shape[0], c, h * w)
    return bool(np.allclose(dense, dense[:, :, :1], rtol=1e-12, atol=0.0))
