"""HTTP plumbing shared by all routes: JSON errors, body limits, CORS for the web widget."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_remotes import XForwardedStrict
from multidict import MultiDictProxy
from pydantic import AfterValidator, BaseModel, ValidationError

from bot.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    StorageUnavailable,
    Unprocessable,
    UnsupportedMediaType,
)

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
# The largest integer a store column holds (SQLite INTEGER, PostgreSQL bigint): a larger one
# from a client raises in the driver instead of matching nothing, so routes bound them.
MAX_INTEGER = 2**63 - 1


def _not_blank(value: str) -> str:
    # Nothing a person could read (white space, NUL, zero-width or other format characters)
    # is no message.
    if not any(c.isprintable() and not c.isspace() for c in value):
        raise ValueError("text must not be empty")
    return value.strip()


# Message text from clients: surrounding white space dropped, and never empty or invisible.
NonBlankText = Annotated[str, AfterValidator(_not_blank)]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_of(e: RequestError) -> dict[str, Any]:
    """The JSON error for a refused request (HTTP body or WebSocket ``error`` frame)."""
    body = error_body(e.code, e.message, e.field)
    if e.retry_after is not None:
        body["error"]["retry_after"] = e.retry_after
    return body


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as e:
        if isinstance(e, StorageUnavailable):
            _storage_warning(e)
        response = web.json_response(error_of(e), status=e.status)
        if e.retry_after is not None:
            response.headers["Retry-After"] = str(e.retry_after)
        return response
    except web.HTTPException as e:
        if e.status < 400 or not request.path.startswith("/api/"):
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
        allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
        return web.json_response(error_body(code, e.reason), status=e.status, headers=allow)
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(
            error_body("internal_error", "something went wrong on our side"), status=500
        )


_warned_at = 0.0
_WARN_EVERY = 10.0  # seconds: one log line per outage, not one traceback per request


def _storage_warning(e: StorageUnavailable) -> None:
    global _warned_at
    now = time.monotonic()
    if now - _warned_at >= _WARN_EVERY:
        _warned_at = now
        logger.warning("refusing requests while the database takes no writes: %s", e.__cause__)


def cors_middleware(allowed: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Let pages on other sites embed the widget (its REST calls are cross-origin)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        # The widget's routes: chat, and rating a resolved request.
        is_widget_api = request.path.startswith(("/api/web/", "/api/conversations/"))
        if not (origin and is_widget_api and ("*" in allowed or origin in allowed)):
            return await handler(request)
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Vary"] = "Origin"
        return response

    return middleware


# Bodies of the authenticated APIs (agents, console); the customer-facing routes and the
# webhooks pass `limits.body_timeout`.
BODY_TIMEOUT = 10.0  # seconds


async def read_json(request: web.Request, max_bytes: int, timeout: float = BODY_TIMEOUT) -> Any:
    """Read a JSON body with a size limit, a time limit and strict UTF-8, or raise a
    ``RequestError``."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            "unsupported_media_type", "Content-Type must be application/json"
        )
    return parse_json(await read_body(request, max_bytes, timeout))


async def read_body(
    request: web.Request, max_bytes: int, timeout: float, code: str = "payload_too_large"
) -> bytes:
    """The whole body, refused when over ``max_bytes`` or not all there within ``timeout``
    seconds: a client dripping a body must not hold a handler open indefinitely."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(code, f"request body is over {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            # read(n) returns what has arrived, up to n: a body in several TCP segments
            # takes several reads.
            while size <= max_bytes and (chunk := await request.content.read(max_bytes + 1)):
                chunks.append(chunk)
                size += len(chunk)
    except TimeoutError as e:
        raise RequestTimeout(
            "request_timeout", f"request body did not arrive within {timeout:g} s"
        ) from e
    if size > max_bytes:
        raise PayloadTooLarge(code, f"request body is over {max_bytes} bytes")
    return b"".join(chunks)


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """A form post, or ``BadRequest`` when it cannot be parsed: aiohttp raises on hostile
    multipart (a part header that is not a valid header, a bad boundary, bad bytes)."""
    try:
        return await request.post()
    except (HttpProcessingError, ValueError) as e:
        raise BadRequest("invalid_form", "the form could not be read") from e


def parse_json(raw: bytes | str) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadRequest("not_utf8", "request body is not valid UTF-8") from e
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise BadRequest(
            "invalid_json",
            f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
        ) from e
    except RecursionError as e:
        raise BadRequest("invalid_json", "request body is nested too deeply") from e
    except ValueError as e:  # an integer longer than Python converts (4,300 digits)
        raise BadRequest("invalid_json", "request body has a number with too many digits") from e
    # "\ud800" is valid JSON but no text: refused here, once, rather than failing in whatever
    # stores or encodes it (a database write, a WebSocket frame).
    if "\\u" in raw:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadRequest(
                "invalid_unicode", "request body holds an unpaired surrogate (\\ud800-\\udfff)"
            ) from e
    return value


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "model_type" or field is None:
            message = "request body must be a JSON object"
        raise Unprocessable(
            "validation_error", f"{field}: {message}" if field else message, field=field
        ) from e


# Console pages run only their own scripts: a customer's message or an article that smuggles
# markup past the escaping still cannot execute, load, or send anything elsewhere.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


@web.middleware
async def console_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:  # a page raised (the 403 page, a redirect): headers too
        _console_headers(request, e)
        raise
    _console_headers(request, response)
    return response


def _console_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/console"):
        response.headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


class ProxiedOnly(XForwardedStrict):
    """aiohttp-remotes' strict X-Forwarded-For reading, refusing what did not come through the
    trusted proxies with a JSON error that says so (its own is a bare 400)."""

    async def raise_error(self, request: web.Request) -> NoReturn:
        raise BadRequest(
            "not_via_proxy",
            "requests reach this gateway through its reverse proxy (server.trusted_proxies)",
        )
