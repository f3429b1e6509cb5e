"""The ``openfhe`` backend: crypto context, security checks, capabilities and key generation.

The design decisions it implements are listed in :mod:`olafhe.backends.openfhe`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from olafhe.backends.openfhe import serialize
from olafhe.backends.openfhe.client import OpenFHEClient
from olafhe.backends.openfhe.common import KEYS, SlotLayout, load_openfhe, set_openmp_threads
from olafhe.backends.openfhe.ops import OpenFHEEvaluator
from olafhe.core.contract.backend import Backend, Capabilities, KeyRequest, normalize_rotations
from olafhe.core.contract.ckks import HE_STANDARD_128_MAX_LOGQ, CKKSParams, check_security
from olafhe.core.errors import CapabilityError, ConfigError, MismatchError, SecurityError
from olafhe.core.poly.chebyshev import MAX_CHEBYSHEV_DEGREE, chebyshev_depth, openfhe_chebyshev_depth

__all__ = ["OpenFHEBackend", "measure_chebyshev_depths"]

# Precision after one bootstrap, -log2(RMS error), uniform inputs in [-0.5, 0.5] (the simulator's
# Gaussian noise model takes exactly this). Measured with `olafhe.jobs.measure_costs` on this machine;
# keyed by (ring_dimension, scale_bits, first_mod_bits, level_budget, secret_key_dist). The max error
# over 2^15 slots is ~3 bits worse (N = 2^16: 16.2-17.6 bits max for 3..6 levels; scale 50: 9.5 bits).
_MEASURED_BOOTSTRAP_PRECISION: dict[tuple, float] = {
    (65536, 59, 60, (3, 3), "SPARSE_ENCAPSULATED"): 19.9,
    (65536, 55, 60, (3, 3), "SPARSE_ENCAPSULATED"): 19.3,
    (65536, 50, 58, (3, 3), "SPARSE_ENCAPSULATED"): 12.1,
    (8192, 59, 60, (2, 2), "SPARSE_ENCAPSULATED"): 26.2,
    (4096, 59, 60, (1, 1), "SPARSE_ENCAPSULATED"): 26.0,
}
_DEFAULT_BOOTSTRAP_PRECISION = 19.9
# Fresh-ciphertext precision is about scale_bits - 17 bits (measured after one product, N = 2^12..2^16).
_FRESH_PRECISION_LOSS = 17

_DIGIT_CANDIDATES = (0, 4, 5, 6)
# Chebyshev evaluation: "auto" (OpenFHE's routine where it is depth-optimal, else ChebyshevProgram),
# "native" (always OpenFHE's, with its deeper table), "program" (always the depth-optimal program).
CHEBYSHEV_METHODS = ("auto", "native", "program")  # 0: OpenFHE's default (3 at these depths)
_SECURITY_MARKERS = ("HE standards", "security")


class OpenFHEBackend(Backend):
    """CKKS on OpenFHE: FLEXIBLEAUTO, hybrid key switching, optional bootstrapping."""

    name = "openfhe"
    description = "OpenFHE CKKS (openfhe-python 1.6.1), FLEXIBLEAUTO, bootstrapping, hoisted rotations"
    public_files = serialize.PUBLIC_FILES

    def __init__(self, params: CKKSParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        if not 20 <= p.scale_bits <= 59:
            raise ConfigError(f"ckks.scale_bits must be in [20, 59] for OpenFHE (64-bit limbs), got {p.scale_bits}")
        if not p.scale_bits <= p.first_mod_bits <= 60:
            raise ConfigError(
                f"ckks.first_mod_bits must be in [scale_bits, 60] = [{p.scale_bits}, 60], got {p.first_mod_bits}"
            )
        if p.bootstrap_iterations not in (1, 2):
            raise ConfigError(f"ckks.bootstrap_iterations must be 1 or 2, got {p.bootstrap_iterations}")
        if len(p.level_budget) != 2 or min(p.level_budget) < 1:
            raise ConfigError(f"ckks.level_budget must be two positive integers, got {list(p.level_budget)}")
        if p.secret_key_dist == "SPARSE_TERNARY" and not p.insecure:
            raise SecurityError(
                "ckks.secret_key_dist = SPARSE_TERNARY is below the HE standard's 128-bit assumptions "
                "(sparse secrets); use SPARSE_ENCAPSULATED or UNIFORM_TERNARY, or set ckks.insecure = true"
            )
        if self._chebyshev not in CHEBYSHEV_METHODS:
            raise ConfigError(
                f"ckks.extra.chebyshev must be one of {', '.join(CHEBYSHEV_METHODS)}, got {self._chebyshev!r}"
            )
        if p.threads:
            set_openmp_threads(p.threads)
        self._validated: dict | None = None

    # ----------------------------------------------------------------- depth accounting
    def bootstrap_depth(self) -> int:
        """Levels one bootstrap consumes per OpenFHE (``GetBootstrapDepth``); 0 without bootstrapping."""
        if not self.params.bootstrap:
            return 0
        of = load_openfhe()
        dist = getattr(of, self.params.secret_key_dist)
        return int(of.CryptoContext.GetBootstrapDepth(list(self.params.level_budget), dist))

    def _layout(self, levels: int | None = None) -> SlotLayout:
        p = self.params
        levels = p.levels if levels is None else levels
        if p.bootstrap:
            reserve = self.reserve_limbs()
            depth = levels + self.bootstrap_depth() + reserve + (p.bootstrap_iterations - 1)
        else:
            reserve, depth = 0, levels
        return SlotLayout(depth=depth, reserve=reserve, max_level=levels, slots=p.slot_count)

    def reserve_limbs(self) -> int:
        """One limb below level 0 with bootstrapping (EvalBootstrap needs it), none leveled."""
        return 1 if self.params.bootstrap else 0

    def chebyshev_depth(self, degree: int) -> int:
        return openfhe_chebyshev_depth(degree) if self._chebyshev == "native" else chebyshev_depth(degree)

    @property
    def _chebyshev(self) -> str:
        return str(self.params.extra.get("chebyshev", "auto"))

    # ----------------------------------------------------------------- context and security
    def _estimated_modulus_bits(self, depth: int) -> int:
        return self.params.first_mod_bits + depth * self.params.scale_bits

    def _cc_params(self, depth: int, digits: int, secure: bool) -> Any:
        of = load_openfhe()
        p = self.params
        cp = of.CCParamsCKKSRNS()
        cp.SetMultiplicativeDepth(depth)
        cp.SetScalingModSize(p.scale_bits)
        cp.SetFirstModSize(p.first_mod_bits)
        cp.SetRingDim(p.ring_dimension)
        cp.SetBatchSize(p.slot_count)
        cp.SetScalingTechnique(of.FLEXIBLEAUTO)
        cp.SetSecretKeyDist(getattr(of, p.secret_key_dist))
        cp.SetSecurityLevel(of.HEStd_128_classic if secure else of.HEStd_NotSet)
        if digits:
            cp.SetNumLargeDigits(digits)
        return cp

    def _try_context(self, depth: int, digits: int, secure: bool) -> tuple[Any | None, str]:
        """A crypto context, or ``(None, message)`` when OpenFHE's security check rejects it."""
        of = load_openfhe()
        try:
            return of.GenCryptoContext(self._cc_params(depth, digits, secure)), ""
        except RuntimeError as exc:
            msg = str(exc).rsplit("):", 1)[-1].strip()
            if any(m in msg for m in _SECURITY_MARKERS):
                return None, msg
            if "digits" in msg:  # this digit count does not divide the towers: not a candidate
                return None, ""
            raise ConfigError(f"OpenFHE rejected the CKKS parameters (depth {depth}): {msg}") from exc

    def _digit_candidates(self) -> tuple[int, ...]:
        fixed = self.params.extra.get("num_large_digits")
        return (int(fixed),) if fixed else _DIGIT_CANDIDATES

    def _generate_context(self) -> tuple[Any, dict]:
        """Build the crypto context (no keys) after the security checks; cheap (< 1 s)."""
        of = load_openfhe()
        layout = self._layout()
        p = self.params
        if not p.insecure:
            check_security(p, self._estimated_modulus_bits(layout.depth))
        cc, message, digits = None, "no key-switching digit count fits", 0
        for digits in self._digit_candidates():
            cc, why = self._try_context(layout.depth, digits, secure=not p.insecure)
            message = why or message
            if cc is not None:
                break
        if cc is None:
            best = self.max_secure_levels()
            hint = f"at most {best} levels fit" if best else "no level count fits"
            raise SecurityError(
                f"CKKS parameters are below 128-bit security: OpenFHE's HE-standard check rejects ring dimension "
                f"{p.ring_dimension} with depth {layout.depth} ({p.levels} levels"
                f"{f' + {layout.depth - p.levels} for bootstrapping' if p.bootstrap else ''}, scale {p.scale_bits} "
                f"bits): {message.rstrip('.')}. With these settings {hint}; lower ckks.levels or "
                f"ckks.scale_bits, raise ckks.ring_dimension, or set ckks.insecure = true to opt out"
            )
        for feature in (of.PKE, of.KEYSWITCH, of.LEVELEDSHE, of.ADVANCEDSHE):
            cc.Enable(feature)
        if p.bootstrap:
            cc.Enable(of.FHE)
        modulus_bits = math.log2(cc.GetElementParams().GetModulus())
        security = 0 if p.insecure else check_security(p, math.ceil(modulus_bits))
        info = {
            "depth": layout.depth,
            "reserved_levels": layout.reserve,
            "bootstrap_depth": self.bootstrap_depth(),
            "num_large_digits": digits or "openfhe-default",
            "modulus_bits": round(modulus_bits, 1),
            "security_bits": security,
            "scaling": "FLEXIBLEAUTO",
            "openfhe": _openfhe_version(),
        }
        self._validated = info
        return cc, info

    def context_info(self) -> dict:
        """Depth, reserved levels, digit count, log2(Q) and security of this configuration."""
        if self._validated is None:
            self._generate_context()
        assert self._validated is not None
        return dict(self._validated)

    def max_secure_levels(self) -> int:
        """The largest ``levels`` that passes OpenFHE's 128-bit check with the other settings unchanged."""
        lo, hi = 0, 64
        while lo < hi:
            mid = (lo + hi + 1) // 2
            depth = self._layout(mid).depth
            ok = False
            if self._estimated_modulus_bits(depth) <= _max_logq(self.params.ring_dimension):
                ok = any(self._try_context(depth, d, secure=True)[0] is not None for d in self._digit_candidates())
            lo, hi = (mid, hi) if ok else (lo, mid - 1)
        return lo

    # ----------------------------------------------------------------- contract
    def capabilities(self) -> Capabilities:
        p = self.params
        security = 0 if p.insecure else int(self.context_info()["security_bits"])
        if p.bootstrap:
            key = (p.ring_dimension, p.scale_bits, p.first_mod_bits, tuple(p.level_budget), p.secret_key_dist)
            measured = _MEASURED_BOOTSTRAP_PRECISION.get(key, _DEFAULT_BOOTSTRAP_PRECISION)
            precision = float(p.extra.get("bootstrap_precision_bits", measured))
        else:
            precision = float(p.scale_bits - _FRESH_PRECISION_LOSS)
        return self.make_capabilities(security_bits=security, precision_bits=precision)

    def keygen(self, request: KeyRequest) -> tuple[OpenFHEClient, OpenFHEEvaluator]:
        """Fresh context and keys: relinearization, exactly ``request.rotations``, bootstrap if asked."""
        p = self.params
        self._check_request(request)
        caps = self.capabilities()
        cc, _ = self._generate_context()
        layout = self._layout()
        if request.bootstrap:
            cc.EvalBootstrapSetup(list(p.level_budget), [0, 0], layout.slots)
        keys = cc.KeyGen()
        relin = request.relinearization or request.bootstrap  # bootstrapping multiplies internally
        if relin:
            cc.EvalMultKeyGen(keys.secretKey)
        rotations = normalize_rotations(request.rotations, layout.slots)
        if rotations:
            cc.EvalRotateKeyGen(keys.secretKey, sorted(rotations))
        if request.bootstrap:
            cc.EvalBootstrapKeyGen(keys.secretKey, layout.slots)
        client = OpenFHEClient(cc, keys.publicKey, keys.secretKey, layout)
        evaluator = self._evaluator(cc, layout, caps, request, keys.publicKey)
        KEYS.track(keys.secretKey.GetKeyTag(), client, evaluator)
        del keys
        return client, evaluator

    def _check_request(self, request: KeyRequest) -> None:
        if request.bootstrap and not self.params.bootstrap:
            raise CapabilityError(
                "bootstrap keys requested but ckks.bootstrap = false (the context has no bootstrapping depth)"
            )

    def _evaluator(self, cc: Any, layout: SlotLayout, caps: Capabilities, request: KeyRequest,
                   public_key: Any) -> OpenFHEEvaluator:
        return OpenFHEEvaluator(
            cc, layout, caps, rotations=normalize_rotations(request.rotations, layout.slots),
            relinearization=request.relinearization or request.bootstrap, bootstrap_keys=request.bootstrap,
            bootstrap_iterations=self.params.bootstrap_iterations,
            # OpenFHE's two-pass bootstrap wants the single pass's (max-error) precision: ~3 bits below RMS
            bootstrap_precision=max(1, int(caps.precision_bits) - 3),
            chebyshev=self._chebyshev, key_tag=public_key.GetKeyTag(), public_key=public_key,
        )

    # ----------------------------------------------------------------- serialized keys
    def load_client(self, directory: Path) -> OpenFHEClient:
        """The client from ``context.bin``, ``public-key.bin`` and ``secret-key.bin`` (no evaluation keys)."""
        of, directory = load_openfhe(), Path(directory)
        layout = self._layout()
        cc = serialize.read_context(directory, layout, self.params.ring_dimension)
        public_key = serialize.read(of.DeserializePublicKey, directory / serialize.PUBLIC_KEY, "public key")
        secret_key = serialize.read(of.DeserializePrivateKey, directory / serialize.SECRET_KEY, "secret key")
        if public_key.GetKeyTag() != secret_key.GetKeyTag():
            raise MismatchError(f"{directory}: the public and secret keys belong to different key sets")
        client = OpenFHEClient(cc, public_key, secret_key, layout)
        KEYS.track(secret_key.GetKeyTag(), client)
        return client

    def load_evaluator(self, directory: Path, request: KeyRequest) -> OpenFHEEvaluator:
        """The evaluator from the public files alone; bootstrapping precomputations are redone here
        (``EvalBootstrapSetup``), the bootstrapping keys come with the automorphism keys."""
        of, directory = load_openfhe(), Path(directory)
        self._check_request(request)
        caps = self.capabilities()
        layout = self._layout()
        cc = serialize.read_context(directory, layout, self.params.ring_dimension)
        public_key = serialize.read(of.DeserializePublicKey, directory / serialize.PUBLIC_KEY, "public key")
        tag = public_key.GetKeyTag()
        rotations = normalize_rotations(request.rotations, layout.slots)
        relin = request.relinearization or request.bootstrap
        serialize.load_eval_keys(cc, directory, tag, relin, rotations, bool(rotations) or request.bootstrap)
        if request.bootstrap:
            cc.EvalBootstrapSetup(list(self.params.level_budget), [0, 0], layout.slots)
        evaluator = self._evaluator(cc, layout, caps, request, public_key)
        KEYS.track(tag, evaluator)
        return evaluator


