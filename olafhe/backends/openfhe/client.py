"""Client of the ``openfhe`` backend: holds the secret key, encrypts at a level and decrypts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from olafhe.backends.openfhe import serialize
from olafhe.backends.openfhe.common import KeyHolder, SlotLayout
from olafhe.backends.openfhe.serialize import CiphertextBytes
from olafhe.core.contract.backend import Client, plain_vector
from olafhe.core.errors import CapabilityError, OlafheError, ShapeError


class OpenFHEClient(KeyHolder, CiphertextBytes, Client):
    """Holds the secret key; encrypts at a requested level and decrypts."""

    def __init__(self, cc: Any, public_key: Any, secret_key: Any, layout: SlotLayout) -> None:
        self._cc = cc
        self._public_key = public_key
        self._secret_key = secret_key
        self._key_tag = secret_key.GetKeyTag()
        self._layout = layout

    def save_secret(self, directory: Path) -> list[str]:
        return serialize.save_secret(self._cc, self._public_key, self._secret_key, Path(directory))

    def encrypt(self, values: np.ndarray, level: int | None = None) -> Any:
        lay = self._layout
        level = lay.max_level if level is None else int(level)
        if not 0 <= level <= lay.max_level:
            raise CapabilityError(f"cannot encrypt at level {level}: this context has levels 0..{lay.max_level}")
        vec = plain_vector(values, lay.slots, "encrypt")
        pt = self._cc.MakeCKKSPackedPlaintext(vec, 1, lay.index(level), None, lay.slots)
        return self._cc.Encrypt(self._public_key, pt)

    def decrypt(self, ciphertext: Any, length: int | None = None) -> np.ndarray:
        n = self._layout.slots if length is None else int(length)
        if not 0 <= n <= self._layout.slots:
            raise ShapeError(f"decrypt: length {n} is outside 0..{self._layout.slots} slots")
        try:
            pt = self._cc.Decrypt(ciphertext, self._secret_key)
        except RuntimeError as exc:
            raise OlafheError(
                f"decryption failed ({str(exc).rsplit('):', 1)[-1].strip()}); the values probably outgrew the "
                f"scale (keep slots within [-1, 1] before bootstrapping and products)"
            ) from exc
        pt.SetLength(n)
        return np.array(pt.GetRealPackedValueArray(), dtype=np.float64)[:n]
