"""The relay's aiohttp application: local writes, pass-through for everything else, /metrics.

The four run writes (log-metric, log-parameter, set-tag, log-batch) are decoded
and validated exactly as `gateway serve` does, checked against what the relay
knows of the run, made durable in the spool and acknowledged; the forwarder
delivers them. Every other request goes to the upstream with its body
streamed both ways and comes back with the upstream's status, headers and
body. Reads of a run (and searches) first deliver the run's spooled writes, so
a client reads what it wrote.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import telemetry as gateway_telemetry
from gateway.api import decoding, schemas
from gateway.api.middleware import mlflow_errors
from gateway.api.routing import Route, add_routes, under
from gateway.errors import GatewayError, Overloaded, Unavailable
from gateway.mlflow.wire import TRACKING_PREFIXES
from gateway.model import RunWrite
from gateway.relay import telemetry
from gateway.relay.forwarder import Forwarder
from gateway.relay.knowledge import RunKnowledge
from gateway.relay.settings import RelaySettings
from gateway.relay.spool import KIND_NAMES, METRIC, PARAM, TAG, Spool, SpoolClosed, encode_item
from gateway.relay.upstream import Upstream

log = logging.getLogger(__name__)


# Headers that describe one connection, not the message: never forwarded either way.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_STREAM_CHUNK = 64 * 1024


class Relay:
    """The write path of the relay: check, spool, acknowledge (or await delivery).

    Args:
        settings: the relay's settings.
        spool, knowledge, forwarder: its parts, opened by :func:`create_relay_app`.
    """

    def __init__(self, settings: RelaySettings, spool: Spool, knowledge: RunKnowledge, forwarder: Forwarder) -> None:
        self.settings = settings
        self.spool = spool
        self.knowledge = knowledge
        self.forwarder = forwarder

    async def submit(self, write: RunWrite) -> None:
        """Acknowledge ``write`` once durable (or, with ack=upstream, once delivered).

        Raises:
            GatewayError: MLflow's error for a write MLflow would refuse; 429/503 with
                Retry-After when the spool is full or unavailable.
        """
        if not write.entity_count:
            await self.knowledge.check_run(write.run_id)
            return
        rows = [(METRIC, encode_item(m)) for m in write.metrics]
        rows += [(PARAM, encode_item(p)) for p in write.params]
        rows += [(TAG, encode_item(t)) for t in write.tags]
        size = sum(len(payload) for _, payload in rows)
        added = await self.knowledge.check_write(write)
        try:
            if self.forwarder.spool_bytes + size > self.settings.spool_max_bytes:
                telemetry.SPOOL_REJECTS.inc()
                if self.forwarder.upstream_failing:
                    raise Unavailable(
                        "The relay's spool is full while the upstream tracking server is unavailable. Retry later.",
                        retry_after=5.0,
                    )
                raise Overloaded("The relay's spool is full: the upstream is taking writes slower than they arrive. "
                                 "Retry later.", retry_after=2.0)
            first_seq, last_seq = await self.spool.append(write.run_id, rows)
        except GatewayError:
            self.knowledge.release(write.run_id, added)
            raise
        except (SpoolClosed, sqlite3.Error) as exc:
            self.knowledge.release(write.run_id, added)
            log.error("could not spool a write to run %s: %s", write.run_id, exc)
            raise Unavailable("The relay could not store the write. Retry later.", retry_after=2.0) from None
        self.forwarder.appended(write.run_id, first_seq, last_seq, size)
        for kind, items in ((METRIC, write.metrics), (PARAM, write.params), (TAG, write.tags)):
            if items:
                telemetry.SPOOLED.labels(KIND_NAMES[kind]).inc(len(items))
        if self.settings.ack == "upstream":
            try:
                await self.forwarder.delivered(write.run_id, first_seq, last_seq, self.settings.request_deadline_s)
            except TimeoutError:
                raise Unavailable(
                    "The write is spooled but the upstream did not accept it in time. Retry later.", retry_after=2.0
                ) from None


RELAY: web.AppKey[Relay] = web.AppKey("relay", Relay)
UPSTREAM: web.AppKey[Upstream] = web.AppKey("upstream", Upstream)


def _write_handler(
    decode: Callable[[web.Request], Awaitable[Any]], build: Callable[[Any, int | None], RunWrite]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        message = await decode(request)
        await request.app[RELAY].submit(build(message, request.content_length))
        return decoding.ok()

    return handler


def _reader(struct_type: type[msgspec.Struct]) -> Callable[[web.Request], Awaitable[Any]]:
    async def read(request: web.Request) -> Any:
        return await decoding.read(request, struct_type)

    return read


_WRITE_ROUTES = under(TRACKING_PREFIXES, [
    Route("POST", "/runs/log-metric", _write_handler(_reader(schemas.LogMetric), decoding.log_metric_write)),
    Route("POST", "/runs/log-parameter", _write_handler(_reader(schemas.LogParam), decoding.log_param_write)),
    Route("POST", "/runs/set-tag", _write_handler(_reader(schemas.SetTag), decoding.set_tag_write)),
    Route("POST", "/runs/log-batch", _write_handler(decoding.read_log_batch, decoding.log_batch_write)),
])


# ---- pass-through -----------------------------------------------------------------------

# Paths (after the API prefix) whose run's spooled writes are delivered before the call
# goes upstream, so the answer (or the change) sees them. Run ids in the query string.
_DELIVER_RUN_FROM_QUERY = frozenset({"/runs/get", "/metrics/get-history"})
# Same, run id in the JSON body.
_DELIVER_RUN_FROM_BODY = frozenset(
    {"/runs/update", "/runs/delete", "/runs/delete-tag", "/runs/log-model", "/runs/log-inputs", "/runs/outputs"}
)
# Calls that may see or change any run: every spooled write is delivered first.
_DELIVER_ALL = frozenset(
    {
        "/runs/search",
        "/experiments/delete",
        "/databricks/runs/delete-runs",
        "/databricks/runs/restore-runs",
    }
)
# Calls whose success changes what the relay knows of runs.
_LEARN_FROM = frozenset(
    {
        "/runs/create",
        "/runs/delete",
        "/runs/restore",
        "/experiments/delete",
        "/experiments/restore",
        "/databricks/runs/delete-runs",
        "/databricks/runs/restore-runs",
    }
)


def _api_path(path: str) -> str | None:
    for prefix in TRACKING_PREFIXES:
        if path.startswith(prefix + "/"):
            return path[len(prefix) :]
    return None


def _run_id_in(body: bytes) -> str | None:
    try:
        message = msgspec.json.decode(body, type=schemas.RunRef)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    value = message.run_id or message.run_uuid
    return value if isinstance(value, str) and value else None


class _RunCreated(msgspec.Struct):
    run: dict


async def _deliver_first(request: web.Request, api_path: str, body: bytes | None) -> None:
    relay = request.app[RELAY]
    deadline = relay.settings.request_deadline_s
    if api_path in _DELIVER_ALL:
        await relay.forwarder.deliver_all(deadline)
    elif api_path in _DELIVER_RUN_FROM_QUERY:
        run_id = request.query.get("run_id") or request.query.get("run_uuid")
        if run_id:
            await relay.forwarder.deliver_run(run_id, deadline)
    elif api_path == "/metrics/get-history-bulk-interval":
        for run_id in request.query.getall("run_ids", []):
            await relay.forwarder.deliver_run(run_id, deadline)
    elif api_path in _DELIVER_RUN_FROM_BODY and body:
        run_id = _run_id_in(body)
        if run_id:
            await relay.forwarder.deliver_run(run_id, deadline)


def _learn(relay: Relay, api_path: str, request_body: bytes | None, status: int, body: bytes) -> None:
    if status != 200:
        return
    knowledge = relay.knowledge
    if api_path == "/runs/create":
        try:
            info = msgspec.json.decode(body, type=_RunCreated).run.get("info", {})
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        run_id = info.get("run_id") or info.get("run_uuid")
        if isinstance(run_id, str):
            knowledge.created(run_id)
    elif api_path in ("/runs/delete", "/runs/restore"):
        run_id = _run_id_in(request_body or b"")
        if run_id:
            knowledge.set_stage(run_id, "deleted" if api_path == "/runs/delete" else "active")
    else:
        knowledge.forget_all()


async def passthrough(request: web.Request) -> web.StreamResponse:
    """Forward the request upstream and answer with the upstream's status, headers and body."""
    upstream = request.app[UPSTREAM]
    relay = request.app[RELAY]
    api_path = _api_path(request.path)
    headers = upstream.headers(
        {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "authorization"}
    )
    # Small JSON calls the relay must look into are read whole; everything else streams.
    inspect = api_path is not None and request.method == "POST" and (
        api_path in _DELIVER_RUN_FROM_BODY or api_path in _LEARN_FROM or api_path in _DELIVER_ALL
    )
    body: bytes | None = None
    if inspect:
        body = await request.read()
        headers.pop("Content-Length", None)
        data: Any = body
    else:
        data = request.content if request.body_exists else None
    if api_path is not None:
        await _deliver_first(request, api_path, body)
    url = upstream.base_url + request.path_qs
    try:
        async with upstream.session.request(
            request.method, url, headers=headers, data=data, allow_redirects=False, timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=relay.settings.upstream_timeout_s, sock_read=relay.settings.upstream_timeout_s
            )
        ) as answer:
            telemetry.PASSTHROUGH.labels(str(answer.status)).inc()
            out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            if inspect:
                content = await answer.read()
                if api_path in _LEARN_FROM:
                    _learn(relay, api_path, body, answer.status, content)
                out_headers.pop("Content-Length", None)
                return web.Response(status=answer.status, reason=answer.reason, body=content, headers=out_headers)
            response = web.StreamResponse(status=answer.status, reason=answer.reason, headers=out_headers)
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(_STREAM_CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        telemetry.PASSTHROUGH.labels("error").inc()
        log.warning("pass-through %s %s failed: %s", request.method, request.path, type(exc).__name__)
        raise Unavailable("The upstream tracking server is unreachable. Retry later.", retry_after=2.0) from None


# ---- the application ------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def prometheus_metrics(request: web.Request) -> web.Response:
    body = generate_latest(gateway_telemetry.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_relay_app(settings: RelaySettings) -> web.Application:
    """Build the relay's application.

    Resources open in order (upstream session, then spool, knowledge and
    forwarder) and close in reverse: the forwarder stops before the spool closes.
    """
    app = web.Application(middlewares=[mlflow_errors], client_max_size=settings.max_body_bytes)

    async def parts(app: web.Application):
        upstream = Upstream(settings.upstream, max_rps=settings.upstream_max_rps, timeout=settings.upstream_timeout_s)
        await upstream.open()
        spool = Spool(settings.spool_dir)
        try:
            backlog = await spool.open()
        except BaseException:
            await upstream.close()
            raise
        knowledge = RunKnowledge(upstream, spool)
        forwarder = Forwarder(
            spool,
            upstream,
            knowledge,
            concurrency=settings.upstream_concurrency,
            linger=settings.batch_linger_ms / 1000,
            backoff_max=settings.retry_backoff_max_s,
        )
        forwarder.start(backlog)
        app[UPSTREAM] = upstream
        app[RELAY] = Relay(settings, spool, knowledge, forwarder)
        started = time.monotonic()
        yield
        if settings.shutdown_drain_s > 0 and forwarder.spool_entities:
            log.info("delivering %d spooled entities before exit", forwarder.spool_entities)
            try:
                await forwarder.deliver_all(settings.shutdown_drain_s)
            except GatewayError:
                pass  # the rest stays in the spool
        await forwarder.stop()
        await spool.close()
        await upstream.close()
        log.info(
            "relay stopped after %.0fs; %d entities stay in the spool for the next start",
            time.monotonic() - started,
            forwarder.spool_entities,
        )

    app.cleanup_ctx.append(parts)
    add_routes(app, [
        *_WRITE_ROUTES,
        Route("GET", "/health", health),
        Route("GET", "/metrics", prometheus_metrics),
        Route("*", "/{tail:.*}", passthrough),
    ])
    return app
