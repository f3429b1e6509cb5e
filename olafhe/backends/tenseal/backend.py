"""The ``tenseal`` backend and its client: parameter checks, capabilities, key generation, encryption and
decryption. Design notes: :mod:`olafhe.backends.tenseal`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from olafhe.backends.tenseal import serialize
from olafhe.backends.tenseal.common import (
    SEAL_MAX_PRIME_BITS,
    SEAL_MIN_PRIME_BITS,
    ModulusChain,
    TenSEALCiphertext,
    default_params,
    estimated_precision_bits,
    load_sealapi,
    modulus_bit_sizes,
)
from olafhe.backends.tenseal.ops import TenSEALEvaluator
from olafhe.backends.tenseal.serialize import CiphertextBytes
from olafhe.core.contract.backend import Backend, Capabilities, Client, KeyRequest, normalize_rotations
from olafhe.core.contract.ckks import CKKSParams, check_security
from olafhe.core.errors import CapabilityError, ConfigError, MismatchError, ShapeError
from olafhe.core.poly.chebyshev import chebyshev_depth


# ----------------------------------------------------------------------------- client
class TenSEALClient(CiphertextBytes, Client):
    """Client side: the only holder of the secret key (and of SEAL's Encryptor/Decryptor made from it)."""

    def __init__(self, chain: ModulusChain, secret_key: Any) -> None:
        seal = load_sealapi()
        self._chain = chain
        self._secret_key = secret_key
        # Symmetric encryption: the client has the secret key, and it is ~5 bits less noisy.
        self._encryptor = seal.Encryptor(chain.context, secret_key)
        self._decryptor = seal.Decryptor(chain.context, secret_key)

    def encrypt(self, values: np.ndarray, level: int | None = None) -> TenSEALCiphertext:
        chain = self._chain
        lvl = chain.check_level(level, "encrypt")
        pt = chain.encode(chain.fill(values, "encrypt"), lvl, chain.scales[lvl])
        ct = load_sealapi().Ciphertext()
        self._encryptor.encrypt_symmetric(pt, ct)
        return TenSEALCiphertext(ct, lvl, chain)

    def decrypt(self, ciphertext: TenSEALCiphertext, length: int | None = None) -> np.ndarray:
        chain = self._chain
        if not isinstance(ciphertext, TenSEALCiphertext) or ciphertext.chain is not chain:
            raise CapabilityError("decrypt: not a ciphertext of this tenseal key set")
        n = chain.slots if length is None else int(length)
        if not 0 <= n <= chain.slots:
            raise ShapeError(f"decrypt: length {n} exceeds {chain.slots} slots")
        pt = load_sealapi().Plaintext()
        self._decryptor.decrypt(ciphertext.data, pt)
        return np.asarray(chain.encoder.decode_double(pt), dtype=np.float64)[:n]

    def save_secret(self, directory: Path) -> list[str]:
        return [serialize.save(self._secret_key, Path(directory) / serialize.SECRET_KEY)]


# ----------------------------------------------------------------------------- backend
class TenSEALBackend(Backend):
    """CKKS on SEAL (through TenSEAL's bundled bindings): no bootstrapping, exact per-level scales."""

    name = "tenseal"
    description = "SEAL CKKS via tenseal.sealapi (no bootstrapping; rotations, exact scale management)"
    public_files = serialize.PUBLIC_FILES

    def __init__(self, params: CKKSParams | None = None) -> None:
        super().__init__(params or default_params())
        p = self.params
        for key, bits in (("scale_bits", p.scale_bits), ("first_mod_bits", p.first_mod_bits)):
            if not SEAL_MIN_PRIME_BITS <= bits <= SEAL_MAX_PRIME_BITS:
                raise ConfigError(
                    f"ckks.{key} = {bits}: SEAL primes must have {SEAL_MIN_PRIME_BITS}.."
                    f"{SEAL_MAX_PRIME_BITS} bits"
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
        return self.make_capabilities(
            security_bits=self._security_bits(),
            precision_bits=estimated_precision_bits(self.params),
            bootstrapping=False,
        )

    def chebyshev_depth(self, degree: int) -> int:
        return chebyshev_depth(degree)

    def _check_request(self, request: KeyRequest) -> None:
        if request.bootstrap:
            raise CapabilityError(
                "backend 'tenseal' cannot bootstrap (SEAL has no CKKS bootstrapping), but the key "
                "request asks for bootstrapping keys; use backend 'openfhe'"
            )

    def keygen(self, request: KeyRequest) -> tuple[TenSEALClient, TenSEALEvaluator]:
        """Secret key stays in the client; the evaluator gets public, relinearization, Galois keys."""
        self._check_request(request)
        caps = self.capabilities()  # raises SecurityError before any work
        seal = load_sealapi()
        chain = ModulusChain(self.params, caps.security_bits)
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

    def load_client(self, directory: Path) -> TenSEALClient:
        """The client from ``secret-key.bin`` and the modulus chain rebuilt from the parameters."""
        chain = ModulusChain(self.params, self.capabilities().security_bits)
        path = Path(directory) / serialize.SECRET_KEY
        return TenSEALClient(chain, serialize.load(load_sealapi().SecretKey, chain, path, "secret key"))

    def load_evaluator(self, directory: Path, request: KeyRequest) -> TenSEALEvaluator:
        """The evaluator from the public, relinearization and Galois key files alone."""
        self._check_request(request)
        caps = self.capabilities()
        seal, directory = load_sealapi(), Path(directory)
        chain = ModulusChain(self.params, caps.security_bits)
        public_key = serialize.load(seal.PublicKey, chain, directory / serialize.PUBLIC_KEY, "public key")
        relin_keys = None
        if request.relinearization:
            relin_keys = serialize.load(seal.RelinKeys, chain, directory / serialize.RELIN_KEYS, "relinearization keys")
        rotations = normalize_rotations(request.rotations, chain.slots)
        galois_keys = None
        if rotations:
            galois_keys = serialize.load(seal.GaloisKeys, chain, directory / serialize.GALOIS_KEYS, "Galois keys")
            missing = [r for r, e in zip(sorted(rotations), chain.galois_elements(sorted(rotations)), strict=True)
                       if not galois_keys.has_key(e)]
            if missing:
                raise MismatchError(f"the key set lacks rotation keys the plan needs: {missing[:8]}"
                                    f"{' ...' if len(missing) > 8 else ''}")
        return TenSEALEvaluator(chain, caps, public_key, relin_keys, galois_keys, rotations)
