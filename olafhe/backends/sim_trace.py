"""The simulator's traced mode: op-by-op on complex values, recording what the safety checks judge.

:class:`TracedEvaluator` is the op-by-op simulator on a batch of images at once (values of shape
(images, slots)) with complex slots: fresh and rescale noise are complex Gaussians of
``sqrt(N) * 3.2 / 2^scale_bits`` per part, bootstrapping keeps the real part (OpenFHE's real-valued
CKKS bootstrap does) and adds complex noise at the configuration's measured precision
(``capabilities.precision_bits``), Chebyshev series are evaluated on the complex values. Per program
step (``run_program``'s progress callback) it records into a
:class:`~olafhe.core.planning.numeric_trace.NumericTrace`: every operation result's largest ``|value|``
with its level, bootstrap inputs, and Chebyshev inputs' real parts by stage. Rotations and level
reductions do not change magnitudes and are not recorded; neither are the intermediate values inside a
Chebyshev series.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from numpy.polynomial import chebyshev as C

from olafhe.backends.simulator import SimCiphertext, SimEvaluator, _fresh_noise_std, bootstrap_bias
from olafhe.core.compiler.program import Program
from olafhe.core.compiler.runtime import run_program
from olafhe.core.contract.backend import Capabilities
from olafhe.core.errors import CapabilityError, OlafheError
from olafhe.core.planning.numeric_trace import NumericTrace, StepTrace

BATCH = 8   # images traced together (values are (BATCH, slots) complex arrays)


def complex_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Gaussian noise of standard deviation ``std`` on the real and on the imaginary part."""
    return rng.normal(0.0, std, shape) + 1j * rng.normal(0.0, std, shape)


