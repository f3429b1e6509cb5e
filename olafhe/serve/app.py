"""The HTTP inference server (FastAPI on uvicorn): evaluation keys in, ciphertexts in, ciphertexts out.

Endpoints (``PLAN`` is the served plan's sha256, ``KEY`` a key set id; errors are ``{"error": one line}``)::

    GET    /health                           status, plan, key sets, queue, peak RSS
    GET    /audit                            the process's own check that it holds no secret key
    GET    /plans/PLAN                       what the plan needs (parameters, rotations, input level)
    POST   /plans/PLAN/keys                  register a key set: body = its public manifest.json
    PUT    /plans/PLAN/keys/KEY/files/NAME   upload one key file (raw body, streamed to disk)
    POST   /plans/PLAN/keys/KEY/load         load the uploaded key set (once)
    GET    /plans/PLAN/keys/KEY              state of a key set
    DELETE /plans/PLAN/keys/KEY              forget a key set
    POST   /plans/PLAN/keys/KEY/infer        body = input envelope; reply = output envelope, headers
                                             X-Olafhe-Seconds (the program), X-Olafhe-Total-Seconds (with
                                             queueing and (de)serialization)

Status codes: 400 corrupt or truncated input, 404 unknown plan, key set or file, 409 an artefact of
another plan, key set or parameters (or a key set not yet loaded), 413 too large, 503 busy.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from olafhe.core.errors import DataError, MismatchError, OlafheError
from olafhe.jobs.memory import peak_rss_mb
from olafhe.serve.audit import audit
from olafhe.serve.body import Body
from olafhe.serve.errors import NotFoundError, http_status, one_line
from olafhe.serve.keystore import KeyStore
from olafhe.serve.sides import Setup
from olafhe.serve.worker import Worker

MAX_MANIFEST_BYTES = 1 << 20
T = TypeVar("T")


@dataclass
class ServerState:
    """Everything the server holds (what ``/audit`` walks)."""

    setup: Setup
    store: KeyStore
    worker: Worker
    max_upload_bytes: int


def _error(status: int, message: str) -> JSONResponse:
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


def create_app(state: ServerState) -> FastAPI:
    """The FastAPI application serving ``state``'s plan."""
    app = FastAPI(title="olafhe", description="encrypted CNN inference (CKKS)", docs_url=None, redoc_url=None)
    app.state.olafhe = state
    _add_error_handlers(app)
    _add_status_routes(app, state)
    _add_key_routes(app, state)
    _add_infer_route(app, state)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OlafheError)
    async def olafhe_error(_: Request, exc: OlafheError) -> JSONResponse:
        return _error(http_status(exc), str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = f"no such endpoint: {request.method} {request.url.path}" if exc.status_code == 404 else exc.detail
        return _error(exc.status_code, str(detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        return _error(422, f"bad request: {first.get('msg', 'invalid')} at {'/'.join(map(str, first.get('loc', ())))}")

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def _check_plan(state: ServerState, plan_id: str) -> None:
    if plan_id != state.setup.plan_sha256:
        raise NotFoundError(f"unknown plan {plan_id[:64]!r}; this server runs plan {state.setup.plan_sha256} "
                            f"({state.setup.plan.model})")


def _add_status_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health")
    def health() -> dict:
        s = state.setup
        return {"status": "ok", "plan_sha256": s.plan_sha256, "model": s.plan.model, "backend": s.backend.name,
                "security_bits": s.caps.security_bits, "key_sets": [k.summary() for k in state.store.sets.values()],
                "queue": state.worker.status(), "max_upload_bytes": state.max_upload_bytes,
                "peak_rss_mb": peak_rss_mb(), "pid": os.getpid()}

    @app.get("/audit")
    def audit_report() -> dict:
        return audit(state, state.store.files_on_disk())

    @app.get("/plans/{plan_id}")
    def plan(plan_id: str) -> dict:
        _check_plan(state, plan_id)
        return state.setup.describe()


async def _draining(body: Body, work: Callable[[], Awaitable[T]]) -> T:
    """``work()``; when it refuses the request, the rest of the body is read and dropped first."""
    try:
        return await work()
    except OlafheError:
        await body.drain()
        raise


def _add_key_routes(app: FastAPI, state: ServerState) -> None:
    @app.post("/plans/{plan_id}/keys", status_code=201)
    async def register(plan_id: str, request: Request) -> dict:
        body = Body(request)

        async def work() -> dict:
            _check_plan(state, plan_id)
            raw = await body.read(MAX_MANIFEST_BYTES, "key manifest")
            try:
                doc = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise DataError(f"key manifest is not valid JSON ({exc})") from exc
            return state.store.register(doc).summary()

        return await _draining(body, work)

    @app.put("/plans/{plan_id}/keys/{key_id}/files/{name}")
    async def upload(plan_id: str, key_id: str, name: str, request: Request) -> dict:
        body = Body(request)

        async def work() -> dict:
            _check_plan(state, plan_id)
            return (await state.store.receive(key_id, name, body.chunks(), body.length)).summary()

        return await _draining(body, work)

    @app.post("/plans/{plan_id}/keys/{key_id}/load")
    async def load(plan_id: str, key_id: str) -> dict:
        _check_plan(state, plan_id)
        state.store.get(key_id)
        async with state.worker.admitted():
            t0 = time.perf_counter()
            ks = await state.worker.run(state.store.load, key_id)
        return ks.summary() | {"seconds": time.perf_counter() - t0}

    @app.get("/plans/{plan_id}/keys/{key_id}")
    def key_set(plan_id: str, key_id: str) -> dict:
        _check_plan(state, plan_id)
        return state.store.get(key_id).summary()

    @app.delete("/plans/{plan_id}/keys/{key_id}")
    async def delete(plan_id: str, key_id: str) -> dict:
        _check_plan(state, plan_id)
        state.store.get(key_id)
        async with state.worker.admitted():
            await state.worker.run(state.store.delete, key_id)
        return {"deleted": key_id}


def _add_infer_route(app: FastAPI, state: ServerState) -> None:
    @app.post("/plans/{plan_id}/keys/{key_id}/infer")
    async def infer(plan_id: str, key_id: str, request: Request) -> Response:
        body = Body(request)

        async def work() -> Response:
            _check_plan(state, plan_id)
            ks = state.store.get(key_id)
            if ks.server is None:
                raise MismatchError(f"key set {key_id!r} is not loaded ({ks.state}); POST .../keys/{key_id}/load")
            async with state.worker.admitted():
                data = await body.read(state.max_upload_bytes, "ciphertext")
                t0 = time.perf_counter()
                out, seconds = await state.worker.run(ks.server.run, data, "ciphertext")
            total = time.perf_counter() - t0
            headers = {"X-Olafhe-Seconds": f"{seconds:.6f}", "X-Olafhe-Total-Seconds": f"{total:.6f}"}
            return Response(out, media_type="application/octet-stream", headers=headers)

        return await _draining(body, work)


def check_port(host: str, port: int) -> None:
    """Refuse (one line) an address the server could not listen on, before any slow start-up work."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OlafheError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc


def serve(state: ServerState, host: str, port: int, log_level: str = "info") -> None:
    """Run the server until interrupted (uvicorn, one process)."""
    import uvicorn

    check_port(host, port)
    try:
        uvicorn.run(create_app(state), host=host, port=port, log_level=log_level)
    finally:
        state.worker.shutdown()

