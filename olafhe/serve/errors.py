"""The server's errors and the HTTP status of every olafhe error (the reply is ``{"error": one line}``)."""

from __future__ import annotations

from olafhe.core.errors import MismatchError, OlafheError


class NotFoundError(OlafheError):
    """An unknown plan, key set or key file."""


class TooLargeError(OlafheError):
    """An upload larger than the server accepts or than its manifest declares."""


class BusyError(OlafheError):
    """The worker is running a request and the queue is full."""


_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, 404), (TooLargeError, 413), (BusyError, 503), (MismatchError, 409), (OlafheError, 400),
)


def http_status(exc: OlafheError) -> int:
    """404 unknown, 413 too large, 503 busy, 409 another plan/key set/parameters, 400 any other bad input."""
    return next(code for cls, code in _STATUS if isinstance(exc, cls))


def one_line(message: object, limit: int = 1000) -> str:
    return " ".join(str(message).split())[:limit]
