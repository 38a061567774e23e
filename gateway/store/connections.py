"""How a store takes a connection: from the pool, in a transaction when it asks for one, with
asyncpg's connection failures turned into the gateway's retriable error (see
:func:`gateway.store.errors.translate_transient`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from gateway.store.errors import translate_transient
from gateway.store.replicas import ReadRouter


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the pool for the block, outside any transaction."""
    with translate_transient():
        async with pool.acquire() as conn:
            yield conn


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool | ReadRouter, **options) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the pool in a transaction that commits when the block ends and rolls back if it raises.

    Args:
        pool: the pool, or a read router (a connection it chooses, for a long read such as the CSV export).
        options: asyncpg's transaction options (``isolation``, ``readonly``, ``deferrable``).
    """
    with translate_transient():
        async with pool.acquire() as conn, conn.transaction(**options):
            yield conn


@contextlib.asynccontextmanager
async def begun(conn: asyncpg.Connection, setup: str = "") -> AsyncIterator[None]:
    """A transaction on ``conn`` begun together with ``setup`` (statements such as ``SET LOCAL``) in one
    round trip; it commits when the block ends and rolls back if it raises.

    asyncpg's own transaction sends BEGIN alone, and refuses to nest in a transaction
    it did not begin: inside this one, savepoints are plain SAVEPOINT statements.
    """
    await conn.execute(f"BEGIN; {setup}" if setup else "BEGIN")
    try:
        yield
    except BaseException:
        if not conn.is_closed():
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
