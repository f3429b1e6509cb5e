"""Rotation keys under a memory budget.

A rotation key at N = 2^16 with bootstrapping-sized moduli is ~90-180 MB, and a ResNet-20 program rotates
by ~190 distinct amounts: keys for all of them (~33 GB) do not fit next to the bootstrapping keys. With
a key budget, the program instead gets keys for signed powers of two only and performs every other
rotation as a chain of those (its non-adjacent form, ~log2(slots)/3 steps). Baby-step rotations of one
ciphertext form a tree (each reached from another by one key where possible), and giant steps are summed
Horner-style (one chain per gap between giants).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any


def naf_steps(amount: int, slots: int) -> tuple[int, ...]:
    """Signed powers of two summing to ``amount`` mod ``slots`` (non-adjacent form, fewest terms)."""
    k = amount % slots
    if k > slots // 2:
        k -= slots
    steps = []
    bit = 1
    while k:
        if k & 1:
            digit = 2 - (k & 3)  # +1 or -1: keeps the next digit zero
            steps.append(digit * bit)
            k -= digit
        k >>= 1
        bit <<= 1
    return tuple(steps)


def giant_chain(giants: Iterable[int]) -> tuple[int, ...]:
    """Rotation amounts that sum giant-step partial sums Horner-style: from the largest giant down, rotate
    the running sum by the gap to the next giant and add it; then rotate by the smallest giant.

    ``sum_g rot(I_g, g)`` then costs one chain per gap instead of one per giant, and the gaps of a
    regular giant step are a single power of two.
    """
    g = sorted(set(giants), reverse=True)
    return tuple(a - b for a, b in zip(g[:-1], g[1:], strict=True)) + (g[-1],) if g else ()


def power_of_two_keys(amounts: Iterable[int], slots: int) -> frozenset[int]:
    """The signed power-of-two rotation keys the chains of ``amounts`` use (as amounts mod slots)."""
    return frozenset(s % slots for a in amounts for s in naf_steps(a, slots))


class RotationChains:
    """Performs rotations through chains of power-of-two keys (``keys``: the amounts mod ``slots`` that have
    a key; None: every signed power of two).

    Several rotations of one ciphertext (baby steps) form a tree: each amount is reached from an amount
    already computed by one key where possible (:func:`rotation_tree`), else along its own chain, reusing
    its computed prefixes.
    """

    def __init__(self, slots: int, keys: Iterable[int] | None = None) -> None:
        self.slots = slots
        self.keys = frozenset(k % slots for k in keys) if keys is not None else None

    def count(self, amounts: Iterable[int], shared: bool) -> int:
        """Key-switching rotations needed for ``amounts`` (shared: all from one ciphertext)."""
        if not shared:
            return sum(len(naf_steps(a, self.slots)) for a in amounts)
        return len(rotation_tree(frozenset(a % self.slots for a in amounts), self.slots, self.keys))

    def count_giants(self, giants: Iterable[int]) -> int:
        """Key-switching rotations of summing giant steps with :func:`giant_chain`."""
        return sum(len(naf_steps(a, self.slots)) for a in giant_chain(giants))

    def rotate(self, ev: Any, ct: Any, amount: int) -> Any:
        for step in naf_steps(amount, self.slots):
            ct = ev.rotate(ct, step)
        return ct

    def rotate_many(self, ev: Any, ct: Any, amounts: Iterable[int]) -> dict[int, Any]:
        """``{a: rot(ct, a)}``, one key-switching rotation per edge of the amounts' :func:`rotation_tree`."""
        amounts = list(amounts)
        done = {0: ct}
        for target, source, step in rotation_tree(frozenset(a % self.slots for a in amounts), self.slots, self.keys):
            done[target] = ev.rotate(done[source], step)
        return {a: done[a % self.slots] for a in amounts}


@lru_cache(maxsize=4096)
def rotation_tree(amounts: frozenset[int], slots: int, keys: frozenset[int] | None = None
                  ) -> tuple[tuple[int, int, int], ...]:
    """Edges ``(target, source, step)`` (amounts mod ``slots``) computing every amount from 0, in order.

    Amounts one key away from one already computed come first; an amount with none follows its own chain
    from 0 (:func:`naf_steps`, whose steps always have keys), adding the prefixes not yet computed. When
    chains sharing only their prefixes need fewer edges, those are returned.
    """
    greedy = _greedy_tree(amounts, slots, keys)
    prefixes = _prefix_tree(amounts, slots)
    return greedy if len(greedy) <= len(prefixes) else prefixes


def _prefix_tree(amounts: frozenset[int], slots: int) -> tuple[tuple[int, int, int], ...]:
    done: set[int] = {0}
    edges: list[tuple[int, int, int]] = []
    for t in sorted(amounts):
        _walk_chain(t, slots, done, edges)
    return tuple(edges)


def _walk_chain(amount: int, slots: int, done: set[int], edges: list[tuple[int, int, int]]) -> None:
    """Edges along ``amount``'s chain from 0 that are not computed yet."""
    node = 0
    for st in naf_steps(amount, slots):
        nxt = (node + st) % slots
        if nxt not in done:
            edges.append((nxt, node, st % slots))
            done.add(nxt)
        node = nxt


def _greedy_tree(amounts: frozenset[int], slots: int, keys: frozenset[int] | None
                 ) -> tuple[tuple[int, int, int], ...]:
    powers = [(1 << j) % slots for j in range(slots.bit_length() - 1)]
    steps = sorted({p for p in powers} | {(-p) % slots for p in powers})
    if keys is not None:
        steps = [st for st in steps if st in keys]
    done: set[int] = {0}
    edges: list[tuple[int, int, int]] = []
    todo = sorted(amounts - {0})
    while todo:
        hit = next(((t, (t - st) % slots, st) for t in todo for st in steps if (t - st) % slots in done), None)
        if hit is not None:
            edges.append(hit)
            done.add(hit[0])
            todo.remove(hit[0])
            continue
        _walk_chain(todo.pop(0), slots, done, edges)
        todo = [x for x in todo if x not in done]
    return tuple(edges)
