"""Artefacts of the split flow: key-directory manifests and ciphertext envelopes.

Every artefact is bound to a plan (the sha256 of its canonical JSON, :meth:`Plan.digest`), a backend,
the CKKS parameters (:func:`ckks_record`) and a key set (a random id drawn at key generation);
:meth:`Binding.check` refuses one that does not fit, before any work.

Key directory (``olafhe keygen --out KEYDIR``)::

    KEYDIR/secret/  manifest.json + the client's files (its secret key; kept local, mode 0700)
    KEYDIR/public/  manifest.json + the evaluation material (what the server receives)

    manifest.json: {"format": "olafhe-keys", "version": 1, "kind": "secret"|"public", "key_id": str,
                    "backend": str, "plan_sha256": str, "model": str, "ckks": {...}, "rotations": [int],
                    "bootstrap": bool, "relinearization": bool,
                    "files": {NAME: {"bytes": int, "sha256": str}}}

Ciphertext envelope (``*.olct`` files, HTTP bodies)::

    b"OLAFHECT" | header length (uint32, big-endian) | header (JSON) | payload (the library's own bytes)
    header: {"format": "olafhe-ciphertext", "version": 1, "role": "input"|"output", "backend": str,
             "plan_sha256": str, "key_id": str, "ckks": {...}, "level": int, "payload_bytes": int,
             "payload_sha256": str, "seconds": float (outputs: the server's compute time)}
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import DataError, MismatchError
from olafhe.core.jsonfile import check_format, read_json, save_json

KEYS_FORMAT, CIPHERTEXT_FORMAT, VERSION = "olafhe-keys", "olafhe-ciphertext", 1
MANIFEST = "manifest.json"
MAGIC = b"OLAFHECT"
MAX_HEADER_BYTES = 1 << 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CKKS_FIELDS = ("ring_dimension", "scale_bits", "first_mod_bits", "levels", "bootstrap", "level_budget",
                "secret_key_dist", "bootstrap_iterations", "slots", "insecure")


def ckks_record(params: CKKSParams) -> dict:
    """The CKKS parameters keys and ciphertexts depend on (slots resolved; threads and extras left out)."""
    doc = {name: getattr(params, name) for name in _CKKS_FIELDS}
    doc.update(level_budget=list(params.level_budget), slots=params.slot_count)
    return doc


def new_key_id() -> str:
    return secrets.token_hex(8)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Binding:
    """What an artefact must have been made for: a backend, a plan, CKKS parameters, a key set."""

    backend: str
    plan_sha256: str
    ckks: dict
    key_id: str | None = None

    def check(self, doc: dict, what: str) -> None:
        """Raise MismatchError naming the first field of ``doc`` that differs (plan, backend, parameters,
        key set)."""
        plan = str(doc.get("plan_sha256"))
        if plan != self.plan_sha256:
            raise MismatchError(f"{what} belongs to plan {plan[:12]}, not to this plan {self.plan_sha256[:12]}")
        if doc.get("backend") != self.backend:
            raise MismatchError(f"{what} was made for backend {doc.get('backend')!r}, not {self.backend!r}")
        theirs = doc.get("ckks") or {}
        differ = [k for k in sorted(set(self.ckks) | set(theirs)) if theirs.get(k) != self.ckks.get(k)]
        if differ:
            k = differ[0]
            raise MismatchError(f"{what} was made for other CKKS parameters ({k} {theirs.get(k)!r}, here "
                                f"{self.ckks.get(k)!r})")
        if self.key_id is not None and doc.get("key_id") != self.key_id:
            raise MismatchError(f"{what} belongs to key set {doc.get('key_id')!r}, not {self.key_id!r}")


@dataclass
class Manifest:
    """The manifest of one half of a key directory (``kind`` "secret" or "public")."""

    kind: str
    key_id: str
    backend: str
    plan_sha256: str
    model: str
    ckks: dict
    rotations: list[int]
    bootstrap: bool
    relinearization: bool
    files: dict[str, dict] = field(default_factory=dict)

    def binding(self) -> Binding:
        return Binding(self.backend, self.plan_sha256, self.ckks, self.key_id)

    def to_dict(self) -> dict:
        return {"format": KEYS_FORMAT, "version": VERSION, **asdict(self)}

    @property
    def total_bytes(self) -> int:
        return sum(int(f["bytes"]) for f in self.files.values())

    @classmethod
    def from_dict(cls, doc: Any, origin: str) -> Manifest:
        check_format(doc, KEYS_FORMAT, VERSION, origin)
        try:
            files = {str(n): {"bytes": int(f["bytes"]), "sha256": str(f["sha256"])} for n, f in doc["files"].items()}
            out = cls(kind=str(doc["kind"]), key_id=str(doc["key_id"]), backend=str(doc["backend"]),
                      plan_sha256=str(doc["plan_sha256"]), model=str(doc["model"]), ckks=dict(doc["ckks"]),
                      rotations=[int(r) for r in doc["rotations"]], bootstrap=bool(doc["bootstrap"]),
                      relinearization=bool(doc["relinearization"]), files=files)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{origin} is corrupt: missing or malformed {exc}") from exc
        bad = [n for n in [out.key_id, *files] if not _NAME.match(n)]
        if bad:
            raise DataError(f"{origin} is corrupt: bad name {bad[0]!r}")
        if out.kind not in ("secret", "public"):
            raise DataError(f"{origin}: unknown kind {out.kind!r}")
        if any(f["bytes"] < 0 or not re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in files.values()):
            raise DataError(f"{origin} is corrupt: a file entry has a bad size or sha256")
        return out

    def write(self, directory: Path) -> Path:
        """Record every file's size and sha256 (they are already in ``directory``) and write the manifest."""
        self.files = {name: {"bytes": (directory / name).stat().st_size, "sha256": sha256_file(directory / name)}
                      for name in sorted(self.files)}
        return save_json(directory / MANIFEST, self.to_dict())

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = Path(directory) / MANIFEST
        return cls.from_dict(read_json(path, "key manifest", "create keys with `olafhe keygen`"), str(path))

    def verify_files(self, directory: Path) -> None:
        """Every listed file present, of the recorded size and sha256 (DataError otherwise)."""
        for name, entry in self.files.items():
            path = Path(directory) / name
            if not path.is_file():
                raise DataError(f"key file {path} is missing")
            size = path.stat().st_size
            if size != entry["bytes"]:
                raise DataError(f"key file {path} has {size} bytes, the manifest says {entry['bytes']} (truncated?)")
            if sha256_file(path) != entry["sha256"]:
                raise DataError(f"key file {path} is corrupt (sha256 differs from the manifest)")


