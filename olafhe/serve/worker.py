"""One computation at a time: the server's single worker thread and its bounded queue.

Encrypted inference at N = 2^16 holds gigabytes of temporaries and uses every core, so the server runs
key loading and inference one at a time on one thread; at most ``queue`` more requests wait, and a
request beyond that is refused at once (503) instead of exhausting memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from olafhe.core.errors import OlafheError
from olafhe.serve.errors import BusyError

T = TypeVar("T")


class Worker:
    """A single worker thread; :meth:`admitted` bounds the requests running or waiting for it."""

    def __init__(self, queue: int) -> None:
        if queue < 0:
            raise OlafheError(f"the queue length must be >= 0, got {queue}")
        self.queue = queue
        self.pending = 0  # running + waiting; only touched on the event loop's thread
        self.completed = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="olafhe-worker")

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold a place (running or queued) for the duration of a request; BusyError when none is left."""
        if self.pending > self.queue:
            raise BusyError(f"server busy: {self.pending} request(s) running or queued (queue limit "
                            f"{self.queue}); retry later")
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the worker thread, after the work queued before it."""
        result = await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self.completed += 1
        return result

    def status(self) -> dict:
        return {"pending": self.pending, "queue_limit": self.queue, "completed": self.completed}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
