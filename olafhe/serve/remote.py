"""The HTTP client of :mod:`olafhe.serve.app`: register and upload a key set, send ciphertexts.

Key files are streamed from disk (httpx reads an open file in chunks), never read whole into memory.
Every non-2xx reply becomes a :class:`RemoteError` carrying the server's one-line reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from olafhe.core.errors import OlafheError
from olafhe.serve.artefacts import MANIFEST, Manifest


class RemoteError(OlafheError):
    """The server refused a request (its status and one-line reason) or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RemoteServer:
    """A connection to ``olafhe serve`` at ``url`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, url: str, timeout: float | None = None) -> None:
        self.url = url.rstrip("/")
        # connecting must be quick; an upload or an inference may take minutes at N = 2^16
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            reply = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach the server at {self.url} ({type(exc).__name__}: {exc})") from exc
        if reply.status_code >= 400:
            try:
                reason = reply.json().get("error") or reply.text
            except ValueError:
                reason = reply.text
            raise RemoteError(f"server answered {reply.status_code} to {method} {path}: {reason}", reply.status_code)
        return reply

    def health(self) -> dict:
        return self._call("GET", "/health").json()

    def audit(self) -> dict:
        return self._call("GET", "/audit").json()

    def plan(self, plan_id: str) -> dict:
        return self._call("GET", f"/plans/{plan_id}").json()

    def register_keys(self, plan_id: str, public_dir: Path) -> dict:
        """Register the key set in ``public_dir``, upload the files the server lacks, load it.

        Returns the key set id, the bytes uploaded and the seconds the upload and the loading took; a key
        set the server already holds is not uploaded again.
        """
        public_dir = Path(public_dir)
        manifest = Manifest.read(public_dir)
        registered = self._call("POST", f"/plans/{plan_id}/keys",
                                content=(public_dir / MANIFEST).read_bytes(),
                                headers={"content-type": "application/json"}).json()
        base = f"/plans/{plan_id}/keys/{manifest.key_id}"
        sent, t0 = 0, time.perf_counter()
        for name in registered["missing"]:
            with open(public_dir / name, "rb") as handle:
                self._call("PUT", f"{base}/files/{name}", content=handle,
                           headers={"content-type": "application/octet-stream"})
            sent += manifest.files[name]["bytes"]
        upload_s = time.perf_counter() - t0
        loaded = self._call("POST", f"{base}/load").json()
        return {"key_id": manifest.key_id, "uploaded_bytes": sent, "key_bytes": manifest.total_bytes,
                "upload_seconds": upload_s, "load_seconds": float(loaded.get("seconds", 0.0))}

    def infer(self, plan_id: str, key_id: str, envelope: bytes) -> tuple[bytes, dict]:
        """The output envelope for an input envelope, with the server's timings."""
        reply = self._call("POST", f"/plans/{plan_id}/keys/{key_id}/infer", content=envelope,
                           headers={"content-type": "application/octet-stream"})
        timings = {"server_seconds": float(reply.headers.get("x-olafhe-seconds", "nan")),
                   "server_total_seconds": float(reply.headers.get("x-olafhe-total-seconds", "nan"))}
        return reply.content, timings

    def delete_keys(self, plan_id: str, key_id: str) -> dict:
        return self._call("DELETE", f"/plans/{plan_id}/keys/{key_id}").json()
