"""The ``tenseal`` backend: CKKS through the SEAL bindings that ship inside TenSEAL 0.3.16.

TenSEAL's high-level ``CKKSVector`` has no general rotation and hides levels and scales, so this backend
is built on ``tenseal.sealapi`` (SEAL's own objects: ``SEALContext``, ``CKKSEncoder``, ``KeyGenerator``,
``Evaluator.rotate_vector``, ``rescale_to_next``, ``mod_switch_to`` ...), which gives the whole contract.

Parameters and security
    The coefficient modulus is ``[first_mod_bits] + [scale_bits] * levels + [first_mod_bits]`` (the
    last prime is SEAL's special key-switching prime). Its total must fit the HE-standard 128-bit table
    (:func:`~olafhe.core.contract.ckks.check_security`) unless ``ckks.insecure`` is set. SEAL enforces the
    same table up to N = 32768 but has no entry for N = 65536, so the context is created with SEAL's own
    check (``TC128``) where SEAL has one and with ``NONE`` after our check passed otherwise (or on an
    explicit opt-out). With 60-bit outer primes and 40-bit scale primes, N = 16384 holds 7 levels
    (400 of 438 bits) and N = 32768 holds 19 levels (880 of 881 bits).

Levels
    ``level`` is SEAL's chain index of the ciphertext: a fresh ciphertext has ``levels`` scale primes
    above the first prime; every product rescales by one of them.

Scales (the hard part of CKKS in SEAL)
    SEAL rescales by the actual prime ``q_l`` (close to, but not equal to, ``2**scale_bits``), so after
    a product the scale is ``s**2 / q_l`` and additions need equal scales. Instead of forcing scales to
    the nominal value (a relative error of about ``|1 - 2**scale_bits / q_l|`` ~ 1e-6 per product that
    compounds), every level ``l`` has one *canonical* scale (OpenFHE's FLEXIBLEAUTO idea)::

        S_levels = 2**scale_bits (lowered by ppm if needed),     S_{l-1} = S_l**2 / q_l

    and every ciphertext at level ``l`` carries exactly ``S_l``. Then a ciphertext product of two level-l
    ciphertexts lands on ``S_{l-1}`` by itself; a plaintext or constant multiplying a level-l ciphertext
    is encoded at scale ``S_l`` (``S_l * S_l / q_l = S_{l-1}``); and a ciphertext that must move down
    to a lower level ``t`` (additions of operands at different levels, :meth:`level_reduce`) is mod
    switched to ``t + 1`` and multiplied by the constant 1 encoded at ``S_t * q_{t+1} / S_l`` before
    the rescale. Scales are therefore exact up to double rounding (relative 1e-16) and the only extra
    error is the usual rescale rounding. The scale primes are chosen by :func:`choose_scale_primes`
    (nearest prime = 1 mod 2N to the current canonical scale, product kept below the nominal bit count),
    so ``S_l`` stays within ~1e-5 of ``2**scale_bits`` at every level even for 19 levels at N = 32768
    (SEAL's default primes would let it grow 5x).

Rotations
    Galois keys are generated for exactly the requested rotation amounts (reduced modulo the slot
    count); a rotation without its key raises :class:`~olafhe.core.errors.CapabilityError` naming the
    step and the keys present (SEAL would otherwise try to compose it or fail obscurely).
    ``rotate_hoisted`` is a loop: the SEAL bindings expose no hoisted key switching. One Galois key
    holds ``levels + 1`` key-switching components over ``levels + 2`` primes: ~19 MB and 0.07 s at
    N = 16384 with 7 levels, ~220 MB and 1.8 s at N = 32768 with 19 levels.

Precision (measured max error on values in [-1, 1]; N = 16384, 40-bit scale)
    fresh symmetric encryption 2**-30, product 2**-26, rotation 2**-19 (SEAL's key switching has one
    special prime and one digit per prime, so the 60-bit first prime adds ~2**21 absolute at every key
    switch; the rescale after a product divides that away, a rotation keeps it). A 50-bit scale gives
    2**-30 after a rotation but only 6 levels at N = 16384. See :func:`estimated_precision_bits`.

Slots
    SEAL always packs ``N/2`` slots. A smaller ``ckks.slots = n`` is honoured by replicating the
    ``n``-vector ``N/(2n)`` times: rotating the periodic full vector is then exactly a cyclic rotation
    of the ``n``-vector, and decryption reads the first ``n`` slots.

Polynomials
    :meth:`TenSEALEvaluator.chebyshev` evaluates ``sum_k c_k T_k`` (numpy convention) by
    :class:`ChebyshevProgram`: Chebyshev division ``p = T_m q + r`` at giant steps ``m = 2**j``, leaf
    polynomials as linear combinations of baby steps ``T_1..T_k`` whose constant products land exactly
    on the output level, powers from ``T_2k = 2 T_k**2 - 1`` and ``T_{m+n} = 2 T_m T_n - T_{m-n}``. It
    consumes exactly ``ceil(log2(d + 1))`` levels with close to Paterson-Stockmeyer's number of products
    (27 for degree 127); the same code run on level numbers gives :func:`tenseal_chebyshev_depth`.

Zero results
    SEAL refuses to produce an exactly-zero ("transparent") ciphertext (``a - a``, a product with an
    all-zero plaintext); the evaluator returns a fresh public-key encryption of zero instead.

Not supported: bootstrapping (SEAL has none), multithreading (SEAL's evaluator is single-threaded, so
``ckks.threads`` is ignored). N = 65536 works (our 128-bit check; SEAL's table stops at 32768) but
SEAL's context set-up alone takes 10-25 s there with 40 levels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from olafhe.core.contract.backend import (
    Backend,
    Capabilities,
    Client,
    Evaluator,
    KeyRequest,
    OpCounter,
    normalize_rotations,
)
from olafhe.core.contract.ckks import CKKSParams, check_security
from olafhe.core.errors import CapabilityError, ConfigError, OutOfLevelsError, SecurityError, ShapeError
from olafhe.core.poly.chebyshev import (
    ChebyshevProgram,
    chebyshev_baby_steps,
    chebyshev_program_depth,
    chebyshev_schedule,
    chebyshev_series_depth,
)

# SEAL's limits on user primes (SEAL_USER_MOD_BIT_COUNT_MIN / _MAX).
_SEAL_MIN_PRIME_BITS = 2
_SEAL_MAX_PRIME_BITS = 60
# Ring dimensions for which SEAL has its own 128-bit table (it lacks 65536).
_SEAL_TC128_DIMENSIONS = (1024, 2048, 4096, 8192, 16384, 32768)
# Relative tolerance for "this double is the canonical scale" (scales are exact up to a few ulps).
_SCALE_RTOL = 1e-9


def _sealapi() -> Any:
    """Import ``tenseal.sealapi`` lazily so that the registry works without TenSEAL installed."""
    try:
        import tenseal.sealapi as sealapi
    except ImportError as exc:  # pragma: no cover - the package pins tenseal
        raise CapabilityError(
            f"backend 'tenseal' needs the tenseal package (pip install tenseal==0.3.16): {exc}"
        ) from exc
    return sealapi


def modulus_bit_sizes(params: CKKSParams) -> list[int]:
    """Bit sizes of the coefficient-modulus primes: first, one per level, special prime."""
    return [params.first_mod_bits] + [params.scale_bits] * params.levels + [params.first_mod_bits]


def default_params() -> CKKSParams:
    """A 128-bit configuration that suits SEAL: N = 16384, 40-bit scale, 7 levels (400 of 438 bits)."""
    return CKKSParams(ring_dimension=16384, scale_bits=40, first_mod_bits=60, levels=7, bootstrap=False)


def estimated_precision_bits(params: CKKSParams) -> float:
    """Bits of precision (max error on values in [-1, 1]) after a rotation, the noisiest operation.

    Measured on this backend: SEAL's key switching uses one special prime and one digit per prime,
    so a rotation adds an absolute error of about ``2**(log2(N)/2 + 14)`` at the scale (a digit of the
    60-bit first prime over a 60-bit special prime), i.e. about ``scale_bits - log2(N)/2 - 14`` bits
    (within 1.5 bits at N = 8192..32768, scale 30..50). Products are about 6 bits better (the rescale
    divides the relinearization noise away): ``scale_bits - 15`` at N = 16384. Fresh symmetric
    encryption: ``scale_bits - 10``.
    """
    bits = params.scale_bits - 0.5 * math.log2(params.ring_dimension) - 14.0
    return float(max(0.0, min(bits, params.first_mod_bits - 1)))


def _next_prime(start: int, step: int, stride: int, low: int, high: int, exclude: set[int]) -> int | None:
    """The first prime ``start + i*stride*step`` (``i >= 0``, ``stride`` = +1/-1) in ``(low, high)``."""
    seal = _sealapi()
    c = start
    while low < c < high:
        if c not in exclude and seal.Modulus(c).is_prime():
            return c
        c += stride * step
    return None


def _track_scale(n: int, scale_bits: int, levels: int, top: float, exclude: set[int]) -> list[int]:
    """Primes q_levels, ..., q_1 (in choice order), each the usable prime nearest the current scale."""
    two_n = 2 * n
    used = set(exclude)
    low, high = 1 << (scale_bits - 1), min(1 << (scale_bits + 1), 1 << _SEAL_MAX_PRIME_BITS)
    chosen: list[int] = []
    scale = top
    for _ in range(levels):
        base = (int(scale) - 1) // two_n * two_n + 1  # largest candidate <= scale
        below = _next_prime(base, two_n, -1, low, high, used)
        above = _next_prime(base + two_n, two_n, 1, low, high, used)
        if below is None and above is None:
            raise ConfigError(
                f"SEAL cannot build a coefficient modulus: too few primes = 1 mod {two_n} near "
                f"2**{scale_bits} for {levels} levels at ring dimension {n}; raise ckks.scale_bits"
            )
        if below is None or (above is not None and above - scale < scale - below):
            q = above
        else:
            q = below
        assert q is not None
        used.add(q)
        chosen.append(q)
        scale = scale * scale / q
    return chosen


def choose_scale_primes(
    n: int, scale_bits: int, levels: int, exclude: set[int] | None = None
) -> tuple[list[int], float]:
    """Primes ``q_1..q_levels`` (= 1 mod 2N) and the top-level scale, chosen so scales stay put.

    Walking down from the top scale, ``q_l`` is the usable prime nearest the current canonical scale
    ``S_l``, so ``S_{l-1} = S_l**2 / q_l`` moves by at most half a prime gap over the scale (~1e-6 at
    N = 16384) per level, a random walk, instead of doubling its deviation every level as with SEAL's
    default primes (all just below ``2**scale_bits``: the scale grows 5x over 19 levels at N = 32768).
    The top scale starts at ``2**scale_bits`` and is lowered by a few parts per million when needed so
    that the product of the primes stays below ``2**(scale_bits * levels)``: the modulus then never
    exceeds the nominal bit count the security check counted.
    """
    exclude = set(exclude or ())
    bound = scale_bits * levels
    top = float(2**scale_bits)
    for _ in range(32):
        chosen = _track_scale(n, scale_bits, levels, top, exclude)
        product = math.prod(chosen)
        if product < 1 << bound:
            return chosen[::-1], top  # q_1 .. q_levels: the top level's prime is dropped first
        top *= 2.0 ** (-(math.log2(product) - bound) / levels - 2.0**-30)
    raise ConfigError(  # pragma: no cover - converges in one or two rounds
        f"SEAL cannot build a coefficient modulus of {levels} primes within {bound} bits near 2**{scale_bits}"
    )


# ----------------------------------------------------------------------------- values on the wire
@dataclass(frozen=True, eq=False)
class TenSEALCiphertext:
    """A SEAL ciphertext with its level; never mutated after creation (operations return new ones)."""

    data: Any  # tenseal.sealapi.Ciphertext
    level: int
    chain: _Chain

    def __repr__(self) -> str:
        return f"TenSEALCiphertext(level={self.level}, scale=2**{math.log2(self.data.scale):.6f})"


@dataclass(frozen=True, eq=False)
class TenSEALPlaintext:
    """A vector encoded once for reuse at ``level`` (scale ``S_level``: valid for add and multiply).

    ``values`` (the slot-filled float vector) is kept so that a use at another level re-encodes it.
    """

    data: Any  # tenseal.sealapi.Plaintext
    level: int
    values: np.ndarray
    chain: _Chain


# ----------------------------------------------------------------------------- the modulus chain
class _Chain:
    """Public parameter objects shared by client and server: context, encoder, per-level data.

    Holds no key material. ``scales[l]`` is the canonical scale of level ``l``; ``primes[l]`` the prime
    dropped when rescaling from level ``l`` (``primes[0]`` is the first prime, never dropped).
    """

    def __init__(self, params: CKKSParams, security_bits: int) -> None:
        seal = _sealapi()
        self.params = params
        n = params.ring_dimension
        self.full_slots = n // 2
        self.slots = params.slot_count
        self.replicas = self.full_slots // self.slots
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(n)
        try:
            outer = [m.value() for m in seal.CoeffModulus.Create(n, [params.first_mod_bits] * 2)]
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"SEAL cannot build a coefficient modulus of {modulus_bit_sizes(params)} bits at ring "
                f"dimension {n} ({exc}); use fewer ckks.levels or larger primes (each must be 1 mod 2N)"
            ) from exc
        scale_primes, top_scale = choose_scale_primes(n, params.scale_bits, params.levels, set(outer))
        values = [outer[0], *scale_primes, outer[1]]  # first prime, q_1..q_levels, special prime
        parms.set_coeff_modulus([seal.Modulus(v) for v in values])
        nominal_bits = sum(modulus_bit_sizes(params))
        if math.prod(values).bit_length() > nominal_bits:  # pragma: no cover - choose_scale_primes bounds it
            raise SecurityError(f"the chosen primes exceed the nominal {nominal_bits} modulus bits")
        use_seal_check = security_bits >= 128 and n in _SEAL_TC128_DIMENSIONS
        level = seal.SEC_LEVEL_TYPE.TC128 if use_seal_check else seal.SEC_LEVEL_TYPE.NONE
        self.context = seal.SEALContext(parms, True, level)
        if not self.context.parameters_set():
            name = self.context.parameters_error_name()
            msg = self.context.parameters_error_message()
            cls = SecurityError if "insecure" in name else ConfigError
            raise cls(
                f"SEAL refuses CKKS parameters N={n}, modulus bits {modulus_bit_sizes(params)}: "
                f"{msg} ({name})"
            )
        self.encoder = seal.CKKSEncoder(self.context)
        self.evaluator = seal.Evaluator(self.context)
        self.parms_ids: dict[int, list[int]] = {}
        self.primes: dict[int, int] = {}
        data = self.context.first_context_data()
        while data is not None:
            lvl = data.chain_index()
            self.parms_ids[lvl] = data.parms_id()
            self.primes[lvl] = data.parms().coeff_modulus()[-1].value()
            data = data.next_context_data()
        self.max_level = max(self.parms_ids)
        if self.max_level != params.levels:  # pragma: no cover - guards our reading of SEAL's chain
            raise ConfigError(f"SEAL built {self.max_level} levels instead of {params.levels}")
        self.scales: dict[int, float] = {self.max_level: top_scale}
        for lvl in range(self.max_level, 0, -1):
            s = self.scales[lvl]
            self.scales[lvl - 1] = s * s / float(self.primes[lvl])
        self.modulus_bits = self.context.key_context_data().total_coeff_modulus_bit_count()

    def galois_elements(self, steps: Sequence[int]) -> list[int]:
        return list(self.context.key_context_data().galois_tool().get_elts_from_steps(list(steps)))

    def fill(self, values: Any, what: str) -> np.ndarray:
        """A real vector of at most ``slots`` entries, zero-padded and replicated to ``N/2`` slots."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise ShapeError(f"{what}: expected a 1-D vector, got shape {arr.shape}")
        if arr.size > self.slots:
            raise ShapeError(f"{what}: {arr.size} values do not fit {self.slots} slots")
        if not np.all(np.isfinite(arr)):
            raise ShapeError(f"{what}: values must be finite")
        out = np.zeros(self.slots)
        out[: arr.size] = arr
        return np.tile(out, self.replicas) if self.replicas > 1 else out

    def encode(self, values: np.ndarray | float, level: int, scale: float) -> Any:
        """A SEAL plaintext of a slot vector or a constant at ``level`` and ``scale``."""
        pt = _sealapi().Plaintext()
        data = float(values) if np.isscalar(values) else values.tolist()  # type: ignore[union-attr]
        try:
            self.encoder.encode(data, self.parms_ids[level], scale, pt)
        except (ValueError, RuntimeError) as exc:
            peak = float(np.max(np.abs(values)))
            raise CapabilityError(
                f"cannot encode values up to {peak:.3g} at scale 2**{math.log2(scale):.1f} on level {level} "
                f"({exc}); scale the values down (|values| must stay well below "
                f"2**{self.params.first_mod_bits - self.params.scale_bits - 1})"
            ) from exc
        return pt

    def encode_scalar(self, value: float, level: int, scale: float) -> Any:
        return self.encode(float(value), level, scale)

    def check_level(self, level: int | None, what: str) -> int:
        lvl = self.max_level if level is None else int(level)
        if not 0 <= lvl <= self.max_level:
            raise CapabilityError(f"{what}: level {lvl} is outside 0..{self.max_level} for backend 'tenseal'")
        return lvl


