"""The CKKS backend contract shared by the simulator, OpenFHE and TenSEAL.

A :class:`Backend` is a factory configured by :class:`CKKSParams`. ``keygen`` creates a
:class:`Client` (holds the secret key: encrypt/decrypt) and an :class:`Evaluator` (the server: holds
only public evaluation keys and runs every homomorphic operation). The engine only ever talks to the
evaluator, so the server side never sees the secret key.

Levels count *remaining* multiplicative levels: a fresh ciphertext has ``max_level`` (or the level the
client asked for), every multiplication (ciphertext or plaintext, rescaling included) lowers it by one,
additions of operands at different levels run at the lower level, ``level_reduce`` drops limbs
explicitly, and ``bootstrap`` returns a ciphertext at ``level_after_bootstrap``. An operation that
would go below level 0 raises :class:`~olafhe.core.errors.OutOfLevelsError` before touching the data.
Rescaling is part of every multiplication (OpenFHE FLEXIBLEAUTO semantics), so it is not a separate
call.

Serialization (client and server as separate programs): :meth:`Client.save_secret` writes what the
client needs to encrypt and decrypt again (its secret key included), :meth:`Evaluator.save_public` the
evaluation material only (context, public key, relinearization, rotation and bootstrapping keys);
:meth:`Backend.load_client` and :meth:`Backend.load_evaluator` read them back, the latter from the public
files alone (:attr:`Backend.public_files` names every file it may read). ``serialize`` / ``deserialize``
turn ciphertexts into bytes and back. Each backend uses its library's own serialization; the defaults
raise :class:`~olafhe.core.errors.CapabilityError` for backends that cannot serialize.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from olafhe.core.contract.ckks import CKKSParams, bootstrap_cubic_error
from olafhe.core.errors import CapabilityError, DataError, OutOfLevelsError, ShapeError
from olafhe.core.poly.chebyshev import chebyshev_depth


@dataclass(frozen=True)
class Capabilities:
    """What a configured backend can do; the engine checks a program against it before any work."""

    backend: str
    slots: int
    ring_dimension: int
    max_level: int
    bootstrapping: bool
    level_after_bootstrap: int | None
    security_bits: int
    precision_bits: float
    scale_bits: int
    bootstrap_cubic: float = 0.0  # systematic bootstrap error -k * mean^3 (ckks.bootstrap_cubic_error)

    def describe(self) -> str:
        boot = f"bootstrapping to level {self.level_after_bootstrap}" if self.bootstrapping else "no bootstrapping"
        sec = f"{self.security_bits}-bit" if self.security_bits else "INSECURE (opted out)"
        return (
            f"{self.backend}: N={self.ring_dimension}, {self.slots} slots, max level {self.max_level}, "
            f"{boot}, {sec}"
        )


@dataclass(frozen=True)
class KeyRequest:
    """Which evaluation keys a compiled program needs (rotation keys for exactly these amounts)."""

    rotations: frozenset[int] = frozenset()
    bootstrap: bool = False
    relinearization: bool = True


class OpCounter:
    """Counts operations by (kind, level) and accumulates their wall time.

    Every evaluator owns one; the simulator turns counts into predicted latency, real backends use
    the timings for the per-layer breakdown.
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()
        self.seconds: Counter[tuple[str, int]] = Counter()

    def record(self, kind: str, level: int, seconds: float = 0.0, n: int = 1) -> None:
        self.counts[(kind, level)] += n
        self.seconds[(kind, level)] += seconds

    def total(self, kind: str | None = None) -> int:
        """Operations of ``kind`` (all kinds by default), over every level."""
        return sum(c for (k, _), c in self.counts.items() if kind is None or k == kind)

    def reset(self) -> None:
        self.counts.clear()
        self.seconds.clear()


class Client(ABC):
    """Client side: owns the secret key."""

    @abstractmethod
    def encrypt(self, values: np.ndarray, level: int | None = None) -> Any:
        """Encrypt a real vector of length <= slots (zero-padded) at ``level`` (default: max)."""

    @abstractmethod
    def decrypt(self, ciphertext: Any, length: int | None = None) -> np.ndarray:
        """Decrypt to a float64 vector (first ``length`` slots, default all)."""

    def save_secret(self, directory: Path) -> list[str]:
        """Write what this client needs to encrypt and decrypt later (secret key included) into
        ``directory``; returns the file names written."""
        raise _no_serialization(self)

    def serialize(self, ciphertext: Any) -> bytes:
        """The ciphertext in its library's own binary format."""
        raise _no_serialization(self)

    def deserialize(self, data: bytes) -> Any:
        """A ciphertext of this key set from :meth:`serialize`'s bytes (DataError when corrupt)."""
        raise _no_serialization(self)