def _max_logq(ring_dimension: int) -> int:
    return HE_STANDARD_128_MAX_LOGQ.get(ring_dimension, 0)


def _openfhe_version() -> str:
    try:
        from importlib.metadata import version

        return version("openfhe")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


def measure_chebyshev_depths(degrees: Sequence[int], ring_dimension: int = 2048) -> dict[int, int]:
    """Levels OpenFHE's ``EvalChebyshevSeries`` really consumes per degree (raw, before our alignment).

    Runs on a small insecure context with random coefficients; used to build and test the table in
    :func:`openfhe_chebyshev_depth`.
    """
    degrees = list(degrees)
    top = openfhe_chebyshev_depth(min(max(degrees), MAX_CHEBYSHEV_DEGREE)) + 2
    params = CKKSParams(ring_dimension=ring_dimension, scale_bits=40, first_mod_bits=60, levels=top,
                        bootstrap=False, insecure=True, slots=min(64, ring_dimension // 2))
    client, ev = OpenFHEBackend(params).keygen(KeyRequest())
    rng = np.random.default_rng(0)
    ct = client.encrypt(rng.uniform(-1, 1, params.slot_count))
    out: dict[int, int] = {}
    for d in degrees:
        coeffs = rng.uniform(-1, 1, d + 1) / np.arange(1, d + 2)
        series = [2.0 * coeffs[0]] + list(map(float, coeffs[1:]))
        res = ev._cc.EvalChebyshevSeries(ct, series, -1.0, 1.0)
        out[d] = ev.level(ct) - ev.level(res)
    return out