# ----------------------------------------------------------------------------- client
class TenSEALClient(Client):
    """Client side: the only holder of the secret key (inside SEAL's Encryptor/Decryptor)."""

    def __init__(self, chain: _Chain, secret_key: Any) -> None:
        seal = _sealapi()
        self._chain = chain
        # Symmetric encryption: the client has the secret key, and it is ~5 bits less noisy.
        self._encryptor = seal.Encryptor(chain.context, secret_key)
        self._decryptor = seal.Decryptor(chain.context, secret_key)

    def encrypt(self, values: np.ndarray, level: int | None = None) -> TenSEALCiphertext:
        chain = self._chain
        lvl = chain.check_level(level, "encrypt")
        pt = chain.encode(chain.fill(values, "encrypt"), lvl, chain.scales[lvl])
        ct = _sealapi().Ciphertext()
        self._encryptor.encrypt_symmetric(pt, ct)
        return TenSEALCiphertext(ct, lvl, chain)

    def decrypt(self, ciphertext: TenSEALCiphertext, length: int | None = None) -> np.ndarray:
        chain = self._chain
        if not isinstance(ciphertext, TenSEALCiphertext) or ciphertext.chain is not chain:
            raise CapabilityError("decrypt: not a ciphertext of this tenseal key set")
        n = chain.slots if length is None else int(length)
        if not 0 <= n <= chain.slots:
            raise ShapeError(f"decrypt: length {n} exceeds {chain.slots} slots")
        pt = _sealapi().Plaintext()
        self._decryptor.decrypt(ciphertext.data, pt)
        return np.asarray(chain.encoder.decode_double(pt), dtype=np.float64)[:n]


