"""CKKS parameters: the one value object backends are built from, and the 128-bit security rule.

Configs (``[backend.ckks]``), plans (the parameters they were optimized for) and cost tables (the
parameters they were measured with) all resolve to a :class:`CKKSParams`
(see :func:`olafhe.core.planning.ckks.resolve_ckks`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace
from typing import Any

from olafhe.core.errors import ConfigError, DataError, SecurityError

# Max total coefficient-modulus bits for 128-bit classical security, uniform ternary secret
# (HomomorphicEncryption.org standard, Table 1; the same table OpenFHE and SEAL enforce).
HE_STANDARD_128_MAX_LOGQ = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881, 65536: 1772}

SECRET_KEY_DISTS = ("SPARSE_ENCAPSULATED", "UNIFORM_TERNARY", "SPARSE_TERNARY")


@dataclass(frozen=True)
class CKKSParams:
    """CKKS parameters a backend is built from (all backends read the fields they understand).

    ``levels`` is the number of multiplicative levels available to the program: after fresh
    encryption and, with bootstrapping, after every bootstrap. ``insecure`` must be set explicitly
    to run below 128-bit security; reports then say ``security_bits = 0``.
    """

    ring_dimension: int = 65536
    scale_bits: int = 59
    first_mod_bits: int = 60
    levels: int = 6
    bootstrap: bool = True
    level_budget: tuple[int, int] = (3, 3)
    secret_key_dist: str = "SPARSE_ENCAPSULATED"
    bootstrap_iterations: int = 1
    slots: int | None = None
    insecure: bool = False
    threads: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.ring_dimension
        if n < 16 or n & (n - 1):
            raise ConfigError(f"ckks.ring_dimension must be a power of two >= 16, got {n}")
        if self.levels < 1:
            raise ConfigError(f"ckks.levels must be >= 1, got {self.levels}")
        if self.secret_key_dist not in SECRET_KEY_DISTS:
            raise ConfigError(
                f"ckks.secret_key_dist {self.secret_key_dist!r} unknown; known: {list(SECRET_KEY_DISTS)}"
            )
        if self.slots is not None and (self.slots < 1 or self.slots > n // 2 or self.slots & (self.slots - 1)):
            raise ConfigError(f"ckks.slots must be a power of two <= ring_dimension/2, got {self.slots}")

    @property
    def slot_count(self) -> int:
        return self.slots or self.ring_dimension // 2

    def with_(self, **changes: Any) -> CKKSParams:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, doc: dict, origin: str = "ckks parameters") -> CKKSParams:
        """Parameters from their JSON form (``dataclasses.asdict``, as cost tables record them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise DataError(f"{origin}: unknown CKKS parameter(s) {', '.join(unknown)}")
        values = dict(doc)
        if values.get("level_budget") is not None:
            values["level_budget"] = tuple(values["level_budget"])
        values["extra"] = dict(values.get("extra") or {})
        return cls(**values)


def security_bits_for(ring_dimension: int, total_modulus_bits: int) -> int:
    """128 when ``total_modulus_bits`` fits the HE-standard table for the ring dimension, else 0."""
    limit = HE_STANDARD_128_MAX_LOGQ.get(ring_dimension)
    return 128 if limit is not None and total_modulus_bits <= limit else 0


def check_security(params: CKKSParams, total_modulus_bits: int) -> int:
    """Return the security level, raising :class:`SecurityError` when below 128 bits without opt-in."""
    bits = security_bits_for(params.ring_dimension, total_modulus_bits)
    if bits < 128 and not params.insecure:
        limit = HE_STANDARD_128_MAX_LOGQ.get(params.ring_dimension, 0)
        raise SecurityError(
            f"CKKS parameters are below 128-bit security: ring dimension {params.ring_dimension} allows "
            f"at most {limit} modulus bits, these need {total_modulus_bits}. Raise ckks.ring_dimension, "
            f"lower ckks.levels, or set ckks.insecure = true to opt out (reports will say so)."
        )
    return bits


def bootstrap_correction_bits(ring_dimension: int, slots: int) -> int:
    """OpenFHE's default bootstrap correction factor: the message is scaled down by ``2^bits`` before the
    modular reduction (its own rule, 7..13)."""
    raw = round(-0.265 * (2 * math.log2(ring_dimension) + math.log2(slots)) + 19.1)
    return int(min(13, max(7, raw)))


def bootstrap_cubic_error(params: CKKSParams) -> float:
    """Coefficient k of the bootstrap's systematic error ``-k * mean^3`` on the mean of the slots.

    The modular reduction approximates ``x mod 1`` by ``sin(2 pi x) / (2 pi)``, off by ``(2 pi)^2 x^3 / 6``.
    For the polynomial's coefficients of a slot vector that is negligible except for the constant one, the
    slots' mean, which a ReLU network keeps large: the error it leaves is common to every slot, so no
    pooling averages it out. OpenFHE scales the message down by ``2^(c - log2(q0 / scale))`` before the
    reduction, compensating the gap between first modulus and scale, so k depends on the correction c
    (:func:`bootstrap_correction_bits`) alone: ``(2 pi)^2 / 6 * 4^-(c + 1)``. Measured on OpenFHE:
    N = 2^16, 59/60 bits, 2^14 and 2^15 slots: 1.00e-4 for means 0.1-0.6 (this formula: 1.004e-4);
    N = 2^12, 64 slots: 3.9e-7 at 59/60, 55/60, 55/58, 50/58 and 50/55 bits alike (3.92e-7).
    """
    if not params.bootstrap:
        return 0.0
    shift = bootstrap_correction_bits(params.ring_dimension, params.slot_count) + 1
    return (2.0 * math.pi) ** 2 / 6.0 * 4.0 ** -shift

