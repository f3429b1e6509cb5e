"""A request body read chunk by chunk from ASGI: size-limited, and drained after a refusal.

Reading ``receive`` directly (not Starlette's one-shot ``request.stream()``) lets a handler that refuses
an upload half-way read and drop the rest, so the client gets the error reply instead of a connection
reset while it is still sending.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request

from olafhe.core.errors import DataError
from olafhe.serve.errors import TooLargeError

DRAIN_BYTES = 256 << 20


class Body:
    """The body of one request, consumed at most once."""

    def __init__(self, request: Request) -> None:
        self._receive = request.receive
        declared = request.headers.get("content-length")
        self.length = int(declared) if declared and declared.isdigit() else None
        self.done = False
        self.received = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive."""
        while not self.done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.done = True
                raise DataError("the client disconnected before the upload was complete")
            self.done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            self.received += len(chunk)
            if chunk:
                yield chunk

    async def read(self, limit: int, what: str) -> bytes:
        """The whole body, refused (413) beyond ``limit`` bytes."""
        refusal = f"{what} upload of {{}} bytes exceeds the server's limit of {limit} bytes (--max-upload-mb)"
        if self.length is not None and self.length > limit:
            raise TooLargeError(refusal.format(self.length))
        data = bytearray()
        async for chunk in self.chunks():
            if len(data) + len(chunk) > limit:
                raise TooLargeError(refusal.format(f"more than {limit}"))
            data += chunk
        return bytes(data)

    async def drain(self, cap: int = DRAIN_BYTES) -> None:
        """Read and drop what the client still sends, unless more than ``cap`` bytes are left."""
        if self.done or (self.length is not None and self.length - self.received > cap):
            return
        start = self.received
        try:
            async for _ in self.chunks():
                if self.received - start > cap:
                    return
        except DataError:
            return
