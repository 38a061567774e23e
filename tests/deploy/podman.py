"""Containers for the deployment tests: podman with the settings this kind of machine needs.

Every container runs on the host's network (``--network host``), so the tests reach it on
127.0.0.1 and it reaches the tests' PostgreSQL the same way; each is removed afterwards,
also when its test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# crun fails on cgroup v1 hosts such as ours, and a container here cannot raise its own
# limits, so every podman command (also those podman-compose and `podman play kube` run)
# reads this configuration.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""


def podman_env() -> dict[str, str]:
    """The environment for podman and podman-compose: our containers.conf, if runc is installed."""
    env = dict(os.environ)
    if shutil.which("runc"):
        path = Path(tempfile.gettempdir()) / "gateway-tests-containers.conf"
        if not path.exists() or path.read_text() != CONTAINERS_CONF:
            path.write_text(CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(path)
    return env


def podman(*args: str, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run ``podman ARGS`` and return the finished process (text output captured)."""
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=podman_env(), **kwargs
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited with {result.returncode}:\n{result.stderr}")
    return result


def podman_unusable() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/run installs it: apt-get install podman runc)"
    try:
        result = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    except subprocess.TimeoutExpired:
        return "podman info did not answer within 60 s"
    if result.returncode != 0:
        return f"podman cannot run here: {result.stderr.strip()[-500:]}"
    return None


def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def wait_healthy(url: str, timeout: float, alive=None) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took. ``alive()`` False fails at once."""
    started = time.monotonic()
    last_error: Exception | None = None
    while time.monotonic() - started < timeout:
        if alive is not None and not alive():
            raise AssertionError(f"{url}: the container exited before it answered ({last_error})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError as exc:
            last_error = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s (last error: {last_error})")


def container_database(url: str) -> tuple[list[str], str]:
    """The podman flags and the URL that give a container the PostgreSQL at ``url``.

    A server on TCP is reached as it is (the container shares the host's network); a server
    on a unix socket (the tests' embedded PostgreSQL) has its socket file mounted into the
    container at /run/postgresql.
    """
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    if not socket_dir or not socket_dir.startswith("/"):
        return [], url
    port = parts.port or 5432
    socket = f"{socket_dir}/.s.PGSQL.{port}"
    query = "&".join(
        f"{key}={value}" for key, values in parse_qs(parts.query).items() for value in values if key != "host"
    )
    inside = urlunsplit((parts.scheme, parts.netloc, parts.path, "host=/run/postgresql" + (f"&{query}" if query else ""), ""))
    return ["-v", f"{socket}:/run/postgresql/.s.PGSQL.{port}"], inside


class Container:
    """A detached container on the host's network, removed by :meth:`remove`."""

    def __init__(self, image: str, *args: str, name_prefix: str = "gateway-test", flags: list[str] | None = None):
        self.name = unique_name(name_prefix)
        podman("run", "-d", "--name", self.name, "--network", "host", *(flags or []), image, *args)

    def running(self) -> bool:
        result = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return result.stdout.strip() == "true"

    def exit_code(self) -> int:
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command).stdout

    def stop(self, timeout: int = 90) -> None:
        podman("stop", "-t", str(timeout), self.name, check=False, timeout=timeout + 30)

    def remove(self) -> None:
        podman("rm", "-f", "-v", "-t", "0", self.name, check=False)
