"""A pool of Ray actors that run the encrypted program on batch envelopes (the server side of ``ray-infer``).

Each actor rebuilds the :class:`~olafhe.serve.sides.Setup` from the config and plan it is given and loads
the evaluation keys once, from the public key folder (:meth:`ServerSide.load`); it never sees the secret
folder, which the pool refuses to pass. :meth:`ActorPool.run` hands batches to idle actors (``ray.wait``)
and delivers every reply exactly once. When an actor dies (killed, crashed, its node lost), its batch goes
back on the queue for a live actor and a replacement actor is started, so no batch is lost. Ray is
optional (``pip install olafhe[ray]``); on a cluster every node needs olafhe, the data folder and the
public key folder at the same paths.
"""

from __future__ import annotations

import copy
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olafhe.core.config import Config
from olafhe.core.errors import DataError, MismatchError, OlafheError
from olafhe.core.planning.plan import Plan
from olafhe.jobs.memory import peak_rss_mb
from olafhe.serve.artefacts import Manifest
from olafhe.serve.sides import ServerSide, prepare


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
    """``actors`` KeyedEvaluator actors; :meth:`run` hands out batches until each has one reply. With
    ``replace``, up to ``actors`` replacements start as actors die; a batch that fails ``max_attempts`` times
    (its actor alive) stops the run."""

    def __init__(self, spec: ActorSpec, actors: int, num_cpus: float = 1.0, replace: bool = True,
                 max_attempts: int = 3) -> None:
        import ray

        if actors < 1:
            raise OlafheError(f"--actors must be >= 1, got {actors}")
        refuse_secret(Path(spec.public))  # before any actor exists
        self.spec, self.max_attempts = spec, max_attempts
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
        if last is not None and after_result is not None:
            after_result(self, *last)

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


# ----------------------------------------------------------------------------- reaching Ray, sharing the cores
def ray_module() -> Any:
    """The ray package; OlafheError naming the extra when it is missing."""
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
    ray = ray_module()
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
        hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token here too)" \
            if address and not os.environ.get("RAY_AUTH_MODE") else ""
        raise OlafheError(f"cannot start or reach {where}: {_first_line(exc)}{hint}") from None
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
