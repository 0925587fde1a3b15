"""One exception hierarchy; ``bot.http`` maps it to HTTP responses."""

import math


class PromptlyError(Exception):
    """Base of every error Promptly raises on purpose."""


class ConfigError(PromptlyError):
    """The configuration cannot be used; the message names the key."""


class StorageError(PromptlyError):
    """The database cannot be used as it is (a schema newer than the code, a bad backup)."""


class RequestError(PromptlyError):
    """A client sent something we refuse; carries the HTTP status and a stable code."""

    status = 400
    retry_after: int | None = None  # whole seconds after which the same request may succeed

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class BadRequest(RequestError):
    status = 400


class Unauthorized(RequestError):
    status = 401


class Forbidden(RequestError):
    status = 403


class NotFound(RequestError):
    status = 404


class PayloadTooLarge(RequestError):
    status = 413


class UnsupportedMediaType(RequestError):
    status = 415


class Unprocessable(RequestError):
    status = 422


class Conflict(RequestError):
    status = 409


class RequestTimeout(RequestError):
    status = 408


class TooManyRequests(RequestError):
    """A rate limit refused the request (``what``: "messages from this customer"). Nothing was
    stored; it may be sent again after ``retry_after`` whole seconds (as Retry-After says)."""

    status = 429

    def __init__(self, what: str, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            "rate_limited",
            f"too many {what}: nothing was stored; send it again in {self.retry_after} s",
        )


class StorageUnavailable(RequestError):
    """The database takes no writes now (disk full, I/O error, locked past the timeout).
    Nothing of the request was stored; the client sends it again after ``retry_after``."""

    status = 503

    def __init__(self, cause: str, retry_after: int = 5) -> None:
        self.retry_after = retry_after
        super().__init__(
            "storage_unavailable",
            f"we cannot store anything right now ({cause}): nothing was stored; "
            f"send it again in {retry_after} s",
        )


class NLUUnavailable(PromptlyError):
    """Rasa did not answer (down, refused, timed out or circuit open)."""
