"""Slot layouts and the diagonal method for linear layers.

A :class:`Layout` maps every element of a (flattened, row-major) tensor to a slot inside a period of
``P`` slots. The whole network uses one period ``P`` (a power of two that fits every tensor) and each
ciphertext holds its data replicated ``slots / P`` times, so a rotation by ``k`` acts like a rotation
by ``k mod P`` on every copy: that merges diagonals ``k`` and ``k ± P`` and keeps outputs replicated.

Grid layouts place channel ``c``, row ``y``, column ``x`` of an image-like tensor at::

    (c // m) * H0 * W0  +  ((c % m) // g) * W0 + (c % m) % g  +  y * g * W0 + x * g

on the input image's H0 x W0 grid: ``g`` is the gap left by strided layers and ``m`` (<= g^2) channels
are multiplexed into those gaps. ``g = 1, m = 1`` is the compact layout. For a convolution whose
input and output are grid layouts with ``g_out = stride * g_in`` the slot difference of every
(output, input) pair depends only on the channel pair and the kernel offset, which keeps the number of
diagonals small (this is the multiplexed, gapped layout of ARCHITECTURE.md).

:func:`diagonals` turns a sparse matrix into the set of non-zero diagonals for two layouts;
:class:`BSGS` splits them into baby and giant steps for hoisted rotations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Layout:
    """Slot position (within one period) of every tensor element, plus a human-readable kind."""

    slots: np.ndarray     # int64, one entry per flattened tensor element, all distinct
    kind: str = "compact"

    @property
    def span(self) -> int:
        return int(self.slots.max()) + 1 if self.slots.size else 0

    def __len__(self) -> int:
        return int(self.slots.size)


def compact_layout(size: int) -> Layout:
    return Layout(np.arange(size, dtype=np.int64), "compact")


def grid_layout(shape: tuple[int, int, int], base_hw: tuple[int, int], gap: int, multiplex: int) -> Layout | None:
    """The grid layout described in the module docstring, or None if the tensor does not fit."""
    c, h, w = shape
    h0, w0 = base_hw
    if gap < 1 or multiplex < 1 or multiplex > gap * gap or h * gap > h0 or w * gap > w0:
        return None
    cc, yy, xx = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    j = cc % multiplex
    slots = (cc // multiplex) * h0 * w0 + (j // gap) * w0 + (j % gap) + yy * gap * w0 + xx * gap
    kind = "compact" if gap == 1 and multiplex == 1 and (h, w) == (h0, w0) else f"grid(g={gap},m={multiplex})"
    return Layout(slots.ravel().astype(np.int64), kind)


def period_for(layouts: list[Layout], slots: int) -> int:
    """Smallest power of two >= every layout's span (the replication period)."""
    span = max(layout.span for layout in layouts)
    period = 1 << max(0, math.ceil(math.log2(max(span, 1))))
    if period > slots:
        raise ValueError(f"a tensor needs {span} slots but the ciphertext has only {slots}")
    return period


@dataclass
class Diagonals:
    """Non-zero generalized diagonals of a matrix between two layouts, modulo the period."""

    offsets: np.ndarray   # sorted distinct k in [0, P)
    values: np.ndarray | None  # (len(offsets), P) float64, or None when only counted
    period: int

    def __len__(self) -> int:
        return int(self.offsets.size)


def diagonals(matrix: sp.spmatrix, layout_in: Layout, layout_out: Layout, period: int,
              with_values: bool = True) -> Diagonals:
    """Diagonal decomposition ``y[s] = sum_k D_k[s] * x[(s + k) mod P]`` of ``matrix``.

    Entry (o, i) lands on diagonal ``k = (in_slot(i) - out_slot(o)) mod P`` at position
    ``out_slot(o)``. Layouts are injective, so no two entries collide.
    """
    coo = matrix.tocoo()
    keep = coo.data != 0.0
    rows, cols, vals = coo.row[keep], coo.col[keep], coo.data[keep]
    so = layout_out.slots[rows]
    k = (layout_in.slots[cols] - so) % period
    offsets, inverse = np.unique(k, return_inverse=True)
    if not with_values:
        return Diagonals(offsets, None, period)
    values = np.zeros((offsets.size, period))
    np.add.at(values, (inverse, so), vals)
    return Diagonals(offsets, values, period)


@dataclass(frozen=True)
class BSGS:
    """Baby-step/giant-step split of a set of diagonal offsets: k = giant + baby."""

    baby_step: int
    babies: tuple[int, ...]
    giants: tuple[int, ...]

    @property
    def rotations(self) -> frozenset[int]:
        return frozenset(b for b in self.babies if b) | frozenset(g for g in self.giants if g)

    @property
    def rotation_count(self) -> int:
        return sum(1 for b in self.babies if b) + sum(1 for g in self.giants if g)


def plan_bsgs(offsets: np.ndarray, period: int, hoisted_cost: float = 0.5) -> BSGS:
    """Choose the baby-step size minimizing (hoisted baby rotations) * cost + giant rotations.

    Baby rotations share one hoisting precomputation, so each costs about ``hoisted_cost`` of a full
    rotation.
    """
    best: tuple[float, BSGS] | None = None
    n1 = 1
    while n1 <= period:
        babies = np.unique(offsets % n1)
        giants = np.unique(offsets - offsets % n1)
        cost = hoisted_cost * np.count_nonzero(babies) + np.count_nonzero(giants)
        if best is None or cost < best[0]:
            best = (cost, BSGS(n1, tuple(int(b) for b in babies), tuple(int(g) for g in giants)))
        n1 *= 2
    assert best is not None
    return best[1]


def tile(vector: np.ndarray, slots: int) -> np.ndarray:
    """Replicate a period-P vector across all slots."""
    period = vector.shape[-1]
    return np.tile(vector, slots // period)