class TracedEvaluator(SimEvaluator):
    """:class:`SimEvaluator` on complex (images, slots) values that records a :class:`NumericTrace`."""

    def __init__(self, caps: Capabilities, rotations: frozenset[int], rng: np.random.Generator,
                 noise: bool = True) -> None:
        super().__init__(caps, rotations, noise, rng)
        self.trace = NumericTrace()
        self._step = StepTrace()
        self._stage = 0

    def end_step(self, name: str) -> None:
        """``run_program``'s progress callback: what was recorded since the last call belongs to ``name``."""
        self._step.name = name
        self.trace.add(self._step)
        self._step, self._stage = StepTrace(), 0

    # ----------------------------------------------------------------- noise and records
    def _rescale_noise(self, values: np.ndarray) -> np.ndarray:
        values = values.astype(np.complex128, copy=False)
        if self.noise:
            values = values + complex_noise(self.rng, values.shape, _fresh_noise_std(self.capabilities))
        return values

    def _rec(self, op: str, ct: SimCiphertext) -> SimCiphertext:
        v = ct.values
        self._step.record(op, ct.level, float(np.max(np.abs(v))), float(np.max(np.abs(v.imag))))
        return ct

    # ----------------------------------------------------------------- contract
    def add(self, a: SimCiphertext, b: SimCiphertext) -> SimCiphertext:
        return self._rec("add", super().add(a, b))

    def add_plain(self, a: SimCiphertext, values: np.ndarray) -> SimCiphertext:
        return self._rec("add_plain", super().add_plain(a, values))

    def add_scalar(self, a: SimCiphertext, value: float) -> SimCiphertext:
        return self._rec("add_scalar", super().add_scalar(a, value))

    def multiply(self, a: SimCiphertext, b: SimCiphertext) -> SimCiphertext:
        return self._rec("multiply", super().multiply(a, b))

    def multiply_plain(self, a: SimCiphertext, values: np.ndarray) -> SimCiphertext:
        return self._rec("multiply_plain", super().multiply_plain(a, values))

    def multiply_scalar(self, a: SimCiphertext, value: float) -> SimCiphertext:
        return self._rec("multiply_scalar", super().multiply_scalar(a, value))

    def multiply_plain_sum(self, cts: Sequence[SimCiphertext], vectors: Sequence[np.ndarray]) -> SimCiphertext:
        """One rescale for the whole sum (as the real backends do), recorded as one result."""
        level = min(ct.level for ct in cts)
        self._require("multiply_plain", level)
        total = sum(ct.values * self._vec(vec) for ct, vec in zip(cts, vectors, strict=True))
        self.counter.record("multiply_plain", level, n=len(cts))
        return self._rec("multiply_plain", SimCiphertext(self._rescale_noise(total), level - 1))

    def rotate(self, a: SimCiphertext, steps: int) -> SimCiphertext:
        k = int(steps) % self.capabilities.slots
        if k and k not in self.rotations:
            raise OlafheError(f"no rotation key for rotation by {k}; generate keys for the program's rotations")
        self.counter.record("rotate", a.level)
        return SimCiphertext(np.roll(a.values, -k, axis=-1), a.level)

    def rotate_hoisted(self, a: SimCiphertext, steps: list[int]) -> dict[int, SimCiphertext]:
        return {s: (a if int(s) % self.capabilities.slots == 0 else self.rotate(a, s)) for s in steps}

    def chebyshev(self, a: SimCiphertext, coefficients: np.ndarray, doubled: bool = False) -> SimCiphertext:
        coeffs = np.asarray(coefficients, dtype=np.float64)
        depth = self.chebyshev_depth(len(coeffs) - 1)
        self._require(f"Chebyshev series of degree {len(coeffs) - 1}", a.level, depth)
        t = a.values * 0.5 if doubled else a.values
        self._step.record_poly(self._stage, float(np.max(np.abs(t.real))))
        self._stage += 1
        self.counter.record(f"chebyshev_{len(coeffs) - 1}", a.level)
        with np.errstate(over="ignore", invalid="ignore"):
            out = C.chebval(t, coeffs)
        return self._rec("chebyshev", SimCiphertext(self._rescale_noise(out), a.level - depth))

    def bootstrap(self, a: SimCiphertext) -> SimCiphertext:
        caps = self.capabilities
        if not caps.bootstrapping or caps.level_after_bootstrap is None:
            raise CapabilityError(f"backend {caps.backend!r} is configured without bootstrapping")
        self._step.record_bootstrap(float(np.max(np.abs(a.values))))
        self.counter.record("bootstrap", caps.level_after_bootstrap)
        values = a.values.real.astype(np.complex128)
        if self.noise:
            values = values + complex_noise(self.rng, values.shape, 2.0 ** -caps.precision_bits)
            values = values - bootstrap_bias(values, caps)
        return self._rec("bootstrap", SimCiphertext(values, caps.level_after_bootstrap))

    def bootstrap_real(self, a: SimCiphertext) -> SimCiphertext:
        """Twice the real part, refreshed: the conjugate added leaves no imaginary noise (as on OpenFHE)."""
        b = self.bootstrap(a)
        return self._rec("add", SimCiphertext((2.0 * b.values.real).astype(np.complex128), b.level))


def trace_program(program: Program, caps: Capabilities, images: np.ndarray, seed: int = 0,
                  noise: bool = True) -> NumericTrace:
    """Trace ``program`` on ``images`` (N, C, H, W) with the simulator's ``caps``, ``BATCH`` images at a time."""
    if program.slots != caps.slots:
        raise OlafheError(f"program compiled for {program.slots} slots, the simulator has {caps.slots}")
    rng = np.random.default_rng(seed)
    trace = NumericTrace()
    for start in range(0, len(images), BATCH):
        t0 = time.perf_counter()
        batch = np.stack([program.encode_input(np.asarray(img)) for img in images[start:start + BATCH]])
        ev = TracedEvaluator(caps, program.rotations, rng, noise)
        values = batch.astype(np.complex128)
        if noise:
            values = values + complex_noise(rng, values.shape, _fresh_noise_std(caps))
        out, _ = run_program(program, ev, SimCiphertext(values, program.input_level), progress=ev.end_step)
        ev.trace.images = len(batch)
        ev.trace.max_output_imag = float(np.max(np.abs(out.values.imag)))
        ev.trace.seconds = time.perf_counter() - t0
        trace.merge(ev.trace)
    return trace
