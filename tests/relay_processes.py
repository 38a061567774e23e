"""Real `gateway relay` processes on 127.0.0.1 for end-to-end tests (a stock `mlflow server`: tests/mlflow_server.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import typing
import urllib.request

from tests.server import free_port


def wait_healthy(process: subprocess.Popen, url: str, timeout: float, log) -> None:
    """Wait for /health; a process that does not get there is stopped, never left behind."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}:\n{log()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    _terminate(process)
    raise RuntimeError(f"process did not become healthy:\n{log()}")


def _terminate(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    # Signal the process's own session: `mlflow server` runs its workers as children.
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class _Process:
    process: subprocess.Popen
    log_file: typing.Any

    def log(self) -> str:
        with open(self.log_file.name, errors="replace") as handle:
            return handle.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        _terminate(self.process, sig, timeout)
        return self.process.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class RelayProcess(_Process):
    """A `python -m gateway relay` subprocess in front of ``upstream``.

    Args:
        upstream: the upstream's base URL.
        spool_dir: the spool directory (a fresh temporary one when None).
        extra_args: further flags, e.g. ``["--upstream-max-rps", "5"]``.
        port: the port to listen on (a free one when None; give the old one to restart).
    """

    def __init__(self, upstream: str, *extra_args: str, spool_dir: str | None = None, port: int | None = None,
                 env: dict[str, str] | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spool_dir = spool_dir or tempfile.mkdtemp(prefix="relay-spool-")
        self.upstream = upstream
        self.log_file = tempfile.NamedTemporaryFile(prefix="relay-test-", suffix=".log", delete=False)
        command = [
            sys.executable, "-m", "gateway", "relay",
            "--upstream", upstream, "--host", "127.0.0.1", "--port", str(self.port),
            "--spool-dir", self.spool_dir, *extra_args,
        ]
        process_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_RELAY_")}
        process_env.update(env or {})
        self.process = subprocess.Popen(
            command, stdout=self.log_file, stderr=subprocess.STDOUT, env=process_env, start_new_session=True
        )
        wait_healthy(self.process, self.url, 60, self.log)

    def metric(self, name: str, labels: str = "") -> float:
        """The sum of a Prometheus series of the relay's /metrics whose labels contain ``labels``."""
        return prometheus_value(self.url, name, labels)


def prometheus_value(base_url: str, name: str, labels: str = "") -> float:
    """Sum of the samples ``name{...labels...}`` on ``base_url``/metrics."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    pattern = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+(\S+)$")
    for line in text.splitlines():
        found = pattern.match(line)
        if found and labels in (found.group(1) or ""):
            total += float(found.group(2))
    return total
