"""Evaluator of the ``tenseal`` backend: every homomorphic operation on SEAL ciphertexts, each kept at the
canonical scale of its level. Design notes: :mod:`olafhe.backends.tenseal`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from olafhe.backends.tenseal import serialize
from olafhe.backends.tenseal.common import (
    ModulusChain,
    TenSEALCiphertext,
    TenSEALPlaintext,
    load_sealapi,
)
from olafhe.backends.tenseal.serialize import CiphertextBytes
from olafhe.core.contract.backend import Capabilities, Evaluator, OpCounter
from olafhe.core.errors import CapabilityError, OutOfLevelsError, ShapeError
from olafhe.core.poly.chebyshev import ChebyshevProgram, chebyshev_baby_steps, chebyshev_depth

# Relative tolerance for "this double is the canonical scale" (scales are exact up to a few ulps).
_SCALE_RTOL = 1e-9


# ----------------------------------------------------------------------------- evaluator
class TenSEALEvaluator(CiphertextBytes, Evaluator):
    """Server side: public key (to encrypt public constants), relinearization and Galois keys only.

    Extensions beyond the contract: :meth:`sub`; :meth:`encode`, whose :class:`TenSEALPlaintext`
    result ``add_plain``, ``multiply_plain`` and ``multiply_plain_sum`` accept in place of a vector
    (encode once, reuse: encoding costs about half a plaintext product at N = 16384); and
    :meth:`multiply_plain_sum` (plaintext products summed before a single rescale).
    """

    def __init__(
        self,
        chain: ModulusChain,
        capabilities: Capabilities,
        public_key: Any,
        relin_keys: Any | None,
        galois_keys: Any | None,
        rotations: frozenset[int],
    ) -> None:
        seal = load_sealapi()
        self.capabilities = capabilities
        self.counter = OpCounter()
        self._chain = chain
        self._seal = chain.evaluator
        self._public_key = public_key
        self._public_encryptor = seal.Encryptor(chain.context, public_key)
        self._relin_keys = relin_keys
        self._galois_keys = galois_keys
        self.rotations = rotations

    def save_public(self, directory: Path) -> list[str]:
        directory = Path(directory)
        objs = ((self._public_key, serialize.PUBLIC_KEY), (self._relin_keys, serialize.RELIN_KEYS),
                (self._galois_keys, serialize.GALOIS_KEYS))
        return [serialize.save(obj, directory / name) for obj, name in objs if obj is not None]

    # ------------------------------------------------------------------ helpers
    def _ct(self, a: Any, what: str) -> TenSEALCiphertext:
        if not isinstance(a, TenSEALCiphertext):
            raise CapabilityError(f"{what}: the tenseal evaluator cannot operate on {type(a).__name__}")
        if a.chain is not self._chain:
            raise CapabilityError(f"{what}: the ciphertext belongs to another tenseal key set")
        return a

    def _wrap(self, ct: Any, level: int) -> TenSEALCiphertext:
        """Wrap a SEAL result, pinning its scale to the canonical one of ``level``."""
        canonical = self._chain.scales[level]
        if abs(ct.scale / canonical - 1.0) > _SCALE_RTOL:  # pragma: no cover - invariant guard
            raise AssertionError(f"scale 2**{math.log2(ct.scale):.6f} is not canonical at level {level}")
        ct.scale = canonical
        return TenSEALCiphertext(ct, level, self._chain)

    def _zero(self, level: int) -> TenSEALCiphertext:
        """A fresh public-key encryption of 0 at ``level`` (SEAL refuses exactly-zero results)."""
        ct = load_sealapi().Ciphertext()
        self._public_encryptor.encrypt_zero(self._chain.parms_ids[level], ct)
        ct.scale = self._chain.scales[level]
        return TenSEALCiphertext(ct, level, self._chain)

    def _run(self, fn: Callable[[Any], None], level: int) -> TenSEALCiphertext:
        """Run a SEAL operation writing into a new ciphertext at ``level``."""
        out = load_sealapi().Ciphertext()
        try:
            fn(out)
        except RuntimeError as exc:
            if "transparent" in str(exc):  # the exact result is 0: return an encryption of 0
                return self._zero(level)
            raise
        return self._wrap(out, level)

    def _down(self, a: TenSEALCiphertext, level: int, value: float = 1.0) -> TenSEALCiphertext:
        """``value * a`` at exactly ``level`` < ``a.level``: mod switch, exact-scale constant, rescale."""
        chain = self._chain
        src = a.data
        if a.level > level + 1:
            src = load_sealapi().Ciphertext()
            self._seal.mod_switch_to(a.data, chain.parms_ids[level + 1], src)
        pt_scale = chain.scales[level] * float(chain.primes[level + 1]) / a.data.scale
        if abs(value) * pt_scale < 0.5:  # encodes to 0: the product is 0 to within 2**-scale_bits
            return self._zero(level)
        pt = chain.encode_scalar(value, level + 1, pt_scale)

        def op(out: Any) -> None:
            self._seal.multiply_plain(src, pt, out)
            self._seal.rescale_to_next_inplace(out)

        return self._run(op, level)

    def _lower(self, a: TenSEALCiphertext, level: int) -> TenSEALCiphertext:
        """``a`` brought down to ``level`` if it is above (recorded as ``level_reduce`` from ``level + 1``)."""
        if a.level <= level:
            return a
        start = time.perf_counter()
        out = self._down(a, level)
        self._timed("level_reduce", level + 1, start)
        return out

    def _align(self, a: TenSEALCiphertext, b: TenSEALCiphertext) -> tuple[TenSEALCiphertext, TenSEALCiphertext]:
        """Bring the higher operand down to the lower one's level."""
        level = min(a.level, b.level)
        return self._lower(a, level), self._lower(b, level)

    def _plain(self, values: Any, level: int, what: str) -> Any:
        """A SEAL plaintext at ``level`` and scale ``S_level`` from a vector or a TenSEALPlaintext."""
        if isinstance(values, TenSEALPlaintext):
            if values.chain is not self._chain:
                raise CapabilityError(f"{what}: the plaintext was encoded for another tenseal key set")
            if values.level == level:
                return values.data
            filled = values.values  # encoded for another level: re-encode (documented cost)
        else:
            filled = self._chain.fill(values, what)
        start = time.perf_counter()
        pt = self._chain.encode(filled, level, self._chain.scales[level])
        self._timed("encode", level, start)
        return pt

    # ------------------------------------------------------------------ contract
    def level(self, ct: Any) -> int:
        return self._ct(ct, "level").level

    def encode(self, values: np.ndarray, level: int | None = None) -> TenSEALPlaintext:
        """Encode a vector once for ``add_plain`` / ``multiply_plain`` on ciphertexts at ``level``."""
        chain = self._chain
        lvl = chain.check_level(level, "encode")
        filled = chain.fill(values, "encode")
        start = time.perf_counter()
        pt = chain.encode(filled, lvl, chain.scales[lvl])
        self._timed("encode", lvl, start)
        return TenSEALPlaintext(pt, lvl, filled, chain)

    def add(self, a: Any, b: Any) -> TenSEALCiphertext:
        a, b = self._align(self._ct(a, "add"), self._ct(b, "add"))
        start = time.perf_counter()
        out = self._run(lambda o: self._seal.add(a.data, b.data, o), a.level)
        self._timed("add", a.level, start)
        return out

    def sub(self, a: Any, b: Any) -> TenSEALCiphertext:
        """``a - b`` (an extension; recorded as ``add``)."""
        a, b = self._align(self._ct(a, "sub"), self._ct(b, "sub"))
        start = time.perf_counter()
        out = self._run(lambda o: self._seal.sub(a.data, b.data, o), a.level)
        self._timed("add", a.level, start)
        return out

    def add_plain(self, a: Any, values: Any) -> TenSEALCiphertext:
        a = self._ct(a, "add_plain")
        pt = self._plain(values, a.level, "add_plain")
        start = time.perf_counter()
        out = self._run(lambda o: self._seal.add_plain(a.data, pt, o), a.level)
        self._timed("add_plain", a.level, start)
        return out

    def add_scalar(self, a: Any, value: float) -> TenSEALCiphertext:
        a = self._ct(a, "add_scalar")
        start = time.perf_counter()
        pt = self._chain.encode_scalar(float(value), a.level, self._chain.scales[a.level])
        out = self._run(lambda o: self._seal.add_plain(a.data, pt, o), a.level)
        self._timed("add_scalar", a.level, start)
        return out

    def multiply(self, a: Any, b: Any) -> TenSEALCiphertext:
        a, b = self._ct(a, "multiply"), self._ct(b, "multiply")
        self._require("multiply", min(a.level, b.level))
        if self._relin_keys is None:
            raise CapabilityError(
                "multiply: no relinearization key (KeyRequest.relinearization was False)"
            )
        same = a is b
        a, b = self._align(a, b)
        start = time.perf_counter()

        def op(out: Any) -> None:
            if same:
                self._seal.square(a.data, out)
            else:
                self._seal.multiply(a.data, b.data, out)
            self._seal.relinearize_inplace(out, self._relin_keys)
            self._seal.rescale_to_next_inplace(out)

        out = self._run(op, a.level - 1)
        self._timed("multiply", a.level, start)
        return out

    def multiply_plain(self, a: Any, values: Any) -> TenSEALCiphertext:
        a = self._ct(a, "multiply_plain")
        self._require("multiply_plain", a.level)
        pt = self._plain(values, a.level, "multiply_plain")
        start = time.perf_counter()

        def op(out: Any) -> None:
            self._seal.multiply_plain(a.data, pt, out)
            self._seal.rescale_to_next_inplace(out)

        out = self._run(op, a.level - 1)
        self._timed("multiply_plain", a.level, start)
        return out

    def multiply_plain_sum(self, cts: Sequence[Any], plains: Sequence[Any]) -> TenSEALCiphertext:
        """``sum_i plains[i] * cts[i]`` with one rescale at the end (an extension; level ``min - 1``).

        The inner sum of the diagonal method: SEAL's plaintext product is cheap next to the rescale, so
        rescaling once instead of per term is ~3x faster at N = 16384. Every product at level ``l`` has
        scale ``S_l**2``, so the sum is exact and the rescale lands on ``S_{l-1}``. Recorded as
        ``len(cts)`` ``multiply_plain`` operations sharing the measured time.
        """
        if len(cts) != len(plains) or not cts:
            raise ShapeError(
                f"multiply_plain_sum: needs as many plaintexts as ciphertexts (>= 1), got "
                f"{len(plains)} and {len(cts)}"
            )
        wrapped = [self._ct(c, "multiply_plain_sum") for c in cts]
        level = min(c.level for c in wrapped)
        self._require("multiply_plain_sum", level)
        aligned = [self._lower(c, level) for c in wrapped]
        encoded = [self._plain(v, level, "multiply_plain_sum") for v in plains]
        start = time.perf_counter()
        acc = None
        for c, pt in zip(aligned, encoded, strict=True):
            if pt.is_zero():  # SEAL refuses the exactly-zero product; it adds nothing anyway
                continue
            term = load_sealapi().Ciphertext()
            self._seal.multiply_plain(c.data, pt, term)
            if acc is None:
                acc = term
            else:
                self._seal.add_inplace(acc, term)
        if acc is None:
            out = self._zero(level - 1)
        else:
            final = acc
            out = self._run(lambda o: self._seal.rescale_to_next(final, o), level - 1)
        self._timed("multiply_plain", level, start, n=len(aligned))
        return out

    def multiply_scalar(self, a: Any, value: float) -> TenSEALCiphertext:
        a = self._ct(a, "multiply_scalar")
        self._require("multiply_scalar", a.level)
        start = time.perf_counter()
        out = self._down(a, a.level - 1, float(value))
        self._timed("multiply_scalar", a.level, start)
        return out

    def _rotate(self, a: TenSEALCiphertext, steps: int) -> TenSEALCiphertext:
        slots = self._chain.slots
        step = int(steps) % slots
        if step == 0:
            return a  # ciphertexts are never mutated, so sharing is safe
        if step not in self.rotations or self._galois_keys is None:
            have = sorted(self.rotations) or "none"
            raise CapabilityError(
                f"rotate: no Galois key for a rotation by {steps} (= {step} mod {slots} slots); keys were "
                f"generated for {have}. Add it to KeyRequest.rotations"
            )
        return self._run(lambda o: self._seal.rotate_vector(a.data, step, self._galois_keys, o), a.level)

    def rotate(self, a: Any, steps: int) -> TenSEALCiphertext:
        a = self._ct(a, "rotate")
        start = time.perf_counter()
        out = self._rotate(a, steps)
        if out is not a:
            self._timed("rotate", a.level, start)
        return out

    def rotate_hoisted(self, a: Any, steps: Sequence[int]) -> dict[int, Any]:
        """One rotation per step (no hoisting in the SEAL bindings); recorded as ``rotate_hoisted``."""
        a = self._ct(a, "rotate_hoisted")
        result: dict[int, Any] = {}
        for s in steps:
            start = time.perf_counter()
            result[s] = self._rotate(a, s)
            if result[s] is not a:
                self._timed("rotate_hoisted", a.level, start)
        return result

    def level_reduce(self, a: Any, level: int) -> TenSEALCiphertext:
        """Move ``a`` down to ``level``: mod switch plus one exact-scale constant product (see module doc)."""
        a = self._ct(a, "level_reduce")
        level = int(level)
        if level > a.level:
            raise CapabilityError(
                f"level_reduce: cannot raise a ciphertext from level {a.level} to {level} "
                "(backend 'tenseal' has no bootstrapping)"
            )
        if level < 0:
            raise OutOfLevelsError(f"level_reduce: level {level} is below 0")
        if level == a.level:
            return a
        start = time.perf_counter()
        out = self._down(a, level)
        self._timed("level_reduce", a.level, start)
        return out

    def chebyshev(self, a: Any, coefficients: np.ndarray, doubled: bool = False) -> TenSEALCiphertext:
        a = self._ct(a, "chebyshev")
        coeffs = np.asarray(coefficients, dtype=np.float64).ravel()
        self._require("chebyshev", a.level, chebyshev_depth(max(coeffs.size - 1, 0)))
        baby = chebyshev_baby_steps(max(coeffs.size - 1, 0))
        return ChebyshevProgram(_SealOps(self), a, baby, doubled).evaluate(coeffs)

    def chebyshev_depth(self, degree: int) -> int:
        return chebyshev_depth(degree)

    def bootstrap(self, a: Any) -> Any:
        raise CapabilityError(
            "backend 'tenseal' cannot bootstrap (SEAL has no CKKS bootstrapping); use backend 'openfhe' "
            "or a plan whose depth fits ckks.levels"
        )


