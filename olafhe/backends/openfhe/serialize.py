"""Files and bytes of the ``openfhe`` backend, in OpenFHE's own BINARY serialization (nothing is pickled).

The client writes ``context.bin``, ``public-key.bin`` and ``secret-key.bin``; the server's evaluation
material is ``context.bin``, ``public-key.bin``, ``eval-mult.bin`` (relinearization) and
``eval-automorphism.bin`` (rotation keys and the bootstrapping keys: OpenFHE keeps both in one map per
secret-key tag). Two pitfalls, measured with openfhe 1.6.1:

* The bootstrapping precomputations are not serialized. The server runs ``EvalBootstrapSetup`` with the
  plan's level budget and slots after loading, and never ``EvalBootstrapKeyGen`` (it needs the secret key).
* ``DeserializeEvalMultKey`` throws ("Can not save a EvalMultKeys vector") when the process already holds
  relinearization keys for that tag, so loading skips them then (same tag: the same secret key's keys).
  Keys of other tags a file may carry are dropped again (:meth:`KeyTracker.prune`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from olafhe.backends.openfhe.common import KEYS, SlotLayout, load_openfhe
from olafhe.core.errors import DataError, MismatchError, OlafheError

CONTEXT = "context.bin"
PUBLIC_KEY = "public-key.bin"
SECRET_KEY = "secret-key.bin"
EVAL_MULT = "eval-mult.bin"
EVAL_AUTOMORPHISM = "eval-automorphism.bin"
PUBLIC_FILES = frozenset({CONTEXT, PUBLIC_KEY, EVAL_MULT, EVAL_AUTOMORPHISM})


def reason(exc: Exception) -> str:
    """OpenFHE's message without its source-file prefix."""
    return str(exc).rsplit("):", 1)[-1].strip()


def write(path: Path, obj: Any, what: str) -> str:
    """Serialize ``obj`` to ``path`` (BINARY); returns the file name."""
    of = load_openfhe()
    if not of.SerializeToFile(str(path), obj, of.BINARY):
        raise OlafheError(f"OpenFHE could not write the {what} to {path}")
    return path.name


def read(fn: Callable[[str, Any], tuple[Any, bool]], path: Path, what: str) -> Any:
    """``fn(path, BINARY)`` (an OpenFHE ``Deserialize...`` call), as a DataError when missing or corrupt."""
    of = load_openfhe()
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        obj, ok = fn(str(path), of.BINARY)
    except RuntimeError as exc:
        raise DataError(f"{what} {path} is corrupt ({reason(exc)})") from exc
    if not ok or obj is None:
        raise DataError(f"{what} {path} is corrupt (OpenFHE could not read it)")
    return obj


def check_context(cc: Any, layout: SlotLayout, ring_dimension: int, where: Path) -> None:
    """Refuse a crypto context made for other parameters than this backend's."""
    got = (int(cc.GetRingDimension()), int(cc.GetMultiplicativeDepth()), int(cc.GetBatchSize()))
    want = (ring_dimension, layout.depth, layout.slots)
    if got != want:
        raise MismatchError(
            f"the crypto context in {where} has N={got[0]}, depth {got[1]}, {got[2]} slots; the plan's "
            f"parameters need N={want[0]}, depth {want[1]}, {want[2]} slots"
        )


def read_context(directory: Path, layout: SlotLayout, ring_dimension: int) -> Any:
    of = load_openfhe()
    cc = read(of.DeserializeCryptoContext, directory / CONTEXT, "crypto context")
    check_context(cc, layout, ring_dimension, directory)
    return cc


def save_secret(cc: Any, public_key: Any, secret_key: Any, directory: Path) -> list[str]:
    """The client's files: context, public key (to encrypt), secret key (to decrypt)."""
    return [write(directory / CONTEXT, cc, "crypto context"), write(directory / PUBLIC_KEY, public_key, "public key"),
            write(directory / SECRET_KEY, secret_key, "secret key")]


