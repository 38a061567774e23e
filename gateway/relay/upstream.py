"""The upstream tracking server as the relay calls it: credentials, pacing, one connection pool.

Credentials come from the environment as the stock MLflow client takes them:
MLFLOW_TRACKING_TOKEN (a Bearer token) or MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD (basic), MLFLOW_TRACKING_INSECURE_TLS=true to skip
certificate checks, MLFLOW_TRACKING_SERVER_CERT_PATH for a private CA. They are
held in the Authorization header only and never logged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
from dataclasses import dataclass

import aiohttp
import msgspec

from gateway.mlflow.wire import TRACKING_PREFIXES
from gateway.relay import telemetry

log = logging.getLogger(__name__)

API = TRACKING_PREFIXES[0]


def auth_header(environ: dict[str, str] | os._Environ) -> str | None:
    """The Authorization header for the upstream, from the stock client's variables."""
    token = environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return f"Bearer {token}"
    username = environ.get("MLFLOW_TRACKING_USERNAME")
    password = environ.get("MLFLOW_TRACKING_PASSWORD")
    if username and password:
        return "Basic " + base64.standard_b64encode(f"{username}:{password}".encode()).decode("ascii")
    return None


def ssl_setting(environ: dict[str, str] | os._Environ) -> ssl.SSLContext | bool:
    """False to skip certificate checks, a context for a private CA, else True (the default checks)."""
    if environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return False
    cert_path = environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    if cert_path:
        return ssl.create_default_context(cafile=cert_path)
    return True


class Pacer:
    """Spaces calls at least 1/rate seconds apart (no bursts); rate 0 means no bound."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next_slot = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass(frozen=True)
class Answer:
    """An upstream answer: status and body, or status 0 when the call itself failed."""

    status: int
    body: bytes
    retry_after: float | None = None
    transport_error: str | None = None

    @property
    def transient(self) -> bool:
        """Worth retrying later: unreachable, overloaded, or failing as a whole."""
        return self.status == 0 or self.status in (401, 403, 408, 429) or self.status >= 500

    def error(self) -> tuple[str, str]:
        """MLflow's (error_code, message) from the body, or a stand-in when it is not MLflow's JSON."""
        try:
            decoded = msgspec.json.decode(self.body)
        except msgspec.DecodeError:
            decoded = None
        if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
            return str(decoded.get("error_code") or "INTERNAL_ERROR"), decoded["message"]
        if self.transport_error:
            return "TEMPORARILY_UNAVAILABLE", f"The upstream tracking server is unreachable ({self.transport_error})."
        return "INTERNAL_ERROR", f"The upstream tracking server answered {self.status}."


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class Upstream:
    """The upstream server: base URL, credentials and one aiohttp session.

    Args:
        base_url: e.g. ``https://mlflow.example.com`` (a path prefix is kept).
        max_rps: bound on the relay's own calls per second (0: none).
        timeout: seconds one call may take.
        environ: where the credentials are read from.
    """

    def __init__(self, base_url: str, *, max_rps: float, timeout: float, environ=os.environ) -> None:
        self.base_url = base_url.rstrip("/")
        self.pacer = Pacer(max_rps)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._auth = auth_header(environ)
        self._ssl = ssl_setting(environ)
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, ssl=self._ssl)
        # Bodies pass through as the upstream sent them, compressed or not.
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def headers(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Headers for an upstream call: ``base`` plus the relay's credentials."""
        headers = dict(base or {})
        if self._auth:
            headers["Authorization"] = self._auth
        return headers

    async def call(self, method: str, path: str, *, body: bytes | None = None, params=None, endpoint: str) -> Answer:
        """One paced call by the relay itself; never raises for HTTP or network failures."""
        await self.pacer.wait()
        headers = self.headers({"Content-Type": "application/json"} if body is not None else None)
        headers["Accept-Encoding"] = "identity"
        try:
            async with self.session.request(
                method, self.base_url + path, data=body, params=params, headers=headers, timeout=self._timeout
            ) as response:
                content = await response.read()
                answer = Answer(response.status, content, _retry_after(response.headers.get("Retry-After")))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            answer = Answer(0, b"", None, type(exc).__name__)
        telemetry.UPSTREAM_CALLS.labels(endpoint, str(answer.status or "error")).inc()
        return answer

    async def log_batch(self, body: bytes) -> Answer:
        return await self.call("POST", API + "/runs/log-batch", body=body, endpoint="runs/log-batch")

    async def get_run(self, run_id: str) -> Answer:
        return await self.call("GET", API + "/runs/get", params={"run_id": run_id}, endpoint="runs/get")
