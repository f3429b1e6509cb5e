"""The ``simulator`` backend: the CKKS contract on float64 arrays, plus the fast batch path.

Op-by-op (:class:`SimulatorBackend`): every ciphertext is a float64 slot vector with its level. Levels
follow the contract exactly (multiplications consume one, additions run at the lower level, bootstrap
refreshes to ``level_after_bootstrap``), the same :class:`OutOfLevelsError` fires, every operation is
counted by kind and level, and optional noise models CKKS: fresh/rescale noise of about
``sqrt(N) * 3.2 / 2^scale_bits`` and bootstrapping noise at the backend's measured precision (about
17.6 bits for OpenFHE at N = 2^16 with a 59-bit scale). Predicted latency = operation counts x the
target backend's cost table.

Fast batch path (:func:`simulate_logits`): the approximated network evaluated on many images with
the same polynomials, interval scaling and bootstrap points as the engine, using torch for linear
layers and tabulated polynomials (:mod:`olafhe.core.poly.polyeval`) for activations. The engine's affine
encodings are exact rewrites of the same arithmetic, so the fast path and the op-by-op path agree up
to float rounding (tested).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.polynomial import chebyshev as C

from olafhe.core.contract.backend import (
    Backend,
    Capabilities,
    Client,
    Evaluator,
    KeyRequest,
    OpCounter,
    normalize_rotations,
    plain_vector,
)
from olafhe.core.errors import CapabilityError, DataError, OlafheError
from olafhe.core.graph.ir import Graph
from olafhe.core.planning.plan import Plan
from olafhe.core.poly.chebyshev import chebyshev_depth
from olafhe.core.poly.polyeval import TabulatedApproximation

DEFAULT_BOOTSTRAP_PRECISION_BITS = 17.6   # OpenFHE, N=2^16, SPARSE_ENCAPSULATED, [3,3], scale 59


class SimCiphertext:
    """A simulated ciphertext: the slot values it would decrypt to, and its level."""

    __slots__ = ("values", "level")

    def __init__(self, values: np.ndarray, level: int) -> None:
        self.values = values
        self.level = level

    def __repr__(self) -> str:
        return f"SimCiphertext(level={self.level}, slots={self.values.size})"


class SimulatorBackend(Backend):
    """Plaintext CKKS simulator (no security; it models the configured parameters)."""

    name = "simulator"
    description = "float64 CKKS simulator: exact level bookkeeping, op counts, optional CKKS-like noise"

    def capabilities(self) -> Capabilities:
        p = self.params
        return self.make_capabilities(
            security_bits=0 if p.insecure else 128,
            precision_bits=float(p.extra.get("bootstrap_precision_bits", DEFAULT_BOOTSTRAP_PRECISION_BITS)),
        )

    def keygen(self, request: KeyRequest) -> tuple[SimClient, SimEvaluator]:
        caps = self.capabilities()
        if request.bootstrap and not caps.bootstrapping:
            raise CapabilityError("simulator configured without bootstrapping (ckks.bootstrap = false)")
        noise, rng = self._noise()
        return SimClient(caps, noise, rng), SimEvaluator(caps, normalize_rotations(request.rotations, caps.slots),
                                                         noise, rng)

    def _noise(self) -> tuple[bool, np.random.Generator]:
        return bool(self.params.extra.get("noise", True)), np.random.default_rng(int(self.params.extra.get("seed", 0)))

    def load_client(self, directory: Path) -> SimClient:
        """The simulator's "keys" are its parameters: nothing is read."""
        return SimClient(self.capabilities(), *self._noise())

    def load_evaluator(self, directory: Path, request: KeyRequest) -> SimEvaluator:
        caps = self.capabilities()
        return SimEvaluator(caps, normalize_rotations(request.rotations, caps.slots), *self._noise())


class SimBytes:
    """Mixin: a simulated ciphertext as bytes (its level, then its float64 slots, little-endian)."""

    caps: Capabilities

    def serialize(self, ciphertext: SimCiphertext) -> bytes:
        if not isinstance(ciphertext, SimCiphertext):
            raise DataError(f"expected a simulated ciphertext, got {type(ciphertext).__name__}")
        return struct.pack("<I", ciphertext.level) + ciphertext.values.astype("<f8").tobytes()

    def deserialize(self, data: bytes) -> SimCiphertext:
        slots, top = self.caps.slots, self.caps.max_level
        if len(data) != 4 + 8 * slots:
            raise DataError(f"a simulated ciphertext has {4 + 8 * slots} bytes, got {len(data)}")
        (level,) = struct.unpack("<I", data[:4])
        if level > top:
            raise DataError(f"the ciphertext's level {level} is outside 0..{top}")
        return SimCiphertext(np.frombuffer(data, dtype="<f8", offset=4).astype(np.float64), level)

    def save_secret(self, directory: Path) -> list[str]:
        return []

    def save_public(self, directory: Path) -> list[str]:
        return []


