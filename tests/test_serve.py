"""The HTTP server as a real process (``olafhe serve`` on 127.0.0.1, a free port) and a real HTTP client.

Small CNN at an INSECURE small ring (small_cnn.toml opts out explicitly), a leveled plan that runs on both
OpenFHE and TenSEAL. The client generates keys in this process; the server process only ever sees the
public half. Every bad input gets a 4xx with a one-line JSON reason, and a good request works afterwards.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import olafhe
from olafhe.core.config import load_config
from olafhe.core.planning.plan import Plan
from olafhe.jobs import workspace
from olafhe.jobs.predict import predict
from olafhe.serve.artefacts import MANIFEST, Manifest, pack, unpack
from olafhe.serve.audit import walk_secrets
from olafhe.serve.remote import RemoteServer
from olafhe.serve.sides import ClientSide, Setup, prepare

CONFIG = "configs/small_cnn.toml"
IMAGES = 3
# rotation keys for signed powers of two only: 21 keys instead of 61 (TenSEAL's would take 1.2 GB)
FEWER_KEYS = ["--set", "backend.max_rotation_keys=16"]
REPO = Path(olafhe.__file__).resolve().parents[1]


@dataclass
class Server:
    backend: str
    url: str
    workdir: Path
    log: Path
    process: subprocess.Popen


@dataclass
class Party:
    """The client side of one key set, registered with the server."""

    side: ClientSide
    keydir: Path
    plan_id: str

    @property
    def key_id(self) -> str:
        return self.side.key_id

    @property
    def infer_path(self) -> str:
        return f"/plans/{self.plan_id}/keys/{self.key_id}/infer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"olafhe serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"olafhe serve did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module", params=["openfhe", "tenseal"])
def server(request, small_cnn_plan_file, small_cnn_sets, tmp_path_factory):  # noqa: ANN001, ANN201
    backend = request.param
    workdir = tmp_path_factory.mktemp(f"server-{backend}")
    log = workdir.parent / f"{workdir.name}.log"
    port = _free_port()
    cmd = [sys.executable, "-m", "olafhe.cli", "serve", CONFIG, *small_cnn_sets, *FEWER_KEYS,
           "--plan", str(small_cnn_plan_file),
           "--backend", backend, "--port", str(port), "--workdir", str(workdir), "--queue", "0",
           "--max-upload-mb", "8", "--max-key-sets", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield Server(backend, url, workdir, log, process)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def setup(server: Server, small_cnn_plan_file: Path, small_cnn_sets: list[str]) -> Setup:
    config = load_config(CONFIG, [*small_cnn_sets, *FEWER_KEYS][1::2])
    return prepare(config, Plan.load(small_cnn_plan_file), server.backend)


@pytest.fixture(scope="module")
def party(server: Server, setup: Setup, tmp_path_factory) -> Party:  # noqa: ANN001
    """Key set A: generated here, its public half uploaded and loaded by the server."""
    keydir = tmp_path_factory.mktemp(f"keys-a-{server.backend}") / "k"
    side = ClientSide.generate(setup, keydir)
    with RemoteServer(server.url) as remote:
        info = remote.register_keys(setup.plan_sha256, keydir / "public")
    assert info["key_id"] == side.key_id and info["uploaded_bytes"] == info["key_bytes"] > 0
    return Party(side, keydir, setup.plan_sha256)


@pytest.fixture(scope="module")
def other(server: Server, setup: Setup, tmp_path_factory) -> Party:  # noqa: ANN001
    """Key set B: generated for the same plan, never registered."""
    keydir = tmp_path_factory.mktemp(f"keys-b-{server.backend}") / "k"
    return Party(ClientSide.generate(setup, keydir), keydir, setup.plan_sha256)


@pytest.fixture(scope="module")
def images(small_cnn_plan_file: Path, small_cnn_sets: list[str]) -> tuple[list, list[int]]:
    """The first IMAGES class-balanced test images and the fast simulator's classes for them."""
    loaded = workspace.load(load_config(CONFIG, small_cnn_sets[1::2]))
    x, _ = workspace.test_set(loaded.data_dir, IMAGES)
    classes = predict(loaded.graph, x, 100, Plan.load(small_cnn_plan_file)).argmax(1)
    return [x[i].numpy() for i in range(IMAGES)], [int(c) for c in classes]


