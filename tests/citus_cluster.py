"""Citus for the tests: the cluster in GATEWAY_TEST_CITUS_URL, else one started here.

A cluster is started with ``../shared/citus/cluster.sh`` beside the checkout (or in
GATEWAY_TEST_CITUS_SCRIPTS; a coordinator and two workers on 127.0.0.1) when Citus is installed into the machine's PostgreSQL 15
and the tests run as root; otherwise the Citus tests are skipped with a message
naming the script that installs it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from tests.pg import run_apart, with_database

CITUS_DIR = Path(
    os.environ.get("GATEWAY_TEST_CITUS_SCRIPTS") or Path(__file__).resolve().parent.parent.parent / "shared" / "citus"
)
CLUSTER_SCRIPT = CITUS_DIR / "cluster.sh"
CITUS_LIBRARY = Path("/usr/lib/postgresql/15/lib/citus.so")
# The ports a cluster started here may take: a coordinator and two workers, 10 apart.
FIRST_PORT, LAST_PORT = 56100, 56190
WORKERS = 2


def unavailable_reason() -> str | None:
    """Why no Citus cluster can be had here, or None when one can."""
    if os.environ.get("GATEWAY_TEST_CITUS_URL"):
        return None
    if not CITUS_LIBRARY.exists():
        return (
            f"Citus is not installed: run {CITUS_DIR / 'build.sh'} (root, a few minutes), "
            "or set GATEWAY_TEST_CITUS_URL to a Citus coordinator"
        )
    if not CLUSTER_SCRIPT.exists() or os.geteuid() != 0:
        return f"starting a Citus cluster needs {CLUSTER_SCRIPT} and root; or set GATEWAY_TEST_CITUS_URL"
    return None


def _free_base_port() -> int:
    for base in range(FIRST_PORT, LAST_PORT + 1, 10):
        try:
            for port in range(base, base + WORKERS + 1):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no free ports for a Citus cluster in {FIRST_PORT}-{LAST_PORT}")


class TestCitus:
    """Hands out fresh, empty databases on a Citus cluster, each with the citus extension and the
    cluster's workers registered (Citus keeps its node list per database).

    Attributes:
        admin_url: the coordinator's maintenance database.
        directory: where a cluster started here keeps its nodes (None for GATEWAY_TEST_CITUS_URL).
    """

    def __init__(self):
        self.directory: str | None = None
        self.admin_url = os.environ.get("GATEWAY_TEST_CITUS_URL")
        if not self.admin_url:
            self.directory = tempfile.mkdtemp(prefix="gateway-test-citus-")
            self._base_port = _free_base_port()
            self.admin_url = self._cluster("start", str(self._base_port), str(WORKERS)).strip().splitlines()[-1]
            self._tune()
        self._created: list[str] = []

    def _tune(self) -> None:
        """Settings for a throwaway cluster: 4 shards a table (each test database makes every
        table's shards, 32 by default) and no fsync (a stopped worker is a stopped process here,
        never a lost page cache)."""
        assert self.directory is not None
        for port in range(self._base_port, self._base_port + WORKERS + 1):
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            statements = ["ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET full_page_writes = off"]
            if port == self._base_port:
                statements.append("ALTER SYSTEM SET citus.shard_count = 4")
            for statement in [*statements, "SELECT pg_reload_conf()"]:
                subprocess.run(["psql", "-q", url, "-c", statement], check=True, capture_output=True, timeout=60)

    def _cluster(self, *args: str) -> str:
        assert self.directory is not None
        return subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), args[0], self.directory, *args[1:]],
            check=True, capture_output=True, text=True, timeout=180,
        ).stdout

    def kill_worker(self, number: int) -> None:
        """Stop worker ``number`` (1-based) at once, as a crash would."""
        self._cluster("kill-worker", str(number))

    def start_worker(self, number: int) -> None:
        self._cluster("start-worker", str(number))

    @property
    def can_stop_workers(self) -> bool:
        return self.directory is not None

    async def worker_urls(self) -> list[str]:
        """The workers' maintenance databases, in node id order (worker 1 first)."""
        conn = await asyncpg.connect(self.admin_url)
        try:
            rows = await conn.fetch(
                "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' "
                "ORDER BY nodeid"
            )
        finally:
            await conn.close()
        parts = urlsplit(self.admin_url)
        credentials = parts.netloc.rpartition("@")[0]
        prefix = f"{credentials}@" if credentials else ""
        return [f"{parts.scheme}://{prefix}{row['nodename']}:{row['nodeport']}{parts.path}" for row in rows]

    async def create_database(self) -> str:
        """A new database on every node, with the extension, and the workers added on the coordinator."""
        name = "gw_test_" + secrets.token_hex(6)
        workers = await self.worker_urls()
        for url in [self.admin_url, *workers]:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()
            conn = await asyncpg.connect(with_database(url, name))
            try:
                await conn.execute("CREATE EXTENSION citus")
            finally:
                await conn.close()
        self._created.append(name)
        coordinator = urlsplit(self.admin_url)
        conn = await asyncpg.connect(with_database(self.admin_url, name))
        try:
            await conn.execute(
                "SELECT citus_set_coordinator_host($1, $2)", coordinator.hostname, coordinator.port or 5432
            )
            for url in workers:
                worker = urlsplit(url)
                await conn.execute("SELECT citus_add_node($1, $2)", worker.hostname, worker.port or 5432)
        finally:
            await conn.close()
        return with_database(self.admin_url, name)

    async def drop_databases(self) -> None:
        for url in [self.admin_url, *await self.worker_urls()]:
            conn = await asyncpg.connect(url)
            try:
                for name in self._created:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
        self._created.clear()

    def close(self) -> None:
        """Stop a cluster started here and remove it whole; on one given by URL, drop the databases handed out."""
        if self.directory is not None:
            self._cluster("stop")
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        else:
            run_apart(self.drop_databases())
