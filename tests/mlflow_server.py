"""Runs a stock `mlflow server` on 127.0.0.1, to compare the gateway with it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.server import free_port


class MlflowServerProcess:
    """A `mlflow server --workers 1` subprocess with its own sqlite database and artifact folder.

    Args:
        backend_store_uri: the store; default a sqlite file in a new temporary folder.
        startup_timeout: seconds to wait for /health (the first start migrates the database).
    """

    def __init__(self, backend_store_uri: str | None = None, startup_timeout: float = 180):
        self.folder = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        store = backend_store_uri or f"sqlite:///{self.folder / 'mlflow.db'}"
        self.log_path = self.folder / "server.log"
        command = [
            str(Path(sys.executable).with_name("mlflow")), "server",
            "--backend-store-uri", store,
            "--artifacts-destination", str(self.folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, start_new_session=True
            )
        try:
            self._wait_healthy(startup_timeout)
        except BaseException:
            # Also on a test timeout while waiting: never leave the server behind.
            self.stop()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"mlflow server did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the server and its workers (its own process group), then remove its folder.

        Its store is thrown away with it, so nothing is gained by the several seconds
        `mlflow server` takes to shut down cleanly.
        """
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
