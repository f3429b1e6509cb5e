"""Several images per ciphertext: slot interleaving and the evaluator view that makes it invisible.

A program compiled for ``S`` slots runs unchanged on a ciphertext of ``B * S`` slots that holds ``B``
images interleaved at stride ``B`` (image ``b``'s logical slot ``i`` is physical slot ``B * i + b``):
a logical rotation by ``r`` is a physical rotation by ``B * r``, and a plaintext vector is repeated
``B`` times slot by slot. Every ciphertext operation then serves ``B`` images at the price of one
(a bootstrap over ``B * S`` slots costs more than over ``S``, but far less than ``B`` of them), so the
compiler, layouts and planner stay as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olafhe.core.contract.backend import Evaluator, KeyRequest, normalize_rotations
from olafhe.core.errors import ShapeError


@dataclass(frozen=True)
class Packing:
    """``batch`` images of ``slots`` logical slots each, interleaved in ``batch * slots`` physical slots."""

    batch: int
    slots: int

    def __post_init__(self) -> None:
        if self.batch < 1 or self.batch & (self.batch - 1):
            raise ShapeError(f"images per ciphertext must be a power of two >= 1, got {self.batch}")

    @property
    def physical_slots(self) -> int:
        return self.batch * self.slots

    def interleave(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        """One physical slot vector from up to ``batch`` logical vectors (missing images are zeros)."""
        if not 1 <= len(vectors) <= self.batch:
            raise ShapeError(f"a ciphertext holds 1 to {self.batch} images, got {len(vectors)}")
        out = np.zeros((self.slots, self.batch))
        for b, vec in enumerate(vectors):
            v = np.asarray(vec, dtype=np.float64).ravel()
            if v.size > self.slots:
                raise ShapeError(f"image vector has {v.size} values but a packed image has {self.slots} slots")
            out[: v.size, b] = v
        return out.ravel()

    def split(self, physical: np.ndarray, count: int | None = None) -> list[np.ndarray]:
        """The logical vectors of the first ``count`` (default all) images of a decrypted physical vector."""
        v = np.zeros(self.physical_slots)
        data = np.asarray(physical, dtype=np.float64).ravel()[: self.physical_slots]
        v[: data.size] = data
        grid = v.reshape(self.slots, self.batch)
        return [grid[:, b].copy() for b in range(self.batch if count is None else count)]

    def spread(self, values: np.ndarray) -> np.ndarray:
        """A logical plaintext vector as the physical one: each slot repeated ``batch`` times."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size < self.slots:
            v = np.concatenate([v, np.zeros(self.slots - v.size)])
        return np.repeat(v, self.batch)

    def key_request(self, request: KeyRequest) -> KeyRequest:
        """The physical keys for a program's logical ``request``: every rotation amount times ``batch``."""
        steps = normalize_rotations((r * self.batch for r in request.rotations), self.physical_slots)
        return dataclasses.replace(request, rotations=steps)


class PackedEvaluator(Evaluator):
    """An evaluator of ``packing.slots`` logical slots over a real evaluator of ``batch`` times as many.

    Only the slot-indexed operations change (rotations, plaintext vectors); everything else, bootstraps
    included, is the wrapped evaluator's, so operation counts and timings stay per ciphertext.
    """

    def __init__(self, inner: Evaluator, packing: Packing) -> None:
        if inner.capabilities.slots != packing.physical_slots:
            raise ShapeError(f"packing {packing.batch} x {packing.slots} slots needs a backend with "
                             f"{packing.physical_slots} slots, it has {inner.capabilities.slots}")
        self.inner, self.packing = inner, packing
        self.capabilities = dataclasses.replace(inner.capabilities, slots=packing.slots)
        self.counter = inner.counter

    def level(self, ct: Any) -> int:
        return self.inner.level(ct)

    def add(self, a: Any, b: Any) -> Any:
        return self.inner.add(a, b)

    def add_plain(self, a: Any, values: np.ndarray) -> Any:
        return self.inner.add_plain(a, self.packing.spread(values))

    def add_scalar(self, a: Any, value: float) -> Any:
        return self.inner.add_scalar(a, value)

    def multiply(self, a: Any, b: Any) -> Any:
        return self.inner.multiply(a, b)

    def multiply_plain(self, a: Any, values: np.ndarray) -> Any:
        return self.inner.multiply_plain(a, self.packing.spread(values))

    def multiply_plain_sum(self, cts: Sequence[Any], vectors: Sequence[np.ndarray]) -> Any:
        return self.inner.multiply_plain_sum(cts, [self.packing.spread(v) for v in vectors])

    def settle(self, a: Any) -> Any:
        return self.inner.settle(a)

    def multiply_scalar(self, a: Any, value: float) -> Any:
        return self.inner.multiply_scalar(a, value)

    def rotate(self, a: Any, steps: int) -> Any:
        return self.inner.rotate(a, steps * self.packing.batch)

    def rotate_hoisted(self, a: Any, steps: Sequence[int]) -> dict[int, Any]:
        physical = [int(s) * self.packing.batch for s in steps]
        done = self.inner.rotate_hoisted(a, physical)
        return {s: done[p] for s, p in zip(steps, physical, strict=True)}

    def level_reduce(self, a: Any, level: int) -> Any:
        return self.inner.level_reduce(a, level)

    def chebyshev(self, a: Any, coefficients: np.ndarray, doubled: bool = False) -> Any:
        return self.inner.chebyshev(a, coefficients, doubled)

    def chebyshev_depth(self, degree: int) -> int:
        return self.inner.chebyshev_depth(degree)

    def bootstrap(self, a: Any) -> Any:
        return self.inner.bootstrap(a)

    def bootstrap_real(self, a: Any) -> Any:
        return self.inner.bootstrap_real(a)

    def save_public(self, directory: Path) -> list[str]:
        return self.inner.save_public(directory)

    def serialize(self, ciphertext: Any) -> bytes:
        return self.inner.serialize(ciphertext)

    def deserialize(self, data: bytes) -> Any:
        return self.inner.deserialize(data)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def packed(evaluator: Evaluator, packing: Packing) -> Evaluator:
    """``evaluator`` seen through ``packing`` (itself when one image per ciphertext)."""
    return evaluator if packing.batch == 1 else PackedEvaluator(evaluator, packing)
