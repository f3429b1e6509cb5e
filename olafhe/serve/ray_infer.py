"""Encrypted batch inference on Ray, the client side of ``olafhe ray-infer``.

The driver holds the secret key: it encrypts one envelope per batch of test images (``Setup.batch`` images
per ciphertext: ``backend.ckks.batch``), an :class:`~olafhe.serve.ray_pool.ActorPool` runs them on actors
that hold the evaluation keys only, and the driver decrypts each reply once and compares the classes with
the simulator's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from olafhe.core.config import Config
from olafhe.core.errors import MismatchError, OlafheError
from olafhe.core.planning.plan import Plan
from olafhe.jobs.memory import peak_rss_mb
from olafhe.jobs.predict import predict
from olafhe.jobs.workspace import Log, load, quiet, test_set
from olafhe.serve.ray_pool import (
    ActorPool,
    ActorSpec,
    PoolReport,
    actor_resources,
    check_reachable,
    connect,
    public_folder,
    ray_module,
    refuse_secret,
)
from olafhe.serve.sides import ClientSide, prepare


def run_ray_infer(config: Config, plan: Plan, keys: str | Path, limit: int, actors: int,
                  address: str | None = None, backend_name: str | None = None, num_cpus: int | None = None,
                  public: str | Path | None = None, progress: bool = True,
                  after_result: Callable[[ActorPool, int, str], None] | None = None, log: Log = quiet) -> dict:
    """Encrypted inference of ``limit`` class-balanced test images on ``actors`` Ray actors.

    The secret key stays in this process (``keys``: the folder ``olafhe keygen`` wrote); actors get
    ``public`` (default ``keys/public``; on a cluster, a copy every node reads at that path). Reports classes,
    agreement with the simulator, labels correct, seconds, throughput and each actor's peak RSS.
    ``after_result(pool, batch, actor)`` runs after each reply (tests kill an actor there)."""
    if actors < 1:
        raise OlafheError(f"--actors must be >= 1, got {actors}")
    public = Path(public) if public else public_folder(Path(keys))
    manifest = refuse_secret(public)  # cheap checks first: no model, no Ray yet
    if address:
        check_reachable(address)
    loaded = load(config)
    setup = prepare(config, plan, backend_name, loaded)
    side = ClientSide.load(setup, Path(keys))
    if manifest.key_id != side.key_id:
        raise MismatchError(f"{public} belongs to key set {manifest.key_id}, not to {side.key_id} of {keys}")
    x, y = test_set(loaded.data_dir, limit)
    sim = predict(loaded.graph, x, config.data.batch_size, plan)
    size = setup.batch  # images per ciphertext: one envelope per batch
    chunks = [np.arange(s, min(s + size, len(y))) for s in range(0, len(y), size)]
    owned, pool = connect(address, num_cpus), None
    logits: dict[int, np.ndarray] = {}

    def on_reply(bid: int, reply: bytes) -> None:
        if bid in logits:  # never reached (the pool hands each batch over once); a loud guard all the same
            raise OlafheError(f"batch {bid} would be decrypted twice")
        logits[bid] = side.decrypt_batch(reply, f"reply to batch {bid}")
        log(f"batch {bid + 1}/{len(chunks)} ({pool.report.ran_by[bid]}, {pool.report.seconds[bid]:.2f} s): classes "
            f"{logits[bid].argmax(1).tolist()}, simulator {sim[chunks[bid]].argmax(1).tolist()}, labels "
            f"{y[chunks[bid]].tolist()}")

    try:
        threads, cpus = actor_resources(config, actors, float(ray_module().cluster_resources().get("CPU", 1)))
        spec = ActorSpec(config, plan.to_dict(), setup.plan_sha256, backend_name, str(public.resolve()), threads)
        t0 = time.perf_counter()
        pool = ActorPool(spec, actors, num_cpus=cpus)
        pool.wait_ready()
        t1 = time.perf_counter()
        pool.run(len(chunks), lambda bid: side.encrypt_batch([x[i].numpy() for i in chunks[bid]]), on_reply,
                 after_result, progress)
        wall = time.perf_counter() - t1
    finally:
        if pool is not None:
            pool.shutdown()
        if owned:
            ray_module().shutdown()
    out = _summary(chunks, logits, sim, y, pool.report, wall)
    out.update(actors=actors, threads_per_actor=threads, cpus_per_actor=cpus, address=address or "local",
               startup_seconds=t1 - t0, images_per_ciphertext=size, backend=setup.backend.name,
               plan_sha256=setup.plan_sha256, ring_dimension=setup.caps.ring_dimension,
               security_bits=setup.caps.security_bits, key_id=side.key_id, driver_peak_rss_mb=peak_rss_mb())
    return out


def _summary(chunks: list[np.ndarray], logits: dict[int, np.ndarray], sim: np.ndarray, y: np.ndarray,
             report: PoolReport, wall: float) -> dict:
    """Per-batch rows and totals: classes, agreement with the simulator, labels correct, throughput."""
    if sorted(logits) != list(range(len(chunks))):
        raise OlafheError(f"only {len(logits)} of {len(chunks)} batches came back")
    rows = []
    for bid, idx in enumerate(chunks):
        classes = logits[bid].argmax(1)
        rows.append({"batch": bid, "images": idx.tolist(), "classes": classes.tolist(),
                     "simulator": sim[idx].argmax(1).tolist(), "labels": y[idx].tolist(),
                     "correct": int((classes == y[idx]).sum()), "actor": report.ran_by[bid],
                     "seconds": report.seconds[bid], "attempts": report.attempts[bid],
                     "max_logit_error": float(np.max(np.abs(logits[bid] - sim[idx])))})
    classes = np.concatenate([logits[b].argmax(1) for b in range(len(chunks))])
    n = len(classes)
    return {"images": n, "batches": len(chunks), "decrypted": len(logits), "classes": classes.tolist(),
            "labels": y.tolist(), "simulator": sim.argmax(1).tolist(), "correct": int((classes == y).sum()),
            "agree_with_simulator": float((classes == sim.argmax(1)).mean()),
            "max_logit_error": max(r["max_logit_error"] for r in rows), "rows": rows, "wall_seconds": wall,
            "seconds_per_image": wall / n, "images_per_second": n / wall if wall > 0 else 0.0,
            "retries": report.retries, "actors_started": report.actors_started,
            "actors_lost": report.actors_lost, "duplicates_dropped": report.duplicates_dropped,
            "actor_peak_rss_mb": report.peak_rss_mb}