# ----------------------------------------------------------------------------- ciphertext envelopes
def pack(header: dict, payload: bytes) -> bytes:
    """An envelope: ``header`` (plus format, version, payload size and sha256) and the payload."""
    doc = {"format": CIPHERTEXT_FORMAT, "version": VERSION, **header, "payload_bytes": len(payload),
           "payload_sha256": hashlib.sha256(payload).hexdigest()}
    head = json.dumps(doc, sort_keys=True).encode()
    return MAGIC + struct.pack(">I", len(head)) + head + payload


def unpack(data: bytes, origin: str = "ciphertext") -> tuple[dict, bytes]:
    """The header and payload of an envelope; DataError when it is not one, truncated or corrupt."""
    view = memoryview(data)
    if len(view) < len(MAGIC) + 4 or bytes(view[:len(MAGIC)]) != MAGIC:
        raise DataError(f"{origin} is not an olafhe ciphertext (no OLAFHECT header)")
    (size,) = struct.unpack(">I", view[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if size > MAX_HEADER_BYTES or start + size > len(view):
        raise DataError(f"{origin} is truncated or corrupt (header of {size} bytes)")
    try:
        header = json.loads(bytes(view[start:start + size]))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{origin} has a corrupt header ({exc})") from exc
    check_format(header, CIPHERTEXT_FORMAT, VERSION, origin)
    payload = bytes(view[start + size:])
    if len(payload) != header.get("payload_bytes"):
        raise DataError(f"{origin} is truncated: {len(payload)} payload bytes, the header says "
                        f"{header.get('payload_bytes')}")
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise DataError(f"{origin} is corrupt (payload sha256 differs from its header)")
    return header, payload


def read_envelope(path: Path) -> tuple[dict, bytes]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ciphertext file {path} does not exist")
    return unpack(path.read_bytes(), f"ciphertext file {path}")
