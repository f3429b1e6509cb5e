"""Evaluator of the ``openfhe`` backend: every homomorphic operation (the client is in :mod:`.client`).

Levels map to OpenFHE's level index through :class:`~olafhe.backends.openfhe.common.SlotLayout`; the design
notes are in :mod:`olafhe.backends.openfhe`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from olafhe.backends.openfhe import serialize
from olafhe.backends.openfhe.common import KeyHolder, SlotLayout, load_openfhe
from olafhe.backends.openfhe.serialize import CiphertextBytes
from olafhe.core.contract.backend import Capabilities, Evaluator, OpCounter, plain_vector
from olafhe.core.errors import (
    ApproximationError,
    CapabilityError,
    OutOfLevelsError,
    ShapeError,
)
from olafhe.core.poly.chebyshev import (
    ChebyshevProgram,
    chebyshev_baby_steps,
    chebyshev_depth,
    openfhe_chebyshev_depth,
)


class OpenFHEEvaluator(KeyHolder, CiphertextBytes, Evaluator):
    """Server side: the crypto context with its evaluation keys (relinearization, rotations,
    bootstrapping); never the secret key.

    ``add_plain`` and ``multiply_plain`` also accept a plaintext from :meth:`encode` (pre-encoded
    weights); the level recorded with every operation is the level it runs at (its operands' level).
    """

    def __init__(
        self, cc: Any, layout: SlotLayout, capabilities: Capabilities, *,
        rotations: frozenset[int], relinearization: bool, bootstrap_keys: bool,
        bootstrap_iterations: int = 1, bootstrap_precision: int = 17, chebyshev: str = "auto",
        key_tag: str = "", public_key: Any = None,
    ) -> None:
        self._cc = cc
        self._key_tag = key_tag
        self._public_key = public_key  # public: saved with the evaluation keys, never used to decrypt
        self.chebyshev_method = chebyshev
        self._layout = layout
        self._rotations = rotations
        self._relin = relinearization
        self._bootstrap_keys = bootstrap_keys
        self._iterations = bootstrap_iterations
        self._precision = bootstrap_precision
        self._zeros: dict[int, Any] = {}
        self._conjugate_keys: Any = None
        of = load_openfhe()
        self._ciphertext_type, self._plaintext_type = of.Ciphertext, of.Plaintext
        self.capabilities = capabilities
        self.counter = OpCounter()

    def save_public(self, directory: Path) -> list[str]:
        return serialize.save_public(self._cc, self._public_key, self._key_tag, self._relin,
                                     bool(self._rotations) or self._bootstrap_keys, Path(directory))

    # ----------------------------------------------------------------- helpers
    def level(self, ct: Any) -> int:
        if not isinstance(ct, self._ciphertext_type):
            raise ShapeError(f"expected an OpenFHE ciphertext, got {type(ct).__name__}")
        return self._layout.level(ct)

    def chebyshev_depth(self, degree: int) -> int:
        """``ceil(log2(d + 1))``, or OpenFHE's own table with ``chebyshev = "native"``."""
        return openfhe_chebyshev_depth(degree) if self.chebyshev_method == "native" else chebyshev_depth(degree)

    def _native_for(self, degree: int) -> bool:
        """Whether ``EvalChebyshevSeries`` evaluates ``degree``: always when native, never for "program";
        "auto" takes it where it reaches the optimal depth too (it is up to 15% faster there, N = 2^16)."""
        if self.chebyshev_method == "auto":
            return openfhe_chebyshev_depth(degree) == chebyshev_depth(degree)
        return self.chebyshev_method == "native"

    def _zero(self, index: int) -> Any:
        """All-zero plaintext at OpenFHE level ``index`` (cached): adding it level-reduces exactly."""
        pt = self._zeros.get(index)
        if pt is None:
            slots = self._layout.slots
            pt = self._cc.MakeCKKSPackedPlaintext(np.zeros(slots), 1, index, None, slots)
            self._zeros[index] = pt
        return pt

    def _rescaled(self, ct: Any) -> Any:
        """``ct`` with its pending rescale done (same contract level).

        ``Compress(ct, towers - 1, 1)`` rescales exactly; OpenFHE 1.6.1's own adjustment of a product
        against a plaintext at the last limb fails ("multiplicative depth insufficient"), so every
        plaintext operation on a product goes through here first.
        """
        if ct.GetNoiseScaleDeg() < 2:
            return ct
        towers = self._layout.depth + 1 - ct.GetLevel()
        return self._cc.Compress(ct, towers - 1, 1)

    def settle(self, a: Any) -> Any:
        """Carry out a pending rescale once, so rotations and plaintext products of ``a`` skip it.

        Measured at N = 8192: a plaintext product of a ciphertext with a pending rescale costs 2.3x one
        of the rescaled ciphertext (the rescale is ~60% of it), and rotations inherit the pending rescale.
        """
        self.level(a)
        return self._rescaled(a)

    def _reduce(self, ct: Any, level: int) -> Any:
        """``ct`` at ``level`` (<= its level), dropping limbs with the right per-level scale factor."""
        ct = self._rescaled(ct)
        if self._layout.level(ct) == level:
            return ct
        return self._cc.EvalAdd(ct, self._zero(self._layout.index(level)))

    def _align(self, a: Any, b: Any) -> tuple[Any, Any, int]:
        la, lb = self.level(a), self.level(b)
        if la > lb:
            a = self._reduce(a, lb)
        elif lb > la:
            b = self._reduce(b, la)
        return a, b, min(la, lb)

    def _plain(self, values: Any, index: int, scale_degree: int, what: str) -> Any:
        if isinstance(values, self._plaintext_type):
            return values
        vec = plain_vector(values, self._layout.slots, what)
        return self._cc.MakeCKKSPackedPlaintext(vec, scale_degree, index, None, self._layout.slots)

    def _need_relin(self, kind: str) -> None:
        if not self._relin:
            raise CapabilityError(f"{kind} needs the relinearization key; keygen with KeyRequest(relinearization=True)")

    def _rotation_key(self, steps: int) -> int:
        s = int(steps) % self._layout.slots
        if s and s not in self._rotations:
            raise CapabilityError(
                f"no rotation key for {steps} (= {s} mod {self._layout.slots} slots); keys exist for "
                f"{sorted(self._rotations)[:16]}{'...' if len(self._rotations) > 16 else ''}; "
                f"add it to KeyRequest.rotations"
            )
        return s

    # ----------------------------------------------------------------- operations
    def encode(self, values: np.ndarray, level: int) -> Any:
        """Pre-encode a plaintext vector for ``add_plain``/``multiply_plain`` at ``level``."""
        if not 0 <= level <= self._layout.max_level:
            raise CapabilityError(f"cannot encode at level {level}: levels are 0..{self._layout.max_level}")
        t = time.perf_counter()
        pt = self._plain(values, self._layout.index(level), 1, "encode")
        self._timed("encode", level, t)
        return pt

    def add(self, a: Any, b: Any) -> Any:
        t = time.perf_counter()
        a, b, lv = self._align(a, b)
        out = self._cc.EvalAdd(a, b)
        self._timed("add", lv, t)
        return out

    def add_plain(self, a: Any, values: Any) -> Any:
        lv = self.level(a)
        t = time.perf_counter()
        if isinstance(values, self._plaintext_type):  # pre-encoded for a rescaled ciphertext at this level
            a = self._rescaled(a)
        pt = self._plain(values, a.GetLevel(), a.GetNoiseScaleDeg(), "add_plain")
        out = self._cc.EvalAdd(a, pt)
        self._timed("add_plain", lv, t)
        return out

    def add_scalar(self, a: Any, value: float) -> Any:
        lv = self.level(a)
        t = time.perf_counter()
        out = self._cc.EvalAdd(a, float(value))
        self._timed("add_scalar", lv, t)
        return out

    def multiply(self, a: Any, b: Any) -> Any:
        self._need_relin("multiply")
        self._require("multiply", min(self.level(a), self.level(b)))
        t = time.perf_counter()
        if a is b:
            lv = self.level(a)
            out = self._cc.EvalSquare(a)
        else:
            a, b, lv = self._align(a, b)
            out = self._cc.EvalMult(a, b)
        self._timed("multiply", lv, t)
        return out

    def multiply_plain(self, a: Any, values: Any) -> Any:
        lv = self.level(a)
        self._require("multiply_plain", lv)
        t = time.perf_counter()
        a = self._rescaled(a)
        pt = self._plain(values, a.GetLevel(), 1, "multiply_plain")
        out = self._cc.EvalMult(a, pt)
        self._timed("multiply_plain", lv, t)
        return out

    def multiply_plain_sum(self, cts: Sequence[Any], vectors: Sequence[Any]) -> Any:
        """``sum_i cts[i] * vectors[i]``, accumulated in place (a third of a fresh addition's cost)."""
        total = None
        for ct, vec in zip(cts, vectors, strict=True):
            term = self.multiply_plain(ct, vec)
            if total is None:
                total = term
            elif term.GetLevel() == total.GetLevel() and term.GetNoiseScaleDeg() == total.GetNoiseScaleDeg():
                t = time.perf_counter()
                self._cc.EvalAddInPlace(total, term)
                self._timed("add", self._layout.level(total), t)
            else:
                total = self.add(total, term)
        return total

    def multiply_scalar(self, a: Any, value: float) -> Any:
        lv = self.level(a)
        self._require("multiply_scalar", lv)
        t = time.perf_counter()
        out = self._cc.EvalMult(a, float(value))
        self._timed("multiply_scalar", lv, t)
        return out

    def rotate(self, a: Any, steps: int) -> Any:
        s = self._rotation_key(steps)
        if s == 0:
            return a
        lv = self.level(a)
        t = time.perf_counter()
        out = self._cc.EvalRotate(a, s)
        self._timed("rotate", lv, t)
        return out

    def rotate_hoisted(self, a: Any, steps: Sequence[int]) -> dict[int, Any]:
        """Rotations sharing one digit decomposition (``EvalFastRotationPrecompute``)."""
        keyed = {st: self._rotation_key(st) for st in steps}
        out: dict[int, Any] = {st: a for st, s in keyed.items() if s == 0}
        if len(out) == len(keyed):
            return out
        lv = self.level(a)
        t = time.perf_counter()
        digits = self._cc.EvalFastRotationPrecompute(a)
        self._timed("hoist_precompute", lv, t)
        m = self._cc.GetCyclotomicOrder()
        for st, s in keyed.items():
            if s:
                t = time.perf_counter()
                out[st] = self._cc.EvalFastRotation(a, s, m, digits)
                self._timed("rotate_hoisted", lv, t)
        return out

    def level_reduce(self, a: Any, level: int) -> Any:
        lv = self.level(a)
        if level > lv:
            raise OutOfLevelsError(
                f"level_reduce to level {level} but the ciphertext is at {lv}; only bootstrap raises a level"
            )
        if level < 0:
            raise OutOfLevelsError(f"level_reduce to level {level}: levels are >= 0")
        if level == lv:
            return a
        t = time.perf_counter()
        out = self._reduce(a, level)
        self._timed("level_reduce", lv, t)
        return out

    def chebyshev(self, a: Any, coefficients: np.ndarray, doubled: bool = False) -> Any:
        c = np.asarray(coefficients, dtype=np.float64)
        if c.ndim != 1 or c.size == 0:
            raise ShapeError(f"chebyshev: coefficients must be a non-empty 1-D vector, got shape {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ApproximationError("chebyshev: coefficients contain NaN or infinity")
        degree = c.size - 1
        depth = self.chebyshev_depth(degree)
        lv = self.level(a)
        self._require(f"chebyshev (degree {degree})", lv, depth)
        if degree:
            self._need_relin("chebyshev")
        t = time.perf_counter()
        if degree == 0:
            out = self._cc.EvalAdd(self._cc.EvalSub(a, a), float(c[0]))
        elif self._native_for(degree) and not doubled:
            series = [2.0 * float(c[0])] + [float(v) for v in c[1:]]  # OpenFHE: c0/2 + sum c_k T_k
            out = self._cc.EvalChebyshevSeries(a, series, -1.0, 1.0)
        else:
            out = ChebyshevProgram(_ChebyshevOps(self, a), a, chebyshev_baby_steps(degree), doubled).evaluate(c)
        got, want = self.level(out), lv - depth
        if got > want:
            out = self._reduce(out, want)
        elif got < want:
            raise CapabilityError(
                f"a degree-{degree} Chebyshev series consumed {lv - got} levels instead of {depth}; "
                "this openfhe version differs from 1.6.1.0.22.4 -- re-run measure_chebyshev_depths"
            )
        self._timed(f"chebyshev_{degree}", lv, t)
        return out

    def bootstrap(self, a: Any) -> Any:
        if not self.capabilities.bootstrapping:
            return super().bootstrap(a)
        if not self._bootstrap_keys:
            raise CapabilityError("no bootstrap keys: keygen with KeyRequest(bootstrap=True)")
        self.level(a)
        target = self._layout.max_level
        t = time.perf_counter()
        if self._iterations == 2:
            out = self._cc.EvalBootstrap(a, 2, self._precision)
        else:
            out = self._cc.EvalBootstrap(a)
        got = self.level(out)
        if got > target:
            out = self._reduce(out, target)
        elif got < target:
            raise CapabilityError(
                f"bootstrap returned level {got}, expected {target}: OpenFHE's bootstrapping depth differs from "
                f"GetBootstrapDepth + 1 in this openfhe version"
            )
        self._timed("bootstrap", target, t)
        return out

    def bootstrap_real(self, a: Any) -> Any:
        """``EvalBootstrap`` plus its conjugate (the automorphism ``2N - 1``, whose key bootstrapping keys
        include): twice the real part, without the ~2^-14 imaginary noise a sparse bootstrap leaves."""
        out = self.bootstrap(a)
        t = time.perf_counter()
        if self._conjugate_keys is None:
            self._conjugate_keys = self._cc.GetEvalAutomorphismKeyMap(out.GetKeyTag())
        index = 2 * self.capabilities.ring_dimension - 1
        out = self._cc.EvalAdd(out, self._cc.EvalAutomorphism(out, index, self._conjugate_keys))
        self._timed("conjugate", self.level(out), t)
        return out


class _ChebyshevOps:
    """:class:`~olafhe.core.poly.chebyshev.ChebyshevOps` on OpenFHE ciphertexts. FLEXIBLEAUTO aligns the levels
    and scales of ciphertext operands itself, so ``scalar_to`` may leave its product above ``level``:
    the addition that consumes it drops the limbs (17% faster at degree 15 than reducing each term, and
    never deeper). Raw context calls: the evaluator records the whole series as one operation."""

    def __init__(self, ev: OpenFHEEvaluator, x: Any) -> None:
        self.ev = ev
        self.cc = ev._cc
        self.x = x
        self.negligible = 2.0 ** -ev.capabilities.scale_bits  # encodes to zero at this scale

    def level(self, a: Any) -> int:
        return self.ev.level(a)

    def multiply(self, a: Any, b: Any) -> Any:
        return self.cc.EvalMult(a, b)

    def add(self, a: Any, b: Any) -> Any:
        return self.cc.EvalAdd(a, b)

    def sub(self, a: Any, b: Any) -> Any:
        return self.cc.EvalSub(a, b)

    def add_scalar(self, a: Any, c: float) -> Any:
        return self.cc.EvalAdd(a, float(c))

    def scalar_to(self, a: Any, c: float, level: int) -> Any:
        return self.cc.EvalMult(a, float(c))  # FLEXIBLEAUTO aligns it where it is added (cheaper)

    def constant(self, c: float, level: int) -> Any:
        """``c`` in every slot at ``level`` (a series whose other coefficients are all negligible)."""
        return self.ev._reduce(self.cc.EvalAdd(self.cc.EvalSub(self.x, self.x), float(c)), level)
