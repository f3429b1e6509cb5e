"""Rotated copies for the idle replicas of small tensors: fewer plaintext products per convolution.

A tensor filling ``1/r`` of the slots is replicated ``r`` times, and every rotation of a replicated
ciphertext shows all replicas the same diagonal: the products of the idle replicas are repeated work.
Between two linear steps joined by an activation (a residual block's two convolutions) the value can be
held in ``r`` rotated copies instead (:class:`~olafhe.core.compiler.layout.Layout` ``copies``): the first
step writes every copy (as many diagonals as before when its offsets repeat every ``P0 / r`` slots, as
the block structure of a multiplexed layout makes them), the activation runs slot-wise as before, and the
second step reads each diagonal in one copy only and adds the copies with ``log2(r)`` rotations, so it
needs about ``1/r`` of the products and baby-step rotations.
"""

from __future__ import annotations

from collections.abc import Mapping

import scipy.sparse as sp

from olafhe.core.compiler.layout import Layout, diagonals, plan_bsgs, replica_sum_steps
from olafhe.core.graph.ir import Graph

Chains = Mapping[str, tuple[str, list[str]]]


def rotated_copies(layout: Layout, slots: int) -> Layout | None:
    """``layout`` in rotated copies filling ``slots``; None when it already fills them or is not replicated."""
    if layout.copies != 1 or layout.base_period >= slots or slots % layout.base_period:
        return None
    r = slots // layout.base_period
    return Layout(layout.slots, f"{layout.kind}x{r}", layout.base_period, r)


def step_cost(matrix: sp.spmatrix, lay_in: Layout, lay_out: Layout) -> int:
    """Products + rotations of one linear step (the proxy layouts are chosen by)."""
    offs = diagonals(matrix, lay_in, lay_out, with_values=False).offsets
    return int(offs.size) + plan_bsgs(offs, lay_in.period).rotation_count + len(replica_sum_steps(lay_in, lay_out))


def pairs(graph: Graph, chains: Chains) -> list[tuple[str, str, str]]:
    """(v, a, w): linear value ``v`` read only by activation ``a``, read only by linear step ``w``."""
    out = []
    for node in graph.nodes:
        if node.op != "activation":
            continue
        v, a = node.inputs[0], node.name
        after = [n.name for n in graph.consumers(a)]
        if (v in chains and [n.name for n in graph.consumers(v)] == [a] and len(after) == 1 and after[0] in chains
                and chains[after[0]][0] == a and graph.output not in (v, a)):
            out.append((v, a, after[0]))
    return out


def choose_rotated_copies(graph: Graph, chains: Chains, operators: Mapping[str, tuple[sp.csr_matrix, object]],
                          layouts: dict[str, Layout], slots: int) -> dict[str, Layout]:
    """``layouts`` with rotated copies for every (v, a) of :func:`pairs` where they cost less (products +
    rotations of the two steps); the input of ``v``'s step and ``w``'s output stay replicated."""
    out = dict(layouts)
    for v, a, w in pairs(graph, chains):
        start, lay_v, lay_w = chains[v][0], out[v], out[w]
        lay_in = out[start]
        mux = rotated_copies(lay_v, slots)
        if mux is None or lay_in.copies != 1 or lay_w.copies != 1 or lay_w.period != lay_v.base_period:
            continue
        before = step_cost(operators[v][0], lay_in, lay_v) + step_cost(operators[w][0], lay_v, lay_w)
        after = step_cost(operators[v][0], lay_in, mux) + step_cost(operators[w][0], mux, lay_w)
        if after < before:
            out[v] = out[a] = mux
    return out
