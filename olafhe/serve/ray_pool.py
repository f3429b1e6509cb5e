"""Distributed batch inference on Ray: a pool of evaluator actors fed by the key owner (``olafhe ray-infer``).

Each actor rebuilds the :class:`~olafhe.serve.sides.Setup` from the config and plan it is given and loads
the evaluation keys once, from the public key folder (:meth:`ServerSide.load`); it never sees the secret
folder, which the driver refuses to pass. The driver (the client) encrypts one batch envelope at a time,
hands it to an idle actor (``ray.wait``), and decrypts every reply exactly once. When an actor dies
(killed, crashed, its node lost), its batch goes back on the queue for a live actor and a replacement
actor is started, so no batch is lost. Ray is optional (``pip install olafhe[ray]``); on a cluster every
node needs olafhe, the data folder and the public key folder at the same paths.
"""

from __future__ import annotations

import copy
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from olafhe.core.config import Config
from olafhe.core.errors import DataError, MismatchError, OlafheError
from olafhe.core.planning.plan import Plan
from olafhe.jobs.memory import peak_rss_mb
from olafhe.jobs.predict import predict
from olafhe.jobs.workspace import Log, load, quiet, test_set
from olafhe.serve.artefacts import Manifest
from olafhe.serve.sides import ClientSide, ServerSide, Setup, prepare


@dataclass(frozen=True)
class ActorSpec:
    """What an actor needs to rebuild the Setup: the config and plan travel as objects (no files needed for
    them on a cluster node); ``public`` is the evaluation-key folder, never the secret one."""

    config: Config
    plan: dict
    plan_sha256: str
    backend: str | None
    public: str
    threads: int = 0


def refuse_secret(public: Path) -> Manifest:
    """The manifest of ``public``; DataError when it is not the public half of a key set."""
    manifest = Manifest.read(public)
    if manifest.kind != "public":
        raise DataError(f"{public} is a secret key set: Ray actors take the evaluation keys (KEYDIR/public) only")
    return manifest


def public_folder(keys: Path) -> Path:
    """The public half next to a client key folder (``KEYDIR`` or ``KEYDIR/secret``)."""
    keys = Path(keys)
    if not keys.is_dir():
        raise DataError(f"key folder {keys} does not exist; create keys with `olafhe keygen`")
    root = keys.parent if keys.name == "secret" else keys
    if not (root / "public").is_dir():
        raise DataError(f"{root} has no public/ folder: give --keys the folder `olafhe keygen` wrote")
    return root / "public"


class KeyedEvaluator:
    """The body of one Ray actor: the evaluation keys of one key set, loaded once; runs batch envelopes."""

    def __init__(self, spec: ActorSpec) -> None:
        self.server: ServerSide | None = None
        self.error: str | None = None
        try:
            refuse_secret(Path(spec.public))
            config = copy.deepcopy(spec.config)
            if spec.threads:
                config.backend.ckks.threads = spec.threads
            setup = prepare(config, Plan.from_dict(spec.plan, "the driver's plan"), spec.backend)
            if setup.plan_sha256 != spec.plan_sha256:
                raise MismatchError(f"actor rebuilt plan {setup.plan_sha256[:12]}, not {spec.plan_sha256[:12]}")
            self.server = ServerSide.load(setup, Path(spec.public))
        except OlafheError as exc:  # reported by describe(): one line, not a Ray traceback
            self.error = str(exc)

    def describe(self) -> dict:
        """The key set it serves, its process id and peak RSS, or the error that stopped it loading."""
        key_id = self.server.manifest.key_id if self.server else None
        return {"error": self.error, "key_id": key_id, "pid": os.getpid(), "peak_rss_mb": peak_rss_mb()}

    def run(self, batch_id: int, envelope: bytes) -> tuple[int, bytes, float, float]:
        """``(batch_id, reply envelope, compute seconds, this process's peak RSS in MB)``."""
        if self.server is None:
            raise DataError(self.error or "actor has no keys")
        reply, seconds = self.server.run(envelope, f"batch {batch_id}")
        return batch_id, reply, seconds, peak_rss_mb()


# ----------------------------------------------------------------------------- batches (one envelope each)
def batch_size(setup: Setup) -> int:
    """Images per envelope: the plan's packing when the backend offers it, else one."""
    return max(1, int(getattr(setup, "batch", 1) or 1))


def encrypt_batch(side: ClientSide, images: np.ndarray) -> bytes:
    """One envelope holding ``images`` (shape (k, C, H, W), k <= batch_size)."""
    if hasattr(side, "encrypt_batch"):
        return side.encrypt_batch(images)
    if len(images) != 1:
        raise DataError(f"this client packs one image per ciphertext, got {len(images)}")
    return side.encrypt(images[0])


def decrypt_batch(side: ClientSide, envelope: bytes, origin: str) -> np.ndarray:
    """The logits, shape (k, classes), of a reply envelope."""
    if hasattr(side, "decrypt_batch"):
        return np.atleast_2d(side.decrypt_batch(envelope))
    return side.decrypt(envelope, origin)[None, :]


