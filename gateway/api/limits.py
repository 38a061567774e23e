"""Bounds on request bodies: a size per endpoint and a time to receive them.

The size comes from the handler's :func:`gateway.api.openapi.operation` mark
(1 MiB unless it says otherwise; the server-wide ``max_body_bytes`` is the
ceiling). A declared Content-Length over the bound is refused before a byte of
the body is read; a chunked body is read up to the bound and then refused. The
body must arrive within ``body_timeout_s``, or the client gets 408 and the
connection is closed. Handlers without a request struct (streamed uploads)
bound their own input.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

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

    def __init__(self, seconds: float):
        super().__init__(f"The request body was not received within {seconds:g} seconds.", "BAD_REQUEST")

    @property
    def status(self) -> int:
        return 408


def body_limits(*, server_max_bytes: int, body_timeout: float):
    """The middleware that reads each JSON body within its bounds (the handler then reads it from memory)."""

    @web.middleware
    async def limit_body(request: web.Request, handler):
        found = operation_of(request.match_info.handler)
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
