"""MariaDB for the import tests: a throwaway server of Debian's `mariadb-server`, started as a
plain process in a folder of its own on 127.0.0.1, or None where the package is not installed."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.server import free_port, stop_process

# What the tests say when they skip for want of it.
MISSING = "MariaDB is not installed (Debian package mariadb-server)"


def installed() -> bool:
    return bool(shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()) and bool(
        shutil.which("mariadb-install-db"))


class TestMariadb:
    """A `mariadbd` with its data in a new temporary folder, root without a password on a loopback port.

    Args:
        startup_timeout: seconds to wait for it to take connections.
    """

    def __init__(self, startup_timeout: float = 120):
        self.folder = Path(tempfile.mkdtemp(prefix="gateway-test-mariadb-"))
        self.port = free_port()
        data = self.folder / "data"
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True, timeout=startup_timeout,
        )
        daemon = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.log_path = self.folder / "server.log"
        self.process = subprocess.Popen(
            [daemon, "--no-defaults", f"--datadir={data}", f"--socket={self.folder / 'socket'}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve",
             f"--log-error={self.log_path}", f"--pid-file={self.folder / 'pid'}", "--innodb-buffer-pool-size=64M",
             "--character-set-server=utf8mb4",
             # A throwaway server: no flush at each commit.
             "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.admin_url = f"mysql+pymysql://root@127.0.0.1:{self.port}/"
        try:
            self._wait_ready(startup_timeout)
        except BaseException:
            self.close()
            raise

    def _connect(self, database: str | None = None):
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=database,
                               charset="utf8mb4", autocommit=True)

    def _wait_ready(self, timeout: float) -> None:
        import pymysql

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.process.returncode}:\n{self.log()}")
            try:
                self._connect().close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.2)
        raise RuntimeError(f"mariadbd did not take connections:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def create_database(self) -> str:
        """A new empty database; its URI as `mlflow server --backend-store-uri` takes it."""
        name = "gw_test_" + secrets.token_hex(6)
        self.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        return self.admin_url + name

    def execute(self, sql: str, args=None, database: str | None = None) -> list[tuple]:
        """Run one statement; its rows."""
        conn = self._connect(database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def connect(self, database: str):
        """A PyMySQL connection to ``database`` (autocommit)."""
        return self._connect(database)

    def close(self) -> None:
        """Stop the server and remove its folder."""
        stop_process(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)