# ----------------------------------------------------------------------------- the pool
@dataclass
class PoolReport:
    """What happened to the batches: who ran each, the retries, every actor's peak RSS."""

    ran_by: dict[int, str] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    retries: list[dict] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    duplicates_dropped: int = 0
    actors_started: int = 0
    actors_lost: int = 0


class ActorPool:
    """``actors`` KeyedEvaluator actors; :meth:`run` hands out batches until each has one reply."""

    def __init__(self, spec: ActorSpec, actors: int, num_cpus: float = 1.0, replace: bool = True,
                 max_attempts: int = 3) -> None:
        import ray

        if actors < 1:
            raise OlafheError(f"--actors must be >= 1, got {actors}")
        refuse_secret(Path(spec.public))  # before any actor exists
        self.spec, self.replace, self.max_attempts = spec, replace, max_attempts
        self._cls = ray.remote(KeyedEvaluator).options(num_cpus=num_cpus, max_restarts=0)
        self.actors: dict[str, Any] = {}
        self.report = PoolReport()
        self.spare = actors if replace else 0  # replacements left
        for _ in range(actors):
            self._start()

    def _start(self) -> str:
        name = f"actor-{self.report.actors_started}"
        self.actors[name] = self._cls.remote(self.spec)
        self.report.actors_started += 1
        return name

    def wait_ready(self, timeout: float = 900.0) -> list[dict]:
        """Every actor's :meth:`KeyedEvaluator.describe`; OlafheError when one could not load its keys."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            infos = ray.get([a.describe.remote() for a in self.actors.values()], timeout=timeout)
        except GetTimeoutError as exc:
            raise OlafheError(f"Ray actors did not start within {timeout:.0f} s (too few CPUs in the cluster?)") \
                from exc
        except RayActorError as exc:
            raise OlafheError(f"a Ray actor died while loading the keys: {str(exc).splitlines()[0]}") from exc
        for name, info in zip(self.actors, infos, strict=True):
            if info["error"]:
                raise OlafheError(f"{name} could not load the evaluation keys: {info['error']}")
            self.report.peak_rss_mb[name] = info["peak_rss_mb"]
        return infos

    def run(self, batches: int, encrypt: Callable[[int], bytes], on_reply: Callable[[int, bytes], None],
            after_result: Callable[[ActorPool, int, str], None] | None = None, progress: bool = False) -> None:
        """Run batches ``0..batches-1``: ``encrypt(i)`` once per batch, ``on_reply(i, reply)`` exactly once per
        batch; ``after_result(pool, i, actor)`` runs after each reply once the freed actors have new work."""
        import ray
        from tqdm import tqdm

        queue: deque[int] = deque(range(batches))
        inflight: dict[Any, tuple[str, int]] = {}
        envelopes: dict[int, Any] = {}
        idle, done = deque(self.actors), set()
        last: tuple[int, str] | None = None
        bar = tqdm(total=batches, desc="ray-infer", unit="batch", disable=not progress)
        while queue or inflight:
            while queue and idle:
                bid, name = queue.popleft(), idle.popleft()
                if bid not in envelopes:
                    envelopes[bid] = ray.put(encrypt(bid))
                inflight[self.actors[name].run.remote(bid, envelopes[bid])] = (name, bid)
                self.report.attempts[bid] = self.report.attempts.get(bid, 0) + 1
            if last is not None and after_result is not None:  # the freed actor has its next batch by now
                after_result(self, *last)
            last = None
            if not inflight:
                raise OlafheError(f"all Ray actors died; {len(queue)} of {batches} batches not run "
                                  f"({self.report.actors_lost} actors lost)")
            [ref], _ = ray.wait(list(inflight), num_returns=1)
            name, bid = inflight.pop(ref)
            reply = self._collect(ref, name, bid, queue, idle)
            if reply is None:
                continue
            if bid in done:  # guard: a batch is decrypted once, whatever Ray delivers
                self.report.duplicates_dropped += 1
                continue
            done.add(bid)
            envelopes.pop(bid, None)
            on_reply(bid, reply)
            bar.update(1)
            last = (bid, name)
        bar.close()

    def _collect(self, ref: Any, name: str, bid: int, queue: deque[int], idle: deque[str]) -> bytes | None:
        """The reply of ``ref``, or None after putting ``bid`` back on the queue (dead actor, failed task)."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            got, reply, seconds, rss = ray.get(ref)
        except RayActorError as exc:  # killed or crashed: the actor is gone, its batch is not
            replacement = self._lost(name, bid, queue, type(exc).__name__)
            if replacement:
                idle.append(replacement)
            return None
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, OlafheError):  # bad input: the same on every actor
                raise type(cause)(str(cause)) from None
            if self.report.attempts[bid] >= self.max_attempts:
                raise OlafheError(f"batch {bid} failed {self.max_attempts} times, last: {cause!r}") from None
            self.report.retries.append({"batch": bid, "actor": name, "error": repr(cause)})
            queue.appendleft(bid)
            idle.append(name)
            return None
        if got != bid:
            raise OlafheError(f"{name} answered batch {got} for batch {bid}")
        self.report.ran_by[bid], self.report.seconds[bid] = name, seconds
        self.report.peak_rss_mb[name] = max(rss, self.report.peak_rss_mb.get(name, 0.0))
        idle.append(name)
        return reply

    def _lost(self, name: str, bid: int, queue: deque[int], error: str) -> str | None:
        """Forget a dead actor, requeue its batch first, start a replacement while spares last."""
        import ray

        handle = self.actors.pop(name, None)
        if handle is not None:
            ray.kill(handle)  # a merely unreachable actor must not keep computing
        self.report.actors_lost += 1
        self.report.retries.append({"batch": bid, "actor": name, "error": error})
        queue.appendleft(bid)
        if self.spare > 0:
            self.spare -= 1
            replacement = self._start()
            self.report.retries[-1]["replacement"] = replacement
            return replacement
        return None

    def shutdown(self) -> None:
        import ray

        for handle in self.actors.values():
            ray.kill(handle)
        self.actors.clear()


