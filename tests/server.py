"""Runs a real `gateway serve` process on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Send ``sig`` to a running process, wait up to ``timeout`` seconds, then kill it; its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """A `python -m gateway serve` subprocess.

    Args:
        database_url: the database it serves from.
        program: what runs ``serve``: the gateway's module, or a script that wraps its command line.
        extra_args: further command-line flags (e.g. ``["--ack", "accept"]``).
        port: the port to listen on (a free one when None; the old one to restart a server).
    """

    def __init__(
        self, database_url: str, *extra_args: str, env: dict[str, str] | None = None, port: int | None = None,
        program: tuple[str, ...] = ("-m", "gateway"),
    ):
        self.port = port or free_port()
        self.scheme = "https" if "--tls-cert" in extra_args else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.log_file = tempfile.NamedTemporaryFile(prefix="gateway-test-", suffix=".log", delete=False)
        command = [
            sys.executable, *program, "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--database-url", database_url, *extra_args,
        ]
        process_env = {**os.environ, **(env or {})}
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT, env=process_env)
        self._wait_healthy(timeout=60)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                # The test certificate is checked by the tests themselves, not here.
                context = ssl._create_unverified_context() if self.scheme == "https" else None
                with urllib.request.urlopen(self.url + "/health", timeout=1, context=context) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not become healthy:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_file.name, errors="replace") as handle:
            return handle.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        return stop_process(self.process, sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
