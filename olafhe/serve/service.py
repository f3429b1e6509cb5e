"""The client/server split over HTTP: ``serve`` (the server process) and ``remote-infer`` (the client:
upload the evaluation keys once, send encrypted test images, decrypt the replies, compare with the
simulator)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from olafhe.core.config import Config
from olafhe.core.planning.plan import Plan
from olafhe.jobs.memory import peak_rss_mb
from olafhe.jobs.predict import predict
from olafhe.jobs.workspace import Log, load, quiet, test_set
from olafhe.serve.sides import ClientSide, prepare


def run_serve(config: Config, plan: Plan, host: str = "127.0.0.1", port: int = 8000, keys: str | None = None,
              workdir: str | None = None, queue: int = 4, max_upload_mb: float = 512, max_key_gb: float = 64,
              max_key_sets: int = 1, backend_name: str | None = None, log: Log = quiet) -> None:
    """Serve ``plan`` over HTTP until interrupted; uploaded key sets go to ``workdir`` (a new temporary
    folder by default), ``keys`` (a public key folder) is loaded at start."""
    from olafhe.serve.app import ServerState, check_port, serve
    from olafhe.serve.keystore import KeyStore
    from olafhe.serve.worker import Worker

    check_port(host, port)
    worker = Worker(queue)  # checks the queue length
    setup = prepare(config, plan, backend_name)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="olafhe-serve-"))
    store = KeyStore(setup, root / "keys", max_key_sets=max_key_sets, max_bytes=int(max_key_gb * 2**30))
    if keys:
        ks = store.preload(Path(keys))
        log(f"loaded key set {ks.manifest.key_id} from {keys}")
    state = ServerState(setup, store, worker, int(max_upload_mb * 2**20))
    log(f"serving plan {setup.plan_sha256} ({plan.model}; {setup.caps.describe()}) on http://{host}:{port}, "
        f"key sets in {root / 'keys'}")
    serve(state, host, port)


def run_remote_infer(config: Config, plan: Plan, keys: str | Path, url: str, limit: int,
                     backend_name: str | None = None, log: Log = quiet) -> dict:
    """Encrypted inference of ``limit`` class-balanced test images on the server at ``url``.

    Uploads ``keys/public`` unless the server holds the key set already, then for every ciphertext of
    images (as many as the key set packs): encrypt, POST, decrypt; reports classes, agreement with the
    simulator, upload and server seconds and the peak RSS of both processes.
    """
    from olafhe.serve.remote import RemoteServer

    loaded = load(config)
    setup = prepare(config, plan, backend_name, loaded)
    keys = Path(keys)
    side = ClientSide.load(setup, keys)
    public = (keys.parent if keys.name == "secret" else keys) / "public"
    x, y = test_set(loaded.data_dir, limit)
    sim = predict(loaded.graph, x, config.data.batch_size, plan)
    with RemoteServer(url) as remote:
        remote.plan(setup.plan_sha256)  # 404 here when the server runs another plan
        upload = remote.register_keys(setup.plan_sha256, public)
        log(f"key set {upload['key_id']}: {upload['uploaded_bytes'] / 1e6:.1f} MB uploaded in "
            f"{upload['upload_seconds']:.1f} s, loaded in {upload['load_seconds']:.1f} s")
        rows = []
        for start in range(0, len(y), setup.batch):
            idx = range(start, min(start + setup.batch, len(y)))
            t0 = time.perf_counter()
            sent = side.encrypt_batch([x[i].numpy() for i in idx])
            reply, timings = remote.infer(setup.plan_sha256, side.key_id, sent)
            logits = side.decrypt_batch(reply, "the server's reply")
            for i, row in zip(idx, logits, strict=True):
                rows.append({"label": int(y[i]), "class": int(row.argmax()), "simulator": int(sim[i].argmax()),
                             "max_logit_error": float(np.max(np.abs(row - sim[i]))),
                             "round_trip_seconds": time.perf_counter() - t0, **timings})
            log(f"images {idx.start + 1}-{idx.stop}/{len(y)}: labels {[int(y[i]) for i in idx]}, encrypted "
                f"{[r['class'] for r in rows[-len(idx):]]}, simulator {[int(sim[i].argmax()) for i in idx]}, "
                f"server {timings['server_seconds']:.1f} s")
        server_health = remote.health()
    n = max(len(rows), 1)
    return {"images": len(rows), "correct": sum(r["class"] == r["label"] for r in rows),
            "agree_with_simulator": sum(r["class"] == r["simulator"] for r in rows) / n,
            "max_logit_error": max((r["max_logit_error"] for r in rows), default=0.0),
            "labels": [r["label"] for r in rows], "encrypted_classes": [r["class"] for r in rows],
            "server_seconds": [r["server_seconds"] for r in rows],
            "round_trip_seconds": [r["round_trip_seconds"] for r in rows], **upload,
            "backend": setup.backend.name, "security_bits": setup.caps.security_bits,
            "ring_dimension": setup.caps.ring_dimension, "plan_sha256": setup.plan_sha256,
            "images_per_ciphertext": setup.batch,
            "client_peak_rss_mb": peak_rss_mb(), "server_peak_rss_mb": server_health.get("peak_rss_mb")}