# ----------------------------------------------------------------------------- Chebyshev program
# The depth-optimal recursion is shared with OpenFHE (olafhe.core.poly.chebyshev); TenSEAL names kept.
tenseal_chebyshev_schedule = chebyshev_schedule
tenseal_chebyshev_depth = chebyshev_program_depth


# ----------------------------------------------------------------------------- evaluator
class TenSEALEvaluator(Evaluator):
    """Server side: public key (to encrypt public constants), relinearization and Galois keys only.

    Extensions beyond the contract: :meth:`sub`; :meth:`encode`, whose :class:`TenSEALPlaintext`
    result ``add_plain``, ``multiply_plain`` and ``multiply_plain_sum`` accept in place of a vector
    (encode once, reuse: encoding costs about half a plaintext product at N = 16384); and
    :meth:`multiply_plain_sum` (plaintext products summed before a single rescale).
    """

    def __init__(
        self,
        chain: _Chain,
        capabilities: Capabilities,
        public_key: Any,
        relin_keys: Any | None,
        galois_keys: Any | None,
        rotations: frozenset[int],
    ) -> None:
        seal = _sealapi()
        self.capabilities = capabilities
        self.counter = OpCounter()
        self._chain = chain
        self._seal = chain.evaluator
        self._public_encryptor = seal.Encryptor(chain.context, public_key)
        self._relin_keys = relin_keys
        self._galois_keys = galois_keys
        self.rotations = rotations

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
        ct = _sealapi().Ciphertext()
        self._public_encryptor.encrypt_zero(self._chain.parms_ids[level], ct)
        ct.scale = self._chain.scales[level]
        return TenSEALCiphertext(ct, level, self._chain)

    def _run(self, fn: Callable[[Any], None], level: int) -> TenSEALCiphertext:
        """Run a SEAL operation writing into a new ciphertext at ``level``."""
        out = _sealapi().Ciphertext()
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
            src = _sealapi().Ciphertext()
            self._seal.mod_switch_to(a.data, chain.parms_ids[level + 1], src)
        pt_scale = chain.scales[level] * float(chain.primes[level + 1]) / a.data.scale
        if abs(value) * pt_scale < 0.5:  # encodes to 0: the product is 0 to within 2**-scale_bits
            return self._zero(level)
        pt = chain.encode_scalar(value, level + 1, pt_scale)

        def op(out: Any) -> None:
            self._seal.multiply_plain(src, pt, out)
            self._seal.rescale_to_next_inplace(out)

        return self._run(op, level)

    def _align(self, a: TenSEALCiphertext, b: TenSEALCiphertext) -> tuple[TenSEALCiphertext, TenSEALCiphertext]:
        """Bring the higher operand down to the lower one's level (recorded as ``level_reduce``)."""
        if a.level > b.level:
            start = time.perf_counter()
            a = self._down(a, b.level)
            self._timed("level_reduce", b.level + 1, start)
        elif b.level > a.level:
            start = time.perf_counter()
            b = self._down(b, a.level)
            self._timed("level_reduce", a.level + 1, start)
        return a, b

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
        aligned = []
        for c in wrapped:
            if c.level > level:
                start = time.perf_counter()
                c = self._down(c, level)
                self._timed("level_reduce", level + 1, start)
            aligned.append(c)
        encoded = [self._plain(v, level, "multiply_plain_sum") for v in plains]
        start = time.perf_counter()
        acc = None
        for c, pt in zip(aligned, encoded, strict=True):
            if pt.is_zero():  # SEAL refuses the exactly-zero product; it adds nothing anyway
                continue
            term = _sealapi().Ciphertext()
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

    def chebyshev(self, a: Any, coefficients: np.ndarray) -> TenSEALCiphertext:
        a = self._ct(a, "chebyshev")
        coeffs = np.asarray(coefficients, dtype=np.float64).ravel()
        self._require("chebyshev", a.level, chebyshev_series_depth(max(coeffs.size - 1, 0)))
        baby = chebyshev_baby_steps(max(coeffs.size - 1, 0))
        return ChebyshevProgram(_SealOps(self), a, baby).evaluate(coeffs)

    def chebyshev_depth(self, degree: int) -> int:
        return tenseal_chebyshev_depth(degree)

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


