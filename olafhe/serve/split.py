"""The client/server split through files: ``keygen``, ``encrypt`` and ``decrypt`` on the client,
``compute`` on the server side (evaluation keys only). The artefacts are described in
:mod:`olafhe.serve.artefacts`; every one is checked against the plan before any work.
"""

from __future__ import annotations

import time
from pathlib import Path

from olafhe.core.config import Config
from olafhe.core.errors import DataError
from olafhe.core.jsonfile import save_json
from olafhe.core.planning.plan import Plan
from olafhe.jobs.memory import peak_rss_mb, reset_peak_rss
from olafhe.jobs.workspace import Log, load, quiet, test_set
from olafhe.serve.artefacts import Manifest, unpack
from olafhe.serve.sides import ClientSide, ServerSide, prepare

SUFFIX = ".olct"


def run_keygen(config: Config, plan: Plan, out: str | Path, backend_name: str | None = None,
               log: Log = quiet) -> dict:
    """Keys for ``plan``: the secret half in ``out/secret``, the evaluation material in ``out/public``."""
    setup = prepare(config, plan, backend_name)
    reset_peak_rss()
    t0 = time.perf_counter()
    side = ClientSide.generate(setup, Path(out))
    seconds = time.perf_counter() - t0
    halves = {kind: Manifest.read(Path(out) / kind) for kind in ("secret", "public")}
    log(f"{setup.caps.describe()}; key set {side.key_id} in {seconds:.1f} s: "
        f"{halves['public'].total_bytes / 1e6:.1f} MB of evaluation keys in {Path(out) / 'public'}")
    return {"key_id": side.key_id, "backend": setup.backend.name, "plan_sha256": setup.plan_sha256,
            "security_bits": setup.caps.security_bits, "ring_dimension": setup.caps.ring_dimension,
            "rotation_keys": len(setup.request.rotations), "bootstrap": setup.request.bootstrap,
            "secret": str(Path(out) / "secret"), "public": str(Path(out) / "public"),
            "files": {kind: {n: f["bytes"] for n, f in m.files.items()} for kind, m in halves.items()},
            "public_bytes": halves["public"].total_bytes, "keygen_seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def run_encrypt(config: Config, plan: Plan, keys: str | Path, limit: int, out: str | Path,
                backend_name: str | None = None, log: Log = quiet) -> dict:
    """``limit`` class-balanced test images, encrypted into ``out/image-NNN.olct`` (one file per ciphertext of
    :attr:`Setup.batch` images, NNN the first image's index); their labels stay with the client in
    ``out/labels.json``."""
    loaded = load(config)
    setup = prepare(config, plan, backend_name, loaded)
    side = ClientSide.load(setup, Path(keys))
    x, y = test_set(loaded.data_dir, limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, images = [], []
    for start in range(0, len(y), setup.batch):
        idx = range(start, min(start + setup.batch, len(y)))
        path = out / f"image-{start:03d}{SUFFIX}"
        path.write_bytes(side.encrypt_batch([x[i].numpy() for i in idx]))
        files.append(str(path))
        images += [{"file": path.name, "slot": b, "label": int(y[i])} for b, i in enumerate(idx)]
    save_json(out / "labels.json", {"plan_sha256": setup.plan_sha256, "key_id": side.key_id,
                                    "images_per_ciphertext": setup.batch, "images": images})
    size = sum(Path(f).stat().st_size for f in files)
    log(f"encrypted {len(y)} images into {len(files)} ciphertexts in {out} ({size / 1e6:.1f} MB)")
    return {"files": files, "labels": [int(v) for v in y], "bytes": size, "key_id": side.key_id}


def _inputs(paths: list[str]) -> list[Path]:
    """The ciphertext files named (folders give their ``*.olct`` files, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(p.glob(f"*{SUFFIX}")) if p.is_dir() else [p]
    if not out:
        raise DataError(f"no ciphertext files in {', '.join(paths)}")
    return out


def run_compute(config: Config, plan: Plan, keys: str | Path, inputs: list[str], out: str | Path,
                backend_name: str | None = None, log: Log = quiet) -> dict:
    """The server side through files: the program on every input ciphertext, with the evaluation keys in
    ``keys`` alone; outputs go to ``out/NAME.out.olct``."""
    setup = prepare(config, plan, backend_name)
    paths = _inputs(inputs)
    server = ServerSide.load(setup, Path(keys))
    blobs = {p: p.read_bytes() for p in paths}
    for p, data in blobs.items():  # refuse any mismatch before computing anything
        server.check(data, f"ciphertext file {p}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, seconds = [], []
    for p, data in blobs.items():
        reply, s = server.run(data, f"ciphertext file {p}")
        target = out / f"{p.name.removesuffix(SUFFIX)}.out{SUFFIX}"
        target.write_bytes(reply)
        written.append(str(target))
        seconds.append(s)
        log(f"{p} -> {target} ({s:.2f} s)")
    server.close()
    return {"outputs": written, "seconds": seconds, "key_id": server.manifest.key_id, "peak_rss_mb": peak_rss_mb()}


def run_decrypt(config: Config, plan: Plan, keys: str | Path, inputs: list[str],
                backend_name: str | None = None) -> dict:
    """The class and logits of every image in every output ciphertext (``slot``: its place in the file)."""
    setup = prepare(config, plan, backend_name)
    side = ClientSide.load(setup, Path(keys))
    paths = _inputs(inputs)
    blobs = {p: p.read_bytes() for p in paths}
    headers = {}
    for p, data in blobs.items():  # refuse any mismatch before decrypting anything
        headers[p], _ = unpack(data, f"ciphertext file {p}")
        setup.binding(side.key_id).check(headers[p], f"ciphertext file {p}")
    rows = []
    for p, data in blobs.items():
        for slot, logits in enumerate(side.decrypt_batch(data, f"ciphertext file {p}")):
            rows.append({"file": str(p), "slot": slot, "class": int(logits.argmax()),
                         "logits": [float(v) for v in logits], "server_seconds": headers[p].get("seconds")})
    return {"outputs": rows, "classes": [r["class"] for r in rows], "key_id": side.key_id}
