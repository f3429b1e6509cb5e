"""The server's key sets: registered by manifest, uploaded file by file straight to disk, then loaded.

A key set uploaded over HTTP lives in ``ROOT/KEY_ID/`` (its manifest and files). Registration refuses
anything but evaluation material for the served plan (:func:`~olafhe.serve.sides.check_public_manifest`:
no secret key, the right plan, backend, parameters and rotations). Each file arrives in chunks written
to ``NAME.part`` while its size and sha256 are checked against the manifest, and becomes ``NAME`` only
when both match: a truncated, oversized or corrupt upload never becomes a key file, and a key file is
never held whole in memory (they reach ~14 GB at N = 2^16). A key set given at start
(``olafhe serve --keys``) is read in place.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olafhe.core.errors import DataError, MismatchError
from olafhe.core.jsonfile import save_json
from olafhe.serve.artefacts import MANIFEST, Manifest
from olafhe.serve.errors import NotFoundError, TooLargeError
from olafhe.serve.sides import ServerSide, Setup, check_public_manifest


@dataclass
class KeySet:
    """One registered key set: its manifest, folder, the files received and, once loaded, its evaluator."""

    manifest: Manifest
    directory: Path
    received: set[str] = field(default_factory=set)
    uploading: set[str] = field(default_factory=set)
    server: ServerSide | None = None
    preloaded: bool = False

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.manifest.files) - self.received)

    @property
    def state(self) -> str:
        return "ready" if self.server is not None else ("uploaded" if not self.missing else "uploading")

    def summary(self) -> dict:
        return {"key_id": self.manifest.key_id, "state": self.state, "missing": self.missing,
                "bytes": self.manifest.total_bytes}


class KeyStore:
    """The key sets of one served plan (at most ``max_key_sets``, at most ``max_bytes`` each)."""

    def __init__(self, setup: Setup, root: Path, max_key_sets: int = 1, max_bytes: int = 64 << 30) -> None:
        self.setup, self.root = setup, Path(root)
        self.max_key_sets, self.max_bytes = max_key_sets, max_bytes
        self.sets: dict[str, KeySet] = {}
        self.root.mkdir(parents=True, exist_ok=True)

    def get(self, key_id: str) -> KeySet:
        found = self.sets.get(key_id)
        if found is None:
            raise NotFoundError(f"unknown key set {key_id!r}; register it with POST /plans/"
                                f"{self.setup.plan_sha256}/keys")
        return found

    def register(self, doc: Any) -> KeySet:
        """A key set for the manifest ``doc`` (the same one again is not an error: keys are registered once)."""
        manifest = Manifest.from_dict(doc, "key manifest")
        check_public_manifest(manifest, self.setup, "key bundle")
        existing = self.sets.get(manifest.key_id)
        if existing is not None:
            if existing.manifest.files != manifest.files:
                raise MismatchError(f"key set {manifest.key_id!r} is registered with other files; DELETE it first")
            return existing
        if len(self.sets) >= self.max_key_sets:
            raise MismatchError(f"the server holds {len(self.sets)} key set(s), its maximum (--max-key-sets); "
                                "DELETE one first")
        if manifest.total_bytes > self.max_bytes:
            raise TooLargeError(f"key bundle of {manifest.total_bytes} bytes exceeds the server's limit of "
                                f"{self.max_bytes} bytes (--max-key-gb)")
        directory = self.root / manifest.key_id
        directory.mkdir(parents=True, exist_ok=True)
        save_json(directory / MANIFEST, manifest.to_dict())
        self.sets[manifest.key_id] = KeySet(manifest, directory)
        return self.sets[manifest.key_id]

    async def receive(self, key_id: str, name: str, chunks: AsyncIterator[bytes], length: int | None) -> KeySet:
        """Write one key file from ``chunks`` (never whole in memory), checked against the manifest."""
        ks = self.get(key_id)
        expected = ks.manifest.files.get(name)
        if expected is None:
            raise NotFoundError(f"key set {key_id!r} has no file {name!r} (it lists {', '.join(ks.manifest.files)})")
        if name in ks.received or name in ks.uploading:
            state = "uploaded" if name in ks.received else "being uploaded"
            raise MismatchError(f"key file {name!r} of key set {key_id!r} is already {state}")
        want = int(expected["bytes"])
        if length is not None and length > want:
            raise TooLargeError(f"key file {name!r} upload of {length} bytes exceeds the {want} its manifest declares")
        part = ks.directory / f"{name}.part"
        ks.uploading.add(name)
        try:
            size, digest = 0, hashlib.sha256()
            with open(part, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > want:
                        raise TooLargeError(f"key file {name!r} is larger than the {want} bytes its manifest declares")
                    digest.update(chunk)
                    out.write(chunk)
            if size != want:
                raise DataError(f"key file {name!r} is truncated: {size} of {want} bytes arrived")
            if digest.hexdigest() != expected["sha256"]:
                raise DataError(f"key file {name!r} is corrupt (sha256 differs from its manifest)")
            part.rename(ks.directory / name)
            ks.received.add(name)
        finally:
            ks.uploading.discard(name)
            part.unlink(missing_ok=True)
        return ks

    def load(self, key_id: str) -> KeySet:
        """Load a fully uploaded key set into an evaluator (slow at N = 2^16: run it on the worker)."""
        ks = self.get(key_id)
        if ks.server is None:
            if ks.missing:
                raise MismatchError(f"key set {key_id!r} still lacks {', '.join(ks.missing)}; upload them first")
            ks.server = ServerSide.load(self.setup, ks.directory, verify=False)  # checked while uploading
        return ks

    def preload(self, public_dir: Path) -> KeySet:
        """Register and load a key set from a local folder (read in place, files verified)."""
        if len(self.sets) >= self.max_key_sets:
            raise MismatchError("--max-key-sets leaves no room for the --keys key set")
        server = ServerSide.load(self.setup, Path(public_dir), verify=True)
        ks = KeySet(server.manifest, Path(public_dir), set(server.manifest.files), server=server, preloaded=True)
        self.sets[server.manifest.key_id] = ks
        return ks

    def delete(self, key_id: str) -> None:
        """Forget a key set: its evaluator is closed and (unless it was given at start) its folder removed."""
        ks = self.get(key_id)
        if ks.uploading:
            raise MismatchError(f"key set {key_id!r} is still receiving {', '.join(sorted(ks.uploading))}")
        if ks.server is not None:
            ks.server.close()
        del self.sets[key_id]
        if not ks.preloaded:
            shutil.rmtree(ks.directory, ignore_errors=True)

    def files_on_disk(self) -> dict[str, list[str]]:
        """Every file in every key set's folder (what the audit reports)."""
        return {k: sorted(p.name for p in ks.directory.iterdir()) for k, ks in self.sets.items()}