def bootstrap_bias(values: np.ndarray, caps: Capabilities) -> np.ndarray:
    """The systematic part of a bootstrap's error, common to every slot of a ciphertext (the last axis):
    ``k * mean^3`` of the slots' real parts (:func:`~olafhe.core.contract.ckks.bootstrap_cubic_error`);
    the random part is the Gaussian."""
    return caps.bootstrap_cubic * np.mean(values.real, axis=-1, keepdims=True) ** 3


def _fresh_noise_std(caps: Capabilities) -> float:
    return math.sqrt(caps.ring_dimension) * 3.2 / 2.0**caps.scale_bits


class SimClient(SimBytes, Client):
    def __init__(self, caps: Capabilities, noise: bool, rng: np.random.Generator) -> None:
        self.caps, self.noise, self.rng = caps, noise, rng

    def encrypt(self, values: np.ndarray, level: int | None = None) -> SimCiphertext:
        out = plain_vector(values, self.caps.slots, "encrypt")
        level = self.caps.max_level if level is None else int(level)
        if not 0 <= level <= self.caps.max_level:
            raise OlafheError(f"encryption level {level} outside [0, {self.caps.max_level}]")
        if self.noise:
            out += self.rng.normal(0.0, _fresh_noise_std(self.caps), out.size)
        return SimCiphertext(out, level)

    def decrypt(self, ciphertext: SimCiphertext, length: int | None = None) -> np.ndarray:
        return ciphertext.values[:length].copy() if length else ciphertext.values.copy()


