"""Slot layouts and the diagonal method for linear layers.

A :class:`Layout` maps every element of a (flattened, row-major) tensor to a slot inside a period of
``P`` slots, a power of two covering the layout (inherited layouts keep their input's period). Each
ciphertext holds its data replicated ``slots / P`` times, so a rotation by ``k`` acts like a rotation
by ``k mod P`` on every copy: that merges diagonals ``k`` and ``k ± P`` and keeps outputs replicated.

Grid layouts place channel ``c``, row ``y``, column ``x`` of an image-like tensor at::

    (c // m) * H0 * W0  +  ((c % m) // g) * W0 + (c % m) % g  +  y * g * W0 + x * g

on the input image's H0 x W0 grid: ``g`` is the gap left by strided layers and ``m`` (<= g^2) channels
are multiplexed into those gaps. ``g = 1, m = 1`` is the compact layout. For a convolution whose
input and output are grid layouts with ``g_out = stride * g_in`` the slot difference of every
(output, input) pair depends only on the channel pair and the kernel offset, which keeps the number of
diagonals small (this is the multiplexed, gapped layout of ARCHITECTURE.md).

A layout with ``copies = r > 1`` fills all ``r * P0`` slots with ``r`` *rotated* copies instead of equal
replicas: copy ``j`` holds the data rotated by ``j * P0 / r`` within its own ``P0`` slots. One rotation of
such a ciphertext then shows each copy a different diagonal, so a linear step reading it can split its
diagonals over the copies and sum them with ``log2(r)`` rotations by multiples of ``P0``
(:mod:`olafhe.core.compiler.multiplex` chooses where).

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

    slots: np.ndarray     # int64, one entry per flattened tensor element, all distinct (copy 0)
    kind: str = "compact"
    min_period: int = 1   # inherited layouts keep their input's period (no replica expansion)
    copies: int = 1       # > 1: rotated copies fill copies * base_period slots (module docstring)

    @property
    def span(self) -> int:
        return int(self.slots.max()) + 1 if self.slots.size else 0

    @property
    def base_period(self) -> int:
        """The smallest power of two covering the span (at least ``min_period``)."""
        return max(self.min_period, 1 << max(0, math.ceil(math.log2(max(self.span, 1)))))

    @property
    def period(self) -> int:
        """Replication period of the slot vector: the base period, times the copies when rotated copies."""
        return self.base_period * self.copies

    @property
    def shift(self) -> int:
        """How far each further copy is rotated within its base period."""
        return self.base_period // self.copies

    def copy_slots(self) -> np.ndarray:
        """(copies, elements) slot positions of every copy of every element within one period."""
        p0, j = self.base_period, np.arange(self.copies)[:, None]
        return (self.slots[None, :] - j * self.shift) % p0 + j * p0

    def scatter(self, values: np.ndarray) -> np.ndarray:
        """One period of the slot vector holding ``values`` (one per element) in every copy."""
        vec = np.zeros(self.period)
        vec[self.copy_slots()] = np.asarray(values, dtype=np.float64)[None, :]
        return vec

    def same_slots(self, other: Layout) -> bool:
        return self.copies == other.copies and np.array_equal(self.slots, other.slots)

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


def inherit_layout(layout_in: Layout, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Layout | None:
    """Output layout that reuses the input's slots: element (c, y, x) sits where input (c, y*s, x*s) sat.

    For a pooling or strided layer this keeps the input's gaps (no compaction, so few diagonals);
    a 1-D output of n <= C_in values sits at the slots of input (c, 0, 0). None when it does not apply.
    """
    if len(in_shape) == 1:
        n = int(np.prod(out_shape))
        return Layout(layout_in.slots[:n].copy(), "inherit", layout_in.period) if n <= in_shape[0] else None
    if len(in_shape) != 3:
        return None
    ci, hi, wi = in_shape
    grid = layout_in.slots.reshape(ci, hi, wi)
    if len(out_shape) == 3:
        co, ho, wo = out_shape
        if co > ci or hi % ho or wi % wo:
            return None
        sh, sw = hi // ho, wi // wo
        return Layout(grid[:co, ::sh, ::sw].ravel().copy(), f"inherit(s={sh})", layout_in.period)
    n = int(np.prod(out_shape))
    if n > ci:
        return None
    return Layout(grid[:n, 0, 0].ravel().copy(), "inherit(channels)", layout_in.period)


@dataclass
class Diagonals:
    """Non-zero generalized diagonals of a matrix between two layouts, modulo the period."""

    offsets: np.ndarray   # sorted distinct k in [0, P_in)
    values: np.ndarray | None  # (len(offsets), period) float64, or None when only counted
    period: int                # period of the diagonal vectors: max(P_in, P_out)

    def __len__(self) -> int:
        return int(self.offsets.size)


def diagonals(matrix: sp.spmatrix, layout_in: Layout, layout_out: Layout, with_values: bool = True) -> Diagonals:
    """Diagonal decomposition ``y[s] = sum_k D_k[s] * x[(s + k) mod n]`` of ``matrix``.

    The input is replicated with period ``P_in`` (so offsets are taken mod ``P_in``); the output must
    come out replicated with period ``P_out``. When ``P_out < P_in`` every output replica inside one
    input period is computed explicitly. Entry (o, i) lands on diagonal ``(in_slot(i) - s) mod P_in``
    at every output position ``s`` of row ``o``; diagonal vectors have period ``max(P_in, P_out)``.
    An output in rotated copies computes every copy; an input in rotated copies computes each entry in
    one copy only, chosen so that copies share offsets (partial sums, :func:`replica_sum_steps` adds them).
    """
    coo = matrix.tocoo()
    keep = coo.data != 0.0
    rows, cols, vals = coo.row[keep], coo.col[keep], coo.data[keep]
    so, si, p_in, p_eff = _entry_slots(rows, cols, layout_in, layout_out)
    vals = np.tile(vals, so.size // max(vals.size, 1)) if vals.size else vals
    k = (si - so) % p_in
    # k lies in [0, P_in): counting beats sorting for the millions of entries of a convolution
    offsets = np.flatnonzero(np.bincount(k, minlength=p_in))
    if not with_values:
        return Diagonals(offsets, None, p_eff)
    position = np.full(p_in, -1, dtype=np.int64)
    position[offsets] = np.arange(offsets.size)
    values = np.zeros((offsets.size, p_eff))
    values[position[k], so] = vals  # (diagonal, slot) pairs are unique: layouts are injective
    return Diagonals(offsets, values, p_eff)


def _entry_slots(rows: np.ndarray, cols: np.ndarray, lay_in: Layout,
                 lay_out: Layout) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Output and input slot of every computed product (entries repeated per output replica or copy),
    the input's period and the diagonals' period."""
    p_in, p_out = lay_in.period, lay_out.period
    if lay_in.copies > 1 and lay_out.copies > 1:
        raise ValueError("a linear step cannot both read and write rotated copies")
    if lay_in.copies > 1:
        return (*_partial_sum_slots(rows, cols, lay_in, lay_out), p_in, p_in)
    p_eff = max(p_in, p_out)
    if lay_out.copies > 1:
        so = lay_out.copy_slots()[:, rows]
        so = (so[None, :, :] + p_out * np.arange(p_eff // p_out)[:, None, None]).ravel()
    else:
        so = (lay_out.slots[rows][None, :] + p_out * np.arange(p_eff // p_out)[:, None]).ravel()
    return so, np.tile(lay_in.slots[cols], so.size // max(cols.size, 1)), p_in, p_eff


def _partial_sum_slots(rows: np.ndarray, cols: np.ndarray, lay_in: Layout,
                       lay_out: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Output and input slot of each entry read from rotated copies: the entry at natural offset
    ``k`` (mod ``P0``) reads copy ``k // shift``, where it sits ``k mod shift`` slots after the output
    position; an entry whose input wrapped around its copy writes its partial sum one copy back, so every
    offset is ``k mod shift`` (they are added up afterwards, :func:`replica_sum_steps`)."""
    p0, r = lay_in.base_period, lay_in.copies
    if lay_out.period != p0:
        raise ValueError(f"partial sums over rotated copies need an output period of {p0}, not {lay_out.period}")
    pos_in, pos_out = lay_in.slots[cols], lay_out.slots[rows]
    copy = ((pos_in - pos_out) % p0) // lay_in.shift
    within = (pos_in - copy * lay_in.shift) % p0
    out_copy = np.where(within >= pos_out, copy, (copy - 1) % r)
    return pos_out + out_copy * p0, within + copy * p0


def replica_sum_steps(lay_in: Layout, lay_out: Layout) -> tuple[int, ...]:
    """Rotate-and-add amounts summing the partial sums a step reading rotated copies leaves in them."""
    if lay_in.copies == 1:
        return ()
    return tuple(lay_in.base_period << m for m in range(lay_in.copies.bit_length() - 1))


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
    if slots % period:
        raise ValueError(f"period {period} does not divide the {slots} slots")
    return np.tile(vector, slots // period)