def _good_request_works(server: Server, party: Party, images) -> None:  # noqa: ANN001
    with RemoteServer(server.url) as remote:
        reply, _ = remote.infer(party.plan_id, party.key_id, party.side.encrypt(images[0][0]))
    assert int(party.side.decrypt(reply).argmax()) == images[1][0]


def _refused(reply: httpx.Response, status: int, text: str) -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert text in error and "\n" not in error


# ----------------------------------------------------------------------------- the flow
def test_three_encrypted_inferences_give_the_simulators_classes(server, party, images) -> None:
    with RemoteServer(server.url) as remote:
        health = remote.health()
        assert health["backend"] == server.backend and health["security_bits"] == 0  # insecure test ring
        assert [k["state"] for k in health["key_sets"]] == ["ready"]
        classes, seconds = [], []
        for image in images[0]:
            reply, timings = remote.infer(party.plan_id, party.key_id, party.side.encrypt(image))
            header, _ = unpack(reply)
            assert header["role"] == "output" and header["key_id"] == party.key_id
            classes.append(int(party.side.decrypt(reply).argmax()))
            seconds.append(timings["server_seconds"])
    assert classes == images[1]
    assert all(s > 0 for s in seconds)


def test_server_process_holds_no_secret_key(server, party) -> None:
    report = httpx.get(f"{server.url}/audit").json()
    assert report["secret_key_objects"] == [] and report["live_clients"] == 0
    reached = {"openfhe": "CryptoContext", "tenseal": "GaloisKeys"}[server.backend]
    assert reached in report["library_types"]  # the walk does reach the loaded evaluation keys
    assert set(report["key_files"][party.key_id]) <= {MANIFEST, *party.side.setup.backend.public_files}
    secret = hashlib.sha256((party.keydir / "secret" / "secret-key.bin").read_bytes()).hexdigest()
    on_disk = [p for p in server.workdir.rglob("*") if p.is_file()]
    assert on_disk and all("secret" not in p.name for p in on_disk)
    assert secret not in {hashlib.sha256(p.read_bytes()).hexdigest() for p in on_disk}


def test_the_audit_would_see_a_leaked_secret_key(party) -> None:
    assert walk_secrets({"ok": party.side.setup})["secret_key_objects"] == []
    leaked = walk_secrets({"evaluators": [party.side.client]})["secret_key_objects"]
    assert leaked and "Client" in leaked[0]
    raw = party.side.client._secret_key  # the library's own secret-key object, held anywhere in the state
    assert walk_secrets({"cache": {"k": raw}})["secret_key_objects"]


# ----------------------------------------------------------------------------- keys
def test_key_registration_refuses_a_secret_key(server, party) -> None:
    base = f"{server.url}/plans/{party.plan_id}"
    secret_manifest = (party.keydir / "secret" / MANIFEST).read_bytes()
    _refused(httpx.post(f"{base}/keys", content=secret_manifest), 400, "never accepts a secret key")
    doc = json.loads((party.keydir / "public" / MANIFEST).read_text())
    doc["files"]["secret-key.bin"] = json.loads(secret_manifest)["files"]["secret-key.bin"]
    doc["key_id"] = "feedfeedfeedfeed"
    _refused(httpx.post(f"{base}/keys", json=doc), 400, "never accepts a secret key")
    secret = (party.keydir / "secret" / "secret-key.bin").read_bytes()
    _refused(httpx.put(f"{base}/keys/{party.key_id}/files/secret-key.bin", content=secret), 404, "has no file")
    assert not any("secret" in p.name for p in server.workdir.rglob("*"))
    assert [k["key_id"] for k in httpx.get(f"{server.url}/health").json()["key_sets"]] == [party.key_id]


