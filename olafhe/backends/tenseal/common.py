"""Shared pieces of the ``tenseal`` backend: the lazy import of SEAL's bindings, parameter helpers, the
choice of scale primes, the modulus chain (context, encoder, canonical scale per level) and the values
client and evaluator exchange. Design notes: :mod:`olafhe.backends.tenseal`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from olafhe.core.contract.backend import plain_vector
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import CapabilityError, ConfigError, SecurityError

# SEAL's limits on user primes (SEAL_USER_MOD_BIT_COUNT_MIN / _MAX).
SEAL_MIN_PRIME_BITS = 2
SEAL_MAX_PRIME_BITS = 60
# Ring dimensions for which SEAL has its own 128-bit table (it lacks 65536).
_SEAL_TC128_DIMENSIONS = (1024, 2048, 4096, 8192, 16384, 32768)


def load_sealapi() -> Any:
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
    seal = load_sealapi()
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
    low, high = 1 << (scale_bits - 1), min(1 << (scale_bits + 1), 1 << SEAL_MAX_PRIME_BITS)
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


# ----------------------------------------------------------------------------- Chebyshev program


# ----------------------------------------------------------------------------- values on the wire
@dataclass(frozen=True, eq=False)
class TenSEALCiphertext:
    """A SEAL ciphertext with its level; never mutated after creation (operations return new ones)."""

    data: Any  # tenseal.sealapi.Ciphertext
    level: int
    chain: ModulusChain

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
    chain: ModulusChain


# ----------------------------------------------------------------------------- the modulus chain
class ModulusChain:
    """Public parameter objects shared by client and server: context, encoder, per-level data.

    Holds no key material. ``scales[l]`` is the canonical scale of level ``l``; ``primes[l]`` the prime
    dropped when rescaling from level ``l`` (``primes[0]`` is the first prime, never dropped).
    """

    def __init__(self, params: CKKSParams, security_bits: int) -> None:
        seal = load_sealapi()
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
        """``values`` checked and zero-padded by :func:`plain_vector`, replicated to ``N/2`` slots."""
        out = plain_vector(values, self.slots, what)
        return np.tile(out, self.replicas) if self.replicas > 1 else out

    def encode(self, values: np.ndarray | float, level: int, scale: float) -> Any:
        """A SEAL plaintext of a slot vector or a constant at ``level`` and ``scale``."""
        pt = load_sealapi().Plaintext()
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

