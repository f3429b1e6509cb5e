"""The two sides of the split flow, each built from a config and a plan.

:func:`prepare` compiles the plan for the backend exactly as ``olafhe infer`` does, so both sides agree
on the program, its input level and the keys it needs. :class:`ClientSide` generates or loads the key
set and encrypts and decrypts envelopes; :class:`ServerSide` loads the evaluation material alone (it
never reads a secret key) and runs the program on envelopes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from olafhe.core.compiler.packing import Packing, packed
from olafhe.core.compiler.program import Program
from olafhe.core.compiler.runtime import run_program
from olafhe.core.config import Config
from olafhe.core.contract.backend import Backend, Capabilities, Client, Evaluator, KeyRequest
from olafhe.core.errors import DataError, MismatchError
from olafhe.core.planning.ckks import images_per_ciphertext
from olafhe.core.planning.plan import Plan
from olafhe.jobs.backend import compile_for_backend
from olafhe.jobs.workspace import Loaded, check_plan, load
from olafhe.serve.artefacts import Binding, Manifest, ckks_record, new_key_id, pack, unpack


@dataclass
class Setup:
    """What both sides derive from the config and the plan."""

    plan: Plan
    backend: Backend
    caps: Capabilities
    program: Program
    plan_sha256: str
    ckks: dict
    packing: Packing

    @property
    def batch(self) -> int:
        """Images per ciphertext (fixed when the keys are made: their rotations depend on it)."""
        return self.packing.batch

    @property
    def request(self) -> KeyRequest:
        return self.packing.key_request(self.program.key_request())

    def binding(self, key_id: str | None = None) -> Binding:
        return Binding(self.backend.name, self.plan_sha256, self.ckks, key_id)

    def manifest(self, kind: str, key_id: str, files: list[str]) -> Manifest:
        request = self.request
        return Manifest(kind=kind, key_id=key_id, backend=self.backend.name, plan_sha256=self.plan_sha256,
                        model=self.plan.model, ckks=self.ckks, rotations=sorted(request.rotations),
                        bootstrap=request.bootstrap, relinearization=request.relinearization,
                        files=dict.fromkeys(files, {}))

    def describe(self) -> dict:
        """The plan id, model and parameters a client checks before uploading keys."""
        return {"plan_sha256": self.plan_sha256, "model": self.plan.model, "backend": self.backend.name,
                "ckks": self.ckks, "security_bits": self.caps.security_bits, "input_level": self.program.input_level,
                "rotations": sorted(self.request.rotations), "bootstrap": self.request.bootstrap,
                "bootstraps": self.program.bootstraps, "images_per_ciphertext": self.batch}


def prepare(config: Config, plan: Plan, backend_name: str | None = None, loaded: Loaded | None = None) -> Setup:
    """Backend, capabilities and compiled program of ``plan`` (refused before any work if it cannot run or
    was made for another model or checkpoint), with ``backend.ckks.batch`` (else the plan's, else one)
    images per ciphertext."""
    loaded = loaded or load(config)
    check_plan(config, loaded, plan)
    batch = images_per_ciphertext(config, loaded.graph, plan)
    backend, caps, packing, program = compile_for_backend(config, loaded.graph, plan, backend_name, batch)
    return Setup(plan, backend, caps, program, plan.digest(), ckks_record(backend.params), packing)


def check_public_manifest(manifest: Manifest, setup: Setup, where: str) -> None:
    """Refuse a key bundle that is not evaluation material for this plan: a secret key (by kind or by
    any file the backend's evaluator would not read), another plan or parameters, missing keys."""
    allowed = setup.backend.public_files
    foreign = sorted(set(manifest.files) - allowed)
    if manifest.kind != "public" or foreign:
        what = f"lists {foreign[0]!r}, which is not evaluation material" if foreign else "is a secret key set"
        raise DataError(f"{where} {what}: the server never accepts a secret key (it takes "
                        f"{', '.join(sorted(allowed)) or 'no files'} only)")
    setup.binding().check(manifest.to_dict(), where)
    missing = sorted(set(setup.request.rotations) - set(manifest.rotations))
    if missing:
        raise MismatchError(f"{where} lacks rotation keys the plan needs: {missing[:8]}")
    if setup.request.bootstrap and not manifest.bootstrap:
        raise MismatchError(f"{where} has no bootstrapping keys but the plan bootstraps")


def _close(obj: object) -> None:
    close = getattr(obj, "close", None)
    if close is not None:
        close()


class ClientSide:
    """The key owner: its secret key stays here; encrypts images and decrypts the server's outputs."""

    def __init__(self, setup: Setup, client: Client, key_id: str) -> None:
        self.setup, self.client, self.key_id = setup, client, key_id

    @classmethod
    def generate(cls, setup: Setup, keydir: Path) -> ClientSide:
        """Generate keys; write ``keydir/secret`` (mode 0700) and ``keydir/public`` with their manifests."""
        keydir = Path(keydir)
        if keydir.exists() and (not keydir.is_dir() or any(keydir.iterdir())):
            raise DataError(f"{keydir} already exists and is not an empty folder; keys go into a new folder")
        secret, public = keydir / "secret", keydir / "public"
        secret.mkdir(parents=True, mode=0o700)
        public.mkdir()
        client, evaluator = setup.backend.keygen(setup.request)  # physical keys: rotations x batch
        key_id = new_key_id()
        setup.manifest("secret", key_id, client.save_secret(secret)).write(secret)
        setup.manifest("public", key_id, evaluator.save_public(public)).write(public)
        for path in secret.iterdir():
            path.chmod(0o600)
        _close(evaluator)
        del evaluator
        return cls(setup, client, key_id)

    @classmethod
    def load(cls, setup: Setup, keydir: Path) -> ClientSide:
        """The client of ``keydir`` (the folder ``keygen`` wrote, or its ``secret/``)."""
        keydir = Path(keydir)
        secret = keydir / "secret" if (keydir / "secret").is_dir() else keydir
        manifest = Manifest.read(secret)
        if manifest.kind != "secret":
            raise DataError(f"{secret} holds the public half of a key set; give the client the folder `olafhe "
                            "keygen` wrote (with secret/)")
        setup.binding().check(manifest.to_dict(), f"key set {secret}")
        manifest.verify_files(secret)
        return cls(setup, setup.backend.load_client(secret), manifest.key_id)

    def encrypt(self, image: np.ndarray) -> bytes:
        """An input envelope holding one image."""
        return self.encrypt_batch([image])

    def encrypt_batch(self, images: Sequence[np.ndarray]) -> bytes:
        """An input envelope: up to :attr:`Setup.batch` images encoded, interleaved, encrypted at the plan's
        input level and serialized (the header counts the images)."""
        program, packing = self.setup.program, self.setup.packing
        if not 1 <= len(images) <= packing.batch:
            raise DataError(f"a ciphertext of this key set holds 1 to {packing.batch} image(s), got {len(images)}")
        vector = packing.interleave([program.encode_input(im) for im in images])
        ct = self.client.encrypt(vector, level=program.input_level)
        header = {"role": "input", "level": program.input_level, "images": len(images), **self._bound()}
        return pack(header, self.client.serialize(ct))

    def decrypt(self, data: bytes, origin: str = "ciphertext") -> np.ndarray:
        """The logits of the first (or only) image in an output envelope of this key set and plan."""
        return self.decrypt_batch(data, origin)[0]

    def decrypt_batch(self, data: bytes, origin: str = "ciphertext") -> np.ndarray:
        """The logits of every image in an output envelope, one row each."""
        header, payload = unpack(data, origin)
        self.setup.binding(self.key_id).check(header, origin)
        if header.get("role") != "output":
            raise DataError(f"{origin} is not a server output (role {header.get('role')!r})")
        count = header.get("images", 1)
        if not isinstance(count, int) or not 1 <= count <= self.setup.batch:
            raise DataError(f"{origin} claims {count!r} images; this key set packs 1 to {self.setup.batch}")
        rows = self.setup.packing.split(self.client.decrypt(self.client.deserialize(payload)), count)
        return np.stack([self.setup.program.decode_output(r) for r in rows])

    def _bound(self) -> dict:
        return {"backend": self.setup.backend.name, "plan_sha256": self.setup.plan_sha256, "key_id": self.key_id,
                "ckks": self.setup.ckks}


class ServerSide:
    """The evaluator of one key set: evaluation keys only; runs the program on input envelopes."""

    def __init__(self, setup: Setup, evaluator: Evaluator, manifest: Manifest) -> None:
        self.setup, self.evaluator, self.manifest = setup, evaluator, manifest

    @classmethod
    def load(cls, setup: Setup, public_dir: Path, verify: bool = True) -> ServerSide:
        """Load the public half of a key set after checking its manifest (and, with ``verify``, its files)."""
        public_dir = Path(public_dir)
        manifest = Manifest.read(public_dir)
        check_public_manifest(manifest, setup, f"key set {public_dir}")
        if verify:
            manifest.verify_files(public_dir)
        return cls(setup, packed(setup.backend.load_evaluator(public_dir, setup.request), setup.packing), manifest)

    def check(self, data: bytes, origin: str = "ciphertext") -> tuple[dict, bytes]:
        """Header and payload of an input envelope of this key set and plan (refused otherwise)."""
        header, payload = unpack(data, origin)
        self.setup.binding(self.manifest.key_id).check(header, origin)
        if header.get("role") != "input":
            raise DataError(f"{origin} is not an input ciphertext (role {header.get('role')!r})")
        return header, payload

    def run(self, data: bytes, origin: str = "ciphertext") -> tuple[bytes, float]:
        """The output envelope for an input envelope, and the seconds the program ran."""
        header, payload = self.check(data, origin)
        ct = self.evaluator.deserialize(payload)
        program = self.setup.program
        level = self.evaluator.level(ct)
        if level != program.input_level:
            raise DataError(f"{origin} is at level {level}; the plan's input level is {program.input_level}")
        t0 = time.perf_counter()
        out, _ = run_program(program, self.evaluator, ct)
        seconds = time.perf_counter() - t0
        reply = {key: header[key] for key in ("backend", "plan_sha256", "key_id", "ckks")}
        reply["images"] = header.get("images", 1)
        reply.update(role="output", level=self.evaluator.level(out), seconds=seconds)
        return pack(reply, self.evaluator.serialize(out)), seconds

    def close(self) -> None:
        _close(self.evaluator)