def test_bad_key_uploads_are_refused_and_the_keys_kept(server, party, other, images) -> None:
    base = f"{server.url}/plans/{party.plan_id}/keys"
    public = other.keydir / "public"
    assert httpx.post(base, content=(public / MANIFEST).read_bytes()).status_code == 201
    name = min(Manifest.read(public).files, key=lambda n: (public / n).stat().st_size)
    good = (public / name).read_bytes()
    url = f"{base}/{other.key_id}/files/{name}"
    _refused(httpx.put(url, content=good[:-7] + bytes([good[-7] ^ 1]) + good[-6:]), 400, "sha256 differs")
    _refused(httpx.put(url, content=good[: len(good) // 2]), 400, "truncated")
    _refused(httpx.put(url, content=good + b"extra"), 413, "exceeds")
    _refused(httpx.post(f"{base}/{other.key_id}/load"), 409, "still lacks")
    assert httpx.delete(f"{base}/{other.key_id}").status_code == 200
    # files whose checksums match a manifest but whose contents are not keys: refused when loading
    doc = json.loads((public / MANIFEST).read_text())
    broken = {"public-key.bin": (public / "public-key.bin").read_bytes()[:5000]}
    if "context.bin" in doc["files"]:
        broken["context.bin"] = (public / "context.bin").read_bytes()
    doc.update(key_id="badbadbadbadbad0", files={n: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                                                  for n, b in broken.items()})
    assert httpx.post(base, json=doc).status_code == 201
    for n, content in broken.items():
        assert httpx.put(f"{base}/badbadbadbadbad0/files/{n}", content=content).status_code == 200
    _refused(httpx.post(f"{base}/badbadbadbadbad0/load"), 400, "public key")
    assert httpx.delete(f"{base}/badbadbadbadbad0").status_code == 200
    _good_request_works(server, party, images)


# ----------------------------------------------------------------------------- ciphertexts
def test_bad_ciphertexts_get_a_4xx_and_the_server_keeps_its_keys(server, party, other, setup, images) -> None:
    good = party.side.encrypt(images[0][0])
    header, payload = unpack(good)
    another_plan = dataclasses.replace(setup, plan_sha256="0" * 64)
    cases = [
        (good[:-40] + bytes([good[-40] ^ 0xFF]) + good[-39:], 400, "corrupt"),
        (good[: len(good) // 2], 400, "truncated"),
        (b"GET / HTTP/1.1\r\n" * 10, 400, "not an olafhe ciphertext"),
        (pack({**header, "role": "output"}, payload), 400, "not an input ciphertext"),
        (other.side.encrypt(images[0][0]), 409, "key set"),
        (ClientSide(another_plan, party.side.client, party.key_id).encrypt(images[0][0]), 409, "belongs to plan"),
        (pack({**header, "ckks": {**header["ckks"], "scale_bits": 30}}, payload), 409, "other CKKS parameters"),
        (b"\0" * (9 << 20), 413, "exceeds the server's limit"),
    ]
    for body, status, text in cases:
        _refused(httpx.post(f"{server.url}{party.infer_path}", content=body, timeout=60), status, text)
    _good_request_works(server, party, images)


def test_unknown_plan_and_key_set_are_404(server, party) -> None:
    _refused(httpx.get(f"{server.url}/plans/{'ab' * 32}"), 404, "unknown plan")
    _refused(httpx.post(f"{server.url}/plans/nope/keys/{party.key_id}/infer", content=b"x"), 404, "unknown plan")
    _refused(httpx.post(f"{server.url}/plans/{party.plan_id}/keys/0123456789abcdef/infer", content=b"x"), 404,
             "unknown key set")
    _refused(httpx.get(f"{server.url}/no/such/endpoint"), 404, "no such endpoint")


def test_concurrent_requests_beyond_the_queue_are_503(server, party, images) -> None:
    body = party.side.encrypt(images[0][0])

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{server.url}{party.infer_path}", content=body, timeout=120)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(post, range(4)))
    codes = sorted(r.status_code for r in replies)
    assert codes[0] == 200 and codes[-1] == 503, codes  # --queue 0: one runs, the others are refused at once
    busy = next(r for r in replies if r.status_code == 503)
    assert "busy" in busy.json()["error"] and busy.headers["retry-after"]
    health = httpx.get(f"{server.url}/health").json()
    assert health["queue"]["pending"] == 0 and [k["state"] for k in health["key_sets"]] == ["ready"]
    _good_request_works(server, party, images)