# ----------------------------------------------------------------------------- the job
def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise OlafheError("ray-infer needs Ray: pip install 'olafhe[ray]'") from exc
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an IP:PORT where nothing listens (Ray itself retries for minutes)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise OlafheError(f"--address {address!r}: expected 'auto', IP:PORT or ray://IP:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise OlafheError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` ("auto", "ip:port", "ray://..."), or start a local Ray (``num_cpus``,
    default all cores); reuse one already started. True when this call started Ray (then shut it down)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise OlafheError(f"cannot start or reach {where}: {_first_line(exc)}") from None
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"")
    return text.splitlines()[0] if text else repr(exc)


def actor_resources(config: Config, actors: int, cpus: float) -> tuple[int, float]:
    """OpenFHE threads per actor (``backend.ckks.threads`` when set, else the cores shared out) and the CPUs
    each actor reserves (fractional when there are more actors than cores, so all of them start)."""
    share = max(cpus / actors, 0.01)
    threads = config.backend.ckks.threads or max(1, int(share))
    return threads, min(float(threads), share)


def run_ray_infer(config: Config, plan: Plan, keys: str | Path, limit: int, actors: int,
                  address: str | None = None, backend_name: str | None = None, num_cpus: int | None = None,
                  public: str | Path | None = None, progress: bool = True, after_result: Callable[[ActorPool, int, str], None] | None = None,
                  log: Log = quiet) -> dict:
    """Encrypted inference of ``limit`` class-balanced test images on ``actors`` Ray actors.

    The secret key stays in this process (``keys``: the folder ``olafhe keygen`` wrote); actors get
    ``public`` (default ``keys/public``; on a cluster, a copy every node reads at that path). Reports classes, agreement with the simulator, seconds and each actor's peak RSS."""
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
    size = batch_size(setup)
    chunks = [np.arange(s, min(s + size, len(y))) for s in range(0, len(y), size)]
    owned, pool = connect(address, num_cpus), None
    logits: dict[int, np.ndarray] = {}

    def on_reply(bid: int, reply: bytes) -> None:
        if bid in logits:  # never reached (the pool hands each batch over once); a loud guard all the same
            raise OlafheError(f"batch {bid} would be decrypted twice")
        logits[bid] = decrypt_batch(side, reply, f"reply to batch {bid}")
        log(f"batch {bid + 1}/{len(chunks)} ({pool.report.ran_by[bid]}, {pool.report.seconds[bid]:.2f} s): classes "
            f"{logits[bid].argmax(1).tolist()}, simulator {sim[chunks[bid]].argmax(1).tolist()}, labels "
            f"{y[chunks[bid]].tolist()}")

    try:
        threads, cpus = actor_resources(config, actors, float(_ray().cluster_resources().get("CPU", 1)))
        spec = ActorSpec(config, plan.to_dict(), setup.plan_sha256, backend_name, str(public.resolve()), threads)
        t0 = time.perf_counter()
        pool = ActorPool(spec, actors, num_cpus=cpus)
        pool.wait_ready()
        t1 = time.perf_counter()
        pool.run(len(chunks), lambda bid: encrypt_batch(side, x[chunks[bid]].numpy()), on_reply, after_result,
                 progress)
        wall = time.perf_counter() - t1
    finally:
        if pool is not None:
            pool.shutdown()
        if owned:
            _ray().shutdown()
    out = _summary(chunks, logits, sim, y, pool.report, wall)
    out.update(actors=actors, threads_per_actor=threads, cpus_per_actor=cpus, address=address or "local",
               startup_seconds=t1 - t0, batch_size=size, backend=setup.backend.name, plan_sha256=setup.plan_sha256,
               ring_dimension=setup.caps.ring_dimension, security_bits=setup.caps.security_bits,
               key_id=side.key_id, driver_peak_rss_mb=peak_rss_mb())
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
