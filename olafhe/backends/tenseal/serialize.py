"""Files and bytes of the ``tenseal`` backend, through SEAL's own ``save``/``load`` (nothing is pickled).

The client writes ``secret-key.bin``; the server's evaluation material is ``public-key.bin``,
``relin-keys.bin`` and ``galois-keys.bin``. SEAL needs no serialized context: both sides rebuild the
:class:`~olafhe.backends.tenseal.common.ModulusChain` from the CKKS parameters (the primes are chosen
deterministically), and SEAL's ``load`` refuses objects whose parameters are not this chain's. The
bindings save to and load from paths only, so ciphertext bytes go through a temporary file.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from olafhe.backends.tenseal.common import ModulusChain, TenSEALCiphertext, load_sealapi
from olafhe.core.errors import DataError, MismatchError

SECRET_KEY = "secret-key.bin"
PUBLIC_KEY = "public-key.bin"
RELIN_KEYS = "relin-keys.bin"
GALOIS_KEYS = "galois-keys.bin"
PUBLIC_FILES = frozenset({PUBLIC_KEY, RELIN_KEYS, GALOIS_KEYS})
_SCALE_RTOL = 1e-9


def save(obj: Any, path: Path) -> str:
    """``obj.save(path)``; returns the file name."""
    obj.save(str(path))
    return path.name


def load(cls: type, chain: ModulusChain, path: Path, what: str) -> Any:
    """A SEAL object of type ``cls`` loaded from ``path`` for ``chain``'s context."""
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    obj = cls()
    try:
        obj.load(chain.context, str(path))
    except (RuntimeError, ValueError) as exc:
        if "invalid" in str(exc):  # SEAL read it but it does not fit this context's parameters
            raise MismatchError(f"{what} {path} does not fit the plan's CKKS parameters (SEAL refused it)") from exc
        raise DataError(f"{what} {path} is corrupt ({exc})") from exc
    return obj


def ciphertext_bytes(ct: TenSEALCiphertext) -> bytes:
    fd, name = tempfile.mkstemp(suffix=".ct")
    os.close(fd)
    try:
        ct.data.save(name)
        return Path(name).read_bytes()
    finally:
        os.unlink(name)


def ciphertext_from_bytes(data: bytes, chain: ModulusChain) -> TenSEALCiphertext:
    """A ciphertext of ``chain`` from SEAL's bytes, at the level its parameters id names."""
    fd, name = tempfile.mkstemp(suffix=".ct")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(bytes(data))
        raw = load(load_sealapi().Ciphertext, chain, Path(name), "ciphertext")
    finally:
        os.unlink(name)
    levels = {tuple(pid): lvl for lvl, pid in chain.parms_ids.items()}
    level = levels.get(tuple(raw.parms_id()))
    if level is None or raw.size() != 2:
        raise DataError("the ciphertext is not a fresh-size ciphertext of this modulus chain")
    if abs(raw.scale / chain.scales[level] - 1.0) > _SCALE_RTOL:
        raise MismatchError(f"the ciphertext's scale 2**{math.log2(raw.scale):.3f} is not level {level}'s "
                            "canonical scale (other CKKS parameters?)")
    return TenSEALCiphertext(raw, level, chain)


class CiphertextBytes:
    """Mixin of the client and the evaluator: ciphertexts to bytes and back."""

    _chain: ModulusChain

    def serialize(self, ciphertext: Any) -> bytes:
        if not isinstance(ciphertext, TenSEALCiphertext) or ciphertext.chain is not self._chain:
            raise DataError("serialize: not a ciphertext of this tenseal key set")
        return ciphertext_bytes(ciphertext)

    def deserialize(self, data: bytes) -> TenSEALCiphertext:
        return ciphertext_from_bytes(data, self._chain)