class Evaluator(ABC):
    """Server side: evaluation keys only. All operations return new ciphertexts."""

    capabilities: Capabilities
    counter: OpCounter

    @abstractmethod
    def level(self, ct: Any) -> int:
        """Remaining multiplicative levels of ``ct``."""

    @abstractmethod
    def add(self, a: Any, b: Any) -> Any: ...

    @abstractmethod
    def add_plain(self, a: Any, values: np.ndarray) -> Any: ...

    @abstractmethod
    def add_scalar(self, a: Any, value: float) -> Any: ...

    @abstractmethod
    def multiply(self, a: Any, b: Any) -> Any:
        """Ciphertext product, relinearized and rescaled: level ``min(a, b) - 1``."""

    @abstractmethod
    def multiply_plain(self, a: Any, values: np.ndarray) -> Any:
        """Slot-wise product with a plaintext vector, rescaled: level ``a - 1``."""

    def settle(self, a: Any) -> Any:
        """``a`` with any pending (lazy) rescale carried out now; same level, same values.

        The engine calls it before a ciphertext is rotated and multiplied many times (a linear layer):
        a lazily rescaling backend (OpenFHE's FLEXIBLEAUTO) would otherwise rescale every rotated copy
        before every plaintext product. Backends that rescale eagerly keep this default.
        """
        return a

    def multiply_plain_sum(self, cts: Sequence[Any], vectors: Sequence[np.ndarray]) -> Any:
        """``sum_i cts[i] * vectors[i]`` (one level). Backends override it to rescale once."""
        total = None
        for ct, vec in zip(cts, vectors, strict=True):
            term = self.multiply_plain(ct, vec)
            total = term if total is None else self.add(total, term)
        return total

    @abstractmethod
    def multiply_scalar(self, a: Any, value: float) -> Any:
        """Product with a real constant, rescaled: level ``a - 1``."""

    @abstractmethod
    def rotate(self, a: Any, steps: int) -> Any:
        """Cyclic left rotation of the slot vector by ``steps`` (needs that rotation key)."""

    def rotate_hoisted(self, a: Any, steps: Sequence[int]) -> dict[int, Any]:
        """Several rotations of one ciphertext; backends override with real hoisting."""
        return {s: (a if s % self.capabilities.slots == 0 else self.rotate(a, s)) for s in steps}

    @abstractmethod
    def level_reduce(self, a: Any, level: int) -> Any:
        """Drop RNS limbs so that ``a`` is at ``level`` (<= its current level)."""

    @abstractmethod
    def chebyshev(self, a: Any, coefficients: np.ndarray, doubled: bool = False) -> Any:
        """Evaluate ``sum_k c_k T_k(t)`` (numpy convention) on slots ``t`` in [-1, 1].

        Consumes :meth:`chebyshev_depth` levels. ``doubled``: ``a`` holds ``2t`` (from :meth:`bootstrap_real`).
        """

    def chebyshev_depth(self, degree: int) -> int:
        return chebyshev_depth(degree)

    def bootstrap(self, a: Any) -> Any:
        raise CapabilityError(f"backend {self.capabilities.backend!r} cannot bootstrap")

    def bootstrap_real(self, a: Any) -> Any:
        """A bootstrap that returns twice the real part of ``a``, at the level :meth:`bootstrap` gives.

        Bootstrapping can leave imaginary noise far above its real error (OpenFHE, sparse slots: ~2^-14
        against 2^-20); a polynomial then turns it into real error. Adding the conjugate removes it at the
        price of one key switch and no level; the factor 2 is absorbed by ``chebyshev(..., doubled=True)``.
        By default, for backends without that noise: the bootstrap added to itself.
        """
        b = self.bootstrap(a)
        return self.add(b, b)

    def save_public(self, directory: Path) -> list[str]:
        """Write the evaluation material (never a secret key) into ``directory``; returns the file names."""
        raise _no_serialization(self)

    def serialize(self, ciphertext: Any) -> bytes:
        """The ciphertext in its library's own binary format."""
        raise _no_serialization(self)

    def deserialize(self, data: bytes) -> Any:
        """A ciphertext from :meth:`serialize`'s bytes; DataError when corrupt, MismatchError when it
        belongs to another key set (where the library records that)."""
        raise _no_serialization(self)

    # ----------------------------------------------------------------- shared helpers
    def _require(self, kind: str, level: int, needed: int = 1) -> None:
        if level - needed < 0:
            raise OutOfLevelsError(
                f"{kind} needs {needed} level(s) but the ciphertext has {level} left; "
                f"the program needs a bootstrap earlier or more levels (ckks.levels)"
            )

    def _timed(self, kind: str, level: int, start: float, n: int = 1) -> None:
        self.counter.record(kind, level, time.perf_counter() - start, n)


