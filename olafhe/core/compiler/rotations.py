"""Rotation keys under a memory budget.

A rotation key at N = 2^16 with bootstrapping-sized moduli is ~90-180 MB, and a ResNet-20 program rotates
by ~190 distinct amounts: keys for all of them (~33 GB) do not fit next to the bootstrapping keys. With
a key budget, the program instead gets keys for signed powers of two only and performs every other
rotation as a chain of those (its non-adjacent form, ~log2(slots)/3 steps). Baby-step rotations of one
ciphertext share prefixes of their chains, so each distinct prefix is computed once.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def power_of_two_keys(amounts: Iterable[int], slots: int) -> frozenset[int]:
    """The signed power-of-two rotation keys the chains of ``amounts`` use (as amounts mod slots)."""
    return frozenset(s % slots for a in amounts for s in naf_steps(a, slots))


class RotationChains:
    """Performs rotations through chains of power-of-two keys, reusing shared prefixes for one source."""

    def __init__(self, slots: int) -> None:
        self.slots = slots

    def count(self, amounts: Iterable[int], shared: bool) -> int:
        """Key-switching rotations needed for ``amounts`` (shared: all from one ciphertext)."""
        if not shared:
            return sum(len(naf_steps(a, self.slots)) for a in amounts)
        prefixes = set()
        for a in amounts:
            steps = naf_steps(a, self.slots)
            for i in range(1, len(steps) + 1):
                prefixes.add(steps[:i])
        return len(prefixes)

    def rotate(self, ev: Any, ct: Any, amount: int) -> Any:
        for step in naf_steps(amount, self.slots):
            ct = ev.rotate(ct, step)
        return ct

    def rotate_many(self, ev: Any, ct: Any, amounts: Iterable[int]) -> dict[int, Any]:
        done: dict[tuple[int, ...], Any] = {(): ct}
        out = {}
        for a in amounts:
            steps = naf_steps(a, self.slots)
            for i in range(1, len(steps) + 1):
                if steps[:i] not in done:
                    done[steps[:i]] = ev.rotate(done[steps[:i - 1]], steps[i - 1])
            out[a] = done[steps]
        return out