class SimEvaluator(SimBytes, Evaluator):
    """Server side of the simulator: holds no key material at all, only the allowed rotations."""

    def __init__(self, caps: Capabilities, rotations: frozenset[int], noise: bool, rng: np.random.Generator) -> None:
        self.capabilities = self.caps = caps
        self.rotations = rotations
        self.noise = noise
        self.rng = rng
        self.counter = OpCounter()
        self.bootstrap_overflows = 0

    # ----------------------------------------------------------------- helpers
    def level(self, ct: SimCiphertext) -> int:
        return ct.level

    def _vec(self, values: np.ndarray) -> np.ndarray:
        return plain_vector(values, self.capabilities.slots)

    def _rescale_noise(self, values: np.ndarray) -> np.ndarray:
        if self.noise:
            values = values + self.rng.normal(0.0, _fresh_noise_std(self.capabilities), values.size)
        return values

    def _mul_result(self, kind: str, level: int, values: np.ndarray) -> SimCiphertext:
        self._require(kind, level)
        self.counter.record(kind, level)
        return SimCiphertext(self._rescale_noise(values), level - 1)

    # ----------------------------------------------------------------- contract
    def add(self, a: SimCiphertext, b: SimCiphertext) -> SimCiphertext:
        level = min(a.level, b.level)
        self.counter.record("add", level)
        return SimCiphertext(a.values + b.values, level)

    def add_plain(self, a: SimCiphertext, values: np.ndarray) -> SimCiphertext:
        self.counter.record("add_plain", a.level)
        return SimCiphertext(a.values + self._vec(values), a.level)

    def add_scalar(self, a: SimCiphertext, value: float) -> SimCiphertext:
        self.counter.record("add_scalar", a.level)
        return SimCiphertext(a.values + float(value), a.level)

    def multiply(self, a: SimCiphertext, b: SimCiphertext) -> SimCiphertext:
        return self._mul_result("multiply", min(a.level, b.level), a.values * b.values)

    def multiply_plain(self, a: SimCiphertext, values: np.ndarray) -> SimCiphertext:
        return self._mul_result("multiply_plain", a.level, a.values * self._vec(values))

    def multiply_scalar(self, a: SimCiphertext, value: float) -> SimCiphertext:
        return self._mul_result("multiply_scalar", a.level, a.values * float(value))

    def rotate(self, a: SimCiphertext, steps: int) -> SimCiphertext:
        k = int(steps) % self.capabilities.slots
        if k and k not in self.rotations:
            raise OlafheError(f"no rotation key for rotation by {k}; generate keys for the program's rotations")
        self.counter.record("rotate", a.level)
        return SimCiphertext(np.roll(a.values, -k), a.level)

    def rotate_hoisted(self, a: SimCiphertext, steps: list[int]) -> dict[int, SimCiphertext]:
        out = {}
        nonzero = [s for s in steps if int(s) % self.capabilities.slots]
        if nonzero:
            self.counter.record("hoist_precompute", a.level)
        for s in steps:
            k = int(s) % self.capabilities.slots
            if k == 0:
                out[s] = a
                continue
            if k not in self.rotations:
                raise OlafheError(f"no rotation key for rotation by {k}")
            self.counter.record("rotate_hoisted", a.level)
            out[s] = SimCiphertext(np.roll(a.values, -k), a.level)
        return out

    def level_reduce(self, a: SimCiphertext, level: int) -> SimCiphertext:
        if level > a.level:
            raise OlafheError(f"level_reduce cannot raise a ciphertext from level {a.level} to {level}")
        if level < 0:
            raise OlafheError(f"level_reduce to negative level {level}")
        self.counter.record("level_reduce", a.level)
        return SimCiphertext(a.values, level)

    def chebyshev(self, a: SimCiphertext, coefficients: np.ndarray, doubled: bool = False) -> SimCiphertext:
        coeffs = np.asarray(coefficients, dtype=np.float64)
        degree = len(coeffs) - 1
        depth = self.chebyshev_depth(degree)
        self._require(f"Chebyshev series of degree {degree}", a.level, depth)
        self.counter.record(f"chebyshev_{degree}", a.level)
        t = a.values * 0.5 if doubled else a.values
        return SimCiphertext(self._rescale_noise(C.chebval(t, coeffs)), a.level - depth)

    def chebyshev_depth(self, degree: int) -> int:
        return chebyshev_depth(degree)

    def bootstrap(self, a: SimCiphertext) -> SimCiphertext:
        caps = self.capabilities
        if not caps.bootstrapping or caps.level_after_bootstrap is None:
            raise CapabilityError(f"backend {caps.backend!r} is configured without bootstrapping")
        self.counter.record("bootstrap", caps.level_after_bootstrap)
        if np.max(np.abs(a.values)) > 1.0:
            self.bootstrap_overflows += 1
        values = a.values
        if self.noise:
            values = values + self.rng.normal(0.0, 2.0 ** -caps.precision_bits, values.size)
            values = values - bootstrap_bias(values, caps)
        return SimCiphertext(values, caps.level_after_bootstrap)


# ------------------------------------------------------------------------------------------------
# Fast batch path
# ------------------------------------------------------------------------------------------------


def plan_activations(plan: Plan, noise_bits: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Torch activation functions for Graph.forward that evaluate the plan's polynomials.

    With ``noise_bits``, inputs of layers that bootstrap first get Gaussian noise of std
    ``2^-noise_bits`` on the normalized input ``t`` (bootstrapping precision).
    """
    rng = np.random.default_rng(seed)
    fns: dict[str, Any] = {}
    for layer in plan.layers:
        tab = TabulatedApproximation.build(layer.approximation)
        std = 2.0 ** -noise_bits if (noise_bits and layer.bootstrap_before) else 0.0
        fns[layer.name] = _bind(tab, std, rng)
    return fns


def _bind(tab: TabulatedApproximation, std: float, rng: np.random.Generator) -> Any:
    return lambda x: tab(x, std, rng)


def simulate_logits(graph: Graph, plan: Plan, images: torch.Tensor, batch_size: int = 500,
                    noise_bits: float | None = None, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Logits of the plan's approximated network for a batch of normalized images (N, C, H, W)."""
    names = {a.name for a in graph.activations()}
    missing = names - {layer.name for layer in plan.layers}
    if missing:
        raise OlafheError(f"plan does not cover activation layer(s) {sorted(missing)} of {graph.name!r}")
    fns = plan_activations(plan, noise_bits, seed)
    logits = graph.forward_batches(images, batch_size, fns, "simulate" if progress else None)
    return logits.astype(np.float64, copy=False)