class Backend(ABC):
    """A CKKS library behind the contract; registered through the ``olafhe_backends`` hook."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # every file name Evaluator.save_public may write and load_evaluator may read (the server accepts no other)
    public_files: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: CKKSParams | None = None) -> None:
        self.params = params or CKKSParams()

    @abstractmethod
    def capabilities(self) -> Capabilities:
        """Capabilities of this configuration (no keys are generated)."""

    @abstractmethod
    def keygen(self, request: KeyRequest) -> tuple[Client, Evaluator]:
        """Generate keys; the evaluator receives evaluation keys only."""

    def chebyshev_depth(self, degree: int) -> int:
        """Levels one Chebyshev series of ``degree`` consumes on this backend."""
        return chebyshev_depth(degree)

    def reserve_limbs(self) -> int:
        """RNS limbs (of ``scale_bits`` each) a ciphertext at level 0 still holds above the first modulus.

        They decide how large a value may grow at a level (the numeric safety checks' headroom); 0 by
        default, the library's own ciphertext format may keep more.
        """
        return 0


    def load_client(self, directory: Path) -> Client:
        """The client :meth:`Client.save_secret` wrote into ``directory``."""
        raise _no_serialization(self)

    def load_evaluator(self, directory: Path, request: KeyRequest) -> Evaluator:
        """An evaluator from the public files in ``directory`` alone; refuses (MismatchError) keys made for
        other parameters or lacking what ``request`` needs."""
        raise _no_serialization(self)

    def make_capabilities(
        self, *, security_bits: int, precision_bits: float, bootstrapping: bool | None = None
    ) -> Capabilities:
        """:class:`Capabilities` of this configuration from the values only the backend knows.

        Slots, ring dimension, levels and scale come from :attr:`params`; ``bootstrapping`` defaults to
        ``params.bootstrap``, and a bootstrap returns a ciphertext at ``params.levels``.
        """
        p = self.params
        boot = p.bootstrap if bootstrapping is None else bootstrapping
        return Capabilities(
            backend=self.name,
            slots=p.slot_count,
            ring_dimension=p.ring_dimension,
            max_level=p.levels,
            bootstrapping=boot,
            level_after_bootstrap=p.levels if boot else None,
            security_bits=security_bits,
            precision_bits=precision_bits,
            scale_bits=p.scale_bits,
            bootstrap_cubic=bootstrap_cubic_error(p) if boot else 0.0,
        )


def _no_serialization(obj: object) -> CapabilityError:
    return CapabilityError(f"{type(obj).__name__} cannot serialize keys or ciphertexts (backend without serialization)")


def normalize_rotations(steps: Iterable[int], slots: int) -> frozenset[int]:
    """Rotation amounts reduced mod ``slots``, without the identity."""
    return frozenset(int(s) % slots for s in steps if int(s) % slots)


def plain_vector(values: Any, slots: int, what: str = "plaintext") -> np.ndarray:
    """``values`` as a new float64 vector zero-padded to ``slots``: what every backend encrypts or encodes.

    ShapeError unless ``values`` is 1-D with at most ``slots`` entries, DataError when it holds NaN or
    infinity; ``what`` (the operation) starts the one-line message.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ShapeError(f"{what}: expected a 1-D vector, got shape {v.shape}")
    if v.size > slots:
        raise ShapeError(f"{what}: {v.size} values do not fit in {slots} slots")
    if not np.all(np.isfinite(v)):
        raise DataError(f"{what}: values contain NaN or infinity")
    out = np.zeros(slots)
    out[: v.size] = v
    return out
