"""Keys and ciphertexts through each library's own serialization (the backend contract's save/load).

The evaluator is loaded from the public files alone, after the generating objects are gone (for OpenFHE:
after its process-wide key maps dropped that key), so what it computes proves the files carry the keys:
on OpenFHE the bootstrapping keys travel with the automorphism keys and only the precomputations are
redone. INSECURE small rings (explicit opt-in).
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from olafhe.backends.openfhe.backend import OpenFHEBackend
from olafhe.backends.simulator import SimulatorBackend
from olafhe.backends.tenseal.backend import TenSEALBackend
from olafhe.core.contract.backend import Backend, KeyRequest
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import DataError, MismatchError

BOOT = CKKSParams(ring_dimension=4096, levels=3, level_budget=(1, 1), slots=64, insecure=True)
LEVELED = CKKSParams(ring_dimension=4096, scale_bits=40, first_mod_bits=60, levels=3, bootstrap=False, slots=64,
                     insecure=True)
ROTATIONS = frozenset({1, 5})


def _save(backend: Backend, request: KeyRequest, root: Path) -> tuple[Path, Path]:
    """Keys generated, written to root/secret and root/public, and every generating object dropped."""
    secret, public = root / "secret", root / "public"
    secret.mkdir()
    public.mkdir()
    client, evaluator = backend.keygen(request)
    assert client.save_secret(secret) and evaluator.save_public(public) is not None
    for obj in (client, evaluator):
        getattr(obj, "close", lambda: None)()
    del client, evaluator
    gc.collect()
    assert {p.name for p in public.iterdir()} <= backend.public_files
    return secret, public


def test_openfhe_bootstraps_with_keys_loaded_from_files(tmp_path) -> None:
    import openfhe

    backend = OpenFHEBackend(BOOT)
    request = KeyRequest(rotations=ROTATIONS, bootstrap=True)
    secret, public = _save(backend, request, tmp_path)
    assert {p.name for p in public.iterdir()} == {"context.bin", "public-key.bin", "eval-mult.bin",
                                                   "eval-automorphism.bin"}
    tags_before = set(openfhe.CryptoContext.GetAllEvalAutomorphismKeys())
    evaluator = backend.load_evaluator(public, request)
    assert set(openfhe.CryptoContext.GetAllEvalAutomorphismKeys()) - tags_before  # the file brought the keys
    client = backend.load_client(secret)
    x = np.linspace(-0.5, 0.5, 64)
    ct = evaluator.deserialize(client.serialize(client.encrypt(x, level=0)))
    fresh = evaluator.bootstrap(ct)
    assert evaluator.level(fresh) == BOOT.levels
    out = evaluator.multiply(evaluator.rotate(fresh, 5), fresh)
    np.testing.assert_allclose(client.decrypt(client.deserialize(evaluator.serialize(out))), np.roll(x, -5) * x,
                               atol=1e-4)


def test_openfhe_refuses_other_key_sets_and_parameters(tmp_path) -> None:
    backend = OpenFHEBackend(LEVELED)
    request = KeyRequest(rotations=ROTATIONS)
    secret, public = _save(backend, request, tmp_path)
    evaluator = backend.load_evaluator(public, request)
    with pytest.raises(MismatchError, match=r"lacks rotation keys the plan needs: \[2\]"):
        backend.load_evaluator(public, KeyRequest(rotations=ROTATIONS | {2}))
    with pytest.raises(MismatchError, match="depth 3, 64 slots; the plan.s parameters need N=4096, depth 2"):
        OpenFHEBackend(LEVELED.with_(levels=2)).load_client(secret)
    stranger, _ = backend.keygen(request)
    with pytest.raises(MismatchError, match="encrypted under another key set"):
        evaluator.deserialize(stranger.serialize(stranger.encrypt(np.ones(4))))
    with pytest.raises(DataError, match="not an OpenFHE ciphertext"):
        evaluator.deserialize(b"\x00" * 100)
    (public / "public-key.bin").write_bytes((public / "public-key.bin").read_bytes()[:1000])
    with pytest.raises(DataError, match="public key .* is corrupt"):
        backend.load_evaluator(public, request)


def test_tenseal_round_trip_through_files(tmp_path) -> None:
    backend = TenSEALBackend(LEVELED)
    request = KeyRequest(rotations=ROTATIONS)
    secret, public = _save(backend, request, tmp_path)
    assert {p.name for p in secret.iterdir()} == {"secret-key.bin"}
    evaluator, client = backend.load_evaluator(public, request), backend.load_client(secret)
    x = np.linspace(-0.5, 0.5, 64)
    ct = evaluator.deserialize(client.serialize(client.encrypt(x)))
    out = evaluator.multiply(evaluator.rotate(ct, 5), ct)
    assert evaluator.level(out) == LEVELED.levels - 1
    np.testing.assert_allclose(client.decrypt(client.deserialize(evaluator.serialize(out))), np.roll(x, -5) * x,
                               atol=1e-4)
    with pytest.raises(MismatchError, match=r"lacks rotation keys the plan needs: \[2\]"):
        backend.load_evaluator(public, KeyRequest(rotations=ROTATIONS | {2}))
    with pytest.raises(MismatchError, match="does not fit the plan's CKKS parameters"):
        TenSEALBackend(LEVELED.with_(levels=2)).load_evaluator(public, request)
    with pytest.raises(DataError, match="ciphertext .* corrupt"):
        evaluator.deserialize(evaluator.serialize(ct)[:500])


def test_simulator_ciphertext_bytes() -> None:
    backend = SimulatorBackend(LEVELED)
    client = backend.load_client(Path("unused"))
    evaluator = backend.load_evaluator(Path("unused"), KeyRequest(rotations=ROTATIONS))
    ct = client.encrypt(np.arange(4.0), level=2)
    back = evaluator.deserialize(client.serialize(ct))
    assert back.level == 2 and np.array_equal(back.values, ct.values)
    with pytest.raises(DataError, match="simulated ciphertext has"):
        evaluator.deserialize(b"1234")
