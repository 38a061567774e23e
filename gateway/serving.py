"""The server shell: the listening socket, TLS, the connection bound and protocol-level errors.

aiohttp's own ``run_app`` is replaced by a small equivalent so that each
connection is served by :class:`GatewayRequestHandler`, which

- closes a connection that stays idle, or takes too long to send a request's
  line and headers, after ``idle_timeout_s`` (aiohttp's keep-alive timer also
  runs while headers trickle in);
- answers a connection past ``max_connections`` with 503 and closes it;
- answers an unparsable request, or a request line or header past
  ``max_header_bytes``, with MLflow's error JSON instead of aiohttp's text,
  and logs it without the offending bytes (they may hold a credential).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
from collections.abc import Callable
from contextlib import suppress

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from gateway import telemetry
from gateway.config import Settings

log = logging.getLogger(__name__)

# The cyclic collector's thresholds while serving. CPython's default (a young
# collection every 700 net allocations of tracked objects) runs thousands of
# collections a second under a log-batch flood, each walking the rows of the
# batches still buffered: 40 % of the process's CPU in log-batch-c16. The
# server makes few reference cycles, so collecting far less often keeps memory
# bounded all the same (docs/benchmarks-history.md, "The cyclic garbage collector").
GC_THRESHOLDS = (50_000, 20, 100)


def collect_less_often(app: web.Application) -> None:
    """Set :data:`GC_THRESHOLDS` now, and freeze what exists once ``app`` has started.

    What the startup made (modules, routes, the pool) lives as long as the
    process, so it is kept out of every later collection's walk.
    """
    gc.set_threshold(*GC_THRESHOLDS)

    async def freeze(app: web.Application) -> None:
        gc.freeze()

    app.on_startup.append(freeze)


_encode = msgspec.json.Encoder().encode


def _raw_error(status: int, reason: str, error_code: str, message: str, retry_after: int | None = None) -> bytes:
    body = _encode({"error_code": error_code, "message": message})
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GatewayServer(web.Server):
    """aiohttp's connection factory, bounded in open connections."""

    max_connections = 4096
    open_connections = 0

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open_connections += 1

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self.open_connections -= 1


_TOO_MANY_CONNECTIONS = _raw_error(
    503, "Service Unavailable", "TEMPORARILY_UNAVAILABLE",
    "Too many open connections to this server. Retry later.", retry_after=1,
)


class GatewayRequestHandler(RequestHandler):
    """One client connection (see the module's doc)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._manager
        if isinstance(server, GatewayServer) and server.open_connections > server.max_connections:
            telemetry.REJECTS.labels("TEMPORARILY_UNAVAILABLE").inc()
            log.warning("connection refused: too many open connections",
                        extra={"open_connections": server.open_connections})
            transport.write(_TOO_MANY_CONNECTIONS)  # type: ignore[attr-defined]
            self.force_close()
            transport.close()

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None, message: str | None = None):
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started; the connection is closed")
        if isinstance(exc, LineTooLong):
            status, error_code = 431, "BAD_REQUEST"
            text = f"The request line or a header field is longer than {exc.args[1]} bytes."
        elif isinstance(exc, HttpProcessingError) or status == 400:
            status, error_code = 400, "BAD_REQUEST"
            text = "Malformed HTTP request."
        else:
            status, error_code = 500, "INTERNAL_ERROR"
            text = "Internal server error."
        # Neither the offending bytes nor a trace go to the log: they may hold a credential.
        log.warning("request refused before routing", extra={
            "status": status, "error_code": error_code, "reason": type(exc).__name__ if exc else None,
        })
        telemetry.REJECTS.labels(error_code).inc()
        response = web.Response(status=status, body=_encode({"error_code": error_code, "message": text}),
                                content_type="application/json")
        response.force_close()
        return response


class GatewayRunner(web.AppRunner):
    """An AppRunner whose server is a :class:`GatewayServer`."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs):
        super().__init__(app, **kwargs)
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GatewayServer  # same state, our connection factory
        server.max_connections = self._max_connections
        return server


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for tls_cert/tls_key, or None to serve plain HTTP."""
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def run(
    app: web.Application, settings: Settings, *, reuse_port: bool, loop: asyncio.AbstractEventLoop,
    before_listening: Callable[[], None] | None = None, after_listening: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully (the final flush runs).

    ``before_listening`` (blocking, run in a thread) is called once the app has started and
    before the socket listens; ``after_listening`` once it listens.
    """
    runner = GatewayRunner(
        app,
        max_connections=settings.max_connections,
        handle_signals=True,
        access_log=None,
        shutdown_timeout=5,
        keepalive_timeout=settings.idle_timeout_s,
        max_line_size=settings.max_header_bytes,
        max_field_size=settings.max_header_bytes,
        # After an early answer (413, 408) the unread rest of a body is drained for at
        # most this long, so the client sees the answer rather than a reset.
        lingering_time=1.0,
    )
    context = ssl_context(settings)

    async def serve() -> None:
        await runner.setup()
        if before_listening is not None:
            await loop.run_in_executor(None, before_listening)
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=context, backlog=1024,
                           reuse_port=reuse_port or None)
        await site.start()
        if after_listening is not None:
            after_listening()
        while True:
            await asyncio.sleep(3600)

    collect_less_often(app)
    asyncio.set_event_loop(loop)
    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        loop.run_until_complete(runner.cleanup())
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
