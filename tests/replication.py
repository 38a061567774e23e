"""A real streaming replica for the tests: a primary cluster of Debian's PostgreSQL 15 and a
replica made of it with ``pg_basebackup -R``, both on 127.0.0.1 (and sockets in their own folder).

PostgreSQL refuses to run as root, so as root the clusters are made and run as the
``postgres`` user (which the postgresql-15 package creates) through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.server import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE = "gateway"
USER = "gateway"


def missing() -> str | None:
    """Why a streaming pair cannot be made on this machine, or None if it can."""
    for tool in ("initdb", "pg_ctl", "pg_basebackup", "postgres"):
        if not (BIN / tool).exists():
            return f"{BIN / tool} is missing: install Debian's postgresql-15 (.ci/run does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL 15 as"
    return None


class StreamingPair:
    """A primary and one streaming replica of it.

    Attributes:
        primary_url, replica_url: URLs of the database ``gateway`` on each (trust authentication, 127.0.0.1).
    """

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="gateway-replication-"))
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._owner is not None:
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
        self.primary_dir = self.root / "primary"
        self.replica_dir = self.root / "replica"
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.primary_url = f"postgresql://{USER}@127.0.0.1:{self.primary_port}/{DATABASE}"
        self.replica_url = f"postgresql://{USER}@127.0.0.1:{self.replica_port}/{DATABASE}"
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _run(self, tool: str, *args: str) -> str:
        command = [str(BIN / tool), *args]
        if self._owner is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def _make(self) -> None:
        self._run("initdb", "-D", str(self.primary_dir), "-U", USER, "--auth=trust", "--no-sync")
        with open(self.primary_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.primary_port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "wal_level = replica\n"
                "max_wal_senders = 4\n"
                # A throwaway cluster: durability buys the tests nothing.
                "fsync = off\n"
                "full_page_writes = off\n"
            )
        with open(self.primary_dir / "pg_hba.conf", "a") as hba:
            hba.write(f"host replication {USER} 127.0.0.1/32 trust\n")
        self._start(self.primary_dir, "primary")
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", USER, "-d", "postgres",
                  "-q", "-c", f"CREATE DATABASE {DATABASE}")
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", USER,
                  "-D", str(self.replica_dir), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
        with open(self.replica_dir / "postgresql.conf", "a") as conf:
            conf.write(f"port = {self.replica_port}\n")
        self.start_replica()

    def _start(self, data_dir: Path, name: str) -> None:
        self._run("pg_ctl", "-D", str(data_dir), "-l", str(self.root / f"{name}.log"), "-w", "-t", "60", "start")

    def _stop(self, data_dir: Path) -> None:
        if (data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(data_dir), "-m", "fast", "-w", "-t", "60", "stop")

    def start_replica(self) -> None:
        """Start the replica (it accepts connections once it is consistent)."""
        self._start(self.replica_dir, "replica")

    def stop_replica(self) -> None:
        """Stop the replica (fast shutdown: its connections are closed)."""
        self._stop(self.replica_dir)

    def log(self) -> str:
        """Both servers' logs, for a failing test's report."""
        texts = []
        for name in ("primary", "replica"):
            path = self.root / f"{name}.log"
            if path.exists():
                texts.append(f"--- {name}\n{path.read_text(errors='replace')}")
        return "\n".join(texts)

    def close(self) -> None:
        for data_dir in (self.replica_dir, self.primary_dir):
            try:
                self._stop(data_dir)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)
