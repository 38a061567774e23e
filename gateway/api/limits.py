"""Bounds on request bodies: a size per endpoint and a time to receive them.

The size comes from the handler's :func:`gateway.api.openapi.operation` mark
(1 MiB unless it says otherwise; the server-wide ``max_body_bytes`` is the
ceiling). A declared Content-Length over the bound is refused before a byte of
the body is read; a chunked body is read up to the bound and then refused. The
body must arrive within ``body_timeout_s``, or the client gets 408 and the
connection is closed. A streamed body (an artifact upload, marked
``streamed_body``) has no size bound, since a checkpoint may be many GB; it is
read with :func:`body_chunks` instead, which gives up with 408 once no byte has
arrived for ``body_timeout_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError

from gateway.api.openapi import operation_of
from gateway.errors import GatewayError

MAX_QUERY_BODY_BYTES = 64 * 1024
"""A GET's body is never read; a larger one is refused rather than drained."""


class BodyTooLarge(GatewayError):
    """413: the body is over the endpoint's bound."""

    def __init__(self, limit: int, size: int | None):
        got = f" ({size} bytes)" if size is not None else ""
        super().__init__(
            f"Request body too large{got}: this endpoint accepts at most {limit} bytes.", "INVALID_PARAMETER_VALUE"
        )

    @property
    def status(self) -> int:
        return 413


class BodyTimeout(GatewayError):
    """408: the body did not arrive in time."""

    def __init__(self, seconds: float, *, streamed: bool = False):
        message = (
            f"No part of the request body arrived for {seconds:g} seconds."
            if streamed
            else f"The request body was not received within {seconds:g} seconds."
        )
        super().__init__(message, "BAD_REQUEST")

    @property
    def status(self) -> int:
        return 408


class BodyCutOff(GatewayError):
    """400: the client went away or broke the body's framing before the body was complete."""

    def __init__(self):
        super().__init__("The request body was cut off before it was complete.", "BAD_REQUEST")


BODY_TIMEOUT_KEY = "body_timeout_s"
"""Where the middleware leaves the body timeout for a handler that streams its body."""
DEFAULT_BODY_TIMEOUT_S = 60.0


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives, for a handler marked ``streamed_body``.

    Raises:
        BodyTimeout: no byte arrived for the body timeout (408; the connection is closed).
        BodyCutOff: the connection closed, or the chunked framing broke, mid-body.
    """
    timeout = request.get(BODY_TIMEOUT_KEY, DEFAULT_BODY_TIMEOUT_S)
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await request.content.readany()
        except TimeoutError:
            raise BodyTimeout(timeout, streamed=True) from None
        except (ConnectionError, PayloadEncodingError):
            raise BodyCutOff() from None
        if not chunk:
            return
        yield chunk


def body_limits(*, server_max_bytes: int, body_timeout: float):
    """The middleware that reads each JSON body within its bounds (the handler then reads it from memory)."""

    @web.middleware
    async def limit_body(request: web.Request, handler):
        found = operation_of(request.match_info.handler)
        if found is not None and found.streamed_body:
            request[BODY_TIMEOUT_KEY] = body_timeout
            return await handler(request)
        if found is None or found.request is None:
            return await handler(request)
        declared = request.content_length
        if request.method == "GET":
            if declared is not None and declared > MAX_QUERY_BODY_BYTES:
                raise BodyTooLarge(MAX_QUERY_BODY_BYTES, declared)
            return await handler(request)
        limit = min(found.max_body_bytes or server_max_bytes, server_max_bytes)
        if declared is not None and declared > limit:
            raise BodyTooLarge(limit, declared)
        try:
            if request.content.is_eof():
                # The whole body came with the headers (a small write): nothing to wait for.
                body = await request.read()
            else:
                async with asyncio.timeout(body_timeout):
                    body = await request.read()
        except TimeoutError:
            raise BodyTimeout(body_timeout) from None
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(limit, None) from None
        if len(body) > limit:
            raise BodyTooLarge(limit, len(body))
        return await handler(request)

    return limit_body
