"""Fixtures of the integration tests: a pool on a fresh, migrated database."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.store.migrations import migrate


@pytest.fixture
async def pool(fresh_database_url):
    """An asyncpg pool on an empty database of the test's own, migrated."""
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=6)
    async with pool.acquire() as conn:
        await migrate(conn)
    yield pool
    await pool.close()
