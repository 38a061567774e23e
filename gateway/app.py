"""The aiohttp application factory: wires settings, the pool, the accumulator and the routes."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import telemetry
from gateway.api import artifacts, export, genai, graphql, logged_models, registry, tracking
from gateway.api.auth import authentication
from gateway.api.limits import body_limits
from gateway.api.middleware import mlflow_errors, request_ids
from gateway.api.openapi import operation, serve_document
from gateway.api.routing import Route, add_routes
from gateway.api.webui import find_build, ui_routes
from gateway.api.run_answers import RunAnswers
from gateway.api.state import ARTIFACTS, LOGGED_MODELS, REGISTRY, RUN_ANSWERS, STORE, WRITES
from gateway.api.writes import WritePath
from gateway.artifacts import open_store
from gateway.auth import Verifier
from gateway.config import Settings
from gateway.ingest import Accumulator, Flusher
from gateway.ingest.accumulator import Bounds
from gateway.store.compactor import Compactor
from gateway.store.distribution import SESSION_SETTINGS
from gateway.store.errors import is_transient
from gateway.store.logged_models import LoggedModelStore
from gateway.store.migrations import migrate
from gateway.store.registry import RegistryStore
from gateway.store.replicas import ReadRouter
from gateway.store.tracking import TrackingStore
from gateway.store.writer import BatchWriter

log = logging.getLogger(__name__)

POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool", asyncpg.Pool)
FLUSHER: web.AppKey[Flusher] = web.AppKey("flusher", Flusher)


async def connect(database_url: str, size: int, *, wait: float = 60.0) -> asyncpg.Pool:
    """Open the pool, waiting up to ``wait`` seconds for the database to come up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await asyncpg.create_pool(
                database_url, min_size=1, max_size=size, command_timeout=120, reset=_keep_session,
                server_settings=SESSION_SETTINGS,
            )
        except Exception as exc:
            if not is_transient(exc) or loop.time() > deadline:
                raise
            log.warning("database not reachable yet (%s); retrying", type(exc).__name__)
            await asyncio.sleep(0.5)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a pooled connection needs before its next use: nothing.

    asyncpg's default sends a query on every release (unlock advisory locks,
    close cursors, unlisten, reset settings), a round trip per flush and per
    read. The gateway leaves none of that behind: its settings are
    ``SET LOCAL`` and its cursors live inside transactions, and an open
    transaction is still rolled back by the pool before this is called.
    """


def create_app(settings: Settings, database_url: str) -> web.Application:
    """Build the gateway's application.

    Resources open in order (pool, then accumulator and flusher) and close in
    reverse, so the final flush on shutdown still has its pool.
    """
    middlewares = [
        mlflow_errors,
        body_limits(server_max_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout_s),
    ]
    if settings.auth_file:
        middlewares.insert(0, authentication(Verifier(settings.auth_file)))
    middlewares.insert(0, request_ids(log_all=settings.access_log == "all", log_errors=settings.access_log != "off"))
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)

    async def database(app: web.Application):
        pool = await connect(database_url, settings.pool_size)
        async with pool.acquire() as conn:
            await migrate(conn)
        app[POOL] = pool
        reads = await ReadRouter.open(
            pool, settings.read_database_url, size=settings.pool_size, wait_s=settings.replica_wait_ms / 1000,
            command_timeout=120, reset=_keep_session,
        )
        app[STORE] = TrackingStore(pool, reads=reads)
        app[RUN_ANSWERS] = RunAnswers(settings.search_cache_bytes)
        app[LOGGED_MODELS] = LoggedModelStore(pool)
        app[REGISTRY] = RegistryStore(pool, reads=reads)
        yield
        await reads.close()
        await pool.close()

    async def ingestion(app: web.Application):
        telemetry.PENDING_POINTS_LIMIT.set(settings.max_pending_points)
        telemetry.PENDING_BYTES_LIMIT.set(settings.max_pending_bytes)
        accumulator = Accumulator(
            Bounds(
                max_pending_entities=settings.max_pending_points,
                max_pending_bytes=settings.max_pending_bytes,
                max_open_runs=settings.max_open_runs,
            )
        )
        flusher = Flusher(
            accumulator,
            BatchWriter(app[POOL]),
            concurrency=settings.flush_concurrency,
            max_entities=settings.max_points_per_flush,
            linger=settings.linger_ms / 1000,
            backoff_max=settings.retry_backoff_max_s,
        )
        flusher.start()
        app[FLUSHER] = flusher
        app[WRITES] = WritePath(
            app[STORE], accumulator, ack=settings.ack, deadline=settings.request_deadline_s
        )
        yield
        flushed = await flusher.stop(timeout=max(60.0, settings.request_deadline_s))
        if not flushed:
            log.error("shut down with writes not flushed")

    async def compaction(app: web.Application):
        if settings.compact_interval_s <= 0:
            yield
            return
        compactor = Compactor(app[POOL], min_chunks=settings.compact_min_chunks)
        stopping = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            compactor.run(settings.compact_interval_s, stopping), name="gateway-compactor"
        )
        yield
        stopping.set()
        await task

    async def artifact_store(app: web.Application):
        store = open_store(settings.artifacts_location())
        app[ARTIFACTS] = store
        yield
        await store.close()

    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(ingestion)
    app.cleanup_ctx.append(compaction)
    app.cleanup_ctx.append(artifact_store)
    add_routes(app, [
        *tracking.ROUTES,
        *export.ROUTES,
        *artifacts.ROUTES,
        *logged_models.ROUTES,
        *registry.ROUTES,
        *graphql.ROUTES,
        *genai.ROUTES,
        *ui_routes(find_build()),
        Route("GET", "/metrics", prometheus_metrics),
    ])
    telemetry.refusals_from_zero(resource.canonical for resource in app.router.resources()
                                 if resource.canonical.endswith(tracking.BUFFERED_WRITES))
    serve_document(app, authentication=bool(settings.auth_file))
    return app


@operation(summary="Prometheus metrics of this process.", response=None, content_type="text/plain")
async def prometheus_metrics(request: web.Request) -> web.Response:
    body = generate_latest(telemetry.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