# ----------------------------------------------------------------------------- backend
class TenSEALBackend(Backend):
    """CKKS on SEAL (through TenSEAL's bundled bindings): no bootstrapping, exact per-level scales."""

    name = "tenseal"
    description = "SEAL CKKS via tenseal.sealapi (no bootstrapping; rotations, exact scale management)"

    def __init__(self, params: CKKSParams | None = None) -> None:
        super().__init__(params or default_params())
        p = self.params
        for key, bits in (("scale_bits", p.scale_bits), ("first_mod_bits", p.first_mod_bits)):
            if not _SEAL_MIN_PRIME_BITS <= bits <= _SEAL_MAX_PRIME_BITS:
                raise ConfigError(
                    f"ckks.{key} = {bits}: SEAL primes must have {_SEAL_MIN_PRIME_BITS}.."
                    f"{_SEAL_MAX_PRIME_BITS} bits"
                )
        if p.first_mod_bits <= p.scale_bits:
            raise ConfigError(
                f"ckks.first_mod_bits ({p.first_mod_bits}) must exceed ckks.scale_bits ({p.scale_bits}): "
                "the first prime holds the values at level 0 and needs headroom above the scale"
            )

    def total_modulus_bits(self) -> int:
        return sum(modulus_bit_sizes(self.params))

    def _security_bits(self) -> int:
        return check_security(self.params, self.total_modulus_bits())

    def capabilities(self) -> Capabilities:
        p = self.params
        return Capabilities(
            backend=self.name,
            slots=p.slot_count,
            ring_dimension=p.ring_dimension,
            max_level=p.levels,
            bootstrapping=False,
            level_after_bootstrap=None,
            security_bits=self._security_bits(),
            precision_bits=estimated_precision_bits(p),
            scale_bits=p.scale_bits,
        )

    def chebyshev_depth(self, degree: int) -> int:
        return tenseal_chebyshev_depth(degree)

    def keygen(self, request: KeyRequest) -> tuple[TenSEALClient, TenSEALEvaluator]:
        """Secret key stays in the client; the evaluator gets public, relinearization, Galois keys."""
        if request.bootstrap:
            raise CapabilityError(
                "backend 'tenseal' cannot bootstrap (SEAL has no CKKS bootstrapping), but the key "
                "request asks for bootstrapping keys; use backend 'openfhe'"
            )
        caps = self.capabilities()  # raises SecurityError before any work
        seal = _sealapi()
        chain = _Chain(self.params, caps.security_bits)
        keygen = seal.KeyGenerator(chain.context)
        public_key = seal.PublicKey()
        keygen.create_public_key(public_key)
        relin_keys = None
        if request.relinearization:
            relin_keys = seal.RelinKeys()
            keygen.create_relin_keys(relin_keys)
        rotations = normalize_rotations(request.rotations, chain.slots)
        galois_keys = None
        if rotations:
            galois_keys = seal.GaloisKeys()
            # Pass Galois elements, not steps: the bindings resolve list[int] to the element overload.
            keygen.create_galois_keys(chain.galois_elements(sorted(rotations)), galois_keys)
        client = TenSEALClient(chain, keygen.secret_key())
        evaluator = TenSEALEvaluator(chain, caps, public_key, relin_keys, galois_keys, rotations)
        return client, evaluator