def save_public(cc: Any, public_key: Any, tag: str, relin: bool, automorphisms: bool, directory: Path) -> list[str]:
    """The evaluation material of key ``tag``: context, public key, relinearization and automorphism keys."""
    of = load_openfhe()
    names = [write(directory / CONTEXT, cc, "crypto context")]
    if public_key is not None:
        names.append(write(directory / PUBLIC_KEY, public_key, "public key"))
    for wanted, name, fn in ((relin, EVAL_MULT, cc.SerializeEvalMultKey),
                             (automorphisms, EVAL_AUTOMORPHISM, cc.SerializeEvalAutomorphismKey)):
        if wanted:
            if not fn(str(directory / name), of.BINARY, tag):
                raise OlafheError(f"OpenFHE could not write {name} (no such keys for this key set?)")
            names.append(name)
    return names


def load_eval_keys(cc: Any, directory: Path, tag: str, relin: bool, rotations: frozenset[int],
                   automorphisms: bool) -> None:
    """Insert the key set's relinearization and automorphism keys into OpenFHE's maps and check that they
    are this key's and cover ``rotations``."""
    try:
        _insert_eval_keys(cc, directory, tag, relin, rotations, automorphisms)
    except Exception:
        KEYS.prune()  # keys inserted before the failure belong to no evaluator
        raise


def _insert_eval_keys(cc: Any, directory: Path, tag: str, relin: bool, rotations: frozenset[int],
                      automorphisms: bool) -> None:
    of = load_openfhe()
    if relin and tag not in of.CryptoContext.GetAllEvalMultKeys():
        _deserialize_keys(cc.DeserializeEvalMultKey, directory / EVAL_MULT, "relinearization keys")
    if automorphisms:
        _deserialize_keys(cc.DeserializeEvalAutomorphismKey, directory / EVAL_AUTOMORPHISM, "rotation keys")
    KEYS.prune(keep=tag)
    if relin and tag not in of.CryptoContext.GetAllEvalMultKeys():
        raise MismatchError(f"{directory / EVAL_MULT} holds no relinearization key of this key set ({tag[:12]})")
    present = set(cc.GetExistingEvalAutomorphismKeyIndices(tag)) if automorphisms else set()
    missing = sorted(r for r in rotations if cc.FindAutomorphismIndex(r) not in present)
    if missing:
        raise MismatchError(f"the key set lacks rotation keys the plan needs: {missing[:8]}"
                            f"{' ...' if len(missing) > 8 else ''}")


def _deserialize_keys(fn: Callable[[str, Any], bool], path: Path, what: str) -> None:
    of = load_openfhe()
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    try:
        ok = fn(str(path), of.BINARY)
    except RuntimeError as exc:
        raise DataError(f"{what} file {path} is corrupt ({reason(exc)})") from exc
    if not ok:
        raise DataError(f"{what} file {path} is corrupt (OpenFHE could not read it)")


class CiphertextBytes:
    """Mixin of the client and the evaluator: ciphertexts to bytes and back, refusing other key sets."""

    _key_tag: str
    _layout: SlotLayout

    def serialize(self, ciphertext: Any) -> bytes:
        of = load_openfhe()
        if not isinstance(ciphertext, of.Ciphertext):
            raise DataError(f"expected an OpenFHE ciphertext, got {type(ciphertext).__name__}")
        return bytes(of.Serialize(ciphertext, of.BINARY))

    def deserialize(self, data: bytes) -> Any:
        of = load_openfhe()
        try:
            ct = of.DeserializeCiphertextString(bytes(data), of.BINARY)
        except RuntimeError as exc:
            raise DataError(f"not an OpenFHE ciphertext ({reason(exc)})") from exc
        if ct is None:
            raise DataError("not an OpenFHE ciphertext (it deserializes to nothing)")
        if ct.GetKeyTag() != self._key_tag:
            raise MismatchError("the ciphertext was encrypted under another key set")
        level = self._layout.level(ct)
        if not 0 <= level <= self._layout.max_level:
            raise DataError(f"the ciphertext's level {level} is outside 0..{self._layout.max_level}")
        return ct
