"""The compiled program: steps over named ciphertext values, their slot layouts and encodings.

A :class:`Program` is what :func:`~olafhe.core.compiler.compile.compile_program` produces from a Plan and
a model Graph and what :func:`~olafhe.core.compiler.runtime.run_program` executes: linear steps (fused
linear nodes as one sparse matrix each, with their layouts and baby-step/giant-step split), residual
additions and activations. Values are held affinely encoded (``alpha * value + beta``, see
:class:`Encoding`); the client encodes the input image and decodes the logits through the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from olafhe.core.compiler.layout import BSGS, Diagonals, Layout, diagonals, tile
from olafhe.core.compiler.rotations import RotationChains, giant_chain, power_of_two_keys
from olafhe.core.contract.backend import KeyRequest
from olafhe.core.errors import ShapeError
from olafhe.core.poly.approximation import Approximation


@dataclass(frozen=True)
class Encoding:
    """A ciphertext holds ``alpha * value + beta`` (interval scaling folded into producers)."""

    alpha: float = 1.0
    beta: float = 0.0


@dataclass
class LinearStep:
    """Fused linear nodes as one sparse matrix, evaluated by the diagonal method."""

    out: str
    input: str
    nodes: tuple[str, ...]
    matrix: sp.csr_matrix          # encodings already absorbed
    bias: np.ndarray               # in tensor-index space, encodings absorbed
    layout_in: Layout
    layout_out: Layout
    offsets: np.ndarray
    bsgs: BSGS
    presum: tuple[int, ...] = ()   # rotate-and-add steps before the diagonals (pooling, no level)
    postsum: tuple[int, ...] = ()  # rotate-and-add steps after them (partial sums of rotated copies)
    _diag_cache: Diagonals | None = field(default=None, repr=False)

    kind = "linear"

    @property
    def diagonal_count(self) -> int:
        return int(self.offsets.size)

    def diagonals(self, cache: bool) -> Diagonals:
        if self._diag_cache is not None:
            return self._diag_cache
        diag = diagonals(self.matrix, self.layout_in, self.layout_out)
        if cache:
            self._diag_cache = diag
        return diag


@dataclass
class AddStep:
    """A residual addition of two ciphertext values."""

    out: str
    a: str
    b: str
    kind = "add"


@dataclass
class ActivationStep:
    """One activation: its approximation's stages (encodings folded in) and where it bootstraps.

    ``approximation`` is None in a linear-structure-only program (``compile_program(layers=None)``).
    """

    out: str
    input: str
    approximation: Approximation | None
    stages: tuple[np.ndarray, ...]   # output encoding folded into the (last) stage
    output_beta: float               # relu-sign only: added after the final product
    bootstrap_before: bool
    level_in: int
    depth: int
    stage_bootstrap: tuple[bool, ...] = ()
    stage_level_in: tuple[int, ...] = ()
    kind = "activation"


Step = LinearStep | AddStep | ActivationStep


@dataclass
class Program:
    """A compiled plan: steps over named ciphertext values, layouts, and the keys they need."""

    graph_name: str
    steps: list[Step]
    slots: int
    input_name: str
    input_layout: Layout
    input_encoding: Encoding
    output_name: str
    output_layout: Layout
    input_level: int
    layouts: dict[str, Layout]
    cache_diagonals: bool = True
    max_rotation_keys: int = 0   # 0: a key per rotation amount; else power-of-two chains if more are needed
    linear_only: bool = False    # compiled without layers: the structure to plan with, not to run

    @property
    def used_rotations(self) -> frozenset[int]:
        out: set[int] = set()
        for step in self.steps:
            if isinstance(step, LinearStep):
                out |= {r % self.slots for r in (*step.bsgs.rotations, *step.presum, *step.postsum) if r % self.slots}
        return frozenset(out)

    @property
    def uses_chains(self) -> bool:
        """Power-of-two rotation chains: a key per amount would exceed ``max_rotation_keys``."""
        return bool(self.max_rotation_keys) and len(self.used_rotations) > self.max_rotation_keys

    @property
    def chains(self) -> RotationChains | None:
        """The rotation chains over this program's keys (None: a key per amount)."""
        return RotationChains(self.slots, self.rotations) if self.uses_chains else None

    @property
    def rotations(self) -> frozenset[int]:
        """Rotation keys to generate."""
        used = self.used_rotations
        if not self.uses_chains:
            return used
        gaps = {a for s in self.steps if isinstance(s, LinearStep) for a in giant_chain(s.bsgs.giants)}
        return power_of_two_keys(used | gaps, self.slots)

    @property
    def bootstraps(self) -> int:
        return sum(int(s.bootstrap_before) + sum(1 for b in s.stage_bootstrap[1:] if b)
                   for s in self.steps if isinstance(s, ActivationStep))

    def key_request(self) -> KeyRequest:
        return KeyRequest(rotations=self.rotations, bootstrap=self.bootstraps > 0)

    def linear_report(self) -> list[dict]:
        """Per linear step: fused nodes, layouts, diagonals and rotations (they drive the cost)."""
        rows = []
        for s in self.steps:
            if isinstance(s, LinearStep):
                rows.append({
                    "name": s.out, "nodes": list(s.nodes), "layout_in": s.layout_in.kind,
                    "layout_out": s.layout_out.kind, "diagonals": s.diagonal_count,
                    "baby_rotations": sum(1 for b in s.bsgs.babies if b),
                    "giant_rotations": sum(1 for g in s.bsgs.giants if g), "baby_step": s.bsgs.baby_step,
                    **({"presum_rotations": len(s.presum)} if s.presum else {}),
                    **({"copies_in": s.layout_in.copies} if s.layout_in.copies > 1 else {}),
                    **({"copies_out": s.layout_out.copies} if s.layout_out.copies > 1 else {}),
                    **({"replica_sum_rotations": len(s.postsum)} if s.postsum else {}),
                })
        return rows

    # ----------------------------------------------------------------- client-side encoding
    def encode_input(self, image: np.ndarray) -> np.ndarray:
        """Slot vector the client encrypts for one image (C, H, W), encoding and replication applied."""
        x = np.asarray(image, dtype=np.float64).ravel()
        if x.size != len(self.input_layout):
            raise ShapeError(f"model input has {len(self.input_layout)} values, got an image with {x.size}")
        return tile(self.input_layout.scatter(self.input_encoding.alpha * x + self.input_encoding.beta), self.slots)

    def decode_output(self, slots: np.ndarray) -> np.ndarray:
        return np.asarray(slots, dtype=np.float64)[self.output_layout.slots]