class _SealOps:
    """:class:`ChebyshevOps` on real ciphertexts through the evaluator (so every op is recorded)."""

    def __init__(self, ev: TenSEALEvaluator) -> None:
        self.ev = ev
        # Coefficients below this encode to 0 at a 2**scale_bits scale (error < 2**-scale_bits).
        self.negligible = 2.0 ** -ev.capabilities.scale_bits

    def level(self, a: TenSEALCiphertext) -> int:
        return a.level

    def multiply(self, a: TenSEALCiphertext, b: TenSEALCiphertext) -> TenSEALCiphertext:
        return self.ev.multiply(a, b)

    def add(self, a: TenSEALCiphertext, b: TenSEALCiphertext) -> TenSEALCiphertext:
        return self.ev.add(a, b)

    def sub(self, a: TenSEALCiphertext, b: TenSEALCiphertext) -> TenSEALCiphertext:
        return self.ev.sub(a, b)

    def add_scalar(self, a: TenSEALCiphertext, c: float) -> TenSEALCiphertext:
        return self.ev.add_scalar(a, c)

    def scalar_to(self, a: TenSEALCiphertext, c: float, level: int) -> TenSEALCiphertext:
        start = time.perf_counter()
        out = self.ev._down(a, level, c)
        self.ev._timed("multiply_scalar", level + 1, start)
        return out

    def constant(self, c: float, level: int) -> TenSEALCiphertext:
        zero = self.ev._zero(level)
        return self.ev.add_scalar(zero, c) if c != 0.0 else zero

